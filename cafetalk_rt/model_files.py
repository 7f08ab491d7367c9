"""Denoiser checkpoint metadata without PyTorch: the safetensors header's ``__metadata__``.

The runtime (exported-graph backends) needs a few facts about a checkpoint, e.g. whether it
has the stage-2 fine-control adapter, without importing torch; ``cafetalk_rt.nn.checkpoint``
(which loads the weights) reads its metadata through the same function.
"""
from __future__ import annotations

from pathlib import Path


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors file ({} if it has none).

    Raises:
        FileNotFoundError: no such file.
        safetensors.SafetensorError: not a safetensors file.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return dict(f.metadata() or {})


def has_fine_control(path: str | Path) -> bool:
    """True when the checkpoint holds the fine-control adapter (key ``adapter_config``, written
    by ``cafetalk_rt.nn.checkpoint.save_denoiser`` for stage-2 models)."""
    return bool(read_checkpoint_metadata(path).get("adapter_config"))
