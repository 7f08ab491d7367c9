"""``python -m benchmarks.retrain_quality DEVSET --corpus data/corpus --models NAME=CKPT ...``:
issue 16's before / after table, every model in one run.

For each model (torch backend, DDIM, seed 0, the clip's own emotion and intensity):

* held-out TTS clips of the corpus's ``test`` split (voices and sentences never trained on),
  by voice family (Kokoro hold-outs, Piper, espeak), against their exact ground truth:
  jawOpen correlation, mouth MAE, LVE-analogue (``train.evaluate.lip_metrics``), the share of
  p/b/m whose lips close (``train.evaluate.closure_rate``), and blinks
  (``train.evaluate.blink_stats``) of the output with the blink layer and of the denoiser alone;
* the real recordings of DEVSET scored by its own ``lipsync_eval.py``;
* coarse control: per emotion at intensity 3 on the bundled clip, the mean of the emotion's
  channels (``train.corpus.expression.EMOTION_OFFSETS``) minus neutral's (its margin);
* fine control: per-AU margins on the bundled clip (``train.evaluate_au.evaluate_aus``, K = 4).

Writes ``benchmarks/results/retrain-quality-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.live_quality import _lipsync
from benchmarks.report import write_result

FAMILIES = ("kokoro", "piper", "espeak")


def _held_out(voice: str) -> bool:
    """A voice never trained on: an espeak test accent / variant, or a Kokoro hold-out (or a blend with one)."""
    from train.corpus.generate import is_test_voice
    from train.corpus.tts_kokoro import TEST_VOICES

    if voice.startswith("kokoro:"):
        return any(part.split("@")[0] in TEST_VOICES for part in voice.split(":", 1)[1].split("+"))
    return is_test_voice(voice)


def _family_rows(animator, corpus: str, k: int, limit: int) -> dict:
    """Per voice family: lip metrics, p/b/m closure and blinks on up to ``limit`` test clips."""
    from cafetalk_rt.options import AnimateOptions
    from train.corpus.format import load_clip, read_manifest
    from train.evaluate import blink_stats, closure_rate, lip_metrics

    test = [e for e in read_manifest(corpus) if e["split"] == "test"]
    out = {}
    for fam in FAMILIES:
        entries = [e for e in test if e["voice"].split(":", 1)[0] == fam]
        unseen = [e for e in entries if _held_out(e["voice"])]
        entries = (unseen or entries)[:limit]  # held-out voices where the family has them (not Piper's one)
        if not entries:
            continue
        rows, closed, total, preds, alone, truths = [], 0, 0, [], [], []
        for e in entries:
            audio, true, fps = load_clip(corpus, e)
            opts = AnimateOptions(emotion=e["emotion"], intensity=int(e["intensity"]), seed=0,
                                  num_inference_steps=k, fps=int(fps))
            pred = animator.animate(audio, opts, prepared=True).blendshapes
            alone.append(animator.animate(audio, replace(opts, blinks=False), prepared=True).blendshapes)
            rows.append(lip_metrics(pred, true))
            m = np.load(Path(corpus) / e["motion"])
            c, t = closure_rate(pred, fps, m["phones"], m["phone_start_s"], m["phone_end_s"])
            closed, total = closed + c, total + t
            preds.append(pred)
            truths.append(true)
        fps = float(fps)
        out[fam] = {"clips": len(rows), "held_out_voices": bool(unseen), "audio_s": round(sum(e["duration_s"] for e in entries), 1),
                    "voices": sorted({e["voice"] for e in entries}),
                    **{m: float(np.mean([r[m] for r in rows])) for m in rows[0]},
                    "pbm_closure": closed / max(1, total), "pbm_phones": total,
                    "blinks": blink_stats(np.concatenate(preds), fps),
                    "blinks_denoiser_alone": blink_stats(np.concatenate(alone), fps),
                    "blinks_ground_truth": blink_stats(np.concatenate(truths), fps)}
    return out


def _emotion_margins(animator, audio: np.ndarray) -> dict:
    from cafetalk_rt.blendshapes import INDEX
    from cafetalk_rt.options import AnimateOptions
    from train.corpus.expression import EMOTION_OFFSETS

    neutral = animator.animate(audio, AnimateOptions(seed=0, blinks=False)).blendshapes
    out = {}
    for emotion, offsets in EMOTION_OFFSETS.items():
        if not offsets:
            continue
        ch = [INDEX[n] for n in offsets]
        x = animator.animate(audio, AnimateOptions(emotion=emotion, intensity=3, seed=0, blinks=False)).blendshapes
        out[emotion] = float(x[:, ch].mean() - neutral[:, ch].mean())
    return out


def _au_margins(animator, audio: np.ndarray) -> dict:
    from train.evaluate_au import evaluate_aus

    rows = evaluate_aus(animator, audio)
    return {au: r["margin"] for au, r in rows.items() if not au.startswith("_")}


def evaluate_model(name: str, path: str, args) -> dict:
    """Every figure of the table for one checkpoint."""
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import DEMO_CLIP, Animator

    animator = Animator(path, backend="torch")
    demo = load_audio(DEMO_CLIP)
    row = {"model": name, "checkpoint": path,
           "heldout": {f"K={k}": _family_rows(animator, args.corpus, k, args.limit) for k in args.steps}}
    dev = {c.stem: animator.animate(load_audio(c), AnimateOptions(seed=0), prepared=True).blendshapes
           for c in sorted(Path(args.devset).glob("*.wav"))}
    row["devset_lipsync_eval"] = _lipsync(Path(args.devset), dev, 25)
    row["emotion_margins"] = _emotion_margins(animator, demo)
    row["au_margins"] = _au_margins(animator, demo)
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.retrain_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("devset", help="folder of real recordings with lipsync_eval.py (../shared/devset)")
    ap.add_argument("--corpus", required=True, help="corpus whose test split holds Kokoro, Piper and espeak voices")
    ap.add_argument("--models", nargs="+", required=True, metavar="NAME=CKPT")
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 4], help="num_inference_steps (DDIM)")
    ap.add_argument("--limit", type=int, default=24, help="test clips per voice family")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    models = [m.split("=", 1) for m in args.models]
    if any(len(m) != 2 for m in models):
        ap.error("--models takes NAME=CHECKPOINT pairs")
    rows = [evaluate_model(name, path, args) for name, path in models]
    result = {"what": "issue 16 before/after: held-out voices by family against exact ground truth, the real "
                      "dev set, emotion and AU control margins (torch backend, DDIM, seed 0)",
              "corpus": args.corpus, "limit_per_family": args.limit, "date": date.today().isoformat(), "rows": rows}
    write_result(result, "retrain-quality", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
