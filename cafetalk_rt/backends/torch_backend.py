"""PyTorch backend: the frozen speech encoder and the denoiser, with all CFG branches of a
denoising step evaluated as ONE batched forward (nB rows, see :mod:`cafetalk_rt.diffusion.guidance`).

The pieces below :class:`TorchBackend` are shared with the CUDA-graph backend
(:mod:`cafetalk_rt.backends.torch_cudagraph_backend`), which runs the same program on static
buffers: the branch-row layout (:class:`BranchLayout`), the model inputs of a batched call
(:func:`branch_conditions`), the batched denoiser closure (:func:`batched_denoiser`) and the whole
sampling program on tensors (:func:`sample_tensors`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from cafetalk_rt.diffusion import guidance
from cafetalk_rt.control.au import region_anchor, region_channel_mask
from cafetalk_rt.nn.checkpoint import load_denoiser
from cafetalk_rt.diffusion.samplers import SAMPLERS, sample_ddpm
from cafetalk_rt.diffusion.schedule import NoiseSchedule, inference_timesteps, make_schedule

@dataclass(frozen=True)
class BranchLayout:
    """Which condition branch each row of one batched denoiser call holds.

    Rows are branch-major: branch ``j`` holds rows ``[j·B, (j+1)·B)``. Without AU spans the branches
    are ``guidance.BRANCHES[:num_base]`` (1 row group without CFG, 3 with); with AU spans
    (``fine``) they are those, then ``guidance.FINE_BRANCH`` at the controlled x_t, then the base
    branches again at the uncontrolled x_t (``guidance.anchored_fine_denoiser``).

    Attributes:
        batch_size: B, the sequences being sampled.
        num_base: 1 (no guidance) or 3 (CFG), ``guidance.num_branches`` of the two scales.
        fine: an AU condition is present (2·num_base + 1 row groups).
    """

    batch_size: int
    num_base: int
    fine: bool = False

    @classmethod
    def for_options(cls, batch_size: int, options, *, fine: bool = False) -> "BranchLayout":
        """The layout for ``options`` (``audio_guidance_scale``, ``guidance_scale``)."""
        return cls(batch_size, guidance.num_branches(options.audio_guidance_scale, options.guidance_scale), fine)

    @property
    def rows(self) -> tuple[tuple[float, float, float], ...]:
        """(audio_keep, coarse_keep, fine_keep) per row group (1 = condition given, 0 = null):
        ``guidance.row_keeps``."""
        return tuple(guidance.row_keeps(self.num_base, anchored_fine=self.fine))

    @property
    def num_rows(self) -> int:
        """nB: rows of one batched call."""
        return len(self.rows) * self.batch_size

    def tile(self, x: torch.Tensor) -> torch.Tensor:
        """(B, …) → (nB, …): one copy of ``x`` per row group, in row order."""
        return x.repeat(len(self.rows), *([1] * (x.ndim - 1)))

    def keep_vectors(self, device) -> dict[str, torch.Tensor]:
        """The model's (nB,) float32 ``audio_keep`` and ``coarse_keep`` (and ``fine_keep`` with AU
        spans) inputs on ``device``. Built from host lists: make them before a CUDA-graph capture."""
        names = ("audio_keep", "coarse_keep", "fine_keep")[: 3 if self.fine else 2]
        cols = list(zip(*self.rows))
        return {name: torch.tensor(col, device=device).repeat_interleave(self.batch_size)
                for name, col in zip(names, cols)}


def branch_conditions(layout: BranchLayout, features: torch.Tensor, emotion: torch.Tensor,
                      intensity: torch.Tensor, keeps: dict[str, torch.Tensor], *,
                      dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Keyword inputs of ``Denoiser.forward`` for one batched call of ``layout.num_rows`` rows.

    Args:
        features: (B, T_a, D_a) speech features at 50 Hz, any float dtype (cast to ``dtype``,
            the model's parameter dtype).
        emotion: (B,) int64 emotion indices; intensity: (B,) float32 levels 1–3.
        keeps: ``layout.keep_vectors(device)``.
    Returns:
        ``audio_features`` (nB, T_a, D_a) ``dtype``, ``emotion`` (nB,), ``intensity`` (nB,) and the
        keep vectors.
    """
    return {"audio_features": layout.tile(features.to(dtype)), "emotion": layout.tile(emotion),
            "intensity": layout.tile(intensity), **keeps}


