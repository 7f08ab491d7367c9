"""Long audio: the window plan, the crossfade, and windowed animation with the shipped model.

Model tests use K = 2 and short windows (2–3 s) so that a < 10 s clip is both animated in one
piece and forced into several windows. Tolerances are stated against the model's own
seed-to-seed variation so that they hold for any model "trained enough to move the mouth".
"""
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from cafetalk_rt.diffusion import noise as seeded_noise
from cafetalk_rt.longform import offline as longform
from cafetalk_rt.blendshapes import MOUTH_IDX
from cafetalk_rt.blinks import apply_blinks
from cafetalk_rt.control.emotions import emotion_index
from cafetalk_rt.errors import InputError
from cafetalk_rt.frames import (feature_hop_samples, frame_start_sample, num_feature_frames, num_frames,
                                num_resampled_ready, resample_frames, resample_sequence)
from cafetalk_rt.options import AnimateOptions
from cafetalk_rt.diffusion.noise import initial_noise
from cafetalk_rt.longform.windows import Stitcher, WindowOptions, crossfade, plan_windows

MOUTH = list(MOUTH_IDX)
SHORT = WindowOptions(window_s=3.0, overlap_s=1.0, context_s=1.0)


# -- plan and crossfade (no model) -----------------------------------------------------------
@pytest.mark.parametrize("fps", [25, 30])
@pytest.mark.parametrize("seconds", [0.3, 2.0, 2.04, 3.0, 3.02, 7.37, 61.0])
def test_plan_covers_every_frame(fps, seconds):
    num_samples = int(seconds * 16000) + 17
    plan = plan_windows(num_samples, fps, WindowOptions(window_s=2.0, overlap_s=0.5, context_s=0.5))
    covered = np.zeros(plan.num_frames, int)
    for i in range(plan.num_windows):
        start, stop = plan.frame_span(i)
        covered[start:stop] += 1
        assert plan.overlap_frames < stop - start <= plan.window_frames or plan.num_windows == 1
        a0, a1 = plan.audio_span(i)
        s0, s1 = plan.sample_span(i)
        assert 0 <= a0 <= s0 < s1 <= a1 <= num_samples
        assert (s0 - a0) % feature_hop_samples() == 0 and s0 == frame_start_sample(start, fps)
        off, n = plan.feature_span(i)
        assert off + n <= num_feature_frames(a1 - a0)
        if i:  # neighbours share exactly O frames
            assert plan.frame_span(i - 1)[1] - start == plan.overlap_frames
    assert covered.min() == 1 and covered.max() <= 2
    assert plan.frame_span(plan.num_windows - 1)[1] == plan.num_frames


@pytest.mark.parametrize("n", [100, 151, 1000])
def test_crossfade_weights_sum_to_one(n):
    plan = plan_windows(n * 640, 25, WindowOptions(window_s=2.0, overlap_s=0.6, context_s=0.0))
    total = np.zeros(plan.num_frames)
    for i in range(plan.num_windows):
        start, stop = plan.frame_span(i)
        w = plan.weights(i)
        assert w.shape == (stop - start,) and (w >= 0).all() and (w <= 1).all()
        total[start:stop] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_crossfade_reassembles_a_sequence_and_bounds_the_seam():
    plan = plan_windows(333 * 640, 25, WindowOptions(window_s=2.0, overlap_s=1.0, context_s=0.0))
    truth = np.random.default_rng(0).random((plan.num_frames, 52), dtype=np.float32)
    pieces = [truth[slice(*plan.frame_span(i))] for i in range(plan.num_windows)]
    np.testing.assert_allclose(crossfade(pieces, plan), truth, atol=1e-6)
    # two windows that disagree by a constant d: the blend moves from one to the other in steps
    # of at most d · π / (2 O) (raised cosine), instead of one jump of d at a hard cut
    d, o = 1.0, plan.overlap_frames
    shifted = [p + d * (i % 2) for i, p in enumerate(np.zeros((plan.num_windows, plan.window_frames, 1)))]
    out = crossfade(shifted, plan)
    assert np.abs(np.diff(out[:, 0])).max() <= d * np.pi / (2 * o) + 1e-6
    with pytest.raises(ValueError, match="expected"):
        crossfade(pieces[:-1], plan)


