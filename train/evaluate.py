"""Held-out lip-sync metrics of a checkpoint on a corpus split (voices/sentences never trained on).

Metrics over the mouth channels (``cafetalk_rt.blendshapes.MOUTH_NAMES``), in blendshape units:
* ``mouth_mae``: mean absolute error per channel and frame;
* ``mouth_lve``: lip-vertex-error analogue — per frame the max abs error over mouth channels,
  averaged over frames (the paper's LVE uses mesh vertices; we have no mesh);
* ``jaw_corr``: Pearson correlation of predicted vs true jawOpen.
"""
from __future__ import annotations

import time

import numpy as np

from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX
from cafetalk_rt.frames import resample_sequence
from cafetalk_rt.options import AnimateOptions
from cafetalk_rt.pipeline import Animator
from train.corpus.format import load_clip, read_manifest


def lip_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Metrics of one clip; pred and true (T, 52) at the same fps."""
    n = min(len(pred), len(true))
    p, t = pred[:n, MOUTH_IDX], true[:n, MOUTH_IDX]
    err = np.abs(p - t)
    jp, jt = pred[:n, INDEX["jawOpen"]], true[:n, INDEX["jawOpen"]]
    corr = float(np.corrcoef(jp, jt)[0, 1]) if jp.std() > 1e-6 and jt.std() > 1e-6 else 0.0
    return {"mouth_mae": float(err.mean()), "mouth_lve": float(err.max(1).mean()), "jaw_corr": corr}


def evaluate(corpus: str, model: str | None, *, split: str = "test", steps=(10,), limit: int = 64,
             sampler: str = "ddim", guidance_scale: float = 1.5) -> dict:
    """Animate every clip of ``split`` (up to ``limit``) with each K in ``steps``; average metrics."""
    animator = Animator(model)
    entries = [e for e in read_manifest(corpus) if e["split"] == split][:limit]
    if not entries:
        raise ValueError(f"no clips in split {split!r} of {corpus}")
    out = {"split": split, "clips": len(entries), "sampler": sampler, "results": {}}
    for k in steps:
        rows, t_total, audio_total = [], 0.0, 0.0
        for e in entries:
            audio, true, fps = load_clip(corpus, e)
            opts = AnimateOptions(emotion=e["emotion"], intensity=int(e["intensity"]), seed=0,
                                  num_inference_steps=int(k), sampler=sampler, fps=25, guidance_scale=guidance_scale)
            t0 = time.perf_counter()
            anim = animator.animate(audio, opts)
            t_total += time.perf_counter() - t0
            audio_total += anim.duration_s
            if fps != 25:
                true = resample_sequence(true, fps, anim.num_frames, 25)
            rows.append(lip_metrics(anim.blendshapes, true))
        out["results"][str(k)] = {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}
        out["results"][str(k)]["cpu_s_per_audio_s"] = t_total / audio_total
    return out
