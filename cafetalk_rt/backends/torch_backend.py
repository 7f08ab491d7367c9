"""PyTorch backend: the frozen speech encoder and the denoiser, with all CFG branches of a
denoising step evaluated as ONE batched forward (nB rows, see :mod:`cafetalk_rt.guidance`)."""
from __future__ import annotations

import numpy as np
import torch

from cafetalk_rt import guidance
from cafetalk_rt.au import region_anchor, region_channel_mask
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
        (Eq. 6 with ``au.region_channel_mask``), the other regions anchored to the uncontrolled
        trajectory (``guidance.anchored_fine_denoiser``); one batched call per step."""
        dev = self.device
        b = noise.shape[0]
        n_base = guidance.num_branches(options.audio_guidance_scale, options.guidance_scale)
        # Row layout: BRANCHES; with AU spans BRANCHES + FINE at the controlled x_t, then BRANCHES
        # at the uncontrolled x_t (region anchoring, guidance.anchored_fine_denoiser).
        keeps = [(1.0, 1.0), (1.0, 0.0), (0.0, 0.0)][:n_base]  # (audio, coarse) per branch
        rows = keeps + [(1.0, 1.0)] + keeps if fine is not None else keeps
        n = len(rows)
        feats = torch.from_numpy(features).to(dev).repeat(n, 1, 1)  # (nB, T_a, D_a)
        audio_keep = torch.tensor([a for a, _ in rows], device=dev).repeat_interleave(b)
        coarse_keep = torch.tensor([c for _, c in rows], device=dev).repeat_interleave(b)
        emo = torch.full((n * b,), emotion, dtype=torch.int64, device=dev)
        inten = torch.full((n * b,), float(intensity), device=dev)
        fine_kw = {}

        def batched(x_t, t):
            tt = torch.full((x_t.shape[0],), t, dtype=torch.int64, device=dev)
            pred = self.model(x_t, tt, feats, emo, inten, audio_keep, coarse_keep, **fine_kw)
            if self.config.prediction_type == "epsilon":  # x0 = (x_t − √(1−ᾱ) ε) / √ᾱ (Eq. 4)
                a = float(self.schedule.alphas_cumprod[t])
                pred = (x_t - (1.0 - a) ** 0.5 * pred) / a**0.5
            return pred

        repeat = lambda x, k: x.repeat(k, 1, 1)  # noqa: E731
        x = torch.from_numpy(noise).to(dev)
        steps = None if step_noise is None else [torch.from_numpy(z).to(dev) for z in step_noise]
        if fine is None:
            denoise = guidance.guided_denoiser(batched, b, options.audio_guidance_scale, options.guidance_scale,
                                               repeat=repeat)
        else:
            au, mask = (torch.from_numpy(np.asarray(a)).to(dev) for a in fine)  # (B, T, n_AU), (B, T)
            fine_keep = torch.tensor([0.0] * n_base + [1.0] + [0.0] * n_base, device=dev).repeat_interleave(b)
            fine_kw.update(au=au.float().repeat(n, 1, 1), au_mask=mask.repeat(n, 1), fine_keep=fine_keep)
            denoise = guidance.anchored_fine_denoiser(
                batched, b, options.audio_guidance_scale, options.guidance_scale, repeat, torch.cat,
                au_guidance_scale=options.au_guidance_scale,
                au_mask=torch.from_numpy(region_channel_mask(*fine)).to(dev),  # (B, T, 52)
                anchor=torch.from_numpy(region_anchor(*fine)).to(dev))  # (B, 1, 52)
            x = x.repeat(2, 1, 1)  # controlled and uncontrolled trajectories from the same x_T
            steps = None if steps is None else [z.repeat(2, 1, 1) for z in steps]
        timesteps = inference_timesteps(options.num_inference_steps, self.schedule.num_train_timesteps)
        if options.sampler == "ddpm":
            x0 = sample_ddpm(denoise, x, timesteps, self.schedule, noise=steps)
        else:
            x0 = SAMPLERS[options.sampler](denoise, x, timesteps, self.schedule)
        return self.model.denormalize(x0[:b]).float().cpu().numpy()
