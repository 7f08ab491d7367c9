"""Phrase ends that stop where the voice stops: a TTS engine's last phone before a pause may run
on over silence; this moves its end back to the audio. Corpus generation and relabelling only.

Why (measured on the issue-16 corpus, 80 training clips per family): the end of the last
spoken phone lies a median 0.38 s (p10 0.26 s, p90 0.56 s) after the last frame within 30 dB
of the clip's speech level for Kokoro-82M, whose duration predictor gives the phone before a
sentence end the following silence; 0.04 s for Piper and 0.00 s for espeak. The phone-driven
face then holds the mouth open over silence (mean lip openness after the voice ends: Kokoro
0.126, Piper 0.048, espeak 0.032), and a denoiser trained on it holds the mouth open through
quiet stretches of real speech.

Rule (:func:`trim_phrase_ends`): the voice is active in 10 ms frames whose RMS level is within
:data:`FLOOR_DB` of the clip's speech level (the 95th percentile of frame levels). For each
phrase end, a spoken phone followed by a pause (``"_"``) or the clip end, the phrase's spoken
phones keep their times up to ``last active frame + KEEP_S``; the phones that reach past it are
compressed into the time left (proportionally; the end moves no earlier than
:data:`MIN_PHONE_S` per compressed phone) and the rest becomes pause. Phrase starts are left alone: there the engines' onsets match the audio (median
0–10 ms).
"""
from __future__ import annotations

import numpy as np

from cafetalk_rt.frames import SAMPLE_RATE

#: A frame is voiced when its level is at most this far (dB) below the clip's speech level:
#: trailing fricatives and releases stay inside; TTS silence (−60 dB and lower) does not.
FLOOR_DB = 45.0
#: Time kept after the last active frame (seconds): the lips close as the sound stops.
KEEP_S = 0.02
#: Time left per compressed phone at the least (seconds): the new phrase end is never earlier
#: than the first compressed phone's start plus this times the number of compressed phones.
MIN_PHONE_S = 0.02
_HOP_S = 0.01
PAUSE = "_"


def frame_levels_db(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, hop_s: float = _HOP_S) -> np.ndarray:
    """(N,) float64 RMS level in dB of consecutive ``hop_s`` frames of mono ``audio`` (L,)."""
    hop = max(1, int(round(hop_s * sample_rate)))
    n = audio.size // hop
    frames = np.asarray(audio[: n * hop], np.float64).reshape(n, hop)
    return 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)


def trim_phrase_ends(phones: list, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                     floor_db: float = FLOOR_DB, keep_s: float = KEEP_S) -> list:
    """Phones whose phrase ends stop at the voice (module docstring).

    Args:
        phones: contiguous ``[(label, start_s, end_s)]`` covering the audio, ``"_"`` = pause.
        audio: (L,) mono samples at ``sample_rate`` Hz.

    Returns:
        A new contiguous list over the same span; unchanged where the voice reaches the phrase
        end, or where the clip has no voiced frame.

    Raises:
        ValueError: empty ``phones`` or ``audio``.
    """
    if not phones or audio.size == 0:
        raise ValueError("trim_phrase_ends needs phones and audio")
    level = frame_levels_db(audio, sample_rate)
    if level.size == 0:
        return list(phones)
    active = level > np.percentile(level, 95) - floor_db
    out = [list(p) for p in phones]
    i = 0
    while i < len(out):
        if out[i][0] == PAUSE:
            i += 1
            continue
        j = i  # phrase: spoken phones i .. j
        while j + 1 < len(out) and out[j + 1][0] != PAUSE:
            j += 1
        _trim_one(out, i, j, active, keep_s)
        i = j + 1
    merged: list[list] = []
    for p in out:
        if p[2] - p[1] <= 0:
            continue
        if merged and p[0] == PAUSE and merged[-1][0] == PAUSE:
            merged[-1][2] = p[2]
        else:
            merged.append(p)
    return [(str(a), float(s), float(e)) for a, s, e in merged]


def _trim_one(out: list, i: int, j: int, active: np.ndarray, keep_s: float) -> None:
    """Trim phrase ``out[i..j]`` in place; the freed time joins the next pause (or a new one)."""
    start, end = out[i][1], out[j][2]
    f0, f1 = int(start / _HOP_S), min(active.size, int(np.ceil(end / _HOP_S)))
    voiced = np.flatnonzero(active[f0:f1])
    if voiced.size == 0:
        return  # nothing voiced at all: leave the engine's timing
    new_end = (f0 + voiced[-1] + 1) * _HOP_S + keep_s
    k = next((m for m in range(i, j + 1) if out[m][2] > new_end), None)
    if k is None:
        return
    new_end = max(new_end, out[k][1] + MIN_PHONE_S * (j - k + 1))
    if new_end >= end - 1e-9:
        return
    t0, scale = out[k][1], (new_end - out[k][1]) / (end - out[k][1])
    for m in range(k, j + 1):
        out[m][1], out[m][2] = t0 + (out[m][1] - t0) * scale, t0 + (out[m][2] - t0) * scale
    out[j][2] = new_end
    if j + 1 < len(out):
        out[j + 1][1] = new_end
    else:
        out.append([PAUSE, new_end, end])


__all__ = ["FLOOR_DB", "KEEP_S", "MIN_PHONE_S", "frame_levels_db", "trim_phrase_ends"]
