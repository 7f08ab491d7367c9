"""Phone timings → (T, 52) ARKit blendshape curves with emotion, blinks, brows and gaze.

Speech (lower face), via ``openfacefx`` 0.24:

1. phones → ARPAbet ``PhonemeSegment`` s (``train.corpus.ipa`` for engine IPA labels);
2. ``openfacefx.build_viseme_curves`` with JALI co-articulation (``CoartParams(jali=True)``:
   Cohen–Massaro dominance blend, bilabial / labiodental closure floors, sibilant jaw cap, short
   pauses absorbed, lip-heavy anticipation; all JALI rules but ``short_no_jaw``, see
   :data:`JALI_RULES`) sampled at the frame centres ``(i + 0.5) / fps`` (the first segment is
   started half a frame late so the library's grid ``t0 + k / fps`` lands on the centres);
3. the library's ARKit retarget preset ``openfacefx.PRESETS["arkit"]`` applied to the dense
   viseme matrix (the same weighted sum + clamp as ``openfacefx.retarget`` but without keyframe
   reduction), with one addition: ``PP`` (p b m) also drives ``mouthClose`` 0.3 so bilabial
   closures show on that channel as well as on ``mouthPress``/``mouthRoll``.

Silence maps to no shape, so the mouth rests between phrases. The viseme weight of ``PP`` is the
``closure`` signal (T,) in [0, 1].

Composition per clip (:func:`face_curves`): speech + emotion offsets (``expression``) + brow
motion on loudness/stressed vowels + blinks + gaze drift, clamped to [0, 1]. So that lips still
close on bilabials under an expression, lower-face emotion offsets are scaled by
``1 − 0.6 · closure`` (a smile relaxes slightly during p/b/m) and the emotion's ``jawOpen`` by
``1 − closure``; blinks override ``eyeWide`` and ``eyeSquint``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from cafetalk_rt.blendshapes import ARKIT_NAMES, INDEX, MOUTH_IDX, NUM_BLENDSHAPES
from cafetalk_rt.blinks import lay_blink
from cafetalk_rt.frames import SAMPLE_RATE, check_fps, num_frames as _num_frames
from train.corpus import expression
from train.corpus.ipa import SILENCE_LABELS, arpabet_phone, to_arpabet

#: JALI rules used: all of ``openfacefx.coart_jali.RULE_IDS`` except ``short_no_jaw``, which holds
#: the jaw open through short obstruents *after* the closure floor and so keeps it at vowel height
#: on quick /p b m/ (lips sealed by ``mouthClose`` alone); our targets want the jaw to close.
JALI_RULES = ("bilabial_close", "labiodental_teeth", "sibilant_jaw", "nonnasal_lip_open",
              "duplicated_merge", "lip_heavy", "tongue_no_lip", "wordfinal_lip")

#: Shortest p/b/m closure drawn (seconds): shorter bilabials (a 25 ms Kokoro token, a quick Piper
#: /p/) widen into their neighbours (each gives at most half its length), so every closure spans
#: at least two 25 fps frames. Real bilabial closures last about 60–120 ms.
MIN_BILABIAL_S = 0.08
_BILABIALS = ("P", "B", "M")

#: Added to the library preset (see the module docstring).
_EXTRA_TARGETS = {"PP": (("mouthClose", 0.3),)}


def phones_to_segments(phones: list, alphabet: str = "ipa") -> list:
    """``[(label, start_s, end_s)]`` → contiguous ``openfacefx.PhonemeSegment`` s in ARPAbet.

    Args:
        alphabet: ``"ipa"`` (engine labels, ``"_"`` = pause) or ``"arpabet"`` (e.g. HTK labs;
            ``sil``/``pau``/``h#`` = silence; case-insensitive; TIMIT/ARCTIC extras such as
            ``ax`` map through ``ipa.ARPABET_ALIASES``).

    Raises:
        ValueError: unknown alphabet, no phones, or times that go backwards.
    """
    from openfacefx import PhonemeSegment

    if alphabet not in ("ipa", "arpabet"):
        raise ValueError(f"alphabet must be 'ipa' or 'arpabet', got {alphabet!r}")
    if not phones:
        raise ValueError("no phones given")
    segs = []
    for label, start, end in phones:
        if end < start - 1e-9:
            raise ValueError(f"phone {label!r} ends ({end}) before it starts ({start})")
        if alphabet == "arpabet":
            arpa = arpabet_phone(label)
        else:
            arpa = to_arpabet(label)
        if not arpa and label not in SILENCE_LABELS and segs:  # stray modifier: hold previous
            arpa = [segs[-1].phoneme]
        parts = arpa or ["sil"]
        step = (end - start) / len(parts)
        for k, ph in enumerate(parts):
            s, e = start + k * step, start + (k + 1) * step
            if segs and segs[-1].phoneme == "sil" and ph == "sil":
                segs[-1] = PhonemeSegment("sil", segs[-1].start, e)
            else:
                segs.append(PhonemeSegment(ph, s, e))
    return segs


def widen_bilabials(segs: list, min_s: float = MIN_BILABIAL_S) -> list:
    """``openfacefx.PhonemeSegment`` s with every p/b/m shorter than ``min_s`` widened to it,
    half from each neighbour where it can (a neighbour keeps at least half its length); the
    segments stay contiguous and the total time is unchanged."""
    from openfacefx import PhonemeSegment

    out = list(segs)
    for i, seg in enumerate(out):
        need = min_s - (seg.end - seg.start)
        if seg.phoneme.rstrip("012") not in _BILABIALS or need <= 0:
            continue
        spare = [0.5 * (out[j].end - out[j].start) if 0 <= j < len(out) else 0.0 for j in (i - 1, i + 1)]
        left = min(need / 2, spare[0])
        right = min(need - left, spare[1])
        left = min(need - right, spare[0])
        start, end = seg.start - left, seg.end + right
        if left > 0:
            out[i - 1] = PhonemeSegment(out[i - 1].phoneme, out[i - 1].start, start)
        if right > 0:
            out[i + 1] = PhonemeSegment(out[i + 1].phoneme, end, out[i + 1].end)
        out[i] = PhonemeSegment(seg.phoneme, start, end)
    return out


@lru_cache(maxsize=1)
def retarget_matrix() -> np.ndarray:
    """(15, 52) float64 weights: ``openfacefx`` viseme (``VISEMES`` order) → ARKit channel."""
    from openfacefx import PRESETS, VISEMES

    w = np.zeros((len(VISEMES), NUM_BLENDSHAPES))
    for vi, vis in enumerate(VISEMES):
        for target, scale in tuple(PRESETS["arkit"].get(vis, ())) + _EXTRA_TARGETS.get(vis, ()):
            w[vi, INDEX[target]] += scale
    return w


def viseme_curves(phones: list, duration_s: float, fps: int, alphabet: str = "ipa") -> np.ndarray:
    """JALI viseme weights (T, 15) at frame centres, T = ``round(duration_s * fps)`` (≥ 1)."""
    from openfacefx import CoartParams, PhonemeSegment, build_viseme_curves

    fps = int(check_fps(fps))
    n = _num_frames(int(round(duration_s * SAMPLE_RATE)), fps)
    half = 0.5 / fps
    segs = [s for s in phones_to_segments(phones, alphabet) if s.end > half]
    if not segs:
        return np.eye(15)[[0] * n]
    segs[0] = PhonemeSegment(segs[0].phoneme, half, segs[0].end)
    segs = widen_bilabials(segs)
    _, matrix = build_viseme_curves(segs, fps=fps, params=CoartParams(jali=True, jali_rules=JALI_RULES))
    if matrix.shape[0] < n:
        matrix = np.concatenate([matrix, np.repeat(matrix[-1:], n - matrix.shape[0], 0)])
    return matrix[:n]


def speech_blendshapes(phones: list, duration_s: float, fps: int, alphabet: str = "ipa"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Lip-sync curves: (blendshapes (T, 52) float32 in [0, 1], closure (T,) float32 in [0, 1])."""
    from openfacefx import VISEMES

    vis = viseme_curves(phones, duration_s, fps, alphabet)
    shapes = np.clip(vis @ retarget_matrix(), 0.0, 1.0).astype(np.float32)
    return shapes, vis[:, VISEMES.index("PP")].astype(np.float32)


