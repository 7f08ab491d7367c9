"""The denoiser network, its checkpoint format and one training step (tiny config, CPU)."""
import dataclasses

import numpy as np
import pytest
import torch

from cafetalk_rt.nn.checkpoint import load_denoiser, read_metadata, save_denoiser
from cafetalk_rt.nn.denoiser import CONFIGS, Denoiser
from cafetalk_rt.diffusion.schedule import make_schedule
from train.diffusion import diffusion_loss, q_sample

TINY = CONFIGS["tiny"]


def _inputs(b, t, ta=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    ta = ta or 2 * t
    return (torch.randn(b, t, 52, generator=g), torch.randint(0, 1000, (b,), generator=g),
            torch.randn(b, ta, TINY.audio_dim, generator=g), torch.randint(0, 8, (b,), generator=g),
            torch.full((b,), 2.0), torch.ones(b), torch.ones(b))


def _randomized(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    m = Denoiser(cfg)
    with torch.no_grad():  # adaLN-Zero starts as identity/zero output: perturb to test wiring
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.mark.parametrize("t", [1, 7, 125, 400])
def test_shapes_and_finite(t):
    m = _randomized()
    out = m(*_inputs(2, t))
    assert out.shape == (2, t, 52) and torch.isfinite(out).all()


def test_zero_init_outputs_zero():
    out = Denoiser(TINY)(*_inputs(1, 10))
    assert torch.count_nonzero(out) == 0


def test_audio_alignment_is_local():
    """Changing the audio after 1.6 s changes frames after 1.6 s far more than the first frames,
    which see it only indirectly through self-attention (alignment mask)."""
    m = _randomized()
    x = _inputs(1, 50)
    a2 = x[2].clone()
    a2[:, 80:] = torch.randn(a2[:, 80:].shape, generator=torch.Generator().manual_seed(9))  # audio after 1.6 s
    base, pert = m(*x), m(x[0], x[1], a2, *x[3:])
    diff = (base - pert).abs().mean(-1)[0]
    assert diff[45:].mean() > 50 * diff[:10].mean() and diff[45:].mean() > 1e-3


def test_null_conditions_change_output():
    m = _randomized()
    x = list(_inputs(1, 20))
    base = m(*x)
    no_audio = m(*x[:5], torch.zeros(1), x[6])
    no_coarse = m(*x[:6], torch.zeros(1))
    assert (base - no_audio).abs().mean() > 1e-3 and (base - no_coarse).abs().mean() > 1e-3
    x[2] = x[2] * 3  # with audio dropped, audio values must not matter
    torch.testing.assert_close(m(*x[:5], torch.zeros(1), x[6]), no_audio)


def test_emotion_and_intensity_enter():
    m = _randomized()
    x = list(_inputs(1, 20))
    x[3] = torch.tensor([5])
    a = m(*x)
    x[4] = torch.tensor([3.0])
    b = m(*x)
    x[3] = torch.tensor([6])
    c = m(*x)
    assert (a - b).abs().mean() > 1e-4 and (b - c).abs().mean() > 1e-4


def test_checkpoint_round_trip(tmp_path):
    m = _randomized()
    m.bs_mean.fill_(0.1)
    p = save_denoiser(tmp_path / "m.safetensors", m, info={"step": 3})
    cfg, info = read_metadata(p)
    assert cfg == TINY and info == {"step": 3}
    m2 = load_denoiser(p)
    x = _inputs(1, 9)
    torch.testing.assert_close(m(*x), m2(*x))
    assert float(m2.bs_mean[0]) == pytest.approx(0.1)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_denoiser(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a cafetalk_rt denoiser"):
        load_denoiser(tmp_path / "other.safetensors")


def test_training_steps_reduce_loss():
    """A tiny model learns to map audio features to motion: loss drops by > 30 % in 60 steps."""
    torch.manual_seed(0)
    m = Denoiser(TINY)
    sched = make_schedule()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(16, 40, TINY.audio_dim, generator=g)
    x0 = audio[:, ::2, :52].tanh()  # motion = function of aligned audio
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        t = torch.randint(0, 1000, (16,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        pred = m(q_sample(x0, t, noise, sched), t, audio, torch.zeros(16, dtype=torch.int64),
                 torch.ones(16), torch.ones(16), torch.ones(16))
        loss, _ = diffusion_loss(pred, x0, noise, velocity_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_config_registry_sizes():
    n = lambda c: sum(p.numel() for p in Denoiser(c).parameters())
    assert n(CONFIGS["small"]) * 2 < 30e6  # fp16 shipped model ≤ 30 MB
    assert dataclasses.asdict(CONFIGS["paper"])["depth"] == 8
