"""The guided denoiser: ONE definition of the batched classifier-free-guidance step (paper
Eq. 6, §3.4), run by the torch backends and wrapped as-is by the exporter (``export/graphs.py``).

k-diffusion's ``Denoiser`` wrapper and DiT's ``forward_with_cfg`` are the models: the sampler
sees a plain ``x0 = denoiser(x_t, t)``; inside, one step is

1. **branch layout** — the frozen :class:`~cafetalk_rt.diffusion.guidance.BranchPlan` (computed
   once from the options) says which condition drops each block of B rows gets: (full,
   audio-only, null), or only full with CFG off; with an AU condition those, the fine branch at
   the controlled x_t and the base branches again at the uncontrolled x_t (anchoring);
2. **one forward** of the :class:`~cafetalk_rt.nn.denoiser.Denoiser` over all nB rows (in the
   network's dtype; an ε-prediction becomes x0 with Ho et al. 2020 Eq. 4);
3. **combine** — ``guidance.combine`` (Eq. 6) and, with AUs, ``guidance.anchored_fine_denoiser``'s
   anchoring, with Z and the anchor computed here from ``au``/``au_mask`` by two constant
   (n_AU, 52) matrices (``control.au.region_matrix`` / ``anchor_matrix``), so an exported graph
   holds them as constants.

``x0`` always means normalised model units here; :meth:`GuidedDenoiser.blendshapes` turns it into
ARKit units.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cafetalk_rt.control.au import NUM_AUS, AUCondition, anchor_matrix, region_matrix
from cafetalk_rt.diffusion import guidance
from cafetalk_rt.diffusion.guidance import BranchPlan
from cafetalk_rt.diffusion.schedule import NoiseSchedule


def row_keeps(like: torch.Tensor, plan: BranchPlan) -> tuple[torch.Tensor, ...]:
    """(audio_keep, coarse_keep, fine_keep), each (num_blocks·B,) float32 in the plan's block
    layout, built from ``like`` (B,) so a batch axis stays dynamic in an exported graph and no
    host tensor is made inside a CUDA-graph capture."""
    one, zero = torch.ones_like(like, dtype=torch.float32), torch.zeros_like(like, dtype=torch.float32)
    return tuple(torch.cat([one if k else zero for k in column]) for column in zip(*plan.rows))


def _col(s: Any) -> Any:
    """A guidance scale as a factor of (B, T, C) tensors: (B,) → (B, 1, 1); a 0-d tensor or a
    Python float stays as it is."""
    return s[:, None, None] if isinstance(s, torch.Tensor) and s.ndim == 1 else s


class GuidedDenoiser(nn.Module):
    """``forward(x_t, timestep, …) → x0``: one guided denoising step in one batched call.

    Args:
        model: the ``Denoiser``; its parameter dtype is the network's compute dtype (inputs are
            cast to it at the edge, the guidance arithmetic stays float32).
        schedule: the noise schedule (ᾱ for the ε → x0 conversion).
        plan: the branch layout (``BranchPlan.for_scales``).
        net: what runs the forward passes instead of ``model`` (e.g. ``torch.compile(model)``).
    Raises:
        ValueError: ``plan.fine`` for a model without the fine-control adapter (or one for
            another AU vocabulary).
    """

    def __init__(self, model: nn.Module, schedule: NoiseSchedule, plan: BranchPlan, *, net=None):
        super().__init__()
        if plan.fine and getattr(model, "adapter", None) is None:
            raise ValueError("this checkpoint has no fine-control adapter (stage 2), so it cannot take AU spans")
        if plan.fine and model.adapter.config.num_aus != NUM_AUS:
            raise ValueError(f"the adapter has {model.adapter.config.num_aus} AU channels, this runtime's "
                             f"vocabulary {NUM_AUS} (cafetalk_rt.control.au.AU_NAMES)")
        self.model, self.plan, self.schedule = model, plan, schedule
        self.__dict__["_net"] = net  # not a submodule: it wraps ``model``'s own parameters
        self.epsilon = model.config.prediction_type == "epsilon"
        self.register_buffer("alphas_cumprod", torch.tensor(schedule.alphas_cumprod, dtype=torch.float32))
        if plan.fine:
            self.register_buffer("au_regions", torch.from_numpy(region_matrix()))  # (n_AU, 52), for Z
            self.register_buffer("au_anchors", torch.from_numpy(anchor_matrix()))  # (n_AU, 52), for the anchor

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def branches_x0(self, rows: torch.Tensor, timestep, audio_features, emotion, intensity, coarse=None,
                    **fine) -> torch.Tensor:
        """x0 (nB, T, 52) float32 of ``rows`` (nB, T, 52): the per-row inputs (B rows each) tiled
        ``plan.num_blocks`` times, condition drops from the plan; ``coarse`` (B, D): an emotion
        embedding that replaces ``emotion``/``intensity``'s; ``fine``: ``au`` (B, T, n_AU),
        ``au_mask`` (B, T) for the adapter."""
        n, dtype = self.plan.num_blocks, self.dtype
        t = timestep.repeat(n)  # (nB,)
        # from the float32 intensity, not the int64 timestep: built from the latter, the exported
        # K = 4 sampler ran 18 % slower on ONNX Runtime CPU (236 vs 200 ms, same nodes otherwise)
        keeps = row_keeps(intensity, self.plan)
        kw = {}
        if fine:
            kw = {"au": fine["au"].float().repeat(n, 1, 1), "au_mask": fine["au_mask"].repeat(n, 1), "fine_keep": keeps[2]}
        if coarse is not None:
            kw["coarse"] = coarse.to(dtype).repeat(n, 1)
        net = self._net if self._net is not None else self.model
        pred = net(rows.to(dtype), t, audio_features.to(dtype).repeat(n, 1, 1), emotion.repeat(n),
                   intensity.repeat(n), keeps[0], keeps[1], **kw).float()
        if self.epsilon:  # Ho et al. 2020 Eq. 4: x0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t
            abar = self.alphas_cumprod[t][:, None, None]  # (nB, 1, 1)
            pred = (rows - torch.sqrt(1.0 - abar) * pred) / torch.sqrt(abar)
        return pred

    def forward(self, x_t: torch.Tensor, timestep: torch.Tensor, audio_features: torch.Tensor, emotion: torch.Tensor,
                intensity: torch.Tensor, guidance_scale: Any = 1.0, audio_guidance_scale: Any = 1.0,
                au: AUCondition | None = None, au_guidance_scale: Any = 1.0, coarse=None) -> torch.Tensor:
        """One guided step.

        Args:
            x_t: (B, T, 52) float32 normalised noisy blendshapes; with ``plan.fine`` (2B, T, 52):
                the controlled trajectory, then the uncontrolled one (start both from one x_T).
            timestep: (B,) int64 training timesteps.
            audio_features: (B, T_a, D_a) speech features at 50 Hz; emotion: (B,) int64;
                intensity: (B,) float32 levels 1–3.
            guidance_scale, audio_guidance_scale: s_c, s_a as (B,) tensors, 0-d tensors or floats.
            au: the AU condition (required iff ``plan.fine``), tensors (B, T, n_AU) / (B, T).
            au_guidance_scale: β of Eq. 6, as the scales.
            coarse: optional (B, D) emotion embedding instead of ``emotion``/``intensity``'s
                (no AU condition with it).
        Returns:
            x0 (B, T, 52) float32 (with ``plan.fine`` (2B, T, 52): anchored controlled rows, then
            the uncontrolled rows), normalised units.
        """
        s_a, s_c, b = _col(audio_guidance_scale), _col(guidance_scale), timestep.shape[0]
        conds = (timestep, audio_features, emotion, intensity)
        if not self.plan.fine:
            rows = x_t.repeat(self.plan.num_blocks, 1, 1)  # (nB, T, 52)
            return guidance.combine(self.branches_x0(rows, *conds, coarse=coarse), b, s_a, s_c)
        active = ((au.au > 0) & au.au_mask[:, :, None]).float()  # (B, T, n_AU)
        z = torch.clamp(torch.matmul(active, self.au_regions), max=1.0)  # (B, T, 52) Z of Eq. 6
        anchor = torch.clamp(torch.matmul(active, self.au_anchors), max=1.0).amax(dim=1, keepdim=True)  # (B, 1, 52)
        fine = {"au": au.au, "au_mask": au.au_mask}

        def batched(x_rows: torch.Tensor, _t: Any) -> torch.Tensor:
            return self.branches_x0(x_rows, *conds, **fine)

        denoise = guidance.anchored_fine_denoiser(
            batched, b, s_a, s_c, lambda x, k: x.repeat(k, 1, 1), torch.cat,
            au_guidance_scale=_col(au_guidance_scale), au_mask=z, anchor=anchor, num_base=self.plan.num_base)
        return denoise(x_t, timestep)

    def blendshapes(self, x0: torch.Tensor) -> torch.Tensor:
        """Normalised x0 (…, 52) → blendshapes in ARKit units (not clipped)."""
        return self.model.denormalize(x0)