def _stress_times(phones: list) -> list[float]:
    return [float(s) for label, s, _ in phones if "ˈ" in label or label[-1:] == "1"]


def face_curves(phones: list, audio: np.ndarray, fps: int, emotion: str, intensity: int,
                rng: np.random.Generator, alphabet: str = "ipa") -> np.ndarray:
    """Full face for one clip: (T, 52) float32 in [0, 1], ARKit order, T = round(L / 16000 · fps).

    Args:
        phones: ``[(label, start_s, end_s)]`` covering the audio. audio: (L,) float32 at 16 kHz
            (drives brow motion). emotion, intensity: see ``expression.EMOTION_OFFSETS``.
        rng: the only source of randomness (onset timing, jitter, blinks, brows, gaze).

    Raises:
        ValueError: bad fps, emotion, intensity or phones.
    """
    duration_s = audio.size / SAMPLE_RATE
    speech, closure = speech_blendshapes(phones, duration_s, fps, alphabet)
    n = speech.shape[0]
    emo = expression.expression_offsets(emotion, intensity, n, fps, rng)
    low = np.zeros(NUM_BLENDSHAPES, np.float32)
    low[MOUTH_IDX] = 1.0
    relax = 1.0 - low[None, :] * 0.6 * closure[:, None]
    relax[:, INDEX["jawOpen"]] = 1.0 - closure
    relax[:, INDEX["mouthPressLeft"]] = relax[:, INDEX["mouthPressRight"]] = 1.0
    out = speech + emo * relax
    brow = expression.brow_motion(expression.frame_energy(audio, n, fps), _stress_times(phones), fps, rng)
    out[:, INDEX["browInnerUp"]] += brow
    out[:, INDEX["browOuterUpLeft"]] += 0.7 * brow
    out[:, INDEX["browOuterUpRight"]] += 0.7 * brow
    out += expression.gaze_drift(n, fps, rng)
    lay_blink(out, expression.blink_curve(n, fps, rng).astype(np.float32))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


__all__ = ["ARKIT_NAMES", "face_curves", "phones_to_segments", "retarget_matrix", "speech_blendshapes",
           "viseme_curves"]
