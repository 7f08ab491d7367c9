"""Write a Triton Inference Server model repository for the exported graphs.

Layout (one model per graph × platform)::

    REPO/cafetalk_end_to_end_k10_onnx/config.pbtxt      platform "onnxruntime_onnx"
    REPO/cafetalk_end_to_end_k10_onnx/1/model.onnx
    REPO/cafetalk_end_to_end_k10_trt/config.pbtxt       platform "tensorrt_plan"
    REPO/cafetalk_end_to_end_k10_trt/1/model.plan       built on the serving GPU (see BUILD.md)
    REPO/cafetalk_end_to_end_au_k10_onnx/…              the AU variant (checkpoints with the adapter)

Names, dtypes and dims come from ``export/contract.py``; the batch axis is Triton's
(``max_batch_size``), the per-row scalars (emotion, intensity, scales) are ``dims: [1]`` with
``reshape: { shape: [] }``. Dynamic batching joins requests of equal shapes (same audio length).
Each config is parsed with Triton's own protobuf schema (``tritonclient``'s
``model_config_pb2``) before it is written.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cafetalk_rt.backends.cache import file_sha256
from cafetalk_rt.backends import contract

log = logging.getLogger(__name__)

_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx", "onnx"), "tensorrt": ("tensorrt_plan", "model.plan", "trt")}


def model_name(kind: str, num_inference_steps: int | None, platform: str) -> str:
    k = f"_k{num_inference_steps}" if kind in contract.PER_K else ""
    return f"cafetalk_{kind}{k}_{PLATFORMS[platform][2]}"


def _tensor(t: contract.TensorSpec) -> str:
    dims = [-1 if isinstance(d, str) else d for d in t.shape[1:]]  # drop the batch axis: Triton's
    reshape = ""
    if not dims:
        dims, reshape = [1], " reshape: { shape: [ ] }"
    return f'  {{ name: "{t.name}" data_type: {_TYPES[t.dtype]} dims: [ {", ".join(map(str, dims))} ]{reshape} }}'


def config_text(kind: str, num_inference_steps: int | None, platform: str, *, max_batch_size: int = 8,
                max_queue_delay_us: int = 2000) -> str:
    """config.pbtxt of one graph for ``platform`` ("onnxruntime" or "tensorrt")."""
    spec = contract.GRAPHS[kind]
    if not 1 <= max_batch_size <= contract.DIMS["batch"][2]:
        raise ValueError(f"max_batch_size must be in [1, {contract.DIMS['batch'][2]}] (the TensorRT profile), got {max_batch_size}")
    name = model_name(kind, num_inference_steps, platform)
    inputs = ",\n".join(_tensor(t) for t in spec.inputs)
    outputs = ",\n".join(_tensor(t) for t in spec.outputs)
    return (f'name: "{name}"\nplatform: "{PLATFORMS[platform][0]}"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}\n"
            'instance_group [ { kind: KIND_GPU count: 1 } ]\n')


def validate(text: str):
    """Parse ``text`` with Triton's ``ModelConfig`` schema; returns the message.

    Raises:
        google.protobuf.text_format.ParseError: not a valid Triton model configuration.
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _write_if_changed(path: Path, text: str, force: bool = False) -> bool:
    if not force and path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def _copy_if_changed(src: Path, dst: Path, force: bool = False) -> bool:
    if not force and dst.is_file() and file_sha256(dst) == file_sha256(src):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return True


def _build_note(name: str, onnx_file: Path) -> str:
    return (f"# {name}: TensorRT engine\n\nEngines are specific to a GPU model and TensorRT version, so build "
            f"`1/model.plan` on the serving machine:\n\n```bash\ncafetalk-rt export tensorrt --graphs --onnx {onnx_file}\n"
            f"cp ~/.cache/cafetalk_rt/tensorrt/*/{onnx_file.name[:-5]}.*.plan {name}/1/model.plan\n```\n")


def write_repository(model_path: Path, repo: Path, *, num_inference_steps: tuple[int, ...], platforms: tuple[str, ...],
                     kinds: tuple[str, ...] = ("end_to_end", "end_to_end_au"), max_batch_size: int = 8,
                     force: bool = False, onnx_dir: Path | None = None, streaming_layouts=None) -> list[Path]:
    """Export the graphs (into ``repo/.onnx`` unless ``onnx_dir``) and write the repository.

    The onnxruntime models get the fp32 graphs; the tensorrt models get a config and a BUILD.md
    with the engine build command (from the fp16 graph), plus the engine itself when TensorRT is
    importable here. AU graphs are left out for a checkpoint without the fine-control adapter
    (``onnx_export.exportable_kinds``). With onnxruntime, the live-streaming graphs of
    ``streaming_layouts`` (default: the shipped 0.16 s and 0.08 s) go under the sequence batcher
    (:mod:`export.triton_streaming`). Unchanged files are left alone unless ``force``.
    Returns the files written.
    """
    from export.onnx_export import export_onnx, exportable_kinds

    kinds = exportable_kinds(model_path, kinds)

    onnx_dir = onnx_dir or repo / ".onnx"
    precisions = tuple(sorted({"fp32" if p == "onnxruntime" else "fp16" for p in platforms}))
    export_onnx(model_path, onnx_dir, num_inference_steps=num_inference_steps, kinds=kinds, precisions=precisions)
    written = []
    for kind in kinds:
        for k in (num_inference_steps if kind in contract.PER_K else (None,)):
            for platform in platforms:
                name = model_name(kind, k, platform)
                text = config_text(kind, k, platform, max_batch_size=max_batch_size)
                validate(text)
                cfg = repo / name / "config.pbtxt"
                if _write_if_changed(cfg, text, force):
                    written.append(cfg)
                precision = "fp32" if platform == "onnxruntime" else "fp16"
                onnx_file = onnx_dir / contract.graph_filename(kind, precision, k)
                if platform == "onnxruntime":
                    if _copy_if_changed(onnx_file, repo / name / "1" / "model.onnx", force):
                        written.append(repo / name / "1" / "model.onnx")
                else:
                    if _write_if_changed(repo / name / "BUILD.md", _build_note(name, onnx_file.resolve())):
                        written.append(repo / name / "BUILD.md")
                    plan = _engine_if_possible(onnx_file)
                    if plan is not None and _copy_if_changed(plan, repo / name / "1" / "model.plan"):
                        written.append(repo / name / "1" / "model.plan")
    if "onnxruntime" in platforms:
        from cafetalk_rt.backends.streaming_contract import LAYOUTS
        from export.streaming_export import export_streaming
        from export.triton_streaming import write_streaming_models

        layouts = tuple(LAYOUTS.values()) if streaming_layouts is None else tuple(streaming_layouts)
        export_streaming(model_path, onnx_dir, layouts)
        written += write_streaming_models(repo, layouts, lambda lay: onnx_dir / lay.filename(), force=force)
    return written


def _engine_if_possible(onnx_file: Path) -> Path | None:
    """The TensorRT engine of ``onnx_file`` when TensorRT and a GPU are here, else None."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        log.warning("TensorRT is not installed here: build the engine on the serving GPU (see BUILD.md)")
        return None
    from cafetalk_rt.backends.tensorrt_build import ensure_engine

    try:
        return ensure_engine(onnx_file)
    except RuntimeError as e:  # e.g. no CUDA device
        log.warning("no TensorRT engine built (%s): see BUILD.md", e)
        return None
