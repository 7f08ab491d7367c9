"""A toy checkpoint for export tests and smoke checks: the ``tiny`` config with random weights.

A freshly initialised :class:`~cafetalk_rt.nn.denoiser.Denoiser` has zero-initialised output and
AdaLN layers (its prediction ignores every input), which would make parity tests pass
vacuously; here every parameter and the data normalisation are random, so each input matters.
"""
from __future__ import annotations

from pathlib import Path


def write_tiny_checkpoint(path: str | Path, *, seed: int = 0, prediction_type: str = "x0") -> Path:
    """Write a ``tiny`` denoiser with N(0, 0.1²) weights (same seed → same bytes, same hash).

    ``bs_mean`` ∈ [0.1, 0.5) and ``bs_std`` ∈ [0.05, 0.3) per channel, so the denormalised
    output spans the [0, 1] clip at both ends.
    """
    import dataclasses

    import torch

    from cafetalk_rt.nn.checkpoint import save_denoiser
    from cafetalk_rt.nn.denoiser import CONFIGS, Denoiser

    gen = torch.Generator().manual_seed(seed)
    model = Denoiser(dataclasses.replace(CONFIGS["tiny"], prediction_type=prediction_type))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        model.bs_mean.copy_(0.1 + 0.4 * torch.rand(52, generator=gen))
        model.bs_std.copy_(0.05 + 0.25 * torch.rand(52, generator=gen))
    return save_denoiser(path, model, info={"note": "random tiny model for export tests", "seed": seed})
