"""AU vocabulary, span syntax, the fine condition, mask-based CFG (Eq. 6) and the --au flag."""
import subprocess
import sys

import numpy as np
import pytest

from cafetalk_rt.diffusion import guidance
from cafetalk_rt.control.au import (ACCEPTED_FORMS, ACTION_UNITS, AU_NAMES, NUM_AUS, UPPER_AUS, AUSpan,
                            activation_from_blendshapes, au_channel_indices, au_to_arkit_matrix, parse_au_spans,
                            region_channel_mask, spans_to_condition)
from cafetalk_rt.blendshapes import ARKIT_NAMES, MOUTH_IDX, MOUTH_NAMES, UPPER_FACE_IDX
from cafetalk_rt.errors import InputError

REQUIRED = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20",
            "AU23", "AU24", "AU25", "AU26", "AU43")


def test_vocabulary_covers_the_issue_and_maps_to_arkit():
    assert set(REQUIRED) <= set(AU_NAMES) and len(AU_NAMES) == NUM_AUS == len(set(AU_NAMES))
    assert AU_NAMES[0] == "AU1" and AU_NAMES[-1] == "AU43"  # the n_AU axis order is fixed
    for name, au in ACTION_UNITS.items():
        assert au.region in ("upper", "lower") and au.channels and au.facs_name
        assert all(ch in ARKIT_NAMES and 0 < w <= 1 for ch, w in au.channels)
    for name in UPPER_AUS:  # upper-face AUs never drive a channel speech drives
        assert not any(ch in MOUTH_NAMES for ch, _ in ACTION_UNITS[name].channels)
    assert ACTION_UNITS["AU12"].channels == (("mouthSmileLeft", 0.8), ("mouthSmileRight", 0.8))
    assert [ARKIT_NAMES[i] for i in au_channel_indices("AU45")] == ["eyeBlinkLeft", "eyeBlinkRight"]
    m = au_to_arkit_matrix()
    assert m.shape == (NUM_AUS, 52)
    # an AU's own ARKit pattern reads back as activation 1 (AU25 shares mouthUpperUp with AU10)
    np.testing.assert_allclose(np.diag(activation_from_blendshapes(m)), 1.0, atol=1e-6)


def test_parse_accepts_the_documented_forms():
    spans = parse_au_spans("AU12=0.8@1.0-2.5,AU1=1.0@3-4; au45@0.5s-0.7s , AU 26 = .5 @ 0 - 1")
    assert spans == (AUSpan("AU12", 0.8, 1.0, 2.5), AUSpan("AU1", 1.0, 3.0, 4.0),
                     AUSpan("AU43", 1.0, 0.5, 0.7), AUSpan("AU26", 0.5, 0.0, 1.0))
    assert parse_au_spans("") == () and parse_au_spans(" , ") == ()


@pytest.mark.parametrize("text", ["smile", "AU99=1@1-2", "AU12=1.5@1-2", "AU12=x@1-2", "AU12@2-1", "AU12=0.5@1",
                                  "AU12=0.5@-1-2", "12=0.5@1-2", "AU12=0.5@1-2-3", "AU12=nan@1-2"])
def test_parse_rejects_garbage_showing_the_accepted_forms(text):
    with pytest.raises(InputError) as e:
        parse_au_spans(text)
    assert ACCEPTED_FORMS in str(e.value) and "AU12=0.8@1.0-2.5" in str(e.value)


def test_overlapping_spans_compose_by_max_and_mask_covers_every_span():
    au, mask = spans_to_condition("AU12=0.8@1.0-2.5,AU12=0.5@2-3,AU1@0.2-0.6", 125, 25, 5.0)
    assert au.shape == (125, NUM_AUS) and au.dtype == np.float32 and mask.dtype == bool
    k12, k1 = AU_NAMES.index("AU12"), AU_NAMES.index("AU1")
    t = (np.arange(125) + 0.5) / 25
    np.testing.assert_allclose(au[:, k12], np.where((t >= 1.0) & (t < 2.5), 0.8, np.where((t >= 2) & (t < 3), 0.5, 0)))
    np.testing.assert_array_equal(au[:, k1], ((t >= 0.2) & (t < 0.6)).astype(np.float32))
    np.testing.assert_array_equal(mask, ((t >= 1) & (t < 3)) | ((t >= 0.2) & (t < 0.6)))
    assert au.max() <= 1 and au.min() >= 0


def test_spans_past_the_end_or_between_frames_are_errors():
    with pytest.raises(InputError, match="ends after the audio"):
        spans_to_condition("AU12@4-6", 125, 25, 5.0)
    spans_to_condition("AU12@4-5.01", 125, 25, 5.0)  # within half a frame of the end
    with pytest.raises(InputError, match="covers no frame"):
        spans_to_condition("AU12@1.001-1.01", 125, 25, 5.0)


