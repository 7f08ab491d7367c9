"""Seeded noise: the one place the sampling noise is drawn, so every backend, a long clip's
windows and a stream see the same numbers for the same seed.

* x_T of a clip is ONE (N, 52) sequence drawn from ``numpy.random.default_rng(seed)`` frame by
  frame (:func:`initial_noise`, :func:`initial_noise_frames`): drawing n then m frames gives the
  same numbers as drawing n + m at once, so windows and streams slice the same sequence.
* DDPM's per-step noise (K, T, 52) would be O(K · N) for a long clip, so it is drawn per frame
  from ``default_rng([seed, STEP_NOISE_STREAM, frame])`` (:func:`window_step_noise`): equal on
  frames that windows share, and only O(K · window) at a time. The single-window path draws it
  from the x_T generator right after x_T (:func:`initial_noise`).
All float32.
"""
from __future__ import annotations

import numpy as np

from cafetalk_rt.blendshapes import NUM_BLENDSHAPES

#: Second entropy word of the per-frame DDPM step-noise generators (keeps them apart from x_T).
STEP_NOISE_STREAM = 0x5EED


def initial_noise(seed: int, num_frames: int, num_steps: int, stochastic: bool,
                  channels: int = NUM_BLENDSHAPES) -> tuple[np.ndarray, np.ndarray | None]:
    """x_T (1, T, C) and, for a stochastic sampler (DDPM), the (K, 1, T, C) per-step noise, from
    ``numpy.random.default_rng(seed)``; the step noise is None otherwise."""
    rng = np.random.default_rng(seed)
    x_t = rng.standard_normal((1, num_frames, channels), dtype=np.float32)
    steps = rng.standard_normal((num_steps, 1, num_frames, channels), dtype=np.float32) if stochastic else None
    return x_t, steps


def initial_noise_frames(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """The next ``num_frames`` frames of the global x_T sequence, (num_frames, 52) float32.
    Drawing n then m frames gives the same numbers as drawing n + m at once."""
    return rng.standard_normal((num_frames, NUM_BLENDSHAPES), dtype=np.float32)


def window_step_noise(seed: int, num_steps: int, start: int, stop: int) -> np.ndarray:
    """DDPM per-step noise of frames ``[start, stop)``: (K, stop − start, 52) float32; frame f's
    noise depends only on (seed, f), so overlapping windows share it."""
    out = np.empty((num_steps, stop - start, NUM_BLENDSHAPES), np.float32)
    for j, f in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, STEP_NOISE_STREAM, f])
        out[:, j] = rng.standard_normal((num_steps, NUM_BLENDSHAPES), dtype=np.float32)
    return out
