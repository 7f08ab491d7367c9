"""TensorRT engine: a :class:`~cafetalk_rt.backends.base.GraphRunner` over one serialized engine,
and the ``tensorrt`` backend (``--backend tensorrt --device cuda``).

NOT RUN in this repository (TensorRT cannot be installed on our machines); written against the
TensorRT 10 Python API: ``Runtime.deserialize_cuda_engine``, ``ICudaEngine.num_io_tensors /
get_tensor_name / get_tensor_mode / get_tensor_dtype``, ``IExecutionContext.set_input_shape /
set_tensor_address / get_tensor_shape / execute_async_v3``. Device buffers and the CUDA stream
are PyTorch CUDA tensors (imported lazily).

Lifecycle (TensorRT demo style): build → load → allocate → infer. A missing engine is built in
this process by :mod:`cafetalk_rt.backends.tensorrt_build` (TensorRT's own builder; no child
process, no exporter) into the engine cache keyed by GPU name + TensorRT version + ONNX hash; the
engine's ``.json`` sidecar carries the ONNX metadata that :class:`GraphBackend` checks. The fp16
ONNX graphs come from ``cafetalk-rt export onnx --precision fp16`` (the error says so).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from cafetalk_rt.backends.tensorrt_build import ensure_engine, import_tensorrt

log = logging.getLogger(__name__)


class TensorRTRunner:
    """One deserialized engine and execution context behind the GraphRunner protocol.

    Args:
        engine_path: ``.plan`` file with its ``.json`` metadata sidecar.
        device: "cuda" or "cuda:N".
    Raises:
        ImportError: TensorRT or CUDA PyTorch missing.
        RuntimeError: the engine does not deserialize (built by another TensorRT version or GPU).
    """

    def __init__(self, engine_path: str | Path, *, device: str = "cuda"):
        import torch

        self._trt = trt = import_tensorrt()
        self._torch = torch
        self.device = torch.device(device)
        self.path = Path(engine_path)
        self.metadata: dict[str, str] = json.loads(self.path.with_suffix(".json").read_text())
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{self.path}: TensorRT could not load this engine; rebuild it with `cafetalk-rt export tensorrt`")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]

    def _torch_dtype(self, name: str):
        return self._torch.from_numpy(np.empty(0, self._trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the GPU, set shapes and addresses, ``execute_async_v3``, copy back."""
        torch, keep = self._torch, []
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                host = np.ascontiguousarray(feed[name], dtype=self._trt.nptype(self.engine.get_tensor_dtype(name)))
                buf = torch.from_numpy(host).to(self.device, non_blocking=False)
                self.context.set_input_shape(name, tuple(host.shape))
                self.context.set_tensor_address(name, buf.data_ptr())
                keep.append(buf)
            outputs = {}
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))  # resolved from the input shapes
                outputs[name] = torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
        self.stream.synchronize()
        return {name: t.cpu().numpy() for name, t in outputs.items()}

    def close(self) -> None:
        self.context = None
        self.engine = None


def load_tensorrt_backend(model_path, *, device: str = "cuda"):
    """``--backend tensorrt``: fp16 engines of the exported graphs (see ``export/tensorrt.py``).

    Raises:
        ValueError: ``device`` is not a CUDA device.
        ImportError: TensorRT missing.
    """
    if not str(device).startswith("cuda"):
        raise ValueError(f"the tensorrt backend runs on a GPU: pass --device cuda (got {device!r})")
    import_tensorrt()
    from cafetalk_rt.backends.graph_backend import GraphBackend

    def open_runner(onnx_path: Path) -> TensorRTRunner:
        return TensorRTRunner(ensure_engine(onnx_path), device=device)

    return GraphBackend("tensorrt", model_path, open_runner, precision="fp16")
