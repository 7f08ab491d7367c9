"""Samplers, schedules and CFG combine on toy denoisers with fixed noise (numpy, no model)."""
import numpy as np
import pytest

from cafetalk_rt.diffusion.guidance import BranchPlan, combine, guided_denoiser
from cafetalk_rt.diffusion.samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m
from cafetalk_rt.diffusion.schedule import inference_timesteps, make_schedule

SCHED = make_schedule("linear", 1000)


def gaussian_x0_denoiser(sigma: float, mean: float = 0.0):
    """Bayes-optimal x0 denoiser for data ~ N(mean, sigma²): E[x0 | x_t]."""
    abar = SCHED.alphas_cumprod

    def den(x, t):
        a = abar[t]
        gain = np.sqrt(a) * sigma**2 / (a * sigma**2 + 1 - a)
        return mean + gain * (x - np.sqrt(a) * mean)

    return den


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_monotone(kind):
    s = make_schedule(kind, 1000)
    abar = s.alphas_cumprod
    assert abar.dtype == np.float64 and abar.shape == (1000,)
    assert np.all(np.diff(abar) < 0) and 0 < abar[-1] < 0.01 and abar[0] > 0.99
    assert np.all((s.betas > 0) & (s.betas < 1))


def test_inference_timesteps():
    assert inference_timesteps(4).tolist() == [999, 749, 499, 249]
    assert inference_timesteps(1).tolist() == [999]
    full = inference_timesteps(1000)
    assert full[0] == 999 and full[-1] == 0 and np.all(np.diff(full) == -1)
    with pytest.raises(ValueError, match="num_inference_steps"):
        inference_timesteps(0)


def test_ddpm_1000_steps_reproduces_data_distribution():
    rng = np.random.default_rng(0)
    sigma, mean = 0.3, 0.2
    x = rng.standard_normal((4000, 1, 1))
    steps = inference_timesteps(1000)
    noise = [rng.standard_normal(x.shape) for _ in steps]
    out = sample_ddpm(gaussian_x0_denoiser(sigma, mean), x, steps, SCHED, noise=noise)
    assert abs(out.mean() - mean) < 0.02
    assert abs(out.std() - sigma) / sigma < 0.05


def test_ddim_spread_grows_with_steps_and_is_exact_at_1000():
    """DDIM returns E[x0 | x_t] at its last (trailing) timestep, so few steps shrink the spread of
    the samples; it must grow monotonically with K and match the data at K = 1000."""
    sigma = 0.5
    stds = []
    for k in (1, 2, 4, 10, 50, 1000):
        x = np.random.default_rng(1).standard_normal((4000, 1, 1))
        stds.append(sample_ddim(gaussian_x0_denoiser(sigma), x, inference_timesteps(k), SCHED).std())
    assert np.all(np.diff(stds) > 0), stds
    assert stds[0] < 0.1 * sigma
    assert abs(stds[-2] - sigma) / sigma < 0.1
    assert abs(stds[-1] - sigma) / sigma < 0.01


def test_ddim_numeric_pin():
    """Pin the full loop on a toy denoiser with fixed noise (diffusers habit)."""
    rng = np.random.default_rng(42)
    x = rng.standard_normal((1, 3, 2))
    out = sample_ddim(lambda x, t: 0.5 * np.tanh(x) + 0.01 * t / 1000, x, inference_timesteps(4), SCHED)
    np.testing.assert_allclose(out.ravel(), PIN_DDIM, rtol=1e-6, atol=1e-8)


PIN_DDIM = [0.16116457561370715, -0.3782982069707904, 0.3231104296539589,
            0.3668230930390143, -0.4644854169249494, -0.4156825566910257]


def test_ddpm_requires_noise_per_step():
    with pytest.raises(ValueError, match="one noise array per step"):
        sample_ddpm(lambda x, t: x, np.zeros((1, 2, 2)), [999, 0], SCHED, noise=[np.zeros((1, 2, 2))])


def test_exact_x0_is_a_fixed_point():
    target = np.full((2, 5, 3), 0.7)
    for k in (1, 2, 10):
        out = sample_ddim(lambda x, t: target, np.ones_like(target), inference_timesteps(k), SCHED)
        np.testing.assert_allclose(out, target)


