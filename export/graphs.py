"""PyTorch modules that are exported as graphs (``torch.onnx.export(..., dynamo=True)``).

Each ``forward`` takes exactly the inputs :data:`export.contract.GRAPHS` declares, by name and
order, in float32/int64; a module built with ``dtype=torch.float16`` computes the network in
fp16 and casts at its edges, so both precisions share one contract. Solver and guidance
arithmetic stay in float32.
"""
from __future__ import annotations

import torch
from torch import nn

from cafetalk_rt.diffusion import guidance
from cafetalk_rt.control.au import NUM_AUS, anchor_matrix, region_matrix
from cafetalk_rt.nn.denoiser import Denoiser
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


class GuidedDenoiserStep(nn.Module):
    """One guided denoising step: the three CFG branches as one 3B batch, combined.

    ``forward(x_t (B, T, 52), timestep (B,) int64, audio_features (B, T_a, D_a), emotion (B,)
    int64, intensity (B,), guidance_scale (B,), audio_guidance_scale (B,)) → x0_pred (B, T, 52)``
    in normalised units, float32. Branch order and combine are ``cafetalk_rt.diffusion.guidance``:
    x0 = G_∅ + s_a (G_A − G_∅) + s_c (G_AC − G_A) (paper Eq. 6 without the fine term). An
    ε-predicting model is converted per branch with Ho et al. Eq. 4,
    x0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t, ᾱ from a constant table indexed by ``timestep``.
    """

    def __init__(self, model: Denoiser, schedule: NoiseSchedule, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype
        self.epsilon = model.config.prediction_type == "epsilon"
        self.register_buffer("alphas_cumprod", torch.tensor(schedule.alphas_cumprod, dtype=torch.float32))

    def branches_x0(self, n: int, rows, timestep, audio_features, emotion, intensity, audio_keep, coarse_keep, **fine):
        """x0 (nB, T, 52) float32 of ``rows`` (nB, T, 52): n blocks of B rows whose per-row inputs
        (timestep, audio_features, emotion, intensity: B rows each) are tiled n times and whose
        condition drops are ``audio_keep``/``coarse_keep`` (nB,); ``fine``: the denoiser's
        ``au``/``au_mask``/``fine_keep`` for all nB rows. (``n`` is passed, not derived from the
        shapes: a symbolic nB // B would make the exporter specialise the batch axis.)"""
        t = timestep.repeat(n)
        pred = self.model(rows.to(self.dtype), t, audio_features.to(self.dtype).repeat(n, 1, 1),
                          emotion.repeat(n), intensity.repeat(n), audio_keep, coarse_keep, **fine).float()
        if self.epsilon:
            abar = self.alphas_cumprod[t][:, None, None]  # (nB, 1, 1)
            pred = (rows - torch.sqrt(1.0 - abar) * pred) / torch.sqrt(abar)
        return pred

    def forward(self, x_t, timestep, audio_features, emotion, intensity, guidance_scale, audio_guidance_scale):
        b = x_t.shape[0]
        audio_keep, coarse_keep, _ = row_keeps(intensity, guidance.row_keeps(3))  # (3B,) each
        pred = self.branches_x0(3, x_t.repeat(3, 1, 1), timestep, audio_features, emotion, intensity,
                                audio_keep, coarse_keep)  # (3B, T, 52)
        return guidance.combine(pred, b, audio_guidance_scale[:, None, None], guidance_scale[:, None, None])


class ConditionalDenoiserStep(GuidedDenoiserStep):
    """One denoising step with CFG off: the fully conditioned branch only (audio and emotion
    given), B rows. ``forward(x_t (B, T, 52), timestep (B,) int64, audio_features (B, T_a, D_a),
    emotion (B,) int64, intensity (B,)) → x0_pred (B, T, 52)`` float32 in normalised units: what
    :class:`GuidedDenoiserStep` returns at s_a = s_c = 1 (paper Eq. 6 with both scales 1), at a
    third of the rows."""

    def forward(self, x_t, timestep, audio_features, emotion, intensity):
        audio_keep, coarse_keep, _ = row_keeps(intensity, guidance.row_keeps(1))  # (B,) each, all 1
        return self.branches_x0(1, x_t, timestep, audio_features, emotion, intensity, audio_keep, coarse_keep)


class GuidedDenoiserStepAU(GuidedDenoiserStep):
    """One step of mask-based CFG with region anchoring (``guidance.anchored_fine_denoiser``),
    all 7B rows in one batched call; the model needs the stage-2 adapter.

    ``forward(x_t, x_t_uncontrolled (B, T, 52), timestep, audio_features, emotion, intensity,
    guidance_scale, audio_guidance_scale (as GuidedDenoiserStep), au (B, T, n_AU) float32,
    au_mask (B, T) bool, au_guidance_scale (B,) float32) → (x0_pred, x0_pred_uncontrolled)``,
    each (B, T, 52) float32 in normalised units (``export/contract.py``). Z and the anchor are
    computed here from ``au``/``au_mask`` with two constant (n_AU, 52) matrices
    (``cafetalk_rt.control.au.region_matrix`` and ``anchor_matrix``): the numbers ``region_channel_mask``
    and ``region_anchor`` give.

    Raises:
        ValueError: the model has no fine-control adapter, or one for another AU vocabulary.
    """

    def __init__(self, model: Denoiser, schedule: NoiseSchedule, dtype: torch.dtype = torch.float32):
        if model.adapter is None:
            raise ValueError("this checkpoint has no fine-control adapter (stage 2), so it has no AU graphs")
        if model.adapter.config.num_aus != NUM_AUS:
            raise ValueError(f"the adapter has {model.adapter.config.num_aus} AU channels, this runtime's "
                             f"vocabulary {NUM_AUS} (cafetalk_rt.control.au.AU_NAMES)")
        super().__init__(model, schedule, dtype)
        self.register_buffer("au_regions", torch.from_numpy(region_matrix()))  # (n_AU, 52) float32, for Z
        self.register_buffer("au_anchors", torch.from_numpy(anchor_matrix()))  # (n_AU, 52) float32, for the anchor

    def forward(self, x_t, x_t_uncontrolled, timestep, audio_features, emotion, intensity, guidance_scale,
                audio_guidance_scale, au, au_mask, au_guidance_scale):
        b = x_t.shape[0]
        active = ((au > 0) & au_mask[:, :, None]).float()  # (B, T, n_AU)
        z = torch.clamp(torch.matmul(active, self.au_regions), max=1.0)  # (B, T, 52) Z of Eq. 6
        anchor = torch.clamp(torch.matmul(active, self.au_anchors), max=1.0).amax(dim=1, keepdim=True)  # (B, 1, 52)
        rows = guidance.row_keeps(3, anchored_fine=True)
        audio_keep, coarse_keep, fine_keep = row_keeps(intensity, rows)  # (7B,) each
        fine = {"au": au.repeat(len(rows), 1, 1), "au_mask": au_mask.repeat(len(rows), 1), "fine_keep": fine_keep}

        def batched(x_rows, t):
            return self.branches_x0(len(rows), x_rows, t, audio_features, emotion, intensity, audio_keep, coarse_keep, **fine)

        scale = lambda s: s[:, None, None]  # noqa: E731  (B,) → (B, 1, 1)
        denoise = guidance.anchored_fine_denoiser(
            batched, b, scale(audio_guidance_scale), scale(guidance_scale), lambda x, k: x.repeat(k, 1, 1), torch.cat,
            au_guidance_scale=scale(au_guidance_scale), au_mask=z, anchor=anchor, num_base=3)
        x0 = denoise(torch.cat([x_t, x_t_uncontrolled]), timestep)  # (2B, T, 52)
        return x0[:b], x0[b:]  # slices, not chunk(2): its split decomposition pins the batch axis


def row_keeps(like: torch.Tensor, keeps: list[tuple[float, float, float]]) -> tuple[torch.Tensor, ...]:
    """(audio_keep, coarse_keep, fine_keep), each (len(keeps)·B,) float32 in the block layout
    ``keeps`` (``guidance.row_keeps``), built from ``like`` (B,) so the batch axis stays dynamic."""
    one, zero = torch.ones_like(like), torch.zeros_like(like)
    return tuple(torch.cat([one if k else zero for k in column]) for column in zip(*keeps))


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
