"""PyTorch backend: the frozen speech encoder and the denoiser, with all CFG branches of a
denoising step evaluated as ONE batched forward (nB rows, see :mod:`cafetalk_rt.guidance`)."""
from __future__ import annotations

import numpy as np
import torch

from cafetalk_rt import guidance
from cafetalk_rt.au import region_channel_mask
from cafetalk_rt.nn.checkpoint import load_denoiser
from cafetalk_rt.samplers import SAMPLERS, sample_ddpm
from cafetalk_rt.schedule import inference_timesteps, make_schedule


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

    @torch.inference_mode()
    def sample(self, features: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int,
               options, step_noise: np.ndarray | None = None, fine=None) -> np.ndarray:
        """Denoise ``noise`` (B, T, 52) given features (B, T_a, D_a); returns x0 in blendshape units
        (B, T, 52), not clipped. ``step_noise`` (K, B, T, 52) is required for DDPM. ``fine``:
        optional AU condition ``(au (B, T, n_AU) float32, au_mask (B, T) bool)`` at the model fps,
        guided with ``options.au_guidance_scale`` inside the mask, on the active AUs' face regions
        (Eq. 6 with ``au.region_channel_mask``; one batched call)."""
        dev = self.device
        b = noise.shape[0]
        n_base = guidance.num_branches(options.audio_guidance_scale, options.guidance_scale)
        n = guidance.num_branches(options.audio_guidance_scale, options.guidance_scale, fine=fine is not None)
        feats = torch.from_numpy(features).to(dev).repeat(n, 1, 1)  # (nB, T_a, D_a)
        audio_keep = torch.tensor([1.0, 1.0, 0.0][:n_base] + [1.0] * (n - n_base), device=dev).repeat_interleave(b)
        coarse_keep = torch.tensor([1.0, 0.0, 0.0][:n_base] + [1.0] * (n - n_base), device=dev).repeat_interleave(b)
        emo = torch.full((n * b,), emotion, dtype=torch.int64, device=dev)
        inten = torch.full((n * b,), float(intensity), device=dev)
        fine_kw, au_mask = {}, None
        if fine is not None:
            au, mask = (torch.from_numpy(np.asarray(a)).to(dev) for a in fine)  # (B, T, n_AU), (B, T)
            fine_keep = torch.tensor([0.0] * n_base + [1.0], device=dev).repeat_interleave(b)  # (nB,)
            fine_kw = {"au": au.float().repeat(n, 1, 1), "au_mask": mask.repeat(n, 1), "fine_keep": fine_keep}
            au_mask = torch.from_numpy(region_channel_mask(*fine)).to(dev)  # (B, T, 52)

        def batched(x_t, t):
            tt = torch.full((x_t.shape[0],), t, dtype=torch.int64, device=dev)
            pred = self.model(x_t, tt, feats, emo, inten, audio_keep, coarse_keep, **fine_kw)
            if self.config.prediction_type == "epsilon":  # x0 = (x_t − √(1−ᾱ) ε) / √ᾱ (Eq. 4)
                a = float(self.schedule.alphas_cumprod[t])
                pred = (x_t - (1.0 - a) ** 0.5 * pred) / a**0.5
            return pred

        denoise = guidance.guided_denoiser(batched, b, options.audio_guidance_scale, options.guidance_scale,
                                           repeat=lambda x, k: x.repeat(k, 1, 1),
                                           au_guidance_scale=options.au_guidance_scale,
                                           au_mask=au_mask)
        timesteps = inference_timesteps(options.num_inference_steps, self.schedule.num_train_timesteps)
        x = torch.from_numpy(noise).to(dev)
        if options.sampler == "ddpm":
            steps = [torch.from_numpy(z).to(dev) for z in step_noise]
            x0 = sample_ddpm(denoise, x, timesteps, self.schedule, noise=steps)
        else:
            x0 = SAMPLERS[options.sampler](denoise, x, timesteps, self.schedule)
        return self.model.denormalize(x0).float().cpu().numpy()
