"""Held-out lip-sync metrics of a checkpoint on a corpus split (voices/sentences never trained on),
and the quality-vs-steps table against the paper-style 1000-step DDPM reference.

Metrics over the mouth channels (``cafetalk_rt.blendshapes.MOUTH_IDX``), in blendshape units:
* ``mouth_mae``: mean absolute error per channel and frame;
* ``mouth_lve``: lip-vertex-error analogue — per frame the max abs error over mouth channels,
  averaged over frames (the paper's LVE uses mesh vertices; we have no mesh);
* ``jaw_corr``: Pearson correlation of predicted vs true jawOpen.
With a reference, the same metrics are also computed against the DDPM-1000 output of the same
seed (``*_vs_ref``): how far a few-step sampler is from the slow sampler it replaces.
"""
from __future__ import annotations

import time

import numpy as np

from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX
from cafetalk_rt.frames import resample_sequence
from cafetalk_rt.options import AnimateOptions
from cafetalk_rt.pipeline import Animator
from train.binarize import runs as bool_runs
from train.corpus.format import load_clip, read_manifest

#: The paper-style reference sampler: ancestral DDPM over all 1000 training timesteps.
REFERENCE = ("ddpm", 1000)


def lip_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Metrics of one clip; pred and true (T, 52) at the same fps."""
    n = min(len(pred), len(true))
    p, t = pred[:n, MOUTH_IDX], true[:n, MOUTH_IDX]
    err = np.abs(p - t)
    jp, jt = pred[:n, INDEX["jawOpen"]], true[:n, INDEX["jawOpen"]]
    corr = float(np.corrcoef(jp, jt)[0, 1]) if jp.std() > 1e-6 and jt.std() > 1e-6 else 0.0
    return {"mouth_mae": float(err.mean()), "mouth_lve": float(err.max(1).mean()), "jaw_corr": corr}


#: Bilabial phones (IPA as the TTS engines spell them, stress marks stripped): the lips close.
BILABIALS = ("p", "b", "m")
_VOWELS = set("aeiouæɑɒɔəɛɜɪʊʌʉɐyøœɘɵɤɯ")


def lip_opening(blendshapes: np.ndarray) -> np.ndarray:
    """(T,) how far the lips are apart: jawOpen − mouthClose (ARKit's mouthClose closes the lips
    over an open jaw), clipped at 0."""
    return np.maximum(0.0, blendshapes[:, INDEX["jawOpen"]] - blendshapes[:, INDEX["mouthClose"]])


def closure_rate(pred: np.ndarray, fps: float, phones, starts, ends, *, context_s: float = 0.3) -> tuple[int, int]:
    """(closed, total) over the p/b/m phones of a clip: a bilabial counts as closed when the
    smallest :func:`lip_opening` of ``pred`` (T, 52) during it is at most half the largest opening
    during the vowels within ``context_s`` seconds of it (issue 16's definition). Phones without a
    vowel nearby, or shorter than a frame, are skipped."""
    opening = lip_opening(pred)
    names = [str(p).lstrip("ˈˌ") for p in phones]
    closed = total = 0
    for name, a, b in zip(names, starts, ends):
        if name not in BILABIALS:
            continue
        f0, f1 = int(np.floor(a * fps)), int(np.ceil(b * fps))
        if f1 <= f0 or f0 >= len(opening):
            continue
        vowel_frames = [f for n2, a2, b2 in zip(names, starts, ends) if n2 and n2[0] in _VOWELS
                        and a2 < b + context_s and b2 > a - context_s
                        for f in range(int(a2 * fps), min(len(opening), int(np.ceil(b2 * fps))))]
        if not vowel_frames:
            continue
        total += 1
        closed += bool(opening[f0:f1].min() <= 0.5 * opening[vowel_frames].max())
    return closed, total


def blink_stats(blendshapes: np.ndarray, fps: float, *, threshold: float = 0.5) -> dict:
    """Blinks in (T, 52) curves: the runs where the mean of eyeBlinkLeft/Right is above
    ``threshold``.

    Returns:
        ``blinks`` (count), ``rate_per_min``, ``peak_mean`` (mean of each blink's maximum),
        ``duration_ms_mean`` (time above ``threshold``), ``full_share`` (share of blinks at ≥ 0.9
        on ≥ 3 frames), ``eye_asymmetry`` (mean |left − right| over the blink frames); NaN
        statistics when there is no blink.
    """
    eyes = blendshapes[:, [INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]]
    level = eyes.mean(1)
    runs = bool_runs(level > threshold)  # [start, end) frame ranges
    minutes = len(level) / fps / 60.0
    if not runs:
        return {"blinks": 0, "rate_per_min": 0.0, "peak_mean": float("nan"), "duration_ms_mean": float("nan"),
                "full_share": float("nan"), "eye_asymmetry": float("nan")}
    frames = np.concatenate([np.arange(a, b) for a, b in runs])
    return {"blinks": len(runs), "rate_per_min": len(runs) / minutes,
            "peak_mean": float(np.mean([level[a:b].max() for a, b in runs])),
            "duration_ms_mean": float(np.mean([(b - a) * 1e3 / fps for a, b in runs])),
            "full_share": float(np.mean([(level[max(0, a - 1):b + 1] >= 0.9).sum() >= 3 for a, b in runs])),
            "eye_asymmetry": float(np.abs(eyes[frames, 0] - eyes[frames, 1]).mean())}


def _clips(corpus: str, split: str, limit: int):
    entries = [e for e in read_manifest(corpus) if e["split"] == split][:limit]
    if not entries:
        raise ValueError(f"no clips in split {split!r} of {corpus}")
    for e in entries:
        audio, true, fps = load_clip(corpus, e)
        yield e, audio, true, fps


def evaluate(corpus: str, model: str | None, *, split: str = "test", steps=(10,), limit: int = 64,
             samplers=("ddim",), guidance_scale: float = 1.5, reference: bool = False,
             extra_audio: dict[str, np.ndarray] | None = None) -> dict:
    """Animate every clip of ``split`` (up to ``limit``) with each sampler × K; average metrics.

    Args:
        steps: K values (num_inference_steps) to evaluate.
        samplers: sampler names (``ddim``, ``dpmpp_2m``, ``ddpm``).
        reference: also run DDPM-1000 per clip (seed 0) and report ``*_vs_ref`` metrics.
        extra_audio: name → 16 kHz audio without ground truth (e.g. the bundled real clip),
            scored against the reference only (neutral, intensity 2).
    Returns:
        {"split", "clips", "results": {"<sampler>/<K>": {metric: mean}}, "reference": ...}.
    """
    animator = Animator(model, backend="torch")  # a training run's checkpoint has no exported graphs
    items = [(e["emotion"], int(e["intensity"]), audio, true, fps) for e, audio, true, fps in _clips(corpus, split, limit)]
    items += [("neutral", 2, audio, None, 25) for audio in (extra_audio or {}).values()]

    def run(emotion, intensity, audio, sampler, k):
        opts = AnimateOptions(emotion=emotion, intensity=intensity, seed=0, num_inference_steps=int(k),
                              sampler=sampler, fps=25, guidance_scale=guidance_scale)
        t0 = time.perf_counter()
        anim = animator.animate(audio, opts)
        return anim, time.perf_counter() - t0

    refs = [run(em, it, audio, *REFERENCE)[0].blendshapes for em, it, audio, _, _ in items] if reference else None
    out = {"split": split, "clips": sum(t is not None for *_, t, _ in items), "extra_clips": sorted(extra_audio or {}),
           "guidance_scale": guidance_scale, "reference": "/".join(map(str, REFERENCE)) if reference else None,
           "results": {}}
    for sampler in samplers:
        for k in steps:
            rows, ref_rows, t_total, audio_total = [], [], 0.0, 0.0
            for i, (em, it, audio, true, fps) in enumerate(items):
                anim, dt = run(em, it, audio, sampler, k)
                t_total, audio_total = t_total + dt, audio_total + anim.duration_s
                if true is not None:
                    if fps != 25:
                        true = resample_sequence(true, fps, anim.num_frames, 25)
                    rows.append(lip_metrics(anim.blendshapes, true))
                if refs is not None:
                    ref_rows.append(lip_metrics(anim.blendshapes, refs[i]))
            res = {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}
            res.update({f"{m}_vs_ref": float(np.mean([r[m] for r in ref_rows])) for m in (ref_rows[0] if ref_rows else {})})
            res["cpu_s_per_audio_s"] = t_total / audio_total
            out["results"][f"{sampler}/{k}"] = res
    return out
