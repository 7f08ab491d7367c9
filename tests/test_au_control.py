"""Behaviour of the trained fine-control adapter in the shipped model, on real speech it never
saw (the bundled CMU ARCTIC clip) and, when the generated corpus is present, on held-out clips
with ground truth. Metrics are defined in ``train/evaluate_au.py``."""
import os
from pathlib import Path

import numpy as np
import pytest

from cafetalk_rt.control.au import AU_NAMES, LOWER_AUS, UPPER_AUS
from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX
from cafetalk_rt.nn.checkpoint import read_adapter_config
from cafetalk_rt.options import AnimateOptions
from cafetalk_rt.pipeline import DEFAULT_MODEL
from train.evaluate_au import au_response, control_options, guidance_sweep, middle_span

#: A candidate checkpoint can be checked before it ships: CAFETALK_AU_MODEL=path pytest ...
MODEL = Path(os.environ.get("CAFETALK_AU_MODEL", DEFAULT_MODEL))
pytestmark = pytest.mark.skipif(read_adapter_config(MODEL) is None,
                                reason=f"{MODEL.name} has no fine-control adapter (stage 2)")
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"

#: Thresholds (blendshape units): inside ≥ RATIO × outside and by MARGIN; the rest of the face
#: moves on average by at most REST_MAE (largest single channel: REST_MAX).
RATIO, MARGIN, REST_MAE, REST_MAX = 3.0, 0.15, 0.03, 0.15


@pytest.fixture(scope="module")
def animator():
    from cafetalk_rt.pipeline import Animator

    return Animator(MODEL, backend="torch")  # the per-AU bounds were measured on the torch backend


@pytest.fixture(scope="module")
def baseline(animator, demo_audio):
    return animator.animate(demo_audio, AnimateOptions()).blendshapes


@pytest.fixture(scope="module")
def span(demo_audio):
    return middle_span(demo_audio.shape[0] / 16_000)


@pytest.mark.parametrize("au", AU_NAMES)
def test_each_au_alone_moves_its_channels_inside_the_span_only(animator, demo_audio, baseline, span, au):
    out = animator.animate(demo_audio, control_options(AnimateOptions(), au, span)).blendshapes
    r = au_response(out, baseline, au, span)
    assert r["ratio"] >= RATIO and r["margin"] >= MARGIN, r
    assert r["rest_mae"] <= REST_MAE and r["rest_max"] <= REST_MAX, r


def _lip_change(out, base):
    """Mouth MAE of ``out`` against ``base`` relative to the mouth's own motion, and jaw corr."""
    motion = np.abs(base[:, MOUTH_IDX] - base[:, MOUTH_IDX].mean(0)).mean()
    mae = np.abs(out[:, MOUTH_IDX] - base[:, MOUTH_IDX]).mean()
    jaw = np.corrcoef(out[:, INDEX["jawOpen"]], base[:, INDEX["jawOpen"]])[0, 1]
    return mae / motion, jaw


@pytest.mark.parametrize("au", UPPER_AUS)
def test_upper_face_aus_keep_the_lips(animator, demo_audio, baseline, span, au):
    out = animator.animate(demo_audio, control_options(AnimateOptions(), au, span)).blendshapes
    rel, jaw = _lip_change(out, baseline)
    assert rel <= 0.10 and jaw >= 0.95, (rel, jaw)


@pytest.mark.skipif(not (CORPUS / "manifest.jsonl").exists(), reason="data/corpus (generated, not in git) is absent")
def test_upper_face_aus_keep_lip_metrics_on_held_out_clips(animator):
    from train.evaluate import _clips
    from train.evaluate_au import lip_effect

    clips = [(a, t) for e, a, t, fps in _clips(str(CORPUS), "test", 10_000) if e["emotion"] == "neutral" and fps == 25][:4]
    res = lip_effect(animator, clips, UPPER_AUS)
    for au in UPPER_AUS:
        assert res[au]["mouth_mae"] <= 1.10 * res["none"]["mouth_mae"], (au, res[au], res["none"])
        assert res[au]["jaw_corr"] >= 0.90 * res["none"]["jaw_corr"], (au, res[au], res["none"])


@pytest.mark.parametrize("au", ["AU12", "AU1", "AU26", "AU43"])
def test_fine_guidance_scale_changes_strength_monotonically(animator, demo_audio, au):
    levels = guidance_sweep(animator, demo_audio, au, scales=(0.0, 1.0, 2.0, 3.0))
    assert all(b > a for a, b in zip(levels, levels[1:])), levels


def test_intensity_orders_the_response(animator, demo_audio, baseline, span):
    means = [au_response(animator.animate(demo_audio, control_options(AnimateOptions(), "AU12", span, i)).blendshapes,
                         baseline, "AU12", span)["inside"] for i in (0.3, 1.0)]
    assert means[1] > means[0], means


def test_au_spans_with_emotion_and_without_spans_unchanged(animator, demo_audio, baseline, span):
    sad = AnimateOptions(emotion="sad", intensity=3)
    plain = animator.animate(demo_audio, sad).blendshapes
    out = animator.animate(demo_audio, control_options(sad, "AU12", span)).blendshapes
    r = au_response(out, plain, "AU12", span)
    assert r["ratio"] >= RATIO and r["margin"] >= MARGIN, r  # a smile inside a sad face


def test_without_spans_the_output_is_the_stage1_models(animator, demo_audio, baseline):
    model = animator.backend.model
    adapter, model.adapter = model.adapter, None
    try:
        plain = animator.animate(demo_audio, AnimateOptions()).blendshapes
    finally:
        model.adapter = adapter
    assert np.array_equal(plain, baseline)
    assert set(LOWER_AUS) | set(UPPER_AUS) == set(AU_NAMES)