def batched_denoiser(net: Callable[..., torch.Tensor], prediction_type: str, schedule: NoiseSchedule,
                     conditions: dict[str, torch.Tensor], *,
                     dtype: torch.dtype) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``batched(x_t (nB, T, C), t) -> x0 (nB, T, C)``: one denoiser forward over all branch rows.

    ``net`` is the ``Denoiser`` (or its ``torch.compile`` wrapper) with parameters in ``dtype``;
    x_t is cast to ``dtype`` for the network and the prediction back to x_t's dtype, so the
    sampler and CFG arithmetic stay in x_t's precision (float32). An ε-predicting model is
    converted with Ho et al. 2020 Eq. 4, x0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t (ᾱ_t a host constant).
    ``t`` is a Python int, so a captured CUDA graph holds it as a constant.
    """

    def batched(x_t: torch.Tensor, t: int) -> torch.Tensor:
        tt = torch.full((x_t.shape[0],), t, dtype=torch.int64, device=x_t.device)
        pred = net(x_t.to(dtype), tt, **conditions).to(x_t.dtype)
        if prediction_type == "epsilon":  # x0 = (x_t − √(1−ᾱ) ε) / √ᾱ (Eq. 4)
            a = float(schedule.alphas_cumprod[t])
            pred = (x_t - (1.0 - a) ** 0.5 * pred) / a**0.5
        return pred

    return batched


def _repeat(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.repeat(k, 1, 1)


def sample_tensors(model, schedule: NoiseSchedule, layout: BranchLayout, features: torch.Tensor,
                   noise: torch.Tensor, *, emotion: torch.Tensor, intensity: torch.Tensor,
                   audio_guidance_scale: Any, guidance_scale: Any, sampler: str, num_inference_steps: int,
                   keeps: dict[str, torch.Tensor] | None = None, step_noise: list[torch.Tensor] | None = None,
                   fine=None, au_guidance_scale: float = 1.0, net=None) -> torch.Tensor:
    """The whole sampling program on device tensors: K steps of ``sampler`` with batched CFG.

    Args:
        model: the ``Denoiser`` (its parameter dtype is the compute dtype).
        layout: row layout (``BranchLayout.for_options``; ``fine`` iff ``fine`` is given).
        features: (B, T_a, D_a) speech features; noise: (B, T, C) float32 x_T.
        emotion: (B,) int64; intensity: (B,) float32.
        audio_guidance_scale, guidance_scale: s_a, s_c as Python floats, or 0-d float32 tensors
            (static buffers of a CUDA graph: not baked into the graph).
        sampler: a key of ``cafetalk_rt.diffusion.samplers.SAMPLERS``; ``step_noise`` (K tensors (B, T, C))
            is required for "ddpm".
        keeps: ``layout.keep_vectors`` (made here when None).
        fine: optional AU condition ``(au (B, T, n_AU), au_mask (B, T))`` numpy arrays; needs
            Python-float scales (region anchoring, ``guidance.anchored_fine_denoiser``).
        net: callable used for the forward passes (e.g. ``torch.compile(model)``); default ``model``.
    Returns:
        (B, T, C) float32 x0 in blendshape units (``model.denormalize``), not clipped.
    """
    dev, b = noise.device, layout.batch_size
    dtype = next(model.parameters()).dtype
    keeps = layout.keep_vectors(dev) if keeps is None else keeps
    conds = branch_conditions(layout, features, emotion, intensity, keeps, dtype=dtype)
    if fine is not None:
        au, mask = (torch.from_numpy(np.asarray(a)).to(dev) for a in fine)  # (B, T, n_AU), (B, T)
        conds.update(au=layout.tile(au.float()), au_mask=layout.tile(mask))
    batched = batched_denoiser(model if net is None else net, model.config.prediction_type, schedule, conds,
                               dtype=dtype)
    x = noise
    if fine is None:
        denoise = guidance.guided_denoiser(batched, b, audio_guidance_scale, guidance_scale, repeat=_repeat,
                                           branches=layout.num_base)
    else:
        denoise = guidance.anchored_fine_denoiser(
            batched, b, audio_guidance_scale, guidance_scale, _repeat, torch.cat,
            au_guidance_scale=au_guidance_scale,
            au_mask=torch.from_numpy(region_channel_mask(*fine)).to(dev),  # (B, T, 52)
            anchor=torch.from_numpy(region_anchor(*fine)).to(dev), num_base=layout.num_base)  # (B, 1, 52)
        x = x.repeat(2, 1, 1)  # controlled and uncontrolled trajectories from the same x_T
        step_noise = None if step_noise is None else [z.repeat(2, 1, 1) for z in step_noise]
    timesteps = inference_timesteps(num_inference_steps, schedule.num_train_timesteps)
    if sampler == "ddpm":
        x0 = sample_ddpm(denoise, x, timesteps, schedule, noise=step_noise)
    else:
        x0 = SAMPLERS[sampler](denoise, x, timesteps, schedule)
    return model.denormalize(x0[:b])


@torch.inference_mode()
def sample_arrays(model, schedule: NoiseSchedule, features: np.ndarray, noise: np.ndarray, *, emotion: int,
                  intensity: int, options, step_noise: np.ndarray | None = None, fine=None, net=None) -> np.ndarray:
    """:func:`sample_tensors` with numpy in and out on the model's device (the eager path of both
    torch backends); arguments as :meth:`TorchBackend.sample`. Returns (B, T, C) float32."""
    dev = next(model.parameters()).device
    b = noise.shape[0]
    steps = None if step_noise is None else [torch.from_numpy(z).to(dev) for z in step_noise]
    x0 = sample_tensors(
        model, schedule, BranchLayout.for_options(b, options, fine=fine is not None),
        torch.from_numpy(features).to(dev), torch.from_numpy(noise).to(dev),
        emotion=torch.full((b,), emotion, dtype=torch.int64, device=dev),
        intensity=torch.full((b,), float(intensity), device=dev),
        audio_guidance_scale=options.audio_guidance_scale, guidance_scale=options.guidance_scale,
        sampler=options.sampler, num_inference_steps=options.num_inference_steps, step_noise=steps, fine=fine,
        au_guidance_scale=options.au_guidance_scale, net=net)
    return x0.float().cpu().numpy()


class TorchBackend:
    """Runs encoder + sampler in PyTorch (fp32, eager) on ``device``."""

    name = "torch"

    def __init__(self, model_path, *, device: str = "cpu"):
        from cafetalk_rt.nn.speech_encoder import build_speech_encoder

        self.device = torch.device(device)
        self.model = load_denoiser(model_path, device=device)
        self.config = self.model.config
        self.encoder = build_speech_encoder(self.config.speech_encoder).to(self.device)
        self.schedule = make_schedule(self.config.schedule, self.config.num_train_timesteps)

    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(L,) float32 16 kHz → (T_a, D_a) float32 speech features at 50 Hz."""
        from cafetalk_rt.nn.speech_encoder import encode_audio

        return np.asarray(encode_audio(self.encoder, audio), dtype=np.float32)

    def sample(self, features: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int,
               options, step_noise: np.ndarray | None = None, fine=None) -> np.ndarray:
        """Denoise ``noise`` (B, T, 52) given features (B, T_a, D_a); returns x0 in blendshape units
        (B, T, 52), not clipped. ``step_noise`` (K, B, T, 52) is required for DDPM. ``fine``:
        optional AU condition ``(au (B, T, n_AU) float32, au_mask (B, T) bool)`` at the model fps,
        guided with ``options.au_guidance_scale`` inside the mask, on the active AUs' face regions
        (Eq. 6 with ``au.region_channel_mask``), the other regions anchored to the uncontrolled
        trajectory (``guidance.anchored_fine_denoiser``); one batched call per step."""
        return sample_arrays(self.model, self.schedule, features, noise, emotion=emotion, intensity=intensity,
                             options=options, step_noise=step_noise, fine=fine)
