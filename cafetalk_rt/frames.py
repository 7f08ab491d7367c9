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
    return resample_frames(x, src_rate, dst_rate, 0, n_out)


def resample_frames(x: np.ndarray, src_rate: float, dst_rate: float, out_start: int, out_stop: int,
                    *, src_start: int = 0) -> np.ndarray:
    """Rows ``[out_start, out_stop)`` of ``resample_sequence(full, src_rate, n_out, dst_rate)``
    computed from a piece ``x = full[src_start : src_start + len(x)]`` (C float32), bit-identical
    to the whole-sequence call when every needed source frame lies in the piece: use
    :func:`num_resampled_ready` to know which rows those are; rows past the piece's last frame
    centre hold its last frame, as the whole call does at the true end. Returns (n, C) float32.
    """
    src_idx = np.arange(src_start, src_start + x.shape[0])
    src_t = (src_idx + 0.5) / src_rate
    dst_t = (np.arange(out_start, out_stop, dtype=np.float64) + 0.5) / dst_rate  # == frame_times
    pos = np.interp(dst_t, src_t, src_idx.astype(np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, src_start + x.shape[0] - 1)
    w = (pos - lo)[:, None].astype(np.float32)
    return (x[lo - src_start] * (1.0 - w) + x[hi - src_start] * w).astype(np.float32)


def num_resampled_ready(num_src: int, src_rate: float, dst_rate: float) -> int:
    """How many leading frames at ``dst_rate`` lie strictly before the centre of source frame
    ``num_src - 1``, i.e. are final (see :func:`resample_frames`) once ``num_src`` source frames
    are known, whatever follows. 0 when ``num_src`` is 0."""
    if num_src <= 0:
        return 0
    last_t = (num_src - 1 + 0.5) / src_rate
    n = max(0, int(np.floor(last_t * dst_rate)) - 1)
    while (n + 0.5) / dst_rate < last_t:  # same float expressions as frame_times
        n += 1
    return n


def final_output_frames(model: np.ndarray, model_offset: int, model_end: int, src_fps: float, fps: float,
                        emitted: int, total_samples: int | None = None) -> np.ndarray:
    """The output frames at ``fps`` after the first ``emitted`` that are final, given the final
    source frames ``model`` = frames [model_offset, model_end) at ``src_fps`` (streams): all of
    them when the rates match, else the rows :func:`num_resampled_ready` allows, or, at the end of
    the stream (``total_samples`` given), up to ``round(duration · fps)``. (n, C) float32 in [0, 1]."""
    if fps == src_fps:
        return model[emitted - model_offset : model_end - model_offset].astype(np.float32, copy=True)
    stop = num_frames(total_samples, fps) if total_samples is not None else num_resampled_ready(model_end, src_fps, fps)
    if stop <= emitted:
        return np.zeros((0, model.shape[1]), np.float32)
    return np.clip(resample_frames(model, src_fps, fps, emitted, stop, src_start=model_offset), 0.0, 1.0)


def first_source_frame(out_frame: int, src_rate: float, dst_rate: float) -> int:
    """Lowest source frame that :func:`resample_frames` may read for output rows ≥ ``out_frame``
    (one frame of margin against rounding), never below 0."""
    return max(0, int(np.floor((out_frame + 0.5) * src_rate / dst_rate - 0.5)) - 1)


def feature_aligned_frames(fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Smallest k ≥ 1 such that k frames at ``fps`` span a whole number of 50 Hz feature frames
    (25 fps → 1, 30 fps → 3): windows that start on multiples of k keep frames and speech
    features aligned exactly.

    Raises:
        ValueError: ``fps`` is not a positive integer.
    """
    if fps <= 0 or float(fps) != int(fps):
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    hop = feature_hop_samples(sample_rate)
    k = 1
    while (k * sample_rate) % (int(fps) * hop):
        k += 1
    return k


def feature_hop_samples(sample_rate: int = SAMPLE_RATE) -> int:
    """Audio samples per 50 Hz speech-feature frame (320 at 16 kHz)."""
    return int(round(sample_rate / FEATURE_RATE_HZ))


def frame_start_sample(frame: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """First audio sample of frame ``frame`` at ``fps``: ``round(frame · sample_rate / fps)``
    (exact at 25 fps: 640 samples a frame)."""
    return int(round(frame * sample_rate / fps))


def seconds_to_frames(seconds: float, fps: float, multiple: int = 1) -> int:
    """``seconds`` as a whole number of frames at ``fps``, rounded to a multiple of ``multiple``."""
    return int(round(seconds * fps / multiple)) * multiple
