"""``python -m benchmarks report [--device cpu|cuda] [--quick] …``: see :mod:`benchmarks.report`.

Other measurements keep their own modules: ``python -m benchmarks.long_audio`` (5-min offline
and streaming cost).
"""
from __future__ import annotations

import argparse
import sys


def _defaults(device: str, quick: bool) -> dict:
    """Workload defaults per device; ``--quick`` is a smoke run (no baseline, K 1 and 4, CFG on)."""
    cuda = device.startswith("cuda")
    if quick:
        return dict(steps=[1, 4], batch_sizes=[1], audio_s=[1.0, 5.0], cfg=[True], precisions=["fp32"],
                    repeats=2, warmup=1, min_time_s=0.0, max_time_s=5.0, baseline=False)
    if cuda:
        return dict(steps=[1, 2, 4, 10], batch_sizes=[1, 4, 16, 64], audio_s=[1.0, 5.0, 30.0, 300.0],
                    cfg=[True, False], precisions=["fp32", "fp16"], repeats=10, warmup=3, min_time_s=0.5,
                    max_time_s=5.0, baseline=True)
    return dict(steps=[1, 4, 10], batch_sizes=[1, 4], audio_s=[1.0, 5.0, 30.0], cfg=[True, False],
                precisions=["fp32", "fp16"], repeats=3, warmup=1, min_time_s=0.0, max_time_s=20.0, baseline=True)


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("use on or off")
    return text == "on"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="measure the benchmark table; write <out>/<device>-<date>.json and .md")
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    r.add_argument("--quick", action="store_true", help="smoke run: K 1 and 4, CFG on, batch 1, 1 s and 5 s, no baseline")
    r.add_argument("--audio-s", type=float, nargs="+", help="seconds of audio per clip (default cpu: 1 5 30; cuda: 1 5 30 300)")
    r.add_argument("--batch-sizes", type=int, nargs="+", help="clips per call (default cpu: 1 4; cuda: 1 4 16 64)")
    r.add_argument("--steps", type=int, nargs="+", help="K values of the grid (default cpu: 1 4 10; cuda: 1 2 4 10)")
    r.add_argument("--cfg", type=_on_off, nargs="+", help="on and/or off (default both)")
    r.add_argument("--precisions", nargs="+", choices=["fp32", "fp16"], help="default fp32 fp16")
    r.add_argument("--backends", nargs="+", help="subset of cafetalk_rt.backends.BACKENDS (default all)")
    r.add_argument("--no-baseline", dest="baseline", action="store_false", default=None,
                   help="skip the paper-style baseline (DDPM 1000 steps, separate CFG passes)")
    r.add_argument("--baseline-repeats", type=int, help="timed baseline runs (default cpu 1, cuda 3)")
    r.add_argument("--repeats", type=int, help="timed calls per row at least (default cpu 3, cuda 10)")
    r.add_argument("--warmup", type=int, help="untimed calls first (default cpu 1, cuda 3)")
    r.add_argument("--min-time-s", type=float, help="keep timing a row at least this long (default cuda 0.5 s)")
    r.add_argument("--max-time-s", type=float, help="stop timing a row after this long, once 3 calls are in")
    r.add_argument("--budget-s", type=float, default=0.0, help="skip (and report) rows once this long was spent")
    r.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: theirs)")
    r.add_argument("--model", default=None, help="denoiser checkpoint (default: the shipped model)")
    r.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    args.argv = argv[1:]
    for k, v in _defaults(args.device, args.quick).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.baseline_repeats is None:
        args.baseline_repeats = 3 if args.device.startswith("cuda") else 1

    from benchmarks.report import RESULTS_DIR, run_report, write_report

    report = run_report(args, args.out or RESULTS_DIR)
    json_path, md_path = write_report(report, args.out or RESULTS_DIR)
    print(open(md_path).read())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