def test_stitcher_streams_what_crossfade_returns():
    plan = plan_windows(400 * 640, 25, WindowOptions(window_s=3.0, overlap_s=1.0, context_s=0.0))
    rng = np.random.default_rng(1)
    pieces = [rng.random((e - s, 52), dtype=np.float32) for s, e in map(plan.frame_span, range(plan.num_windows))]
    st = Stitcher(plan.overlap_frames)
    parts = [st.add(p, last=i == plan.num_windows - 1) for i, p in enumerate(pieces)]
    assert sum(map(len, parts)) == plan.num_frames
    assert np.array_equal(np.concatenate(parts), crossfade(pieces, plan))


@pytest.mark.parametrize("bad", [dict(overlap_s=6.0), dict(window_s=0.0), dict(context_s=-1.0),
                                 dict(window_s=20.0, context_s=6.0), dict(max_batch=0)])
def test_window_options_are_validated(bad):
    with pytest.raises(InputError):
        WindowOptions(**bad)


def test_piecewise_resampling_is_exact():
    """What streaming at 30 fps relies on: rows computed from a piece equal the whole call."""
    x = np.random.default_rng(2).random((101, 52), dtype=np.float32)
    full = resample_sequence(x, 25, 121, 30)
    m = 60
    ready = num_resampled_ready(m, 25, 30)
    assert np.array_equal(resample_frames(x[10:m], 25, 30, 13, ready, src_start=10), full[13:ready])
    assert np.array_equal(resample_frames(x[40:], 25, 30, ready, 121, src_start=40), full[ready:])


def test_noise_is_shared_by_overlapping_windows():
    rng = np.random.default_rng(7)
    first, rest = seeded_noise.initial_noise_frames(rng, 30), seeded_noise.initial_noise_frames(rng, 70)
    x_t, _ = initial_noise(7, 100, 1, False)  # the single-window path's x_T
    assert np.array_equal(np.concatenate([first, rest]), x_t[0])
    assert np.array_equal(seeded_noise.window_step_noise(7, 3, 40, 60), seeded_noise.window_step_noise(7, 3, 0, 60)[:, 40:])


def test_ddpm_groups_are_capped():
    plan = plan_windows(600 * 16000, 25)
    groups = longform.window_groups(plan, range(plan.num_windows), AnimateOptions(sampler="ddpm", num_inference_steps=1000),
                                    16)
    assert max(map(len, groups)) * 1000 * plan.window_frames * 52 <= longform.MAX_STEP_NOISE_FLOATS


# -- with the shipped model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(demo_audio):
    """~7.2 s: room tone, the real clip, room tone, the real clip, room tone."""
    tone = np.tile(demo_audio[:1600], 5)
    return np.concatenate([tone, demo_audio, tone, demo_audio, tone])


OPT = AnimateOptions(num_inference_steps=2)


def test_short_clip_is_the_single_window_path(animator, clip):
    """Clips up to window_s are bit-identical to encode → one sample call (the pre-window path),
    then the seed's blink layer."""
    be = animator.backend
    feats = be.encode(clip)[None]
    x_t, _ = initial_noise(OPT.seed, num_frames(clip.size, 25), 2, False)
    x0 = be.sample(feats, x_t, emotion=emotion_index(OPT.emotion), intensity=OPT.intensity, options=OPT)[0]
    assert np.array_equal(animator.animate(clip, OPT).blendshapes, apply_blinks(np.clip(x0, 0, 1), OPT.seed, 25))


def test_windowed_equals_single_window(animator, clip):
    """Forced into 3 s windows, the clip's mouth curves match the one-piece animation far more
    closely than two seeds match each other."""
    single = animator.animate(clip, OPT).blendshapes[:, MOUTH]
    windowed = animator.animate(clip, OPT, windows=SHORT).blendshapes[:, MOUTH]
    other_seed = animator.animate(clip, AnimateOptions(num_inference_steps=2, seed=1)).blendshapes[:, MOUTH]
    assert plan_windows(clip.size, 25, SHORT).num_windows >= 3
    diff, seed_diff = np.abs(windowed - single), np.abs(other_seed - single)
    # measured (interim model): mean 0.003, p99 0.036, max 0.09; seeds: mean 0.02.
    # Shipped model: mean 0.0033 vs seeds 0.0068 (its seed spread at K=2 is small), p99 0.037,
    # max 0.31 (one channel of one frame, where a 3 s window's encoder context differs most)
    assert diff.mean() < 0.6 * seed_diff.mean() and diff.mean() < 0.01
    assert np.quantile(diff, 0.99) < 0.08 and diff.max() < 0.4


