"""Text → 16 kHz speech with exact phone timings, from Piper or espeak-ng, with emotional prosody.

The engines are GPL (see ``tts_piper.py`` / ``tts_espeak.py``): they live in corpus generation
only; the runtime never imports this package.

Voices are named ``"piper:joe"``, ``"espeak:<language>[+<variant>]"``, e.g.
``"espeak:en-gb-x-rp+f3"`` (see :data:`ESPEAK_LANGUAGES`, :data:`ESPEAK_VARIANTS`), or
``"kokoro:<name>[+<name>@<weight>]"`` (Kokoro-82M, ``tts_kokoro.py``: 28 English voices and blends).

Phone labels are IPA as the engine spells it (one phone per entry, optional leading stress
mark ``ˈ``/``ˌ``, e.g. ``"ˈaɪ"``, ``"tʃ"``, ``"ɑːɹ"``) and ``"_"`` for silence / pauses. Phones
are contiguous and cover ``[0, duration_s]`` exactly.

Emotional prosody (values at intensity 3; intensity 1/2 scale the deviation from neutral by
``INTENSITY_SCALE`` = 0.35 / 0.65 / 1.0):

============  =======  ==============  ============  =======
emotion       rate ×   pitch (semit.)  pitch range×  volume×
============  =======  ==============  ============  =======
neutral       1.00     0               1.00          1.00
angry         1.12     +2.0            1.40          1.40
contempt      0.92     −1.5            0.70          0.95
disgusted     0.90     −2.0            0.85          1.00
fear          1.15     +3.5            1.20          0.85
happy         1.08     +3.0            1.40          1.15
sad           0.80     −3.0            0.55          0.70
surprised     1.10     +4.0            1.60          1.25
============  =======  ==============  ============  =======

espeak applies rate (words per minute), pitch (≈ 3 units of espeak's 0–100 scale per semitone)
and range directly. Piper has no pitch control: it speaks with ``length_scale / rate × f`` and the
result is resampled as if it had been recorded at ``f`` × its rate, ``f = 2**(semitones/12)``,
which raises the pitch by the wanted interval and scales phone times by ``1/f`` (exact). Volume is
a gain on a peak-normalised signal (peak 0.5 × volume × jitter, capped at 0.98).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import soxr

from cafetalk_rt.control.emotions import EMOTIONS, check_intensity
from cafetalk_rt.frames import SAMPLE_RATE

log = logging.getLogger(__name__)

PIPER_VOICES: tuple[str, ...] = ("piper:joe",)
ESPEAK_LANGUAGES: tuple[str, ...] = (
    "en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-gb-scotland",
)
ESPEAK_VARIANTS: tuple[str, ...] = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7",
                                    "f1", "f2", "f3", "f4", "f5")
ESPEAK_VOICES: tuple[str, ...] = tuple(
    f"espeak:{lang}" + (f"+{var}" if var else "") for lang in ESPEAK_LANGUAGES for var in ESPEAK_VARIANTS)
INTENSITY_SCALE: dict[int, float] = {1: 0.35, 2: 0.65, 3: 1.0}


@dataclass(frozen=True)
class Prosody:
    """Speaking style relative to a voice's default.

    rate: speed multiplier (>1 faster). pitch_semitones: base-pitch shift. pitch_range: pitch
    excursion multiplier (espeak only). volume: loudness multiplier.
    """

    rate: float = 1.0
    pitch_semitones: float = 0.0
    pitch_range: float = 1.0
    volume: float = 1.0


#: Prosody at intensity 3 (see the module table).
EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(),
    "angry": Prosody(1.12, 2.0, 1.40, 1.40),
    "contempt": Prosody(0.92, -1.5, 0.70, 0.95),
    "disgusted": Prosody(0.90, -2.0, 0.85, 1.00),
    "fear": Prosody(1.15, 3.5, 1.20, 0.85),
    "happy": Prosody(1.08, 3.0, 1.40, 1.15),
    "sad": Prosody(0.80, -3.0, 0.55, 0.70),
    "surprised": Prosody(1.10, 4.0, 1.60, 1.25),
}
assert set(EMOTION_PROSODY) == set(EMOTIONS)


def emotion_prosody(emotion: str, intensity: int) -> Prosody:
    """The table's prosody for ``emotion`` with the deviation from neutral scaled by intensity.

    Raises:
        ValueError: unknown emotion or intensity outside 1..3.
    """
    if emotion not in EMOTION_PROSODY:
        raise ValueError(f"unknown emotion {emotion!r}; use one of {', '.join(EMOTIONS)}")
    k = INTENSITY_SCALE[check_intensity(intensity)]
    p = EMOTION_PROSODY[emotion]
    return Prosody(1 + k * (p.rate - 1), k * p.pitch_semitones, 1 + k * (p.pitch_range - 1),
                   1 + k * (p.volume - 1))


@dataclass(frozen=True)
class Speech:
    """Synthesized speech: ``audio`` (L,) float32 mono at 16 kHz and contiguous ``phones``
    ``[(label, start_s, end_s)]`` covering ``[0, L / 16000]``."""

    audio: np.ndarray
    phones: list
    voice: str

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE


def check_voice(voice: str) -> str:
    """Return ``voice`` if it is a known voice name, else raise ValueError listing the forms."""
    if voice in PIPER_VOICES or voice in ESPEAK_VOICES:
        return voice
    if voice.startswith("kokoro:"):
        from train.corpus.tts_kokoro import parse_voice

        parse_voice(voice)
        return voice
    raise ValueError(f"unknown voice {voice!r}: use 'piper:joe', 'kokoro:<name>[+<name>@<w>]' or "
                     f"'espeak:<lang>[+<variant>]' with lang in {ESPEAK_LANGUAGES} and variant in {ESPEAK_VARIANTS[1:]}")


def _to_16k(audio: np.ndarray, sr: float) -> np.ndarray:
    return soxr.resample(audio.astype(np.float32), sr, SAMPLE_RATE, quality="HQ").astype(np.float32)


def _level(audio: np.ndarray, volume: float, rng: np.random.Generator) -> np.ndarray:
    peak = float(np.abs(audio).max()) or 1.0
    target = min(0.98, 0.5 * volume * float(rng.uniform(0.8, 1.2)))
    return (audio * (target / peak)).astype(np.float32)


def _snap_end(phones, duration_s: float) -> list:
    """Make the last phone end exactly at the audio end (removes resampling rounding)."""
    label, s, _ = phones[-1]
    return phones[:-1] + [(label, s, duration_s)]


def _speak_piper(text: str, p: Prosody, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    from train.corpus.tts_piper import synthesize_piper

    f = 2.0 ** (p.pitch_semitones / 12.0)
    audio, sr, phones = synthesize_piper(
        text, length_scale=float(rng.uniform(0.9, 1.1)) * f / p.rate,
        noise_scale=float(rng.uniform(0.45, 0.8)), noise_w_scale=float(rng.uniform(0.6, 1.0)),
        seed=int(rng.integers(2**31)))
    return _to_16k(audio, sr * f), [(ph, s / f, e / f) for ph, s, e in phones]


def _speak_kokoro(text: str, voice: str, p: Prosody, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Kokoro has a speed control only: the speaker's rate U(0.8, 1.25) × the emotion's rate;
    pitch as for Piper (resampled as if recorded at f × 24 kHz)."""
    from train.corpus.tts_kokoro import synthesize_kokoro

    f = 2.0 ** (p.pitch_semitones / 12.0)
    audio, sr, phones = synthesize_kokoro(text, voice, speed=float(rng.uniform(0.8, 1.25)) * p.rate / f)
    return _to_16k(audio, sr * f), [(ph, s / f, e / f) for ph, s, e in phones]


