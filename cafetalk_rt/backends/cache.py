"""Where exported graphs live, keyed by checkpoint hash (+ K in the file name), (the
shipped ones first).

Layout: ``$CAFETALK_RT_CACHE`` (default ``~/.cache/cafetalk_rt``) ``/onnx/<sha256[:16]>/``
``speech_encoder.fp32.onnx``, ``denoiser_step.fp32.onnx``, ``sampler_k10.fp32.onnx``, and for AU spans
``denoiser_step_au.fp32.onnx``, ``sampler_au_k10.fp32.onnx``, … (names from
:func:`cafetalk_rt.backends.contract.graph_filename`). A new checkpoint (another hash) gets a new
directory, so a replaced default model never meets old graphs; a file whose metadata names
another checkpoint, K, precision or graph format is stale and re-exported.

The shipped default model's fp32 graphs are in the package (``cafetalk_rt/assets/graphs``) and
are found first. The runtime never exports anything itself (it imports neither ``export`` nor
torch): for another checkpoint or precision, ``cafetalk-rt export onnx --model CKPT`` writes the
graphs here (it needs the ``export`` extra); on a machine without it, export elsewhere and point
``CAFETALK_RT_CACHE`` at a directory holding ``onnx/<hash16>/`` with those files.
"""
from __future__ import annotations

import hashlib
import logging
import os
import json
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

ENV_CACHE = "CAFETALK_RT_CACHE"


@lru_cache(maxsize=32)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (memoised per path, mtime and size)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def cache_root() -> Path:
    """``$CAFETALK_RT_CACHE``, else ``$XDG_CACHE_HOME/cafetalk_rt``, else ``~/.cache/cafetalk_rt``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cafetalk_rt"


def graph_dir(model_sha256: str) -> Path:
    """Directory of the ONNX graphs of one checkpoint."""
    return cache_root() / "onnx" / model_sha256[:16]


def graph_dirs(model_path: str | Path, precision: str) -> list[Path]:
    """Where the graphs of ``model_path`` are looked for, in order: the package's shipped graphs
    (only for the shipped checkpoint, by hash, in fp32), then the user cache
    (``graph_dir(sha)``, where ``cafetalk-rt export onnx --model …`` writes by default)."""
    from cafetalk_rt.model_files import SHIPPED_GRAPHS_DIR

    sha = file_sha256(model_path)
    dirs = [graph_dir(sha)]
    manifest = SHIPPED_GRAPHS_DIR / "manifest.json"
    if precision == "fp32" and manifest.is_file() and json.loads(manifest.read_text()).get("model_sha256") == sha:
        dirs.insert(0, SHIPPED_GRAPHS_DIR)
    return dirs


def find_graph(dirs: list[Path], kind: str, precision: str, num_inference_steps: int | None = None) -> Path | None:
    """The first ``dirs`` entry holding graph ``kind`` (K for per-K graphs), as a path, or None."""
    from cafetalk_rt.backends.contract import graph_filename

    return find_file(dirs, graph_filename(kind, precision, num_inference_steps))


def find_file(dirs: list[Path], name: str) -> Path | None:
    """The first ``dirs`` entry holding a file ``name``, as a path, or None."""
    return next((d / name for d in dirs if (d / name).is_file()), None)


def export_command(model_path: str | Path, precision: str, kinds: list[str], ks: list[int]) -> str:
    """The command line that writes the given graphs of ``model_path`` into the user cache."""
    cmd = f"cafetalk-rt export onnx --model {model_path} --precision {precision} --graphs {' '.join(kinds)}"
    return cmd + (f" --num-inference-steps {' '.join(map(str, ks))}" if ks else "")


def engine_path(onnx_path: Path, gpu_name: str, tensorrt_version: str, cache_dir: Path | None = None) -> Path:
    """Where the TensorRT engine built from ``onnx_path`` lives: keyed by GPU name, TensorRT
    version and the ONNX file's hash (engines are valid only for that GPU and version).
    Its metadata sidecar is the same path with ``.json``."""
    slug = "".join(c if c.isalnum() else "-" for c in gpu_name).strip("-").lower()
    d = Path(cache_dir) if cache_dir else cache_root() / "tensorrt"
    return d / f"{slug}-trt{tensorrt_version}" / f"{onnx_path.name[: -len('.onnx')]}.{file_sha256(onnx_path)[:16]}.plan"
