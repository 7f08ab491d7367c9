"""Animate audio of any length: encode and denoise the windows of a :class:`WindowPlan` in
batches, then crossfade them (numpy only; the backend does the tensor work).

Memory is bounded for any length: besides the audio and the (N, 52) output (plus the (N, 52)
initial noise), only one batch of at most ``max_batch`` windows is alive at a time, i.e.
O(max_batch · window) whatever the clip's duration (see :func:`windows_per_call`).

Noise (:mod:`cafetalk_rt.diffusion.noise`): x_T of every window is a slice of ONE global (N, 52)
sequence — the same numbers the single-window path draws for a clip of N frames — so two windows
start from identical noise on the frames they share and agree closely there; DDPM's per-step
noise is drawn per frame, also equal on shared frames.
"""
from __future__ import annotations

import logging

import numpy as np

from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.control.au import AUCondition
from cafetalk_rt.diffusion.noise import initial_noise_frames, window_step_noise
from cafetalk_rt.diffusion.samplers import STOCHASTIC_SAMPLERS
from cafetalk_rt.control.emotions import emotion_index
from cafetalk_rt.errors import InputError
from cafetalk_rt.longform.windows import Stitcher, WindowOptions, WindowPlan

log = logging.getLogger(__name__)

#: Cap on DDPM step-noise floats per backend call (2^26 floats = 256 MiB): K = 1000 → fewer windows.
MAX_STEP_NOISE_FLOATS = 1 << 26


def windows_per_call(backend, window_options: WindowOptions) -> int:
    """``window_options.max_batch``, or when None: ``backend.max_window_batch`` if the backend
    sets it, else 16 for a CUDA device and 1 otherwise (measured on CPU: batching windows made
    each window slower and memory larger; GPUs need the batch to fill up)."""
    if window_options.max_batch is not None:
        return window_options.max_batch
    preferred = getattr(backend, "max_window_batch", None)
    if preferred:
        return int(preferred)
    return 16 if str(getattr(backend, "device", "cpu")).startswith("cuda") else 1


