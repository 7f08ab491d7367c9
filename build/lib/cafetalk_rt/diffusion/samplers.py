"""Samplers as plain functions (k-diffusion style), for an x0-predicting denoiser.

Every sampler has one signature, ``sample_<name>(denoiser, x, timesteps, schedule, *, noise=None,
callback=None)`` (k-diffusion's shape), so no caller branches on a sampler's name; ``noise`` is
the per-step noise of the stochastic samplers (DDPM needs it, the deterministic ones ignore it).

``denoiser(x_t, t) -> x0_pred`` takes ``x_t`` (B, T, C) and an integer timestep and returns the
guided x0 prediction of the same shape (classifier-free guidance is folded in by
:class:`cafetalk_rt.nn.guided.GuidedDenoiser` or :func:`cafetalk_rt.diffusion.guidance.guided_denoiser`). The functions use only arithmetic on the arrays,
so the same code runs on numpy arrays, torch tensors and inside an exported graph. Randomness
enters only through ``noise``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from cafetalk_rt.diffusion.schedule import NoiseSchedule

Denoiser = Callable[[Any, int], Any]
Callback = Callable[[int, int, Any], None]


def _run_steps(denoiser: Denoiser, x: Any, timesteps: Sequence[int],
               update: Callable[[int, Any, Any, int, int], Any], callback: Callback | None) -> Any:
    """The loop all samplers share: at each of the K timesteps ``x0 = denoiser(x_t, t)``; between
    timestep ``t`` (step ``i``) and the next ``t_next``, ``x ← update(i, x, x0, t, t_next)`` and
    ``callback(i, t, x0)``; the last step returns the denoiser's x0 prediction."""
    x0_pred = x
    for i, t in enumerate(timesteps):
        t = int(t)
        x0_pred = denoiser(x, t)
        if i == len(timesteps) - 1:
            break
        x = update(i, x, x0_pred, t, int(timesteps[i + 1]))
        if callback is not None:
            callback(i, t, x0_pred)
    return x0_pred


def sample_ddim(
    denoiser: Denoiser,
    x: Any,
    timesteps: Sequence[int],
    schedule: NoiseSchedule,
    *,
    noise: Sequence[Any] | None = None,
    callback: Callback | None = None,
) -> Any:
    """Deterministic DDIM (Song et al. 2021, Eq. 12 with σ = 0).

    Args:
        x: x_T, the initial noise (B, T, C), scaled by 1 (unit variance).
        timesteps: K descending training timesteps (see ``inference_timesteps``).
        noise: ignored (deterministic sampler; accepted so all samplers share one signature).
    Returns:
        x0 estimate (B, T, C): the last step returns the denoiser's x0 prediction.
    """
    abar = schedule.alphas_cumprod

    def update(i: int, x: Any, x0_pred: Any, t: int, t_next: int) -> Any:
        a_t, a_prev = float(abar[t]), float(abar[t_next])
        eps_pred = (x - math.sqrt(a_t) * x0_pred) * (1.0 / math.sqrt(1.0 - a_t))  # Eq. 12 ε_θ
        return math.sqrt(a_prev) * x0_pred + math.sqrt(1.0 - a_prev) * eps_pred

    return _run_steps(denoiser, x, timesteps, update, callback)


def sample_ddpm(
    denoiser: Denoiser,
    x: Any,
    timesteps: Sequence[int],
    schedule: NoiseSchedule,
    *,
    noise: Sequence[Any] | None = None,
    callback: Callback | None = None,
) -> Any:
    """Ancestral DDPM (Ho et al. 2020, Algorithm 2) over arbitrary descending timesteps,
    using the posterior q(x_{t'} | x_t, x0) (Eq. 6–7) with x0 from the denoiser.

    With all ``num_train_timesteps`` timesteps this is the paper-style reference sampler
    (our quality reference and speed baseline: 1000 steps).

    Args:
        noise: K arrays shaped like ``x``, the fresh Gaussian noise per step (the last is
            unused; pass it anyway so the length equals K).
    Raises:
        ValueError: no ``noise``, or ``len(noise) != len(timesteps)``.
    """
    if noise is None:
        raise ValueError("the DDPM sampler draws fresh noise at every step: pass noise, K arrays shaped like x")
    if len(noise) != len(timesteps):
        raise ValueError(f"need one noise array per step: {len(timesteps)} steps, {len(noise)} arrays")
    abar = schedule.alphas_cumprod

    def update(i: int, x: Any, x0_pred: Any, t: int, t_next: int) -> Any:
        a_t, a_prev = float(abar[t]), float(abar[t_next])
        alpha = a_t / a_prev  # product of (1 − β) between the two timesteps
        beta = 1.0 - alpha
        # Eq. 7: posterior mean coefficients and variance β̃
        c0 = math.sqrt(a_prev) * beta / (1.0 - a_t)
        ct = math.sqrt(alpha) * (1.0 - a_prev) / (1.0 - a_t)
        var = beta * (1.0 - a_prev) / (1.0 - a_t)
        return c0 * x0_pred + ct * x + math.sqrt(var) * noise[i]

    return _run_steps(denoiser, x, timesteps, update, callback)


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Any,
    timesteps: Sequence[int],
    schedule: NoiseSchedule,
    *,
    noise: Sequence[Any] | None = None,
    callback: Callback | None = None,
) -> Any:
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2): a deterministic
    second-order multistep solver of the diffusion ODE in data (x0) prediction.

    With λ_t = log(α_t / σ_t), α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) and h_i = λ_{i+1} − λ_i:
    ``x_{i+1} = (σ_{i+1}/σ_i) x_i − α_{i+1} (e^{−h_i} − 1) D_i`` with D_i = x0_i on the first step
    and ``D_i = (1 + 1/(2r)) x0_i − 1/(2r) x0_{i−1}``, r = h_{i−1}/h_i, afterwards. The first-order
    step equals DDIM (σ = 0). Like :func:`sample_ddim`, the last step returns the denoiser's x0.

    Args:
        x: x_T (B, T, C), unit variance.
        timesteps: K descending training timesteps.
        noise: ignored (deterministic sampler).
    Returns:
        x0 estimate (B, T, C).
    """
    abar = schedule.alphas_cumprod
    alpha = [math.sqrt(float(abar[int(t)])) for t in timesteps]
    sigma = [math.sqrt(1.0 - float(abar[int(t)])) for t in timesteps]
    lam = [math.log(a / s) for a, s in zip(alpha, sigma)]
    prev: list = []  # (x0_{i−1}, h_{i−1}) after the first step

    def update(i: int, x: Any, x0_pred: Any, t: int, t_next: int) -> Any:
        h = lam[i + 1] - lam[i]
        d = x0_pred
        if prev:  # Algorithm 2, line 6: second-order multistep correction
            x0_prev, h_prev = prev
            r = h_prev / h
            d = (1.0 + 0.5 / r) * x0_pred + (-0.5 / r) * x0_prev
        prev[:] = [x0_pred, h]
        return (sigma[i + 1] / sigma[i]) * x + (-alpha[i + 1] * math.expm1(-h)) * d

    return _run_steps(denoiser, x, timesteps, update, callback)


SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm, "dpmpp_2m": sample_dpmpp_2m}
#: Samplers that draw fresh noise at every step (they need ``noise``).
STOCHASTIC_SAMPLERS = frozenset({"ddpm"})
