"""PyTorch backend: the frozen speech encoder and the guided denoiser
(:class:`cafetalk_rt.nn.guided.GuidedDenoiser`: all CFG branches of a step as ONE batched forward).

:func:`sample_tensors` is the whole sampling program on tensors; the CUDA-graph backend
(:mod:`cafetalk_rt.backends.torch_cudagraph_backend`) runs the same function on static buffers.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cafetalk_rt.control.au import AUCondition
from cafetalk_rt.diffusion.guidance import BranchPlan
from cafetalk_rt.diffusion.samplers import SAMPLERS
from cafetalk_rt.diffusion.schedule import NoiseSchedule, inference_timesteps, make_schedule
from cafetalk_rt.nn.checkpoint import load_denoiser
from cafetalk_rt.nn.guided import GuidedDenoiser


def guided_denoiser(model, schedule: NoiseSchedule, plan: BranchPlan, *, net=None) -> GuidedDenoiser:
    """The :class:`GuidedDenoiser` of ``model`` on the model's device (build it outside any CUDA
    graph capture: it copies the schedule's ᾱ table to the device)."""
    return GuidedDenoiser(model, schedule, plan, net=net).to(next(model.parameters()).device)


def sample_tensors(guided: GuidedDenoiser, features: torch.Tensor, noise: torch.Tensor, *, emotion: torch.Tensor,
                   intensity: torch.Tensor, audio_guidance_scale: Any, guidance_scale: Any, sampler: str,
                   num_inference_steps: int, step_noise: list[torch.Tensor] | None = None,
                   fine: AUCondition | None = None, au_guidance_scale: Any = 1.0) -> torch.Tensor:
    """The whole sampling program on device tensors: K steps of ``sampler`` over ``guided``.

    Args:
        guided: the guided denoiser (its plan's ``fine`` iff ``fine`` is given).
        features: (B, T_a, D_a) speech features; noise: (B, T, C) float32 x_T.
        emotion: (B,) int64; intensity: (B,) float32.
        audio_guidance_scale, guidance_scale, au_guidance_scale: s_a, s_c, β as Python floats or
            0-d float32 tensors (static buffers of a CUDA graph: not baked into the graph).
        sampler: a key of ``cafetalk_rt.diffusion.samplers.SAMPLERS``; ``step_noise`` (K tensors
            (B, T, C)) is required for "ddpm".
        fine: the AU condition as tensors on the device, (B, T, n_AU) / (B, T).
    Returns:
        (B, T, C) float32 blendshapes in ARKit units, not clipped.
    """
    b = noise.shape[0]
    x = noise
    if fine is not None:  # controlled and uncontrolled trajectories from the same x_T (and step noise)
        x = x.repeat(2, 1, 1)
        step_noise = None if step_noise is None else [z.repeat(2, 1, 1) for z in step_noise]

    def denoise(x_t: torch.Tensor, t: int) -> torch.Tensor:
        timestep = torch.full((b,), t, dtype=torch.int64, device=x_t.device)
        return guided(x_t, timestep, features, emotion, intensity, guidance_scale, audio_guidance_scale,
                      au=fine, au_guidance_scale=au_guidance_scale)

    timesteps = inference_timesteps(num_inference_steps, guided.schedule.num_train_timesteps)
    x0 = SAMPLERS[sampler](denoise, x, timesteps, guided.schedule, noise=step_noise)
    return guided.blendshapes(x0[:b])


@torch.inference_mode()
def sample_arrays(model, schedule: NoiseSchedule, features: np.ndarray, noise: np.ndarray, *, emotion: int,
                  intensity: int, options, step_noise: np.ndarray | None = None, fine: AUCondition | None = None,
                  net=None) -> np.ndarray:
    """:func:`sample_tensors` with numpy in and out on the model's device (the eager path of both
    torch backends); arguments as :meth:`TorchBackend.sample`. Returns (B, T, C) float32."""
    dev = next(model.parameters()).device
    b = noise.shape[0]
    guided = guided_denoiser(model, schedule, BranchPlan.for_options(options, fine=fine is not None), net=net)
    steps = None if step_noise is None else [torch.from_numpy(z).to(dev) for z in step_noise]
    if fine is not None:
        fine = AUCondition(torch.from_numpy(np.asarray(fine.au, np.float32)).to(dev),
                           torch.from_numpy(np.asarray(fine.au_mask, bool)).to(dev))
    x0 = sample_tensors(
        guided, torch.from_numpy(features).to(dev), torch.from_numpy(noise).to(dev),
        emotion=torch.full((b,), emotion, dtype=torch.int64, device=dev),
        intensity=torch.full((b,), float(intensity), device=dev),
        audio_guidance_scale=options.audio_guidance_scale, guidance_scale=options.guidance_scale,
        sampler=options.sampler, num_inference_steps=options.num_inference_steps, step_noise=steps, fine=fine,
        au_guidance_scale=options.au_guidance_scale)
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
        self._streaming: dict = {}

    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(L,) float32 16 kHz → (T_a, D_a) float32 speech features at 50 Hz."""
        from cafetalk_rt.nn.speech_encoder import encode_audio

        return np.asarray(encode_audio(self.encoder, audio), dtype=np.float32)

    def sample(self, features: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int,
               options, step_noise: np.ndarray | None = None, fine=None) -> np.ndarray:
        """Denoise ``noise`` (B, T, 52) given features (B, T_a, D_a); returns blendshapes (B, T, 52)
        float32 in ARKit units, not clipped. ``step_noise`` (K, B, T, 52) is required for DDPM. ``fine``:
        optional :class:`~cafetalk_rt.control.au.AUCondition` (B, T, n_AU) / (B, T) at the model fps,
        guided with ``options.au_guidance_scale`` inside the mask, on the active AUs' face regions
        (Eq. 6 with ``au.region_channel_mask``), the other regions anchored to the uncontrolled
        trajectory (``guidance.anchored_fine_denoiser``); one batched call per step (``nn.guided``)."""
        return sample_arrays(self.model, self.schedule, features, noise, emotion=emotion, intensity=intensity,
                             options=options, step_noise=step_noise, fine=fine)

    def streaming_step(self, layout):
        """The live-streaming hop for ``layout`` (:class:`~cafetalk_rt.nn.streaming.StreamingStep`,
        built once per layout): ``run(feeds) → outputs``, dicts of numpy arrays named as the
        ``streaming_step`` graph's inputs and outputs (``backends.streaming_contract.graph_io``)."""
        from cafetalk_rt.backends.streaming_contract import graph_io
        from cafetalk_rt.nn.streaming import StreamingStep

        if layout not in self._streaming:
            self._streaming[layout] = StreamingStep(self.encoder.eval(), self.model, self.schedule, layout).to(self.device)
        module, dev = self._streaming[layout], self.device
        inputs, outputs = graph_io(layout)

        @torch.inference_mode()
        def run(feeds: dict) -> dict:
            args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name], t.dtype)).to(dev) for t in inputs]
            return {t.name: y.float().cpu().numpy() for t, y in zip(outputs, module(*args))}

        return run