def test_options_and_cli_take_spans():
    from cafetalk_rt.options import AnimateOptions

    o = AnimateOptions(au_spans="AU12=0.8@1-2", emotion="sad", au_guidance_scale=3.0)
    assert o.au_spans == (AUSpan("AU12", 0.8, 1.0, 2.0),) and AnimateOptions().au_spans == ()
    with pytest.raises(InputError):
        AnimateOptions(au_spans="AU12=2@1-2")
    with pytest.raises(InputError):
        AnimateOptions(au_guidance_scale=-1.0)
    r = subprocess.run([sys.executable, "-m", "cafetalk_rt.cli.main", "animate", "in.wav", "-o", "out.npz", "--au", "smile"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "accepted forms" in r.stderr


def test_au_module_does_not_import_torch():
    code = "import sys, cafetalk_rt.control.au, cafetalk_rt.options; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_mask_cfg_combine_eq6():
    rng = np.random.default_rng(0)
    b, t, c = 2, 6, 52
    z = np.zeros((b, t, 1), np.float32)
    z[:, 2:4] = 1
    plan = guidance.BranchPlan.for_scales
    assert plan(1.0, 1.0, fine=True).num_blocks == 3 and plan(1.0, 2.0, fine=True).num_blocks == 7  # 2n + 1
    assert plan(1.0, 2.0).num_blocks == 3 and plan(1.0, 1.0).num_blocks == 1  # without AUs
    for n_base, (sa, sc) in ((1, (1.0, 1.0)), (3, (1.2, 2.0))):
        x = rng.standard_normal(((n_base + 1) * b, t, c)).astype(np.float32)
        base = guidance.combine(x[: n_base * b], b, sa, sc)
        out = guidance.combine(x, b, sa, sc, au_guidance_scale=2.5, au_mask=z)
        np.testing.assert_array_equal(out[:, [0, 1, 4, 5]], base[:, [0, 1, 4, 5]])  # outside Z: no AU term
        np.testing.assert_allclose(out[:, 2:4], (base + 2.5 * (x[-b:] - x[:b]))[:, 2:4], rtol=1e-6)
        zero = guidance.combine(x, b, sa, sc, au_guidance_scale=0.0, au_mask=z)
        np.testing.assert_array_equal(zero, base)


def test_guided_denoiser_lays_out_the_fine_branch_last():
    calls = []

    def batched(x, t):
        calls.append(x.shape[0])
        return np.concatenate([np.full((1, 3, 1), v, np.float32) for v in (1.0, 2.0, 3.0, 10.0)][: x.shape[0]])

    z = np.array([[[0.0], [1.0], [1.0]]], np.float32)
    d = guidance.guided_denoiser(batched, 1, 1.0, 2.0, lambda x, k: np.concatenate([x] * k), au_guidance_scale=2.0,
                                 au_mask=z)
    out = d(np.zeros((1, 3, 1), np.float32), 5)
    base = 3.0 + 1.0 * (2.0 - 3.0) + 2.0 * (1.0 - 2.0)  # G∅ + s_a(G_A − G∅) + s_c(G_AC − G_A)
    np.testing.assert_allclose(out[0, :, 0], [base, base + 2.0 * 9.0, base + 2.0 * 9.0])
    assert calls == [4]  # all branches in ONE batched call


def test_region_channel_mask_limits_guidance_to_the_active_aus_face_regions():
    au, mask = spans_to_condition("AU1@0-1,AU12=0.5@0.5-1.5,AU26=0@1.6-1.8", 50, 25, 2.0)
    z = region_channel_mask(au, mask)
    assert z.shape == (50, 52) and z.dtype == np.float32
    assert z[5, UPPER_FACE_IDX].all() and not z[5, MOUTH_IDX].any()  # brow raise only: no lip channel
    assert z[20].all()  # AU1 and AU12 together: both regions
    assert z[30, MOUTH_IDX].all() and not z[30, UPPER_FACE_IDX].any()
    assert not z[42].any() and not z[45].any()  # intensity 0 or no span: no guidance
    assert region_channel_mask(au[None], mask[None]).shape == (1, 50, 52)


def _coupled_toy(fine_rows_from: int):
    """A toy batched denoiser (rows, T, 2) whose channel 1 ("mouth") follows channel 0 ("cheek")
    of x_t, as the stage-1 model couples a cheek raise with a smile; rows ≥ ``fine_rows_from``
    of each call's first block are the fine branch and push channel 0 up."""
    def batched(x, t):
        out = np.empty_like(x)
        out[..., 0] = 0.5 * x[..., 0]
        out[..., 1] = 0.3 + 0.8 * x[..., 0]
        out[fine_rows_from : fine_rows_from + 1, :, 0] += 1.0  # the fine branch (one clip)
        return out
    return batched


@pytest.mark.parametrize("scales", [(1.0, 1.0), (1.5, 2.0)])
def test_anchored_fine_guidance_keeps_other_regions_identical_to_the_uncontrolled_run(scales):
    from cafetalk_rt.diffusion.samplers import sample_ddim
    from cafetalk_rt.diffusion.schedule import inference_timesteps, make_schedule

    schedule = make_schedule("cosine", 1000)
    ts = inference_timesteps(6, 1000)
    n = guidance.BranchPlan.for_scales(*scales).num_base
    x_t = np.random.default_rng(0).standard_normal((1, 5, 2)).astype(np.float32)
    z = np.ones((1, 5, 2), np.float32)
    anchor = np.array([[[1.0, 0.0]]], np.float32)  # the control may act on channel 0 only
    calls = []

    def batched(x, t):
        calls.append(x.shape[0])
        return _coupled_toy(n)(x, t)

    cat = lambda xs: np.concatenate(xs)  # noqa: E731
    rep = lambda x, k: np.concatenate([x] * k)  # noqa: E731
    d = guidance.anchored_fine_denoiser(batched, 1, *scales, rep, cat, au_guidance_scale=2.0, au_mask=z, anchor=anchor)
    out = sample_ddim(d, np.concatenate([x_t, x_t]), ts, schedule)
    plain = sample_ddim(guidance.guided_denoiser(_coupled_toy(99), 1, *scales, rep), x_t, ts, schedule)
    np.testing.assert_array_equal(out[1:], plain)  # second half: the uncontrolled trajectory
    np.testing.assert_array_equal(out[:1, :, 1], plain[:, :, 1])  # anchored channel: bit-identical
    assert (out[0, :, 0] - plain[0, :, 0]).min() > 1.0  # the controlled channel moved
    assert set(calls) == {2 * n + 1}  # every branch of both trajectories in one call per step
    # without anchoring the coupling would have dragged channel 1 along
    free = sample_ddim(guidance.anchored_fine_denoiser(batched, 1, *scales, rep, cat, au_guidance_scale=2.0,
                                                       au_mask=z, anchor=np.ones_like(anchor)),
                       np.concatenate([x_t, x_t]), ts, schedule)
    assert np.abs(free[0, :, 1] - plain[0, :, 1]).min() > 0.1


def test_anchor_frees_upper_aus_own_channels_and_lower_aus_unclaimed_mouth():
    from cafetalk_rt.control.au import ACTION_UNITS, anchor_matrix, region_anchor

    au, mask = spans_to_condition("AU1@0-0.4", 50, 25, 2.0)
    a = region_anchor(au, mask)
    assert a.shape == (1, 52) and a[0].sum() == 1 and a[0, ARKIT_NAMES.index("browInnerUp")] == 1
    au, mask = spans_to_condition("AU2@0-0.4,AU12@1-1.2", 50, 25, 2.0)
    a = region_anchor(au[None], mask[None])
    assert a.shape == (1, 1, 52)
    free = {ARKIT_NAMES[i] for i in np.flatnonzero(a[0, 0])}
    assert free - {ARKIT_NAMES[i] for i in MOUTH_IDX} == {"browOuterUpLeft", "browOuterUpRight"}
    # AU12 may move its smile and the mouth channels no AU claims, but not another AU's channels:
    # the speech jaw (AU26's jawOpen) and AU24's mouthPress follow the uncontrolled trajectory
    assert {"mouthSmileLeft", "mouthSmileRight", "mouthClose", "mouthFunnel", "mouthPucker"} <= free
    assert not free & {"jawOpen", "mouthPressLeft", "mouthPressRight", "mouthRollLower", "mouthFrownLeft"}
    claimed = {ch for name in AU_NAMES for ch, _ in ACTION_UNITS[name].channels}
    assert free == {"browOuterUpLeft", "browOuterUpRight", "mouthSmileLeft", "mouthSmileRight"} | (
        {ARKIT_NAMES[i] for i in MOUTH_IDX} - claimed)
    au, mask = spans_to_condition("AU12=0@1-1.2", 50, 25, 2.0)
    assert not region_anchor(au, mask).any()  # intensity 0: nothing may change
    m = anchor_matrix()
    assert m.shape == (NUM_AUS, 52) and set(np.unique(m)) == {0.0, 1.0}
    for k, name in enumerate(AU_NAMES):  # every AU may change at least its own channels
        assert m[k, au_channel_indices(name)].all()


def test_au_tables_are_pinned_to_the_graph_format():
    """The exported AU graphs bake ``anchor_matrix`` and ``region_matrix`` in as constants, and the
    graph cache only re-exports when the checkpoint, K, precision or GRAPH_FORMAT change. So a
    change to either table must come with a GRAPH_FORMAT bump, or users keep running cached AU
    graphs with the old tables. This pins the tables' hash to the format."""
    import hashlib

    from cafetalk_rt.control.au import anchor_matrix, region_matrix
    from cafetalk_rt.backends.contract import GRAPH_FORMAT

    tables = np.ascontiguousarray(anchor_matrix()).tobytes() + np.ascontiguousarray(region_matrix()).tobytes()
    pinned = {"cafetalk_rt/graph/2": "727c2874df97f01585c617df2172309c083f993fd510630c8b64a07546c9ee8a"}
    assert hashlib.sha256(tables).hexdigest() == pinned.get(GRAPH_FORMAT), (
        "the AU tables changed: bump GRAPH_FORMAT in cafetalk_rt/backends/contract.py (cached AU graphs are then "
        "re-exported) and pin the new hash here")
