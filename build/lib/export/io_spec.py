"""The torch side of the I/O contract: ``torch.export`` dynamic shapes of each graph's inputs.

Everything else about the contract (graph kinds, tensor specs, dims, profiles, file names,
metadata) is pure data in :mod:`cafetalk_rt.backends.contract`, which the runtime imports
without torch; this module only turns its :data:`~cafetalk_rt.backends.contract.DIMS` into
``torch.export.Dim`` objects.
"""
from __future__ import annotations

from cafetalk_rt.backends.contract import DIMS, GRAPHS, dynamic_axes


def torch_dynamic_shapes(kind: str) -> dict[str, dict]:
    """``dynamic_shapes`` for ``torch.onnx.export(..., dynamo=True)``: one ``torch.export.Dim``
    per dim name with the :data:`DIMS` bounds (imports torch)."""
    import torch

    dims = {name: torch.export.Dim(name, min=lo, max=hi) for name, (lo, _, hi) in DIMS.items()}
    return {t.name: {axis: dims[d] for axis, d in dynamic_axes(t).items()} for t in GRAPHS[kind].inputs}
