"""Execution backends. Each is imported lazily, so ``import cafetalk_rt`` never pulls torch.

A backend is one file plus one entry in :data:`_LOADERS`: ``(module, loader function, what to
pip install)``. Backends on exported graphs implement the engine protocol
:class:`cafetalk_rt.backends.base.GraphRunner` and reuse ``graph_backend.GraphBackend``.
"""
from __future__ import annotations

import importlib

from cafetalk_rt.errors import MissingDependencyError

_LOADERS: dict[str, tuple[str, str, str]] = {
    "onnxruntime": ("cafetalk_rt.backends.onnxruntime_backend", "load_onnxruntime_backend",
                    "ONNX Runtime: pip install onnxruntime"),
    "torch": ("cafetalk_rt.backends.torch_backend", "TorchBackend", "PyTorch: pip install 'cafetalk-rt[torch]'"),
    "torch_cudagraph": ("cafetalk_rt.backends.torch_cudagraph_backend", "CudaGraphBackend",
                        "PyTorch built with CUDA: pip install 'cafetalk-rt[torch]'"),
    "tensorrt": ("cafetalk_rt.backends.tensorrt_backend", "load_tensorrt_backend",
                 "TensorRT and PyTorch with CUDA: pip install tensorrt 'cafetalk-rt[torch]'"),
}
BACKENDS = tuple(_LOADERS)
#: The default backend: ONNX Runtime on the shipped graphs (no torch needed).
DEFAULT_BACKEND = "onnxruntime"


def load_backend(name: str, model_path, *, device: str = "cpu"):
    """Instantiate backend ``name`` for the checkpoint at ``model_path``.

    Raises:
        ValueError: unknown backend name (lists the known ones).
        MissingDependencyError (an ImportError): the backend's package is missing (names the pip
            extra to install).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    module, attr, needs = _LOADERS[name]
    try:
        loader = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise MissingDependencyError(f"the {name} backend needs {needs} ({e})") from e
    return loader(model_path, device=device)
