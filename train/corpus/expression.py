"""Non-speech face motion for generated clips: emotion expressions, blinks, brow motion that
follows speech, eye-gaze drift. All randomness comes from an explicit ``numpy.random.Generator``
and every function draws the same number of values whatever the emotion or intensity, so for one
seed the intensities 1/2/3 of a clip differ only in the offset scale (monotonic by construction).

Emotion offsets at intensity 3 (added to the speech curves; intensity 1/2/3 scale them by
``INTENSITY_GAIN`` = 0.35 / 0.65 / 1.0, each channel jittered ×U(0.85, 1.15) per clip):

==========  ====================================================================================
emotion     channels (value at intensity 3)
==========  ====================================================================================
neutral     none
happy       mouthSmile L/R .55, cheekSquint L/R .35, eyeSquint L/R .15, mouthDimple L/R .10
sad         mouthFrown L/R .45, browInnerUp .50, browDown L/R .12, mouthShrugLower .15,
            eyeLookDown L/R .08
angry       browDown L/R .60, noseSneer L/R .30, eyeSquint L/R .30, mouthPress L/R .25,
            jawForward .05
surprised   browInnerUp .60, browOuterUp L/R .60, eyeWide L/R .50, jawOpen .12
fear        browInnerUp .55, browOuterUp L/R .15, eyeWide L/R .45, mouthStretch L/R .35
disgusted   noseSneer L/R .50, mouthUpperUp L/R .40, browDown L/R .35, cheekSquint L/R .15,
            mouthFrown L/R .10
contempt    one-sided (left): mouthSmileLeft .40, mouthDimpleLeft .35, eyeSquintLeft .10,
            mouthLeft .08
==========  ====================================================================================

Onset: the expression eases in (smoothstep) after a delay of U(0, 0.3) s over U(0.2, 0.6) s,
then breathes slowly (±8 % at 0.1–0.3 Hz).
"""
from __future__ import annotations

import numpy as np

from cafetalk_rt.blendshapes import INDEX, NUM_BLENDSHAPES
from cafetalk_rt.blinks import Blink
from cafetalk_rt.control.emotions import EMOTIONS, check_intensity
from cafetalk_rt.frames import SAMPLE_RATE, frame_times

INTENSITY_GAIN: dict[int, float] = {1: 0.35, 2: 0.65, 3: 1.0}


def _lr(name: str, value: float) -> dict[str, float]:
    return {f"{name}Left": value, f"{name}Right": value}


