"""Training end to end on a tiny generated corpus: features, fit, resume, DDP (torchrun, gloo),
and the resulting checkpoint animating through the public pipeline."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cafetalk_rt.nn.checkpoint import read_metadata


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from train.corpus.generate import GenerateOptions, generate
    from train.features import cache_features

    root = tmp_path_factory.mktemp("corpus")
    stats = generate(GenerateOptions(out=str(root), hours=0.02, seed=3, workers=1, min_clip_s=2.0, max_clip_s=4.0))
    assert stats["new_clips"] >= 10
    assert cache_features(root) == 2 * stats["new_clips"]  # clean + augmented
    assert cache_features(root) == 0  # resumable: nothing to redo
    return root


def _fit(args, **kw):
    return subprocess.run([sys.executable, "-m", "train", "fit", "--model", "tiny", "--batch-size", "4",
                           "--val-every", "2", "--ckpt-every", "2", "--warmup-steps", "1", *args],
                          capture_output=True, text=True, timeout=600, **kw)


def test_fit_resume_and_use(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    r = _fit(["--corpus", str(tiny_corpus), "--out", str(out), "--steps", "2", "--threads", "1"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_metadata(out / "ema.safetensors")[1]["step"] == 2
    again = _fit(["--corpus", str(tiny_corpus), "--out", str(out), "--steps", "4"])
    assert again.returncode != 0 and "--resume" in again.stderr  # never clobbers a run
    r = _fit(["--corpus", str(tiny_corpus), "--out", str(out), "--steps", "4", "--resume"])
    assert r.returncode == 0, r.stderr[-2000:]
    cfg, info = read_metadata(out / "ema.safetensors")
    assert info["step"] == 4 and cfg.depth == 2 and info["train_clips"] > 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2, 4] and all(np.isfinite(h["loss"]) for h in history)
    # a corpus this small may hold no val clip (5 % of sentences); then validation is skipped
    assert all(h["val_loss"] is None or np.isfinite(h["val_loss"]) for h in history)

    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import Animator

    anim = Animator(out / "ema.safetensors", backend="torch").animate(np.sin(np.arange(16000) / 7).astype(np.float32),
                                                     AnimateOptions(num_inference_steps=2))
    assert anim.blendshapes.shape == (25, 52) and np.isfinite(anim.blendshapes).all()


def test_torchrun_ddp_two_processes(tiny_corpus, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "train", "fit", "--model", "tiny", "--batch-size", "4", "--corpus", str(tiny_corpus),
                        "--out", str(out), "--steps", "2", "--val-every", "2", "--ckpt-every", "2", "--threads", "1"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    info = read_metadata(out / "ema.safetensors")[1]
    assert info["world_size"] == 2 and info["step"] == 2


def test_evaluate_quality_table(tiny_corpus, tmp_path):
    """The held-out evaluation runs each sampler × K and scores against ground truth and the
    DDPM-1000 reference; a sampler compared with itself scores zero error."""
    from train.evaluate import evaluate
    from train.corpus.format import read_manifest

    out = tmp_path / "run"
    r = _fit(["--corpus", str(tiny_corpus), "--out", str(out), "--steps", "2", "--threads", "1"])
    assert r.returncode == 0, r.stderr[-2000:]
    split = read_manifest(tiny_corpus)[0]["split"]
    res = evaluate(str(tiny_corpus), str(out / "ema.safetensors"), split=split, steps=(1, 2), limit=1,
                   samplers=("ddim", "dpmpp_2m"), reference=True,
                   extra_audio={"tone": np.sin(np.arange(16000) / 7).astype(np.float32)})
    assert set(res["results"]) == {"ddim/1", "ddim/2", "dpmpp_2m/1", "dpmpp_2m/2"}
    assert res["clips"] == 1 and res["extra_clips"] == ["tone"]
    row = res["results"]["ddim/2"]
    assert 0 < row["mouth_mae"] < 1 and 0 <= row["mouth_mae_vs_ref"] < 1 and row["cpu_s_per_audio_s"] > 0
    # K=1: DDIM and DPM-Solver++ are the same single x0 prediction
    assert res["results"]["ddim/1"]["mouth_mae_vs_ref"] == res["results"]["dpmpp_2m/1"]["mouth_mae_vs_ref"]


def test_frame_weights_emphasise_closure_frames():
    """diffusion_loss with frame weights: uniform weights give the plain loss; weight on the
    frames with the larger error raises the loss (the closure-frame emphasis of --closure-weight)."""
    import torch

    from train.diffusion import diffusion_loss

    x0 = torch.zeros(2, 6, 52)
    pred = torch.zeros(2, 6, 52)
    pred[:, 2:4] = 1.0  # the model misses frames 2-3 (say, a p/b/m closure)
    plain = diffusion_loss(pred, x0, None)[0]
    uniform = diffusion_loss(pred, x0, None, frame_weight=torch.full((2, 6), 3.0))[0]
    assert torch.allclose(plain, uniform)
    w = torch.ones(2, 6)
    w[:, 2:4] = 4.0
    weighted = diffusion_loss(pred, x0, None, frame_weight=w)[0]
    assert torch.allclose(weighted, torch.tensor(8.0 / 12.0)) and weighted > plain
