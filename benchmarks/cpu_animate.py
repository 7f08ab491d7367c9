"""CPU latency of the torch backend for 5 s of speech (the paper's Table 7 workload).

``python -m benchmarks.cpu_animate [--steps 1 4 10] [--repeats 5]`` warms up, then reports per
K the min and median wall time of the whole ``Animator.animate`` call (audio encoder included)
and of the encoder alone, the real-time factor, and writes
``benchmarks/results/cpu-<date>.json``. Issue "Benchmarks against the paper" extends this.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times), statistics.median(times)


def main(argv=None) -> int:
    import torch

    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import DEMO_CLIP, Animator

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 4, 10])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--audio-s", type=float, default=5.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    audio = np.resize(load_audio(DEMO_CLIP), int(args.audio_s * 16000))
    animator = Animator()
    enc_min, enc_med = _timed(lambda: animator.backend.encode(audio), args.repeats)
    rows = []
    for k in args.steps:
        for cfg in (True, False):
            opts = AnimateOptions(num_inference_steps=k, guidance_scale=1.5 if cfg else 1.0)
            lo, med = _timed(lambda: animator.animate(audio, opts), args.repeats)
            rows.append({"backend": "torch", "precision": "fp32", "num_inference_steps": k, "batch_size": 1,
                         "audio_s": args.audio_s, "cfg": cfg, "latency_ms_p50": round(med, 2),
                         "latency_ms_min": round(lo, 2), "rtf": round(med / 1e3 / args.audio_s, 4),
                         "clips_per_s": round(1e3 / med, 2), "encoder_ms_p50": round(enc_med, 2),
                         "is_paper_baseline": False})
            print(f"K={k:3d} cfg={cfg!s:5}  p50 {med:8.1f} ms  min {lo:8.1f} ms  rtf {med / 1e3 / args.audio_s:.4f}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"device": f"{_cpu_name()} ({torch.get_num_threads()} threads)", "date": dt.date.today().isoformat(),
              "commit": commit, "torch": torch.__version__, "rows": rows}
    out = Path(args.out or Path(__file__).parent / "results" / f"cpu-{result['date']}.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
