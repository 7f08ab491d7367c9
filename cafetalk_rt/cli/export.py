"""``cafetalk-rt export onnx|tensorrt|ship|triton``: flags for the exporter (``python -m export``).

The runtime never imports ``export`` (nor torch, which it needs), so this module only declares
the flags (``cafetalk-rt export onnx --help`` works without PyTorch) and runs
``python -m export <same flags>`` as a child process that shares this terminal. ``export``
builds its own parser from :data:`COMMANDS` too, so both spellings take the same flags.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from cafetalk_rt.backends.contract import GRAPH_KINDS
from cafetalk_rt.options import DEFAULT_NUM_INFERENCE_STEPS

_MODEL = ("--model", dict(default=None, help="denoiser checkpoint (default: the shipped model)"))
_STEPS = ("--num-inference-steps", dict(type=int, nargs="+", default=[DEFAULT_NUM_INFERENCE_STEPS], metavar="K",
                                        help="K of the fused sampler / end-to-end graphs (several allowed)"))
_FORCE = ("--force", dict(action="store_true", help="rebuild even when an up-to-date file exists"))

#: subcommand → (help, [(flag, argparse kwargs)]).
COMMANDS: dict[str, tuple[str, list[tuple[str, dict]]]] = {
    "onnx": ("write the ONNX graphs (speech encoder, denoiser step, fused K-step sampler, end-to-end; "
             "their *_au fine-control variants for checkpoints with the stage-2 adapter)", [
        _MODEL, ("--out", dict(default=None, help="output directory (default: the user cache of that checkpoint, "
                                                  "where the runtime looks: $CAFETALK_RT_CACHE/onnx/<sha16>/)")), _STEPS,
        ("--graphs", dict(nargs="+", choices=GRAPH_KINDS, default=list(GRAPH_KINDS),
                          help="which graphs (default all; the *_au ones need a checkpoint with the adapter; *_cond: "
                               "CFG off, one branch per step)")),
        ("--precision", dict(nargs="+", choices=("fp32", "fp16"), default=["fp32"], help="fp32 and/or fp16")),
        _FORCE]),
    "tensorrt": ("build fp16 TensorRT engines from the ONNX graphs (needs TensorRT and a GPU)", [
        _MODEL, ("--onnx-dir", dict(default="exported", help="where the ONNX graphs are (exported if missing)")),
        ("--out", dict(default=None, help="engine cache directory (default: the user cache)")), _STEPS,
        ("--graphs", dict(nargs="*", choices=GRAPH_KINDS, default=list(GRAPH_KINDS),
                          help="graphs to export (fp16 ONNX) and build (*_au: checkpoints with the adapter only)")),
        ("--onnx", dict(nargs="*", default=[], metavar="FILE", help="also build these ONNX files as they are")),
        ("--workspace-gib", dict(type=float, default=4.0, help="builder workspace limit")), _FORCE]),
    "streaming": ("write the stateful live-streaming graph (streaming_step: one call per hop, state in and out) "
                  "for a look-ahead, hop, past and K", [
        _MODEL, ("--out", dict(default=None, help="output directory (default: the user cache of that checkpoint)")),
        ("--lookahead-ms", dict(type=int, nargs="+", default=[160], help="look-ahead(s), multiples of 40 ms")),
        ("--hop-ms", dict(type=int, default=80, help="hop, a multiple of 40 ms")),
        ("--past-ms", dict(type=int, default=320, help="emitted frames the denoiser keeps in its window")),
        ("--encoder-context-ms", dict(type=int, default=1000, help="past audio the speech encoder hears")),
        ("--num-inference-steps", dict(type=int, default=2, metavar="K", help="DDIM steps per hop")),
        ("--precision", dict(choices=("fp32", "fp16"), default="fp32")), _FORCE]),
    "ship": ("rebuild the default model's graphs shipped in the package (cafetalk_rt/assets/graphs: fp16-stored "
             "weights in one shared weights.bin); run after replacing the shipped checkpoint", [_MODEL]),
    "triton": ("write a Triton Inference Server model repository", [
        _MODEL, ("--out", dict(required=True, help="model repository directory")), _STEPS,
        ("--platforms", dict(nargs="+", choices=("onnxruntime", "tensorrt"), default=["onnxruntime", "tensorrt"])),
        ("--max-batch-size", dict(type=int, default=8, help="Triton max_batch_size")), _FORCE]),
}


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the onnx / tensorrt / triton subcommands of :data:`COMMANDS` to ``parser``."""
    sub = parser.add_subparsers(dest="export_cmd", required=True)
    for name, (help_, flags) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        for flag, kwargs in flags:
            p.add_argument(flag, **kwargs)


def to_argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces ``args`` (subcommand first)."""
    argv = [args.export_cmd]
    for flag, kwargs in COMMANDS[args.export_cmd][1]:
        value = getattr(args, flag[2:].replace("-", "_"))
        if kwargs.get("action") == "store_true":
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def register(sub) -> None:
    """Add ``cafetalk-rt export`` (see ``cafetalk_rt.cli.main.SUBCOMMAND_MODULES``)."""
    p = sub.add_parser("export", help="export ONNX graphs, TensorRT engines, a Triton repository",
                       description="Export the model for deployment without Python (runs `python -m export`; "
                                   "needs PyTorch and the export extra: pip install 'cafetalk-rt[export]').")
    add_commands(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``python -m export`` with the same flags; returns its exit status."""
    return subprocess.run([sys.executable, "-m", "export", *to_argv(args)]).returncode
