"""PyTorch modules that are exported as graphs (``torch.onnx.export(..., dynamo=True)``).

Each ``forward`` takes exactly the inputs :data:`cafetalk_rt.backends.contract.GRAPHS` declares, by name and
order, in float32/int64; a module built with ``dtype=torch.float16`` computes the network in
fp16 and casts at its edges, so both precisions share one contract. Solver and guidance
arithmetic stay in float32.
"""
from __future__ import annotations

import torch
from torch import nn

from cafetalk_rt.control.au import AUCondition
from cafetalk_rt.diffusion.guidance import BranchPlan
from cafetalk_rt.nn.denoiser import Denoiser
from cafetalk_rt.nn.guided import GuidedDenoiser
from cafetalk_rt.nn.log_mel import LogMelSpectrogram
from cafetalk_rt.diffusion.schedule import NoiseSchedule


class SpeechEncoderGraph(nn.Module):
    """audio (B, L) float32 → audio_features (B, ceil(L / 320), D_a) float32 at 50 Hz.

    Log-mel (float32) then ``WhisperSpeechEncoder`` in ``dtype``. Rows share one length L.
    """

    def __init__(self, encoder: nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.mel = LogMelSpectrogram()
        self.encoder = encoder.to(dtype)
        self.dtype = dtype

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.mel(audio).to(self.dtype)).float()


def _guided(model: Denoiser, schedule: NoiseSchedule, dtype: torch.dtype, plan: BranchPlan) -> GuidedDenoiser:
    return GuidedDenoiser(model.to(dtype), schedule, plan)


class GuidedDenoiserStep(nn.Module):
    """Graph ``denoiser_step``: :class:`~cafetalk_rt.nn.guided.GuidedDenoiser` with CFG (3B rows).

    ``forward(x_t (B, T, 52), timestep (B,) int64, audio_features (B, T_a, D_a), emotion (B,)
    int64, intensity (B,), guidance_scale (B,), audio_guidance_scale (B,)) → x0_pred (B, T, 52)``
    float32 in normalised units: x0 = G_∅ + s_a (G_A − G_∅) + s_c (G_AC − G_A) (paper Eq. 6
    without the fine term).
    """

    def __init__(self, model: Denoiser, schedule: NoiseSchedule, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.guided = _guided(model, schedule, dtype, BranchPlan(3))

    def forward(self, x_t, timestep, audio_features, emotion, intensity, guidance_scale, audio_guidance_scale):
        return self.guided(x_t, timestep, audio_features, emotion, intensity, guidance_scale, audio_guidance_scale)


class ConditionalDenoiserStep(nn.Module):
    """Graph ``denoiser_step_cond``: the guided denoiser with CFG off (the fully conditioned branch
    alone, B rows). ``forward(x_t, timestep, audio_features, emotion, intensity) → x0_pred``, what
    :class:`GuidedDenoiserStep` returns at s_a = s_c = 1 at a third of the rows."""

    def __init__(self, model: Denoiser, schedule: NoiseSchedule, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.guided = _guided(model, schedule, dtype, BranchPlan(1))

    def forward(self, x_t, timestep, audio_features, emotion, intensity):
        return self.guided(x_t, timestep, audio_features, emotion, intensity)


class GuidedDenoiserStepAU(nn.Module):
    """Graph ``denoiser_step_au``: the guided denoiser with CFG, an AU condition and region
    anchoring, all 7B rows in one batched call; the model needs the stage-2 adapter.

    ``forward(x_t, x_t_uncontrolled (B, T, 52), timestep, audio_features, emotion, intensity,
    guidance_scale, audio_guidance_scale (as GuidedDenoiserStep), au (B, T, n_AU) float32,
    au_mask (B, T) bool, au_guidance_scale (B,) float32) → (x0_pred, x0_pred_uncontrolled)``, each
    (B, T, 52) float32 in normalised units (the contract).

    Raises:
        ValueError: the model has no fine-control adapter, or one for another AU vocabulary.
    """

    def __init__(self, model: Denoiser, schedule: NoiseSchedule, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.guided = _guided(model, schedule, dtype, BranchPlan(3, fine=True))

    def forward(self, x_t, x_t_uncontrolled, timestep, audio_features, emotion, intensity, guidance_scale,
                audio_guidance_scale, au, au_mask, au_guidance_scale):
        b = x_t.shape[0]
        x0 = self.guided(torch.cat([x_t, x_t_uncontrolled]), timestep, audio_features, emotion, intensity,
                         guidance_scale, audio_guidance_scale, au=AUCondition(au, au_mask),
                         au_guidance_scale=au_guidance_scale)  # (2B, T, 52)
        return x0[:b], x0[b:]  # slices, not chunk(2): its split decomposition pins the batch axis


def example_inputs(kind: str) -> tuple[torch.Tensor, ...]:
    """Small example tensors for tracing graph ``kind`` (sizes ≠ 0, 1 so no axis specialises)."""
    from cafetalk_rt.backends.contract import DIMS, GRAPHS

    sizes = {"batch": 2, "num_frames": 9, "num_feature_frames": 18, "num_samples": 5_800}
    assert set(sizes) == set(DIMS)
    gen = torch.Generator().manual_seed(0)
    out = []
    for t in GRAPHS[kind].inputs:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in t.shape)
        if t.dtype == "int64":
            out.append(torch.ones(shape, dtype=torch.int64))
        elif t.dtype == "bool":
            out.append(torch.rand(shape, generator=gen) < 0.5)
        elif t.name in ("intensity", "guidance_scale", "audio_guidance_scale", "au_guidance_scale"):
            out.append(torch.full(shape, 2.0))
        else:
            out.append(0.1 * torch.randn(shape, generator=gen))
    return tuple(out)
