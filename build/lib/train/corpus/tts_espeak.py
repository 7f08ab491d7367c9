"""espeak-ng speech with exact phoneme start times, through ctypes on ``espeakng-loader``'s
bundled library and data (GPL-3.0+: corpus generation only, never imported by the runtime).

``espeak_Initialize`` runs in synchronous mode with phoneme events in IPA
(``espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA``); the synth callback
collects the 16-bit samples and every ``espeakEVENT_PHONEME``. Each event's ``sample`` field is
the phoneme's first output sample, so a phone spans ``[sample_i, sample_{i+1})`` and the last one
ends at the end of the audio. An empty phoneme name is a pause (label ``"_"``). The library keeps
global state, so one process synthesizes one utterance at a time (a lock guards it).

Determinism: espeak-ng's waveform generator keeps static state (glottal phase, flutter index,
``rand()``) across utterances — even across ``espeak_Terminate`` / ``espeak_Initialize`` — so the
same call gives slightly different audio (a few samples) depending on what was spoken before.
:func:`synthesize_espeak` therefore runs each utterance in a freshly forked child process of a
parent that never initialises espeak, after ``espeak_ng_SetRandSeed(seed)``: the same
(text, voice, parameters, seed) always gives the same samples (~10 ms overhead; POSIX ``fork``).
"""
from __future__ import annotations

import ctypes
import logging
import os
import pickle
import threading

import numpy as np

log = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA, _INIT_DONT_EXIT = 0x0001, 0x0002, 0x8000
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from ``speak_lib.h``."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


class _Engine:
    """The process-wide espeak-ng instance (created on first use)."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        self.sample_rate = int(self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options))
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate}); reinstall espeakng-loader")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lock = threading.Lock()

    def _on_synth(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((int(ev.sample), ev.id.string.decode("utf-8", "replace")))
            i += 1
        return 0

    def synth(self, text: str, voice: str, *, rate_wpm: int, pitch: int, pitch_range: int,
              word_gap: int, seed: int = 0) -> tuple[np.ndarray, int, list[tuple[int, str]]]:
        """Synthesize ``text``; returns (int16 samples, sample rate, [(start sample, IPA)])."""
        with self.lock:
            self._chunks, self._events = [], []
            self.lib.espeak_ng_SetRandSeed(int(seed) % (2**31))
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            for param, value in ((_RATE, rate_wpm), (_PITCH, pitch), (_RANGE, pitch_range),
                                 (_WORDGAP, word_gap), (_VOLUME, 100)):
                self.lib.espeak_SetParameter(param, int(value), 0)
            data = text.encode("utf-8")
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with code {err} for voice {voice!r}")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return audio, self.sample_rate, list(self._events)


_ENGINE: _Engine | None = None


def engine() -> _Engine:
    """The process-wide espeak-ng engine (lazily initialised)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def events_to_phones(events: list[tuple[int, str]], num_samples: int, sample_rate: int
                     ) -> list[tuple[str, float, float]]:
    """Phoneme start events → contiguous ``[(label, start_s, end_s)]`` covering the audio.

    Empty names (pauses) become ``"_"``; a leading silence is added before the first phoneme;
    adjacent pauses are merged. espeak sometimes reports a word-final phone at the same sample as
    the word-gap pause after it: such a phone takes the first ``min(half the pause, 50 ms)``
    of that pause instead of vanishing. Other zero-length phones are dropped.
    """
    starts = [[0, "_"]] + [[min(max(s, 0), num_samples), p.strip() or "_"] for s, p in events]
    ends = [st[0] for st in starts[1:]] + [num_samples]
    for i in range(len(starts) - 1):
        if starts[i][1] != "_" and ends[i] <= starts[i][0] and starts[i + 1][1] == "_":
            gap = ends[i + 1] - starts[i + 1][0]
            ends[i] = starts[i + 1][0] = starts[i][0] + min(gap // 2, sample_rate // 20)
    phones: list[tuple[str, float, float]] = []
    for (s, label), e in zip(starts, ends):
        if e <= s:
            continue
        if phones and label == "_" and phones[-1][0] == "_":
            phones[-1] = ("_", phones[-1][1], e / sample_rate)
        else:
            phones.append((label, s / sample_rate, e / sample_rate))
    return phones


def _in_fresh_process(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a forked child and return its (picklable) result."""
    if _ENGINE is not None:
        raise RuntimeError("espeak was initialised in this process; fresh-process synthesis needs a clean parent")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            try:
                payload = pickle.dumps((True, fn(*args, **kwargs)))
            except BaseException as e:  # report any failure to the parent
                payload = pickle.dumps((False, f"{type(e).__name__}: {e}"))
            with os.fdopen(wfd, "wb") as f:
                f.write(payload)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("espeak child process died without a result")
    ok, result = pickle.loads(data)
    if not ok:
        raise RuntimeError(f"espeak synthesis failed: {result}")
    return result


def _synth_child(text, voice, kwargs):
    audio16, sr, events = engine().synth(text, voice, **kwargs)
    return audio16.tobytes(), sr, events


def synthesize_espeak(text: str, voice: str, *, rate_wpm: int, pitch: int, pitch_range: int,
                      word_gap: int = 0, seed: int = 0) -> tuple[np.ndarray, int, list[tuple[str, float, float]]]:
    """Speak ``text`` with espeak-ng ``voice`` (e.g. ``"en-gb-x-rp+f3"``).

    Args:
        rate_wpm: speaking rate in words per minute (80–450; default voice rate 175).
        pitch, pitch_range: espeak base pitch and pitch range, 0–100 (defaults 50, 50).
        word_gap: extra pause between words in units of 10 ms.
        seed: espeak's ``rand()`` seed (runs in a fresh process: see the module docstring).

    Returns:
        (audio float32 (L,) in [-1, 1] at the engine's native rate, that rate in Hz,
        phones [(IPA label or "_", start_s, end_s)] covering ``[0, L / rate]``).

    Raises:
        ValueError: unknown voice; RuntimeError: the engine failed or produced no audio.
    """
    kwargs = dict(rate_wpm=rate_wpm, pitch=pitch, pitch_range=pitch_range, word_gap=word_gap, seed=seed)
    raw, sr, events = _in_fresh_process(_synth_child, text, voice, kwargs)
    audio16 = np.frombuffer(raw, np.int16)
    if audio16.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {text!r} ({voice})")
    phones = events_to_phones(events, audio16.size, sr)
    return audio16.astype(np.float32) / 32768.0, sr, phones