def test_cfg_combine():
    b = 2
    full, aud, null = (np.full((b, 4, 3), v) for v in (3.0, 2.0, 1.0))
    x = np.concatenate([full, aud, null])
    np.testing.assert_allclose(combine(x, b, 1.0, 1.0), full)  # no guidance → conditioned
    np.testing.assert_allclose(combine(x, b, 1.0, 2.0), 4.0)  # 1 + 1·(2−1) + 2·(3−2)
    np.testing.assert_allclose(combine(x, b, 0.0, 0.0), 1.0)  # unconditional
    assert BranchPlan.for_scales(1.0, 1.0).num_base == 1 and BranchPlan.for_scales(1.0, 1.5).num_base == 3


def test_guided_denoiser_batches_branches_in_one_call():
    calls = []

    def batched(x, t):
        calls.append(x.shape[0])
        return x + np.arange(x.shape[0])[:, None, None]

    den = guided_denoiser(batched, 2, 1.0, 2.0, repeat=lambda x, n: np.concatenate([x] * n))
    den(np.zeros((2, 4, 3)), 10)
    assert calls == [6]


def _exact_ode_x0(x_t, t_start, t_end, sigma, mean=0.0):
    """Closed-form probability-flow ODE for data ~ N(mean, σ²): x_t − α_t μ scales with the
    marginal std s_t = √(α_t² σ² + σ_t²); returns the exact denoiser's x0 at ``t_end``."""
    abar = SCHED.alphas_cumprod
    s = lambda t: np.sqrt(abar[t] * sigma**2 + 1 - abar[t])  # noqa: E731
    x_end = np.sqrt(abar[t_end]) * mean + (s(t_end) / s(t_start)) * (x_t - np.sqrt(abar[t_start]) * mean)
    return gaussian_x0_denoiser(sigma, mean)(x_end, t_end)


@pytest.mark.parametrize("k, factor", [(4, 0.9), (10, 0.5)])
def test_dpmpp_2m_is_closer_to_the_exact_ode_than_ddim(k, factor):
    """Second order pays off more as K grows (error ∝ h² vs h)."""
    sigma, mean = 0.3, 0.2
    x = np.random.default_rng(1).standard_normal((4, 64, 3))
    steps = inference_timesteps(k)
    exact = _exact_ode_x0(x, int(steps[0]), int(steps[-1]), sigma, mean)
    den = gaussian_x0_denoiser(sigma, mean)
    err_ddim = np.abs(sample_ddim(den, x, steps, SCHED) - exact).max()
    err_dpm = np.abs(sample_dpmpp_2m(den, x, steps, SCHED) - exact).max()
    assert err_dpm < factor * err_ddim, (err_dpm, err_ddim)


def test_dpmpp_2m_first_step_is_ddim_and_fixed_point():
    den = gaussian_x0_denoiser(0.5)
    x = np.random.default_rng(2).standard_normal((1, 8, 2))
    for k in (1, 2):  # one update at most: the first-order step equals DDIM
        steps = inference_timesteps(k)
        np.testing.assert_allclose(sample_dpmpp_2m(den, x, steps, SCHED), sample_ddim(den, x, steps, SCHED), rtol=1e-12)
    target = np.full((2, 5, 3), 0.7)
    np.testing.assert_allclose(sample_dpmpp_2m(lambda x, t: target, np.ones_like(target), inference_timesteps(8), SCHED), target)


def test_dpmpp_2m_numeric_pin():
    rng = np.random.default_rng(42)
    x = rng.standard_normal((1, 3, 2))
    out = sample_dpmpp_2m(lambda x, t: 0.5 * np.tanh(x) + 0.01 * t / 1000, x, inference_timesteps(4), SCHED)
    np.testing.assert_allclose(out.ravel(), PIN_DPMPP, rtol=1e-6, atol=1e-8)


PIN_DPMPP = [0.1619604409990211, -0.37886093637834145, 0.32377506927817684,
             0.3672325755285406, -0.46454581566495146, -0.41597504624567105]
