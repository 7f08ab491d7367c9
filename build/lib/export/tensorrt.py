"""``cafetalk-rt export tensorrt``: export the fp16 ONNX graphs of a checkpoint, then build their
TensorRT engines with the runtime's builder (:mod:`cafetalk_rt.backends.tensorrt_build`, which
holds the choices: strongly typed fp16 networks, one profile from the contract, timing cache,
engine cache keyed by GPU + TensorRT version + ONNX hash).

NOT RUN in this repository: TensorRT cannot be installed on our machines.
"""
from __future__ import annotations

from pathlib import Path

from cafetalk_rt.backends.tensorrt_build import ONNX_PRECISION, ensure_engine, import_tensorrt


def build_engines(model_path: Path, onnx_dir: Path, *, kinds: tuple[str, ...], num_inference_steps: tuple[int, ...],
                  cache_dir: str | Path | None = None, workspace_gib: float = 4.0, force: bool = False,
                  onnx_files: tuple[Path, ...] = ()) -> list[Path]:
    """``cafetalk-rt export tensorrt``: export the fp16 ONNX graphs ``kinds`` (if not up to date)
    into ``onnx_dir``, then build (or reuse) one engine per graph. ``onnx_files`` adds ONNX files
    to build as they are (the runtime's first-use path)."""
    from export.onnx_export import export_onnx

    import_tensorrt()  # fail before the export work
    results = export_onnx(model_path, onnx_dir, num_inference_steps=num_inference_steps, kinds=kinds,
                          precisions=(ONNX_PRECISION,)) if kinds else []
    wanted = [r.path for r in results if r.kind in kinds] + [Path(p) for p in onnx_files]
    return [ensure_engine(p, cache_dir=Path(cache_dir) if cache_dir else None, workspace_gib=workspace_gib, force=force)
            for p in wanted]
