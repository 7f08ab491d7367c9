"""Build the graphs that ship inside the package (``cafetalk_rt/assets/graphs``): the default
model's speech encoder, its denoiser step graphs (plain, CFG-off, AU), the fused DDIM samplers
for the default K and the live-streaming graphs (0.16 s and 0.08 s look-ahead), so ``pip install cafetalk-rt`` runs on ONNX Runtime with neither torch nor
an exporter (faster-whisper and Piper ship their converted models the same way).

Two things keep the package small (measured in docs/export.md):

* **fp16-stored weights, fp32 compute.** A float32 initializer whose values are all exactly
  representable in float16 (every weight of the shipped checkpoint, which is stored in fp16, and
  of the Whisper tiny.en weights, which ship in fp16) is stored as float16 and followed by a
  ``Cast`` to float32. Nothing is rounded: the packed graph computes exactly what the fp32 graph
  computes (``pack_graphs`` checks the round trip and keeps any other tensor in float32).
* **One weights file for all graphs (ONNX external data).** Every initializer of at least
  :data:`EXTERNAL_MIN_BYTES` lives in ``weights.bin``, deduplicated by content (a matrix another
  graph stored transposed is read from that copy through a Transpose node): the graphs share one
  copy of the denoiser's weights. Each ``.onnx`` file holds only the graph structure.

Other K need no file of their own: the runtime runs its host-side sampler over the shipped step
graph (``cafetalk_rt.backends.graph_backend``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cafetalk_rt.backends import contract
from cafetalk_rt.backends.cache import file_sha256
from cafetalk_rt.backends.streaming_contract import LAYOUTS
from cafetalk_rt.model_files import DEFAULT_MODEL, SHIPPED_GRAPHS, SHIPPED_GRAPHS_DIR, WEIGHTS_FILE

log = logging.getLogger(__name__)

#: Initializers smaller than this stay inside the ``.onnx`` file.
EXTERNAL_MIN_BYTES = 1024
_ALIGN = 64


def _fp16_exact(arr: np.ndarray) -> bool:
    """True when a float32 array survives float32 → float16 → float32 unchanged."""
    if arr.dtype != np.float32 or not np.all(np.isfinite(arr)):
        return False
    with np.errstate(over="ignore"):
        return bool(np.array_equal(arr.astype(np.float16).astype(np.float32), arr))


class _WeightsFile:
    """Appends unique blobs to one file; returns (offset, length) per blob (deduplicated)."""

    def __init__(self, path: Path):
        self.path, self._f, self._seen = path, open(path, "wb"), {}

    def find(self, data: bytes) -> tuple[int, int] | None:
        """(offset, length) of ``data`` if it is already stored, else None."""
        return self._seen.get(hashlib.sha256(data).digest())

    def add(self, data: bytes) -> tuple[int, int]:
        key = hashlib.sha256(data).digest()
        if key not in self._seen:
            pad = -self._f.tell() % _ALIGN
            self._f.write(b"\0" * pad)
            self._seen[key] = (self._f.tell(), len(data))
            self._f.write(data)
        return self._seen[key]

    def close(self) -> None:
        self._f.close()


def _pack_one(model: onnx.ModelProto, weights: _WeightsFile) -> dict[str, int]:
    """Rewrite ``model``'s initializers in place (fp16 storage + Cast, external data); returns
    counts for the log."""
    inits, casts, stats = [], [], {"fp16": 0, "fp32": 0, "inline": 0, "transposed": 0}
    for t in model.graph.initializer:
        arr = numpy_helper.to_array(t)
        if arr.nbytes < EXTERNAL_MIN_BYTES:
            inits.append(t)
            stats["inline"] += 1
            continue
        name, dtype = t.name, t.data_type
        if _fp16_exact(arr):
            arr, dtype, name = arr.astype(np.float16), TensorProto.FLOAT16, t.name + "__fp16"
            casts.append(helper.make_node("Cast", [name], [t.name], to=TensorProto.FLOAT, name=t.name + "__cast"))
            stats["fp16"] += 1
        else:
            stats["fp32"] += 1
        if arr.ndim == 2 and weights.find(np.ascontiguousarray(arr).tobytes()) is None \
                and weights.find(np.ascontiguousarray(arr.T).tobytes()) is not None:
            # another graph stores this matrix transposed (torch exports Linear as Gemm or as
            # MatMul with Wᵀ): point at that blob and transpose it back (exact; folded at load)
            target, name = name, name + "__t"
            casts.insert(0, helper.make_node("Transpose", [name], [target], perm=[1, 0], name=target + "__transpose"))
            arr = arr.T
            stats["transposed"] += 1
        offset, length = weights.add(np.ascontiguousarray(arr).tobytes())
        ext = TensorProto(name=name, data_type=dtype, dims=list(arr.shape))
        for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
            ext.external_data.add(key=key, value=value)
        ext.data_location = TensorProto.EXTERNAL
        inits.append(ext)
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(casts + nodes)  # the casts come first: topological order holds
    return stats


def pack_graphs(sources: list[Path], out_dir: Path) -> list[Path]:
    """Pack exported fp32 graphs ``sources`` into ``out_dir`` with one shared ``weights.bin``.

    The directory is written next to ``out_dir`` and swapped in whole, so a reader never sees a
    graph whose weights file belongs to another build. Returns the written ``.onnx`` paths.

    Raises:
        onnx.checker.ValidationError: a packed graph does not check.
    """
    out_dir = Path(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".graphs-", dir=out_dir.parent))
    weights = _WeightsFile(tmp / WEIGHTS_FILE)
    written = []
    try:
        for src in sources:
            model = onnx.load(str(src))
            stats = _pack_one(model, weights)
            dst = tmp / Path(src).name
            onnx.save(model, str(dst))
            written.append(dst.name)
            log.info("packed %s: %s", dst.name, stats)
        weights.close()
        for name in written:
            onnx.checker.check_model(str(tmp / name))
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        weights.close()
        if tmp.exists():
            shutil.rmtree(tmp)
    return [out_dir / name for name in written]


def ship(model_path: Path = DEFAULT_MODEL, out_dir: Path = SHIPPED_GRAPHS_DIR) -> list[Path]:
    """Export the :data:`~cafetalk_rt.model_files.SHIPPED_GRAPHS` of ``model_path`` (fp32) and
    pack them into ``out_dir`` (default: the package's ``assets/graphs``). Also writes
    ``manifest.json`` (file → bytes, the checkpoint hash). Returns the packed graph paths."""
    from export.onnx_export import export_onnx
    from export.streaming_export import export_streaming

    with tempfile.TemporaryDirectory() as d:
        for kind, k in SHIPPED_GRAPHS:
            export_onnx(model_path, d, num_inference_steps=(k,) if k else (1,), kinds=(kind,), precisions=("fp32",))
        sources = [Path(d) / contract.graph_filename(kind, "fp32", k) for kind, k in SHIPPED_GRAPHS]
        sources += export_streaming(model_path, d, list(LAYOUTS.values()))
        paths = pack_graphs(sources, Path(out_dir))
    write_manifest(Path(out_dir), model_path)
    return paths


def write_manifest(out_dir: Path, model_path: Path) -> Path:
    """``manifest.json``: the checkpoint hash (how the runtime tells that these graphs belong to
    its model), the graph format and each file's size in bytes."""
    files = sorted(p.name for p in out_dir.iterdir() if p.name != "manifest.json")
    manifest = {"model_sha256": file_sha256(model_path), "format": contract.GRAPH_FORMAT,
                "graphs": [list(g) for g in SHIPPED_GRAPHS],
                "streaming": [layout.filename() for layout in LAYOUTS.values()],
                "bytes": {name: (out_dir / name).stat().st_size for name in files}}
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path
