"""ONNX Runtime engine: a :class:`~cafetalk_rt.backends.base.GraphRunner` over one ONNX file,
and the ``onnxruntime`` backend (exported graphs, see ``graph_backend.py``).

CPU by default. With ``device="cuda[:N]"`` it needs ``onnxruntime-gpu``: the session runs on
the CUDA execution provider and inputs/outputs go through IOBinding (inputs copied to the GPU
once per call, outputs allocated by ORT on the device and copied back after the run).
onnxruntime is imported lazily; its absence raises an ImportError naming the extra.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from cafetalk_rt.errors import MissingDependencyError

log = logging.getLogger(__name__)


def import_onnxruntime():
    """``import onnxruntime`` or an ImportError that says which extra installs it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingDependencyError("the onnxruntime backend needs ONNX Runtime, a dependency of cafetalk-rt: "
                                     f"pip install onnxruntime (or onnxruntime-gpu) ({e})") from e
    return onnxruntime


def _device_id(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


class OnnxRuntimeRunner:
    """One ``onnxruntime.InferenceSession`` behind the GraphRunner protocol.

    Args:
        path: ONNX file.
        device: "cpu" or "cuda[:N]".
        intra_op_num_threads: CPU threads (0 = ORT's default).
    Raises:
        ImportError: onnxruntime missing, or CUDA asked for without onnxruntime-gpu.
        ValueError: ``device`` is neither "cpu" nor "cuda[:N]".
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", intra_op_num_threads: int = 0):
        ort = import_onnxruntime()
        self._ort = ort
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ImportError(f"device {device!r} needs onnxruntime-gpu (pip uninstall onnxruntime && "
                                  f"pip install onnxruntime-gpu); available: {ort.get_available_providers()}")
            providers = [("CUDAExecutionProvider", {"device_id": _device_id(device)}), "CPUExecutionProvider"]
        else:
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = intra_op_num_threads
        opts.log_severity_level = 3  # errors only
        self.path, self.device = Path(path), device
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.use_io_binding = "CUDAExecutionProvider" in self.session.get_providers()

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once: ``feed`` {input name: array} → {output name: host array}."""
        if not self.use_io_binding:
            return dict(zip(self.output_names, self.session.run(self.output_names, dict(feed))))
        dev = _device_id(self.device)
        binding = self.session.io_binding()
        for name, arr in feed.items():
            value = self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", dev)
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", dev)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))

    def close(self) -> None:
        self.session = None


def load_onnxruntime_backend(model_path, *, device: str = "cpu", precision: str = "fp32"):
    """``--backend onnxruntime``: the exported graphs of ``model_path`` on ONNX Runtime.

    Args:
        model_path: denoiser checkpoint: the shipped model's graphs ship in the package; another
            checkpoint's come from ``cafetalk-rt export onnx --model PATH`` (the error says so).
        device: "cpu" or "cuda[:N]" (onnxruntime-gpu: CUDA EP + IOBinding).
        precision: "fp32" (default) or "fp16" graphs (fp16 is meant for GPUs).
    Returns:
        a :class:`~cafetalk_rt.backends.graph_backend.GraphBackend`.
    """
    import_onnxruntime()  # fail before opening any graph
    from cafetalk_rt.backends.graph_backend import GraphBackend

    return GraphBackend("onnxruntime", model_path, lambda p: OnnxRuntimeRunner(p, device=device), precision=precision)
