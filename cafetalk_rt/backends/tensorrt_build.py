"""Build TensorRT engines from ONNX graphs (TensorRT 10 Python API), in the runtime: the
``tensorrt`` backend builds a missing engine in-process (build → load → allocate → infer), with
no child process and no exporter.

NOT RUN in this repository: TensorRT cannot be installed on our machines (see docs/export.md). Written against the documented API (``tensorrt.Builder``, ``OnnxParser``,
``IBuilderConfig.set_memory_pool_limit / add_optimization_profile / set_timing_cache``,
``Builder.build_serialized_network``) and covered by tests marked ``tensorrt``.

Choices:
* Engines are built from the **fp16 ONNX** graphs as a *strongly typed* network
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): TensorRT keeps the graph's own types, so
  the log-mel front end and the solver arithmetic stay float32 and the networks run in fp16,
  exactly as ONNX Runtime ran them in the fp16 parity tests (rather than letting the FP16 builder
  flag pick per-layer precisions).
* One optimization profile per engine, (min, opt, max) from ``contract.tensorrt_profiles``.
* A timing cache per (GPU, TensorRT version) directory speeds up rebuilds.
* Engines are cached by GPU name + TensorRT version + ONNX hash
  (``cafetalk_rt.backends.cache.engine_path``): an existing engine is not rebuilt. A ``.json``
  sidecar keeps the ONNX metadata, which engines cannot carry, for the runtime.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from cafetalk_rt.backends import contract
from cafetalk_rt.backends.cache import engine_path

log = logging.getLogger(__name__)

#: TensorRT build precision for the graphs (see module docstring).
ONNX_PRECISION = "fp16"


def import_tensorrt():
    """``import tensorrt`` or an ImportError that says what to install."""
    try:
        import tensorrt
    except ImportError as e:
        raise ImportError("building TensorRT engines needs TensorRT 10 and a CUDA GPU: pip install tensorrt "
                          f"(NVIDIA's wheels; the libraries must match the driver) ({e})") from e
    return tensorrt


def gpu_name() -> str:
    """Name of CUDA device 0 (via PyTorch, which the export tools already need)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("TensorRT engines are built on the GPU that will run them; no CUDA device is visible")
    return torch.cuda.get_device_name(0)


def _onnx_metadata(onnx_path: Path) -> dict[str, str]:
    """Metadata props of an ONNX file, read with ``onnx`` (structure only, no weights)."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"building TensorRT engines reads ONNX metadata with `onnx`: pip install onnx ({e})") from e
    m = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def _profiles(kind: str, meta: dict[str, str]) -> dict:
    """(min, opt, max) input shapes: the contract's, or the streaming layout's (batch only)."""
    from cafetalk_rt.backends import streaming_contract as sc

    if kind == sc.KIND:
        return sc.tensorrt_profiles(sc.StreamingLayout.from_metadata(meta[sc.KEY_STREAMING]))
    return contract.tensorrt_profiles(kind)


def build_engine(onnx_path: Path, out_path: Path, *, workspace_gib: float = 4.0, timing_cache: Path | None = None) -> Path:
    """Parse ``onnx_path`` and write a serialized engine to ``out_path`` (+ ``.json`` sidecar).

    Raises:
        ImportError: no TensorRT.
        RuntimeError: the parser or the builder failed (parser errors are listed).
    """
    trt = import_tensorrt()
    meta = _onnx_metadata(onnx_path)
    kind = meta["cafetalk.graph"]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    profiles = _profiles(kind, meta)
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    log.info("building TensorRT engine for %s (minutes)", onnx_path.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out_path)
    meta["tensorrt.engine"] = json.dumps({"tensorrt": trt.__version__, "onnx": onnx_path.name, "strongly_typed": True,
                                          "profiles": {k: list(v) for k, v in profiles.items()}})
    out_path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return out_path


def ensure_engine(onnx_path: Path, *, cache_dir: Path | None = None, workspace_gib: float = 4.0,
                  force: bool = False) -> Path:
    """The engine for ``onnx_path`` on this GPU and TensorRT version, built unless cached."""
    trt = import_tensorrt()
    path = engine_path(onnx_path, gpu_name(), trt.__version__, cache_dir)
    if path.is_file() and path.with_suffix(".json").is_file() and not force:
        log.info("%s is up to date, not rebuilt", path)
        return path
    return build_engine(onnx_path, path, workspace_gib=workspace_gib, timing_cache=path.parent / "timing.cache")