def _speak_espeak(text: str, voice: str, p: Prosody, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    from train.corpus.tts_espeak import synthesize_espeak

    rate = int(np.clip(rng.uniform(150, 190) * p.rate, 80, 400))
    pitch = int(np.clip(rng.uniform(38, 62) + 3.0 * p.pitch_semitones, 0, 100))
    prange = int(np.clip(rng.uniform(40, 60) * p.pitch_range, 0, 100))
    audio, sr, phones = synthesize_espeak(text, voice.split(":", 1)[1], rate_wpm=rate, pitch=pitch,
                                          pitch_range=prange, word_gap=int(rng.integers(0, 2)),
                                          seed=int(rng.integers(2**31)))
    return _to_16k(audio, sr), phones


def synthesize(text: str, voice: str, prosody: Prosody = Prosody(), *, seed: int = 0) -> Speech:
    """Speak ``text`` with ``voice`` in ``prosody``; per-call variation (speaker rate/pitch
    jitter, Piper noise, loudness) comes from ``numpy.random.default_rng(seed)``.

    Returns:
        :class:`Speech` at 16 kHz with phone timings in seconds.

    Raises:
        ValueError: unknown voice or empty text. RuntimeError: the engine failed.
    """
    check_voice(voice)
    if not text.strip():
        raise ValueError("text is empty")
    rng = np.random.default_rng(seed)
    if voice.startswith("piper:"):
        audio, phones = _speak_piper(text, prosody, rng)
    elif voice.startswith("kokoro:"):
        audio, phones = _speak_kokoro(text, voice, prosody, rng)
    else:
        audio, phones = _speak_espeak(text, voice, prosody, rng)
    audio = _level(audio, prosody.volume, rng)
    return Speech(audio, _snap_end(phones, audio.size / SAMPLE_RATE), voice)


def pad_silence(speech: Speech, lead_s: float, trail_s: float) -> Speech:
    """``speech`` with digital silence added before and after (phones shifted; the added time
    joins the first / last pause or becomes a new ``"_"`` phone).

    Raises:
        ValueError: negative padding.
    """
    if lead_s < 0 or trail_s < 0:
        raise ValueError(f"padding must be >= 0 s, got {lead_s}, {trail_s}")
    lead, trail = int(round(lead_s * SAMPLE_RATE)), int(round(trail_s * SAMPLE_RATE))
    audio = np.concatenate([np.zeros(lead, np.float32), speech.audio, np.zeros(trail, np.float32)])
    shift, end = lead / SAMPLE_RATE, audio.size / SAMPLE_RATE
    phones = [(p, s + shift, e + shift) for p, s, e in speech.phones]
    if lead:
        phones = ([("_", 0.0, phones[0][2])] + phones[1:] if phones[0][0] == "_"
                  else [("_", 0.0, shift)] + phones)
    if trail:
        phones = (phones[:-1] + [("_", phones[-1][1], end)] if phones[-1][0] == "_"
                  else phones + [("_", phones[-1][2], end)])
    return Speech(audio, _snap_end(phones, end), speech.voice)
