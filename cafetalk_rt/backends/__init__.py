"""Execution backends. Each is imported lazily, so ``import cafetalk_rt`` never pulls torch."""
from __future__ import annotations

BACKENDS = ("torch",)


def load_backend(name: str, model_path, *, device: str = "cpu"):
    """Instantiate backend ``name`` for the checkpoint at ``model_path``.

    Raises:
        ValueError: unknown backend name (lists the known ones).
        ImportError: the backend's package is missing (names the pip extra to install).
    """
    if name == "torch":
        try:
            from cafetalk_rt.backends.torch_backend import TorchBackend
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"the torch backend needs PyTorch: pip install torch ({e})") from e
        return TorchBackend(model_path, device=device)
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
