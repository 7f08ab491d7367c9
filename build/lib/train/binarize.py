"""AU labels from blendshape curves (Cafe-Talk Algorithm 1, "binarization") and the random AU
events we add to the training curves first (our deviation, see below).

Algorithm 1 as summarised in paper.md (thresholds and ARKit→AU mapping are ours to choose):

1. curves (T, 52) → AU activation (T, n_AU) (``cafetalk_rt.control.au.activation_from_blendshapes``);
2. AU on where activation > its threshold (``AU_THRESHOLDS``);
3. max-pool over time with a randomly sized kernel (``BinarizeConfig.max_kernel_s``) — fills
   short dips and widens the segments, so a span in the condition starts a little before the
   motion and ends a little after;
4. random merging of nearby segments of the same AU (gap ≤ ``merge_gap_s``, probability
   ``merge_prob``).

Each segment also gets a value: its peak activation clipped to [0.1, 1] and rounded to 0.1, so
the condition carries an intensity (our choice; the paper's condition is binary and strength
comes from the guidance scale only).

Deviation (data): our generated corpus has few, emotion-coupled AUs (nose sneer only with disgust,
no lid closing beyond blinks, no chin raiser, …), so before binarizing we add random AU events to
the training curves (``add_random_events``): 0–``max_events`` per crop, a random AU at intensity
U(lo, 1) for U(0.4, 2.5) s with smoothstep onset/offset (lo = 0.4, raised to
the AU's threshold, at most 0.9, so an event on top of speech is strong enough to be labelled), its ARKit offsets (``au.py`` weights ×
intensity × envelope) added and the sum clipped to [0, 1]. The cached audio features are left as
they are: the events are independent of speech.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cafetalk_rt.control.au import AU_NAMES, NUM_AUS, activation_from_blendshapes, au_to_arkit_matrix

#: Activation above which an AU counts as on (Algorithm 1, step 2). Default 0.35; AUs that speech
#: itself drives get their threshold above the 99th percentile of their activation over the
#: neutral clips of data/corpus (measured: AU10 .41, AU12 .37, AU14 .36, AU20 .79, AU23 .50,
#: AU24 .75, AU25 .82, AU26 .78), so speech alone rarely reads as an AU.
DEFAULT_THRESHOLD = 0.35
AU_THRESHOLDS: dict[str, float] = {"AU10": 0.5, "AU12": 0.45, "AU14": 0.45, "AU17": 0.4, "AU20": 0.9,
                                   "AU23": 0.6, "AU24": 0.85, "AU25": 0.9, "AU26": 0.9, "AU43": 0.5}


@dataclass(frozen=True)
class BinarizeConfig:
    """Algorithm 1 randomisation (all ours): max-pool kernel drawn from 1 frame to
    ``max_kernel_s``; segments of one AU closer than U(0, ``merge_gap_s``) merged with
    probability ``merge_prob``; segments shorter than ``min_segment_s`` after pooling dropped."""

    max_kernel_s: float = 0.4
    merge_gap_s: float = 0.6
    merge_prob: float = 0.5
    min_segment_s: float = 0.12


@dataclass(frozen=True)
class EventConfig:
    """Random AU events added to training curves (our deviation, module doc)."""

    max_events: int = 3
    intensity: tuple[float, float] = (0.4, 1.0)
    duration_s: tuple[float, float] = (0.4, 2.5)
    ramp_s: tuple[float, float] = (0.08, 0.3)


@dataclass(frozen=True)
class Segment:
    """One binarized AU entry: AU index ``au`` (``AU_NAMES`` order), frames [start, stop), value."""

    au: int
    start: int
    stop: int
    value: float


def thresholds() -> np.ndarray:
    """(n_AU,) float32 activation thresholds in ``AU_NAMES`` order."""
    return np.array([AU_THRESHOLDS.get(n, DEFAULT_THRESHOLD) for n in AU_NAMES], np.float32)


def max_pool_time(on: np.ndarray, kernel: int) -> np.ndarray:
    """Binary max-pool (T,) bool over a centred window of ``kernel`` frames ('same' length)."""
    if kernel <= 1:
        return on.copy()
    lo, hi = kernel // 2, kernel - 1 - kernel // 2
    padded = np.concatenate([np.zeros(lo, bool), on, np.zeros(hi, bool)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel)  # (T, kernel)
    return windows.any(axis=1)


def runs(on: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) frame ranges where ``on`` (T,) bool is True, in order."""
    d = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def merge_runs(spans: list[tuple[int, int]], max_gap: int, prob: float,
               rng: np.random.Generator) -> list[tuple[int, int]]:
    """Merge consecutive ranges whose gap is ≤ ``max_gap`` frames, each pair with ``prob``."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s - out[-1][1] <= max_gap and rng.random() < prob:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def binarize(blendshapes: np.ndarray, fps: float, rng: np.random.Generator,
             config: BinarizeConfig = BinarizeConfig()) -> list[Segment]:
    """Algorithm 1: curves (T, 52) float in [0, 1] → AU segments (module doc, steps 1–4)."""
    act = activation_from_blendshapes(blendshapes)  # (T, n_AU)
    on = act > thresholds()[None]  # (T, n_AU) step 2
    kernel = int(rng.integers(1, max(1, int(round(config.max_kernel_s * fps))) + 1))
    gap = int(round(rng.uniform(0.0, config.merge_gap_s) * fps))
    min_len = int(round(config.min_segment_s * fps))
    out = []
    for k in range(NUM_AUS):
        pooled = max_pool_time(on[:, k], kernel)  # step 3
        for s, e in merge_runs(runs(pooled), gap, config.merge_prob, rng):  # step 4
            if e - s >= min_len:
                value = min(1.0, max(0.1, round(float(act[s:e, k].max()), 1)))
                out.append(Segment(k, s, e, value))
    return out


def smooth_envelope(num_frames: int, fps: float, start_s: float, end_s: float, ramp_s: float) -> np.ndarray:
    """(T,) in [0, 1]: smoothstep up over [start, start + ramp], 1, down over [end − ramp, end]."""
    t = (np.arange(num_frames) + 0.5) / fps
    up = np.clip((t - start_s) / ramp_s, 0, 1)
    down = np.clip((end_s - t) / ramp_s, 0, 1)
    x = np.minimum(up, down)
    return x * x * (3 - 2 * x)


def add_random_events(blendshapes: np.ndarray, fps: float, rng: np.random.Generator,
                      config: EventConfig = EventConfig()) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Add 0..``max_events`` random AU events to curves (T, 52) (module doc).

    Returns:
        (curves (T, 52) float32 clipped to [0, 1], events as (au index, start frame, stop frame)
        where the envelope is > 0).
    """
    n = blendshapes.shape[0]
    dur_total = n / fps
    weights, thr = au_to_arkit_matrix(), thresholds()  # (n_AU, 52), (n_AU,)
    out = blendshapes.astype(np.float32).copy()
    events = []
    for _ in range(int(rng.integers(0, config.max_events + 1))):
        k = int(rng.integers(NUM_AUS))
        dur = min(rng.uniform(*config.duration_s), dur_total)
        start = rng.uniform(-0.2 * dur, max(dur_total - 0.8 * dur, 0.0))
        ramp = min(rng.uniform(*config.ramp_s), dur / 2)
        env = smooth_envelope(n, fps, start, start + dur, ramp)
        lo = max(config.intensity[0], min(float(thr[k]), 0.9))
        out += rng.uniform(lo, config.intensity[1]) * env[:, None] * weights[k][None]
        nz = np.flatnonzero(env > 0)
        if nz.size:
            events.append((k, int(nz[0]), int(nz[-1]) + 1))
    return np.clip(out, 0.0, 1.0), events


