"""Training-side diffusion: forward noising q(x_t | x0) and the paper's simple loss (torch)."""
from __future__ import annotations

import torch

from cafetalk_rt.diffusion.schedule import NoiseSchedule


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Ho et al. 2020 Eq. 4: x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε. x0, noise (B, T, C); t (B,)."""
    abar = torch.as_tensor(schedule.alphas_cumprod, dtype=torch.float64, device=x0.device)[t]
    a = abar.sqrt().to(x0.dtype)[:, None, None]
    s = (1.0 - abar).sqrt().to(x0.dtype)[:, None, None]
    return a * x0 + s * noise


def diffusion_loss(pred, x0, noise, *, prediction_type: str = "x0", velocity_weight: float = 0.0,
                   frame_weight: torch.Tensor | None = None):
    """The "simple" loss (Ho et al. 2020, Eq. 14) on the prediction target, plus an optional
    temporal-velocity term on x0 predictions (our choice; 0 disables it). ``frame_weight`` (B, T)
    weights the frames of the squared error (normalised by its sum, so the scale stays that of
    the plain mean). Returns (loss, parts)."""
    target = x0 if prediction_type == "x0" else noise
    if frame_weight is None:
        mse = (pred - target).pow(2).mean()
    else:
        mse = ((pred - target).pow(2).mean(-1) * frame_weight).sum() / frame_weight.sum().clamp(min=1e-8)
    parts = {"mse": mse.detach()}
    loss = mse
    if velocity_weight > 0 and prediction_type == "x0" and x0.shape[1] > 1:
        vel = ((pred[:, 1:] - pred[:, :-1]) - (x0[:, 1:] - x0[:, :-1])).pow(2).mean()
        parts["vel"] = vel.detach()
        loss = loss + velocity_weight * vel
    return loss, parts
