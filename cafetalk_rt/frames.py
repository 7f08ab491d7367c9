"""All frame-boundary arithmetic lives here (style.md: never scattered).

At ``SAMPLE_RATE`` = 16 kHz, 25 fps is exactly 640 samples a frame and 30 fps 533.33.
The number of animation frames for a clip is ``round(duration_s * fps)``; frame ``i`` covers
``[i / fps, (i + 1) / fps)`` seconds and is sampled at its centre ``(i + 0.5) / fps``.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
#: Frame rate of the speech encoder features (Whisper: one frame per 20 ms).
FEATURE_RATE_HZ = 50.0
SUPPORTED_FPS = (25, 30)


def check_fps(fps: float) -> float:
    """Return ``fps`` as float, or raise ValueError naming the supported values."""
    if fps not in SUPPORTED_FPS:
        raise ValueError(f"fps must be one of {SUPPORTED_FPS}, got {fps!r}")
    return float(fps)


def num_frames(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Animation frames for ``num_samples`` of audio: ``round(duration_s * fps)`` (at least 1)."""
    return max(1, int(round(num_samples / sample_rate * fps)))


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Centre time in seconds of each frame, shape (T,) float64."""
    return (np.arange(n_frames, dtype=np.float64) + 0.5) / fps


def num_feature_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Speech-encoder frames (50 Hz) covering ``num_samples``: ``ceil(duration_s * 50)``."""
    return max(1, int(np.ceil(num_samples / sample_rate * FEATURE_RATE_HZ - 1e-9)))


def resample_sequence(x: np.ndarray, src_rate: float, n_out: int, dst_rate: float) -> np.ndarray:
    """Linearly interpolate a (T_src, C) sequence sampled at ``src_rate`` (frame centres) onto
    ``n_out`` frame centres at ``dst_rate``; ends are held. Returns (n_out, C) float32.

    Used to align 50 Hz speech features to the animation fps and to move curves between
    frame rates (e.g. 30 fps capture → 25 fps training target).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (T, C) array, got shape {x.shape}")
    src_t = (np.arange(x.shape[0]) + 0.5) / src_rate
    dst_t = frame_times(n_out, dst_rate)
    pos = np.interp(dst_t, src_t, np.arange(x.shape[0], dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    w = (pos - lo)[:, None].astype(np.float32)
    return (x[lo] * (1.0 - w) + x[hi] * w).astype(np.float32)
