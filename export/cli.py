"""``python -m export onnx|tensorrt|ship|triton`` (also reached as ``cafetalk-rt export …``).

Flags are declared once, in :data:`cafetalk_rt.cli.export.COMMANDS`. Prints one line per file:
written (with seconds, nodes and size) or kept because it was up to date.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cafetalk_rt.cli.export import add_commands


def _model(args) -> Path:
    from cafetalk_rt.model_files import DEFAULT_MODEL

    return Path(args.model) if args.model else DEFAULT_MODEL


def _onnx(args) -> int:
    from cafetalk_rt.backends.cache import file_sha256, graph_dir
    from export.onnx_export import export_onnx

    out = args.out or graph_dir(file_sha256(_model(args)))
    results = export_onnx(_model(args), out, num_inference_steps=tuple(args.num_inference_steps),
                          kinds=tuple(args.graphs), precisions=tuple(args.precision), force=args.force)
    for r in results:
        size = r.path.stat().st_size / 1e6
        state = "up to date, kept" if r.skipped else f"written in {r.seconds:.1f} s"
        print(f"{r.path}: {state} ({size:.1f} MB)")
    return 0


def _streaming(args) -> int:
    from cafetalk_rt.backends.cache import file_sha256, graph_dir
    from cafetalk_rt.backends.streaming_contract import StreamingLayout
    from export.streaming_export import export_streaming

    frames = {}
    for name in ("hop_ms", "past_ms", "encoder_context_ms", *(["lookahead_ms"])):
        values = getattr(args, name) if isinstance(getattr(args, name), list) else [getattr(args, name)]
        if any(v % 40 for v in values):
            raise ValueError(f"--{name.replace('_', '-')} must be a multiple of 40 ms (one 25 fps frame), got {values}")
        frames[name] = [v // 40 for v in values]
    layouts = [StreamingLayout(hop_frames=frames["hop_ms"][0], lookahead_frames=la, past_frames=frames["past_ms"][0],
                               encoder_context_frames=frames["encoder_context_ms"][0],
                               num_inference_steps=args.num_inference_steps) for la in frames["lookahead_ms"]]
    out = args.out or graph_dir(file_sha256(_model(args)))
    for path in export_streaming(_model(args), out, layouts, precision=args.precision, force=args.force):
        print(f"{path}: ready ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _tensorrt(args) -> int:
    from export.tensorrt import build_engines

    for path in build_engines(_model(args), Path(args.onnx_dir), kinds=tuple(args.graphs),
                              num_inference_steps=tuple(args.num_inference_steps), cache_dir=args.out,
                              workspace_gib=args.workspace_gib, force=args.force,
                              onnx_files=tuple(Path(p) for p in args.onnx)):
        print(f"{path}: engine ready")
    return 0


def _ship(args) -> int:
    from export.ship import ship

    for path in ship(_model(args)):
        print(f"{path}: packed")
    return 0


def _triton(args) -> int:
    from export.triton import write_repository

    for path in write_repository(_model(args), Path(args.out), num_inference_steps=tuple(args.num_inference_steps),
                                 platforms=tuple(args.platforms), max_batch_size=args.max_batch_size, force=args.force):
        print(f"{path}: written")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m export``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("export").setLevel(logging.INFO)
    ap = argparse.ArgumentParser(prog="python -m export", description="Export cafetalk_rt graphs for deployment")
    add_commands(ap)
    args = ap.parse_args(argv)
    try:
        return {"onnx": _onnx, "streaming": _streaming, "tensorrt": _tensorrt, "ship": _ship, "triton": _triton}[args.export_cmd](args)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
