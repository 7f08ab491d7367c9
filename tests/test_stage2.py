"""Stage 2: adapter zero-init, checkpoints, Algorithm 1 binarization, swap labels, a tiny fit
with resume, and the trained adapter's behaviour on the shipped model (real speech)."""
import json

import numpy as np
import pytest
import torch

from cafetalk_rt.control.au import AU_NAMES, NUM_AUS, au_to_arkit_matrix
from cafetalk_rt.blendshapes import INDEX
from cafetalk_rt.nn.adapter import AdapterConfig
from cafetalk_rt.nn.checkpoint import load_denoiser, read_adapter_config, read_metadata, save_denoiser
from cafetalk_rt.nn.denoiser import CONFIGS, Denoiser
from train.binarize import (BinarizeConfig, Segment, add_random_events, binarize, drop_entries, max_pool_time,
                            merge_runs, runs, segments_to_condition)


def _inputs(b=2, t=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, 52, generator=g), torch.tensor([10, 700][:b]), torch.randn(b, 2 * t, 384, generator=g),
            torch.tensor([1, 5][:b]), torch.tensor([2.0, 3.0][:b]), torch.ones(b), torch.ones(b))


def _tiny(seed=0):
    torch.manual_seed(seed)
    m = Denoiser(CONFIGS["tiny"]).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.1)  # zero-initialised heads too, so the stage-1 output is not trivial
    return m


def test_adapter_zero_init_equals_stage1_exactly():
    m = _tiny()
    args = _inputs()
    y0 = m(*args)
    m.attach_adapter(AdapterConfig(heads=m.config.heads))
    au = torch.rand(2, 30, NUM_AUS)
    mask = torch.rand(2, 30) > 0.5
    assert torch.equal(m(*args, au=au, au_mask=mask), y0)
    assert torch.equal(m(*args), y0)  # au=None never runs the adapter
    with torch.no_grad():
        for p in m.adapter.parameters():
            p.normal_(0, 0.1)
    y1 = m(*args, au=au, au_mask=mask, fine_keep=torch.tensor([0.0, 1.0]))
    assert torch.equal(y1[0], y0[0]) and not torch.allclose(y1[1], y0[1])  # fine_keep 0 = stage 1 row
    with pytest.raises(ValueError, match="au_mask"):
        m(*args, au=au)
    with pytest.raises(ValueError, match="adapter"):
        _tiny()(*args, au=au, au_mask=mask)


def test_checkpoint_holds_adapter_and_stage1_loads_unchanged(tmp_path):
    m = _tiny()
    save_denoiser(tmp_path / "s1.safetensors", m)
    assert read_adapter_config(tmp_path / "s1.safetensors") is None
    assert load_denoiser(tmp_path / "s1.safetensors").adapter is None
    m.attach_adapter(AdapterConfig(heads=2))
    with torch.no_grad():
        for p in m.adapter.parameters():
            p.normal_(0, 0.1)
    save_denoiser(tmp_path / "s2.safetensors", m, dtype=torch.float16)
    assert read_adapter_config(tmp_path / "s2.safetensors") == AdapterConfig(heads=2)
    back = load_denoiser(tmp_path / "s2.safetensors")
    args, au, mask = _inputs(), torch.rand(2, 30, NUM_AUS), torch.ones(2, 30, dtype=torch.bool)
    torch.testing.assert_close(back(*args, au=au, au_mask=mask), m(*args, au=au, au_mask=mask), atol=0.05, rtol=0.05)


def test_binarization_algorithm1_on_synthetic_curves():
    fps, t = 25, 100
    curves = np.zeros((t, 52), np.float32)
    curves[20:40, INDEX["mouthSmileLeft"]] = curves[20:40, INDEX["mouthSmileRight"]] = 0.7  # AU12 ≈ 0.875
    curves[60:64, INDEX["browInnerUp"]] = 0.6  # AU1: two bursts 4 frames apart
    curves[68:72, INDEX["browInnerUp"]] = 0.6
    curves[:, INDEX["jawOpen"]] = 0.3  # speech-level jaw: below the AU26 threshold
    no_pool = BinarizeConfig(max_kernel_s=0.0, merge_gap_s=0.0, merge_prob=0.0, min_segment_s=0.0)
    segs = binarize(curves, fps, np.random.default_rng(0), no_pool)
    k12, k1 = AU_NAMES.index("AU12"), AU_NAMES.index("AU1")
    assert segs == [Segment(k1, 60, 64, 0.8), Segment(k1, 68, 72, 0.8), Segment(k12, 20, 40, 0.9)]
    pooled_segs = binarize(curves, fps, np.random.default_rng(3), BinarizeConfig(0.4, 0.0, 0.0, 0.0))
    for s in pooled_segs:  # max-pooling only widens: each segment contains an unpooled one
        assert any(s.au == u.au and s.start <= u.start and u.stop <= s.stop for u in segs)
    pooled = max_pool_time(np.arange(10) == 5, 3)
    np.testing.assert_array_equal(np.flatnonzero(pooled), [4, 5, 6])
    assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert merge_runs([(0, 2), (4, 6), (20, 22)], 2, 1.0, np.random.default_rng(0)) == [(0, 6), (20, 22)]
    au, mask = segments_to_condition(segs, t)
    assert au.shape == (t, NUM_AUS) and mask.sum() == 28 and au[30, k12] == np.float32(0.9)