def drop_entries(segments: list[Segment], events: list[tuple[int, int, int]], rng: np.random.Generator, *,
                 entry_drop_prob: float = 0.8, event_drop_prob: float = 0.1,
                 single_au_drop_prob: float = 0.3) -> list[Segment]:
    """Condition dropout (paper: 80 % of AU entries dropped, single AUs dropped at random).

    Segments overlapping an added event of the same AU are dropped with ``event_drop_prob``
    (our choice: they carry most of the training signal), the others with ``entry_drop_prob``;
    then with ``single_au_drop_prob`` every segment of one randomly chosen remaining AU goes.
    """
    kept = []
    for seg in segments:
        from_event = any(k == seg.au and s < seg.stop and seg.start < e for k, s, e in events)
        if rng.random() >= (event_drop_prob if from_event else entry_drop_prob):
            kept.append(seg)
    aus = sorted({s.au for s in kept})
    if aus and rng.random() < single_au_drop_prob:
        gone = aus[int(rng.integers(len(aus)))]
        kept = [s for s in kept if s.au != gone]
    return kept


def segments_to_condition(segments: list[Segment], num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(au (T, n_AU) float32 in [0, 1], mask (T,) bool) from segments (max where they overlap)."""
    au = np.zeros((num_frames, NUM_AUS), np.float32)
    mask = np.zeros(num_frames, bool)
    for seg in segments:
        au[seg.start : seg.stop, seg.au] = np.maximum(au[seg.start : seg.stop, seg.au], seg.value)
        mask[seg.start : seg.stop] = True
    return au, mask
