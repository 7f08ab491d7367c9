"""Where exported graphs live, keyed by checkpoint hash (+ K in the file name), and export on
first use.

Layout: ``$CAFETALK_RT_CACHE`` (default ``~/.cache/cafetalk_rt``) ``/onnx/<sha256[:16]>/``
``speech_encoder.fp32.onnx``, ``denoiser_step.fp32.onnx``, ``sampler_k10.fp32.onnx``, and for AU spans
``denoiser_step_au.fp32.onnx``, ``sampler_au_k10.fp32.onnx``, … (names from
:func:`cafetalk_rt.backends.base.graph_filename`). A new checkpoint (another hash) gets a new
directory, so a replaced default model never meets old graphs; a file whose metadata names
another checkpoint, K, precision or graph format is stale and re-exported.

The runtime never imports ``export`` (or torch): a missing graph is made by running
``python -m export onnx …`` in a child process, which needs the ``export`` extra and PyTorch.
On a machine without them, export elsewhere (``cafetalk-rt export onnx --out DIR``) and point
``CAFETALK_RT_CACHE`` at a directory holding ``onnx/<hash16>/`` with those files.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
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


def run_exporter(model_path: Path, out_dir: Path, kinds: list[str], num_inference_steps: list[int],
                 precision: str, *, force: bool = False, timeout_s: float = 1800.0) -> None:
    """Run ``python -m export onnx`` in a child process (keeps torch out of this one).

    Raises:
        RuntimeError: the exporter failed or is not installed; the message holds its last
            error lines and how to fix it.
    """
    cmd = [sys.executable, "-m", "export", "onnx", "--model", str(model_path), "--out", str(out_dir),
           "--precision", precision, "--graphs", *kinds]
    if num_inference_steps:
        cmd += ["--num-inference-steps", *(str(k) for k in num_inference_steps)]
    if force:
        cmd.append("--force")
    log.warning("exporting %s graphs of %s into %s (first use, about a minute)", "/".join(kinds), model_path.name, out_dir)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"exporting ONNX graphs failed (exit {proc.returncode}):\n{tail}\n"
                           "The first use of an exported-graph backend needs PyTorch and the export extra "
                           "(pip install 'cafetalk-rt[export]'); or export on another machine with "
                           f"`cafetalk-rt export onnx --out DIR` and set {ENV_CACHE}.")


def ensure_graphs(model_path: Path, wanted: list[tuple[str, int | None]], precision: str, *,
                  force: bool = False) -> list[Path]:
    """Paths of the exported graphs ``wanted`` = [(kind, K or None)] of ``model_path``, exporting
    the missing ones first (all in one child process), or all of them if ``force`` (e.g. after
    one was found stale).

    Raises:
        RuntimeError: the export failed (see :func:`run_exporter`).
    """
    from cafetalk_rt.backends.base import graph_filename

    d = graph_dir(file_sha256(model_path))
    paths = [d / graph_filename(kind, precision, k) for kind, k in wanted]
    missing = [w for w, p in zip(wanted, paths) if force or not p.is_file()]
    if missing:
        d.mkdir(parents=True, exist_ok=True)
        ks = sorted({k for _, k in missing if k})
        run_exporter(model_path, d, sorted({kind for kind, _ in missing}), ks, precision, force=force)
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            raise RuntimeError(f"the exporter ran but did not write {absent}")
    return paths


def engine_path(onnx_path: Path, gpu_name: str, tensorrt_version: str, cache_dir: Path | None = None) -> Path:
    """Where the TensorRT engine built from ``onnx_path`` lives: keyed by GPU name, TensorRT
    version and the ONNX file's hash (engines are valid only for that GPU and version).
    Its metadata sidecar is the same path with ``.json``."""
    slug = "".join(c if c.isalnum() else "-" for c in gpu_name).strip("-").lower()
    d = Path(cache_dir) if cache_dir else cache_root() / "tensorrt"
    return d / f"{slug}-trt{tensorrt_version}" / f"{onnx_path.name[: -len('.onnx')]}.{file_sha256(onnx_path)[:16]}.plan"
