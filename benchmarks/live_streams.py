"""``python -m benchmarks.live_streams``: how many real-time live streams this machine sustains.

N streams on one :class:`~cafetalk_rt.longform.live.LiveBatch` (one loaded model; every hop one
batched encoder call and one batched denoiser call per step for all of them) each replay the
bundled real clip, tiled to ``--audio-s``, at real time in hop-sized chunks. Per output frame, the latency is the wall time
from the moment its stream had been given the audio up to the frame's own time (t / fps) to the
moment the frame was returned (the definition of ``cafetalk-rt stream --report``). A setting is
sustained when every stream's p95 latency stays ≤ ``--max-p95-ms`` and the compute of all streams
together takes less than real time (else the latency would grow on a longer run). The old windowed
``StreamingAnimator`` runs in the same process as the baseline (its first-frame delay). Writes
``benchmarks/results/live-streams-<device>-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date

import numpy as np

from benchmarks.report import write_result


def run_streams(animator, audio, options, live, n: int) -> dict:
    """``n`` concurrent real-time streams on one :class:`~cafetalk_rt.longform.live.LiveBatch`:
    every hop, each stream's next chunk is pushed when it has been spoken and all ready streams
    advance in one batched call. Per-stream latency percentiles and RTF, and the worst p95."""
    from cafetalk_rt.frames import SAMPLE_RATE, frame_start_sample
    from cafetalk_rt.longform.live import LiveBatch

    batch = LiveBatch(animator)
    for k in range(n):
        batch.open(k, options, live)
    hop = int(round(live.hop_s * SAMPLE_RATE))
    pushes, lat, frame, compute = [], {k: [] for k in range(n)}, {k: 0 for k in range(n)}, 0.0
    start = time.perf_counter()
    for i in range(0, audio.size, hop):
        chunk = audio[i : i + hop]
        time.sleep(max(0.0, start + (i + chunk.size) / SAMPLE_RATE - time.perf_counter()))
        t0 = time.perf_counter()
        pushes.append((i + chunk.size, t0))
        out = batch.push({k: chunk for k in range(n)})
        t1 = time.perf_counter()
        compute += t1 - t0
        for k, frames in out.items():
            for t in range(frame[k], frame[k] + len(frames)):
                need = frame_start_sample(t, options.fps)
                lat[k].append(1e3 * (t1 - next(w for r, w in pushes if r >= need)))
            frame[k] += len(frames)
    per = [{"frames": frame[k], "p50": float(np.percentile(lat[k], 50)), "p95": float(np.percentile(lat[k], 95)),
            "max": float(np.max(lat[k]))} for k in range(n)]
    return {"streams": n, "worst_p95_ms": max(r["p95"] for r in per), "compute_rtf_all_streams": compute / (audio.size / SAMPLE_RATE),
            "per_stream": per}


def windowed_baseline(animator, audio, options) -> list[dict]:
    """First-frame delay (audio seconds before any frame) of the old windowed streaming."""
    from cafetalk_rt.longform.streaming import LOW_LATENCY, StreamingAnimator
    from cafetalk_rt.longform.windows import WindowOptions

    return [{"windows": name, "first_frame_after_audio_s": StreamingAnimator(animator, options, windows=w).first_frame_delay_s}
            for name, w in (("default", WindowOptions()), ("LOW_LATENCY", LOW_LATENCY))]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import cpu_device
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.longform.live import LiveOptions
    from cafetalk_rt.model_files import DEMO_CLIP
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import Animator

    ap = argparse.ArgumentParser(prog="python -m benchmarks.live_streams", description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--lookahead-ms", type=float, nargs="+", default=[160.0, 80.0])
    ap.add_argument("--num-inference-steps", type=int, default=2)
    ap.add_argument("--audio-s", type=float, default=8.0)
    ap.add_argument("--max-p95-ms", type=float, default=300.0)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    animator = Animator(backend=args.backend)
    audio = np.resize(load_audio(DEMO_CLIP), int(args.audio_s * 16_000))
    options = AnimateOptions(seed=0, num_inference_steps=args.num_inference_steps)
    rows = []
    for la in args.lookahead_ms:
        for n in args.streams:
            r = run_streams(animator, audio, options, LiveOptions(lookahead_s=la / 1e3), n)
            # sustained: every stream's p95 within the bound and the compute keeps up (latency cannot grow)
            r.update(lookahead_ms=la, sustained=r["worst_p95_ms"] <= args.max_p95_ms and r["compute_rtf_all_streams"] < 1.0)
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "per_stream"}), flush=True)
    device, slug = cpu_device()
    result = {"what": "concurrent real-time live streams batched per hop (LiveBatch), per-frame latency",
              "device": device, "backend": args.backend, "num_inference_steps": args.num_inference_steps,
              "audio_s": args.audio_s, "max_p95_ms": args.max_p95_ms, "date": date.today().isoformat(),
              "live_options": {k: v for k, v in vars(LiveOptions()).items() if k != "lookahead_s"},
              "rows": rows, "windowed_baseline": windowed_baseline(animator, audio, options),
              "max_sustained_streams": {str(la): max([r["streams"] for r in rows if r["lookahead_ms"] == la and r["sustained"]],
                                                     default=0) for la in args.lookahead_ms}}
    print(json.dumps({"max_sustained_streams": result["max_sustained_streams"], "windowed_baseline": result["windowed_baseline"]}))
    write_result(result, f"live-streams-{slug}", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
