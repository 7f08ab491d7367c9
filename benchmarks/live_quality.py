"""``python -m benchmarks.live_quality DEVSET``: live-stream quality against look-ahead on real speech.

For every ``*.wav`` in ``DEVSET`` (the shared dev set: real recordings with PocketSphinx phones
and its ``lipsync_eval.py``) it animates the clip offline and as a live stream at each
look-ahead, scores each set with the dev set's own ``lipsync_eval.py`` (energy_corr,
bilabial_hit, silence/vowel, oracle_jaw) and compares the live frames with the offline ones
(jawOpen correlation, mouth MAE, mean frame-to-frame mouth step). Writes
``benchmarks/results/live-quality-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.report import write_result

LOOKAHEADS_S = (0.04, 0.08, 0.16, 0.32)
REPO = Path(__file__).resolve().parents[1]


def _animate_all(animator, clips, options, live) -> dict[str, np.ndarray]:
    from cafetalk_rt.audio import load_audio
    return {clip.stem: _animate_audio(animator, load_audio(clip), options, live) for clip in clips}


def _animate_audio(animator, audio, options, live) -> np.ndarray:
    """Offline (``live`` None) or as a live stream pushed a hop at a time: (T, 52)."""
    from cafetalk_rt.longform.live import LiveStream

    if live is None:
        return animator.animate(audio, options, prepared=True).blendshapes
    stream, frames = LiveStream(animator, options, live), []
    hop = int(round(live.hop_s * 16_000))
    for i in range(0, audio.size, hop):
        frames.append(stream.push(audio[i : i + hop]))
    frames.append(stream.flush())
    return np.concatenate(frames)


def _heldout(corpus: str, animator, options, live, limit: int) -> dict:
    """Held-out TTS clips (the corpus's ``test`` split: voices and sentences never trained on)
    against their exact ground truth: jawOpen correlation and mouth MAE (clip means,
    ``train.evaluate.lip_metrics``) and the share of p/b/m whose lips close
    (``train.evaluate.closure_rate``)."""
    from cafetalk_rt.options import AnimateOptions
    from train.corpus.format import load_clip, read_manifest
    from train.evaluate import closure_rate, lip_metrics

    rows, closed, total, seconds = [], 0, 0, 0.0
    for e in [e for e in read_manifest(corpus) if e["split"] == "test"][:limit]:
        audio, true, fps = load_clip(corpus, e)
        opts = AnimateOptions(**{**vars(options), "emotion": e["emotion"], "intensity": int(e["intensity"]),
                                 "fps": int(fps)})
        pred = _animate_audio(animator, audio, opts, live)
        rows.append(lip_metrics(pred, true))
        motion = np.load(Path(corpus) / e["motion"])
        c, t = closure_rate(pred, fps, motion["phones"], motion["phone_start_s"], motion["phone_end_s"])
        closed, total, seconds = closed + c, total + t, seconds + e["duration_s"]
    return {"clips": len(rows), "audio_s": round(seconds, 1), "jaw_corr": float(np.mean([r["jaw_corr"] for r in rows])),
            "mouth_mae": float(np.mean([r["mouth_mae"] for r in rows])), "pbm_closure": closed / max(1, total),
            "pbm_phones": total}


def _lipsync(devset: Path, animations: dict[str, np.ndarray], fps: float) -> dict:
    """The dev set's own scorer on these animations: its POOLED line, parsed."""
    from cafetalk_rt.writers import save_animation

    with tempfile.TemporaryDirectory() as d:
        for name, blend in animations.items():
            save_animation(Path(d) / f"{name}.npz", blend, fps)
        # the scorer imports train.corpus.face for oracle_jaw: give it this repo whatever the install
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, str(devset / "lipsync_eval.py"), d], capture_output=True, text=True,
                              check=True, env=env)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("POOLED"))
    pooled = json.loads(line.split(" ", 1)[1])
    if "oracle_jaw" not in pooled:
        print(f"warning: {devset / 'lipsync_eval.py'} gave no oracle_jaw: it could not import train.corpus.face "
              "(install the [train] extra)", file=sys.stderr)
    return pooled


def _vs_offline(live: dict[str, np.ndarray], offline: dict[str, np.ndarray]) -> dict:
    from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX

    jaw = INDEX["jawOpen"]
    a = np.concatenate([live[k] for k in offline])
    b = np.concatenate([offline[k] for k in offline])
    step = lambda x: float(np.mean([np.abs(np.diff(v[:, MOUTH_IDX], axis=0)).mean() for v in x]))  # noqa: E731
    return {"jaw_corr_vs_offline": float(np.corrcoef(a[:, jaw], b[:, jaw])[0, 1]),
            "mouth_mae_vs_offline": float(np.abs(a[:, MOUTH_IDX] - b[:, MOUTH_IDX]).mean()),
            "mouth_step": step(live.values()), "mouth_step_offline": step(offline.values())}


def main(argv: list[str] | None = None) -> int:
    from cafetalk_rt.longform.live import LiveOptions
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import Animator

    ap = argparse.ArgumentParser(prog="python -m benchmarks.live_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("devset", help="folder of real recordings with lipsync_eval.py (../shared/devset)")
    ap.add_argument("--num-inference-steps", type=int, default=2)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--model", default=None, help="denoiser checkpoint (default: the shipped model)")
    ap.add_argument("--lookaheads", type=float, nargs="+", default=list(LOOKAHEADS_S), help="seconds")
    ap.add_argument("--corpus", default=None, help="also score held-out TTS clips (its test split) against their "
                                                  "exact ground truth (e.g. data/corpus)")
    ap.add_argument("--limit", type=int, default=64, help="held-out clips at most")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    devset = Path(args.devset)
    clips = sorted(devset.glob("*.wav"))
    animator = Animator(args.model, backend=args.backend)
    options = AnimateOptions(seed=0, num_inference_steps=args.num_inference_steps)
    offline = _animate_all(animator, clips, options, None)
    heldout = (lambda live: {"heldout_tts": _heldout(args.corpus, animator, options, live, args.limit)}) \
        if args.corpus else (lambda live: {})
    rows = [{"mode": "offline", **_lipsync(devset, offline, options.fps), **heldout(None)}]
    print(json.dumps(rows[-1]))
    for la in args.lookaheads:
        live = _animate_all(animator, clips, options, LiveOptions(lookahead_s=la))
        rows.append({"mode": f"live, look-ahead {la:g} s", "lookahead_s": la, **_lipsync(devset, live, options.fps),
                     **_vs_offline(live, offline), **heldout(LiveOptions(lookahead_s=la))})
        print(json.dumps(rows[-1]))
    result = {"what": "live streams vs offline on the real-speech dev set, scored by its lipsync_eval.py",
              "clips": len(clips), "backend": args.backend, "model": args.model or "shipped", "num_inference_steps": args.num_inference_steps,
              "live_options": {k: v for k, v in vars(LiveOptions()).items() if k != "lookahead_s"},
              "date": date.today().isoformat(), "rows": rows}
    write_result(result, "live-quality", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
