"""Overlapping windows for long audio and streaming, and the raised-cosine crossfade that joins
them (numpy only).

A clip of N model frames (25 fps) longer than one window is cut into windows of T_w frames
that start every H = T_w − O frames (O = overlap). The last window ends at the clip's end and is
shorter (its length is in (O, T_w]). Each window's speech encoder input is its own audio plus
up to ``context_s`` of audio on each side (clamped at the clip ends), so the encoder hears the
speech around the window edges; only the features over the window's own frames go to the
denoiser. Adjacent window outputs are blended over their O shared frames with a raised cosine.

Defaults (``WindowOptions``): window 10 s, overlap 1 s, context 1 s.

* 10 s: the training clips are 2–10.5 s long (docs/corpus.md), so a 10 s window stays inside
  the lengths the denoiser's ALiBi self-attention was trained on, while the per-window
  overhead (overlap + encoder context) stays ~11 % of the denoiser and ~33 % of the encoder.
* 1 s overlap: frames see audio only within ±0.1 s, so only the first and last ~2 frames of a
  window suffer from its hard edge; both windows of an overlap start from the same noise (one
  global noise sequence is sliced), so inside the overlap their mouth curves agree to a mean
  |Δ| ≈ 0.004 (max ≈ 0.12; the edge frames up to 0.34, but the raised cosine gives them < 1 %
  weight). No seam is visible: tests/test_longform.py.
* 1 s context: Whisper attends over its whole input, so features near an edge of its input
  differ from mid-clip ones. Measured on 4 s windows (shipped model, K = 10): inside the
  overlap the windows differ by a mean 0.0041 with 1 s of context, 0.0056 without (the interim
  model: max 0.07 vs 0.33). It costs encoder time (+2 s of audio per 9 s hop) and 1 s of
  streaming look-ahead.

Streaming uses the same plan: a window can be computed once its audio and right context have
arrived, so the look-ahead (first-frame delay) is window_s + context_s; see
:mod:`cafetalk_rt.longform.streaming`. All frame and sample boundaries come from
:mod:`cafetalk_rt.frames`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cafetalk_rt.errors import InputError
from cafetalk_rt.frames import (SAMPLE_RATE, feature_aligned_frames, feature_hop_samples, frame_start_sample,
                                num_feature_frames, num_frames, seconds_to_frames)

#: Longest audio one speech-encoder call takes (Whisper's 30 s window): window + 2 · context.
MAX_ENCODER_S = 30.0


@dataclass(frozen=True)
class WindowOptions:
    """How long audio is cut into windows (seconds) and how many windows share a batch.

    Attributes:
        window_s: window length; clips up to this long are animated in one piece.
        overlap_s: frames shared by adjacent windows and crossfaded; ≤ window_s / 2.
        context_s: extra audio the speech encoder hears on each side of a window; adds to the
            streaming look-ahead. window_s + 2 · context_s ≤ 30 (the encoder's window).
        max_batch: most windows denoised in one backend call; bounds memory for any length.
            None (default): the backend's ``max_window_batch`` attribute if it has one, else 16
            on CUDA and 1 elsewhere — on CPU one window per call was fastest and smallest
            (5 min, K = 10, 1 thread: max_batch 1 → RTF 0.28, 4 → 0.34, 16 → 0.38 and +400 MB).
    Raises:
        InputError: a value out of range (the message says which and why).
    """

    window_s: float = 10.0
    overlap_s: float = 1.0
    context_s: float = 1.0
    max_batch: int | None = None

    def __post_init__(self):
        if not (np.isfinite(self.window_s) and self.window_s > 0):
            raise InputError(f"window_s must be a positive number of seconds, got {self.window_s!r}")
        if not (np.isfinite(self.overlap_s) and 0 <= self.overlap_s <= self.window_s / 2):
            raise InputError(f"overlap_s must be in [0, window_s / 2 = {self.window_s / 2:g}], got {self.overlap_s!r}")
        if not (np.isfinite(self.context_s) and self.context_s >= 0):
            raise InputError(f"context_s must be ≥ 0 seconds, got {self.context_s!r}")
        if self.window_s + 2 * self.context_s > MAX_ENCODER_S + 1e-9:
            raise InputError(f"window_s + 2 · context_s = {self.window_s + 2 * self.context_s:g} s exceeds the speech "
                             f"encoder's {MAX_ENCODER_S:g} s; use a shorter window or context")
        if self.max_batch is not None and (isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int)
                                           or self.max_batch < 1):
            raise InputError(f"max_batch must be a positive integer or None, got {self.max_batch!r}")


@dataclass(frozen=True)
class WindowPlan:
    """Window geometry of one clip, in model frames and audio samples (see module doc).

    Attributes:
        num_samples: L, audio samples at 16 kHz.
        num_frames: N = round(L / 16000 · fps) model frames.
        fps: the model's frame rate.
        window_frames, overlap_frames: T_w and O in frames, 0 ≤ O ≤ T_w / 2.
        context_samples: encoder context on each side, a whole number of feature frames.
    """

    num_samples: int
    num_frames: int
    fps: int
    window_frames: int
    overlap_frames: int
    context_samples: int

    @property
    def hop_frames(self) -> int:
        """H = T_w − O, frames between window starts."""
        return self.window_frames - self.overlap_frames

    @property
    def windowed(self) -> bool:
        """True when the clip is longer than one window (else it is animated in one piece)."""
        return self.num_frames > self.window_frames

    @property
    def num_windows(self) -> int:
        """W: 1, or the fewest windows whose last one is longer than the overlap."""
        if not self.windowed:
            return 1
        return math.ceil((self.num_frames - self.overlap_frames) / self.hop_frames)

    def frame_span(self, i: int) -> tuple[int, int]:
        """Model frames ``[start, stop)`` of window ``i``."""
        start = i * self.hop_frames if self.windowed else 0
        return start, min(start + self.window_frames, self.num_frames)

    def sample_span(self, i: int) -> tuple[int, int]:
        """The window's own audio ``[s0, s1)`` in samples (clamped to the clip)."""
        start, stop = self.frame_span(i)
        s1 = self.num_samples if stop == self.num_frames else frame_start_sample(stop, self.fps)
        return frame_start_sample(start, self.fps), min(s1, self.num_samples)

    def audio_span(self, i: int) -> tuple[int, int]:
        """What the speech encoder hears for window ``i``: its audio ± context, clamped."""
        s0, s1 = self.sample_span(i)
        return max(0, s0 - self.context_samples), min(self.num_samples, s1 + self.context_samples)

    def feature_span(self, i: int) -> tuple[int, int]:
        """``(offset, count)``: the window's feature frames inside the encoder output of
        ``audio_span(i)``; count = num_feature_frames(window samples)."""
        a0, _ = self.audio_span(i)
        s0, s1 = self.sample_span(i)
        return (s0 - a0) // feature_hop_samples(), num_feature_frames(s1 - s0)

    def is_complete(self, i: int) -> bool:
        """Window ``i`` of this (possibly partial) clip is final: full length, its right context
        fully present and another window after it. Then it is the same in every longer clip with
        the same beginning (what streaming relies on)."""
        start, stop = self.frame_span(i)
        s1 = frame_start_sample(stop, self.fps)
        return (self.windowed and i < self.num_windows - 1 and stop - start == self.window_frames
                and s1 + self.context_samples <= self.num_samples)

    def weights(self, i: int) -> np.ndarray:
        """(T_i,) float32 crossfade weight of window ``i``'s frames: raised-cosine ramps over the
        overlaps with its neighbours, 1 elsewhere; the weights of all windows sum to 1 per frame."""
        start, stop = self.frame_span(i)
        w = np.ones(stop - start, np.float32)
        o = self.overlap_frames
        if o and i > 0:
            w[:o] = crossfade_ramp(o)
        if o and i < self.num_windows - 1:
            w[-o:] = 1.0 - crossfade_ramp(o)
        return w


def plan_windows(num_samples: int, fps: int, options: WindowOptions | None = None) -> WindowPlan:
    """Window plan for ``num_samples`` of 16 kHz audio animated at ``fps`` model frames.

    Window length and hop are whole multiples of :func:`~cafetalk_rt.frames.feature_aligned_frames`
    (1 frame at 25 fps) so every window starts on a speech-feature frame.

    Raises:
        InputError: ``fps`` cannot be aligned or the window is too short for its overlap.
    """
    options = options or WindowOptions()
    k = feature_aligned_frames(fps)
    t_w = max(k, seconds_to_frames(options.window_s, fps, k))
    o = min(seconds_to_frames(options.overlap_s, fps, 1), t_w // 2)
    o -= (t_w - o) % k  # hop = t_w - o stays a multiple of k
    hop = feature_hop_samples(SAMPLE_RATE)
    context = int(round(options.context_s * SAMPLE_RATE / hop)) * hop
    return WindowPlan(num_samples=int(num_samples), num_frames=num_frames(num_samples, fps), fps=int(fps),
                      window_frames=t_w, overlap_frames=max(0, o), context_samples=context)


def crossfade_ramp(overlap_frames: int) -> np.ndarray:
    """(O,) float32 raised-cosine fade-in r_j = ½ − ½ cos(π (j + ½) / O); the outgoing window
    gets 1 − r_j, so the pair sums to 1 and the blend is C¹-smooth."""
    j = np.arange(overlap_frames, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(np.pi * (j + 0.5) / overlap_frames)).astype(np.float32)


class Stitcher:
    """Joins window outputs, given in window order, into final frames.

    ``add(y (T_i, C), last=...) → (n, C)`` returns the frames that no later window touches;
    the last O frames of a non-last window wait for the next window and are crossfaded with its
    first O frames. The offline path and streaming both stitch through this class, so their
    frames are the same arithmetic. State: the O pending frames only.
    """

    def __init__(self, overlap_frames: int):
        self.overlap_frames = overlap_frames
        self._pending: np.ndarray | None = None

    def add(self, y: np.ndarray, *, last: bool) -> np.ndarray:
        o = self.overlap_frames
        if y.shape[0] < o or (self._pending is not None and not last and y.shape[0] < 2 * o):
            raise ValueError(f"a window of {y.shape[0]} frames is too short for an overlap of {o} frames")
        parts = []
        if self._pending is not None and o:
            r = crossfade_ramp(o)[:, None]  # (O, 1)
            parts.append(self._pending * (1.0 - r) + y[:o] * r)
            y = y[o:]
        self._pending = None
        if not last and o:
            self._pending, y = y[-o:].copy(), y[:-o]
        parts.append(y)
        return np.concatenate(parts).astype(np.float32, copy=False)


def crossfade(outputs, plan: WindowPlan) -> np.ndarray:
    """Stitch per-window outputs back into one sequence.

    Args:
        outputs: (W, T_w, C) array or a list of W (T_i, C) arrays, T_i = plan's window lengths
            (a shorter last window is allowed in an array if only its first T_W rows are used).
    Returns:
        (N, C) float32.
    Raises:
        ValueError: the number of windows does not match the plan.
    """
    if len(outputs) != plan.num_windows:
        raise ValueError(f"expected {plan.num_windows} window outputs, got {len(outputs)}")
    stitcher = Stitcher(plan.overlap_frames)
    parts = []
    for i, y in enumerate(outputs):
        start, stop = plan.frame_span(i)
        parts.append(stitcher.add(np.asarray(y, np.float32)[: stop - start], last=i == plan.num_windows - 1))
    return np.concatenate(parts)