def test_random_events_are_labelled_and_drop_keeps_most_events():
    rng = np.random.default_rng(1)
    curves = np.full((100, 52), 0.05, np.float32)
    labelled = total = 0
    for _ in range(40):
        aug, events = add_random_events(curves, 25, rng)
        assert aug.min() >= 0 and aug.max() <= 1 and aug.shape == curves.shape
        segs = binarize(aug, 25, rng)
        total += len(events)
        labelled += sum(any(s.au == k and s.start < e and a < s.stop for s in segs) for k, a, e in events)
        kept = drop_entries(segs, events, rng, single_au_drop_prob=0.0)
        assert set(kept) <= set(segs)
    assert total > 20 and labelled == total
    natural = [Segment(0, 0, 10, 1.0)] * 1000
    kept = drop_entries(natural, [], np.random.default_rng(0), single_au_drop_prob=0.0)
    assert 150 < len(kept) < 250  # 80 % of entries dropped


def test_swap_labels_changes_the_coarse_label_and_masks_the_loss():
    from train.stage2 import swap_labels

    emo, inten = torch.tensor([0, 3, 5, 7]), torch.tensor([1.0, 2.0, 3.0, 2.0])
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:3, 2:5] = True  # row 3 has no AU frames: never swapped
    e2, i2, w = swap_labels(emo, inten, mask, 1.0, torch.Generator().manual_seed(0))
    assert (e2[:3] != emo[:3]).all() and e2[3] == emo[3] and ((i2 >= 1) & (i2 <= 3)).all()
    assert torch.equal(w[:3], mask[:3].float()) and (w[3] == 1).all()
    e3, _, w3 = swap_labels(emo, inten, mask, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(e3, emo) and (w3 == 1).all()


@pytest.fixture(scope="module")
def fake_corpus(tmp_path_factory):
    """Six 3-s clips with smooth random curves and random cached features (no TTS needed)."""
    from train.corpus.format import update_manifest, write_clip
    from train.features import VARIANTS, feature_path

    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    entries = []
    for i, split in enumerate(["train"] * 4 + ["val"] * 2):
        curves = np.clip(0.2 + 0.1 * np.cumsum(rng.standard_normal((75, 52)), 0) / 8, 0, 1).astype(np.float32)
        audio = (0.1 * rng.standard_normal(48000)).astype(np.float32)
        entries.append(write_clip(root, f"c{i}", audio, curves, 25, emotion="happy", intensity=2, voice="test",
                                  sentence_id=i, text="", split=split, source="tts"))
        for v in VARIANTS:
            p = feature_path(root, "whisper-tiny.en", v, f"c{i}")
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, rng.standard_normal((150, 384)).astype(np.float16))
    update_manifest(root, entries)
    base = _tiny()
    save_denoiser(root / "base.safetensors", base)
    return root


def test_tiny_stage2_fit_runs_and_resumes(fake_corpus, tmp_path):
    from train.stage2 import Stage2Config, fit_adapter

    kw = dict(corpus=str(fake_corpus), out=str(tmp_path / "s2"), base=str(fake_corpus / "base.safetensors"),
              batch_size=2, val_every=2, ckpt_every=2, val_clips=2, min_crop_s=1.0, max_crop_s=2.0, threads=1,
              warmup_steps=1, adapter_ramp_steps=2)
    fit_adapter(Stage2Config(steps=2, **kw))
    with pytest.raises(FileExistsError, match="--resume"):
        fit_adapter(Stage2Config(steps=4, **kw))
    path = fit_adapter(Stage2Config(steps=4, **kw), resume=True)
    cfg, info = read_metadata(path)
    assert info["step"] == 4 and info["stage"] == 2 and read_adapter_config(path) is not None
    hist = [json.loads(x) for x in (tmp_path / "s2" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [2, 4] and all(np.isfinite(h["val_au_mse"]) for h in hist)
    trained, base = load_denoiser(path), load_denoiser(fake_corpus / "base.safetensors")
    for k, v in base.state_dict().items():  # stage 1 stays frozen
        assert torch.equal(trained.state_dict()[k], v), k
    assert any(p.abs().sum() > 0 for n, p in trained.adapter.named_parameters() if "out." in n)
    assert au_to_arkit_matrix().shape[0] == trained.adapter.config.num_aus
