"""Noise schedules (computed in float64, DiT habit) and inference timestep spacing.

The paper does not publish its schedule; our default is Ho et al. 2020's linear betas
(1e-4 → 0.02 over ``num_train_timesteps`` = 1000), with the cosine schedule of Nichol &
Dhariwal 2021 as an option. ``alphas_cumprod[t]`` is ᾱ_t of Ho et al. Eq. 4:
``x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete DDPM noise schedule.

    Attributes:
        kind: "linear" or "cosine".
        alphas_cumprod: (num_train_timesteps,) float64, ᾱ_t, strictly decreasing in (0, 1).
    """

    kind: str
    alphas_cumprod: np.ndarray

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @property
    def betas(self) -> np.ndarray:
        prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        return 1.0 - self.alphas_cumprod / prev


def make_schedule(kind: str = "linear", num_train_timesteps: int = 1000) -> NoiseSchedule:
    """Build a schedule. Raises ValueError for an unknown ``kind`` or < 2 timesteps."""
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
    if kind == "linear":  # Ho et al. 2020, §4: β from 1e-4 to 0.02 (scaled to 1000 steps)
        scale = 1000.0 / num_train_timesteps
        betas = np.linspace(scale * 1e-4, scale * 0.02, num_train_timesteps, dtype=np.float64)
        abar = np.cumprod(1.0 - betas)
    elif kind == "cosine":  # Nichol & Dhariwal 2021, Eq. 17, s = 0.008, β clipped at 0.999
        s = 0.008
        steps = np.arange(num_train_timesteps + 1, dtype=np.float64) / num_train_timesteps
        f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
        abar = np.cumprod(1.0 - betas)
    else:
        raise ValueError(f"unknown noise schedule {kind!r}; use one of {SCHEDULES}")
    return NoiseSchedule(kind=kind, alphas_cumprod=abar)


def inference_timesteps(num_inference_steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """Descending integer timesteps for a K-step sampler, "trailing" spacing.

    Trailing spacing (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
    Flawed", Table 2) always starts at t = T − 1, so even K = 1 starts from (almost) pure noise.
    Returns (K,) int64, e.g. K=4, T=1000 → [999, 749, 499, 249].

    Raises:
        ValueError: K < 1 or K > num_train_timesteps.
    """
    k = int(num_inference_steps)
    if not 1 <= k <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be in [1, {num_train_timesteps}], got {num_inference_steps}"
        )
    ratio = num_train_timesteps / k
    return (np.round(np.arange(num_train_timesteps, 0, -ratio)) - 1).astype(np.int64)