def window_groups(plan: WindowPlan, indices, options, max_batch: int) -> list[list[int]]:
    """Split ``indices`` (ascending) into backend calls: consecutive full windows (T_w frames and
    2 · T_w feature frames), at most ``max_batch`` per call (fewer for DDPM so its step noise stays
    ≤ MAX_STEP_NOISE_FLOATS); the clip's last window, when shorter in frames or audio, is a call of
    its own, as a batch needs one shape."""
    cap = max_batch
    if options.sampler in STOCHASTIC_SAMPLERS:
        per_window = options.num_inference_steps * plan.window_frames * NUM_BLENDSHAPES
        cap = max(1, min(cap, MAX_STEP_NOISE_FLOATS // per_window))
    full = _window_shape(plan, 0) if plan.windowed else None
    groups: list[list[int]] = []
    for i in indices:
        if groups and len(groups[-1]) < cap and _window_shape(plan, i) == full == _window_shape(plan, groups[-1][-1]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _window_shape(plan: WindowPlan, i: int) -> tuple[int, int]:
    """(frames, feature frames) of window ``i``."""
    start, stop = plan.frame_span(i)
    return stop - start, plan.feature_span(i)[1]


def encode_windows(backend, audio: np.ndarray, plan: WindowPlan, group: list[int], *,
                   audio_offset: int = 0) -> np.ndarray:
    """Speech features of the windows in ``group``: (B, T_a, D_a) float32, T_a the windows' own
    feature frames (each encoded with its context, then cut). ``audio`` holds the clip's samples
    from ``audio_offset`` on. Uses ``backend.encode_batch(list of (L,))`` when the backend has it,
    else ``backend.encode`` per window."""
    clips = []
    for i in group:
        a0, a1 = plan.audio_span(i)
        clips.append(audio[a0 - audio_offset : a1 - audio_offset])
    encode_batch = getattr(backend, "encode_batch", None)
    feats = encode_batch(clips) if encode_batch is not None else [backend.encode(c) for c in clips]
    out = []
    for i, f in zip(group, feats):
        off, n = plan.feature_span(i)
        out.append(np.asarray(f, np.float32)[off : off + n])  # (T_a, D_a)
    return np.stack(out)


def sample_group(backend, audio: np.ndarray, noise: np.ndarray, plan: WindowPlan, group: list[int], options, *,
                 audio_offset: int = 0, noise_offset: int = 0, fine: AUCondition | None = None) -> np.ndarray:
    """Encode and denoise the windows of ``group`` (equal lengths) in one backend call.

    Args:
        audio: the clip's samples from ``audio_offset`` on, covering every ``audio_span``.
        noise: the global x_T frames from ``noise_offset`` on, covering every ``frame_span``.
        fine: the whole clip's AU condition (N, n_AU) / (N,) at the model fps, or None;
            required when ``options.au_spans`` is set.
    Returns:
        (B, T_i, 52) float32 blendshapes in [0, 1] (clipped per window, before any crossfade).
    Raises:
        InputError: ``options.au_spans`` without ``fine`` (e.g. streaming, not supported yet).
    """
    if (getattr(options, "au_spans", ()) or getattr(options, "instruction", None)) and fine is None:
        raise InputError("AU spans and instructions need the whole clip: use Animator.animate "
                         "(streaming does not support them yet)")
    features = encode_windows(backend, audio, plan, group, audio_offset=audio_offset)  # (B, T_a, D_a)
    spans = [plan.frame_span(i) for i in group]
    x_t = np.stack([noise[s - noise_offset : e - noise_offset] for s, e in spans])  # (B, T_i, 52)
    step_noise = None
    if options.sampler in STOCHASTIC_SAMPLERS:
        step_noise = np.stack([window_step_noise(options.seed, options.num_inference_steps, s, e) for s, e in spans],
                              axis=1)  # (K, B, T_i, 52)
    kw = {} if fine is None else {"fine": AUCondition.stack([fine.frames(s, e) for s, e in spans])}  # (B, T_i, …)
    blend = backend.sample(features, x_t, emotion=emotion_index(options.emotion), intensity=options.intensity,
                           options=options, step_noise=step_noise, **kw)
    # Clipped before the crossfade, as the fused DDIM graphs already return it: otherwise a backend
    # that clips inside its graph and one that does not would stitch overlaps differently (measured:
    # 1.7e-3 on tongueOut in an overlap, ONNX Runtime vs torch, before this clip).
    return np.clip(np.asarray(blend, np.float32), 0.0, 1.0)


def animate_windows(backend, audio: np.ndarray, plan: WindowPlan, options,
                    window_options: WindowOptions, *, fine: AUCondition | None = None) -> np.ndarray:
    """Animate a windowed clip offline: (L,) float32 16 kHz → (N, 52) float32 blendshapes in ARKit
    units at the model fps, each window clipped to [0, 1], then stitched. ``fine``: optional AU condition
    (N, n_AU) / (N,) of the whole clip at the model fps.

    Raises:
        ValueError: ``plan`` is not windowed (use the single-window path) or does not match ``audio``.
    """
    if not plan.windowed or plan.num_samples != audio.shape[0]:
        raise ValueError("animate_windows needs the windowed plan of this audio")
    noise = initial_noise_frames(np.random.default_rng(options.seed), plan.num_frames)  # (N, 52)
    groups = window_groups(plan, range(plan.num_windows), options, windows_per_call(backend, window_options))
    log.info("long audio: %d frames in %d windows of %d (overlap %d), %d backend calls",
             plan.num_frames, plan.num_windows, plan.window_frames, plan.overlap_frames, len(groups))
    out = np.empty((plan.num_frames, NUM_BLENDSHAPES), np.float32)
    stitcher, done = Stitcher(plan.overlap_frames), 0
    for group in groups:
        blend = sample_group(backend, audio, noise, plan, group, options, fine=fine)
        for i, y in zip(group, blend):
            frames = stitcher.add(y, last=i == plan.num_windows - 1)
            out[done : done + len(frames)] = frames
            done += len(frames)
    assert done == plan.num_frames, (done, plan.num_frames)
    return out