EMOTION_OFFSETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {**_lr("mouthSmile", .55), **_lr("cheekSquint", .35), **_lr("eyeSquint", .15),
              **_lr("mouthDimple", .10)},
    "sad": {**_lr("mouthFrown", .45), "browInnerUp": .50, **_lr("browDown", .12),
            "mouthShrugLower": .15, **_lr("eyeLookDown", .08)},
    "angry": {**_lr("browDown", .60), **_lr("noseSneer", .30), **_lr("eyeSquint", .30),
              **_lr("mouthPress", .25), "jawForward": .05},
    "surprised": {"browInnerUp": .60, **_lr("browOuterUp", .60), **_lr("eyeWide", .50), "jawOpen": .12},
    "fear": {"browInnerUp": .55, **_lr("browOuterUp", .15), **_lr("eyeWide", .45),
             **_lr("mouthStretch", .35)},
    "disgusted": {**_lr("noseSneer", .50), **_lr("mouthUpperUp", .40), **_lr("browDown", .35),
                  **_lr("cheekSquint", .15), **_lr("mouthFrown", .10)},
    "contempt": {"mouthSmileLeft": .40, "mouthDimpleLeft": .35, "eyeSquintLeft": .10, "mouthLeft": .08},
}
assert set(EMOTION_OFFSETS) == set(EMOTIONS)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def onset_envelope(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Expression strength over time (T,) in [0, 1.08]: delayed smoothstep ease-in, slow breathing."""
    t = frame_times(num_frames, fps)
    delay, rise = rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.6)
    freq, phase = rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)
    return _smoothstep((t - delay) / rise) * (1.0 + 0.08 * np.sin(2 * np.pi * freq * t + phase))


def expression_offsets(emotion: str, intensity: int, num_frames: int, fps: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Emotion offsets (T, 52) float32 ≥ 0 in ARKit order (module table × intensity × onset).

    Raises:
        ValueError: unknown emotion or intensity outside 1..3.
    """
    if emotion not in EMOTION_OFFSETS:
        raise ValueError(f"unknown emotion {emotion!r}; use one of {', '.join(EMOTIONS)}")
    gain = INTENSITY_GAIN[check_intensity(intensity)]
    jitter = rng.uniform(0.85, 1.15, NUM_BLENDSHAPES)
    env = onset_envelope(num_frames, fps, rng)
    peak = np.zeros(NUM_BLENDSHAPES)
    for name, value in EMOTION_OFFSETS[emotion].items():
        peak[INDEX[name]] = value * gain * jitter[INDEX[name]]
    return (env[:, None] * peak[None, :]).astype(np.float32)


def blink_curve(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Blinks (T,) in [0, 1] that close fully: closing U(40, 60) ms, closed U(110, 130) ms at a peak
    U(0.95, 1), opening U(70, 90) ms (about 170–205 ms above half closed; ≥ 0.9 for over 120 ms, so
    on at least three 25 fps frames); the first after U(0.2, 2.5) s, then every U(1.5, 5) s (about
    20 a minute, a speaker's rate). Sampled at the frame times. The shape is the runtime's
    (``cafetalk_rt.blinks.Blink``); only the random draws are the generator's own."""
    t = frame_times(num_frames, fps)
    out = np.zeros(num_frames)
    start = rng.uniform(0.2, 2.5)
    for _ in range(64):  # fixed draw count keeps the generator state independent of duration
        close, hold, open_ = rng.uniform(0.04, 0.06), rng.uniform(0.11, 0.13), rng.uniform(0.07, 0.09)
        peak, gap = rng.uniform(0.95, 1.0), rng.uniform(1.5, 5.0)
        if start < t[-1] + 0.5 / fps:
            out = np.maximum(out, Blink(start, close, hold, open_, peak).curve(t))
        start += close + hold + open_ + gap
    return out


def frame_energy(audio: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """Loudness per frame (T,) in [0, 1]: RMS over ±20 ms around each frame centre, in dB,
    mapped from [peak − 40 dB, peak] to [0, 1]."""
    centres = np.round(frame_times(num_frames, fps) * SAMPLE_RATE).astype(np.int64)
    half = int(0.02 * SAMPLE_RATE)
    sq = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    lo, hi = np.clip(centres - half, 0, audio.size), np.clip(centres + half, 0, audio.size)
    rms = np.sqrt((sq[hi] - sq[lo]) / np.maximum(hi - lo, 1))
    db = 20 * np.log10(rms + 1e-6)
    return np.clip((db - (db.max() - 40.0)) / 40.0, 0.0, 1.0)


def brow_motion(energy: np.ndarray, stress_times_s: list[float], fps: float,
                rng: np.random.Generator) -> np.ndarray:
    """Brow raise (T,) ≥ 0 following speech: a small term on smoothed loudness plus, on about
    half of the stressed vowels, a 0.04–0.12 bump (Gaussian, σ = 0.12 s) at the vowel."""
    t = frame_times(energy.size, fps)
    k = max(1, int(round(0.15 * fps)))
    smooth = np.convolve(energy, np.ones(k) / k, mode="same")
    out = rng.uniform(0.01, 0.05) * smooth
    for ts in stress_times_s:
        amp, keep = rng.uniform(0.04, 0.12), rng.random() < 0.5
        if keep:
            out += amp * np.exp(-0.5 * ((t - ts - 0.05) / 0.12) ** 2)
    return out


def gaze_drift(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Eye-look offsets (T, 52) ≥ 0: fixations held U(0.8, 3) s with ~60 ms saccades between
    targets h ~ N(0, 0.08) (+ = subject's right) and v ~ N(0, 0.06) (+ = up), both clipped to
    ±0.2, plus tiny jitter."""
    t = frame_times(num_frames, fps)
    h, v = np.zeros(num_frames), np.zeros(num_frames)
    start, prev = 0.0, np.zeros(2)
    for _ in range(64):
        target = np.clip(rng.normal(0.0, (0.08, 0.06)), -0.2, 0.2)
        hold = rng.uniform(0.8, 3.0)
        w = _smoothstep((t - start) / 0.06)[:, None]
        sel = t >= start
        hv = prev * (1 - w) + target * w
        h[sel], v[sel] = hv[sel, 0], hv[sel, 1]
        prev, start = target, start + hold
    h += rng.normal(0.0, 0.005, num_frames)
    v += rng.normal(0.0, 0.005, num_frames)
    out = np.zeros((num_frames, NUM_BLENDSHAPES), np.float32)
    out[:, INDEX["eyeLookOutRight"]] = out[:, INDEX["eyeLookInLeft"]] = np.maximum(h, 0)
    out[:, INDEX["eyeLookOutLeft"]] = out[:, INDEX["eyeLookInRight"]] = np.maximum(-h, 0)
    out[:, INDEX["eyeLookUpLeft"]] = out[:, INDEX["eyeLookUpRight"]] = np.maximum(v, 0)
    out[:, INDEX["eyeLookDownLeft"]] = out[:, INDEX["eyeLookDownRight"]] = np.maximum(-v, 0)
    return out