def test_overlapping_windows_agree(animator, clip):
    """Both windows of an overlap start from the same noise: away from the window edges their
    mouth curves agree closely (measured mean 0.005), so the crossfade blends near-equal curves."""
    plan = plan_windows(clip.size, 25, SHORT)
    noise = seeded_noise.initial_noise_frames(np.random.default_rng(OPT.seed), plan.num_frames)
    raw = np.clip(longform.sample_group(animator.backend, clip, noise, plan, [0, 1], OPT), 0, 1)
    start = plan.frame_span(1)[0]
    a, b = raw[0, start:, MOUTH].T, raw[1, : plan.overlap_frames, MOUTH].T  # (O, C) each
    inner = slice(3, plan.overlap_frames - 3)
    assert np.abs(a[inner] - b[inner]).mean() < 0.015


def test_no_seams(animator, clip):
    """At every window boundary the largest frame-to-frame jump is no larger than the one-piece
    animation's there plus a typical (median) jump."""
    single = animator.animate(clip, OPT).blendshapes[:, MOUTH]
    windowed = animator.animate(clip, OPT, windows=SHORT).blendshapes[:, MOUTH]
    plan = plan_windows(clip.size, 25, SHORT)
    j_win, j_one = (np.abs(np.diff(y, axis=0)).max(1) for y in (windowed, single))
    typical = np.median(j_one)
    assert typical > 0.01  # the mouth moves
    for i in range(1, plan.num_windows):
        seam = slice(plan.frame_span(i)[0] - 2, plan.frame_span(i - 1)[1] + 1)
        assert j_win[seam].max() <= j_one[seam].max() + typical, i


@pytest.mark.parametrize("fps", [25, 30])
def test_windowed_shapes(animator, clip, fps):
    anim = animator.animate(clip[: 5 * 16000 + 123], AnimateOptions(num_inference_steps=1, fps=fps), windows=SHORT)
    assert anim.blendshapes.shape == (round((5 * 16000 + 123) / 16000 * fps), 52)
    assert anim.blendshapes.min() >= 0 and anim.blendshapes.max() <= 1


def test_ddpm_windowed_runs(animator, clip):
    anim = animator.animate(clip, AnimateOptions(sampler="ddpm", num_inference_steps=3), windows=SHORT)
    assert np.isfinite(anim.blendshapes).all() and anim.num_frames == round(clip.size / 640)


def test_minutes_of_audio_in_bounded_memory(animator, demo_audio):
    """2.5 minutes (real clip tiled with pauses) in 10 s windows, ≤ 2 windows per backend call.
    The numpy memory traced during the call (the audio was allocated before it) stays below one
    audio-sized temporary (prepare_audio's |x|) plus half of ONE full-length feature array, which
    is therefore never built; torch's per-batch tensors are bounded by the batch size checked."""
    gap = np.tile(demo_audio[:1600], 8)
    reps = int(np.ceil(150 * 16000 / (demo_audio.size + gap.size)))
    audio = np.concatenate([np.concatenate([demo_audio, gap])] * reps)[: 150 * 16000]
    calls = []
    backend = animator.backend
    sample = backend.sample

    def spy(features, noise, **kw):
        calls.append(noise.shape[0])
        return sample(features, noise, **kw)

    backend.sample = spy
    opt = AnimateOptions(num_inference_steps=1, guidance_scale=1.0)
    try:
        tracemalloc.start()
        anim = animator.animate(audio, opt, windows=WindowOptions(max_batch=2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        del backend.sample
    plan = plan_windows(audio.size, 25)
    assert anim.num_frames == 3750 and plan.num_windows == 17
    assert max(calls) == 2 and sum(calls) == plan.num_windows
    full_features = num_feature_frames(audio.size) * 384 * 4  # 11.5 MB: never built
    assert peak < audio.nbytes + 0.5 * full_features, peak  # measured 12.0 MB < 9.6 + 5.8 MB
    jaw = anim.channel("jawOpen")
    assert jaw.max() - jaw.min() > 0.1  # it animates all the way through
    assert all(jaw[s : s + 250].std() > 0.01 for s in range(0, 3500, 250))


def test_windowed_instruction_without_spans_is_plain_animation(animator, clip, monkeypatch):
    """An instruction whose text yields no AU span (e.g. every clause ends before the audio) on
    a windowed clip animates without fine control instead of failing in the window loop."""
    monkeypatch.setattr(type(animator), "instruction_spans", lambda self, text, duration_s: ())
    out = animator.animate(clip, replace(OPT, instruction="smile at the end"), windows=SHORT).blendshapes
    assert np.array_equal(out, animator.animate(clip, OPT, windows=SHORT).blendshapes)
