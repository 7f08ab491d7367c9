"""The live-streaming hop as one torch module: exported as the ``streaming_step`` graph and run by
the torch backend (contract: :mod:`cafetalk_rt.backends.streaming_contract`).

One hop (paper §3 model, our streaming scheme):

1. **speech encoder** over the last ``E + H + L`` frames of audio (the kept ``state_audio`` plus
   the new chunk); the features of the H new and the L look-ahead frames are fresh, those of
   the P past frames come from ``state_features`` (computed once, when those frames were new);
2. **K DDIM steps** (Song et al. 2021 Eq. 12, σ = 0) over the window of P + H + L frames with
   emotion CFG (paper Eq. 6 with s_a = 1: the full and audio-only branches in one batched call)
   and **x0 inpainting**: at every step the x0 of the P past frames is replaced by their emitted
   values, so the new frames continue them;
3. **join**: the new frames are shifted by the model's own miss on the last emitted frame, fading
   as exp(−k / (join_s · fps));
4. the next state: the audio shifted by H · 640 samples, the new frames' features and values
   appended to the kept ones.

``start = 1`` replaces a row's state by the silence state first (zero audio, the features a
silent stream would have kept, the neutral face), so callers pass zeros on a stream's first call.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from cafetalk_rt.frames import SAMPLE_RATE
from cafetalk_rt.diffusion.guidance import BranchPlan
from cafetalk_rt.diffusion.samplers import sample_ddim
from cafetalk_rt.diffusion.schedule import NoiseSchedule, inference_timesteps
from cafetalk_rt.nn.guided import GuidedDenoiser
from cafetalk_rt.nn.log_mel import LogMelSpectrogram


class StreamingStep(nn.Module):
    """``forward(audio_chunk, state_audio, state_features, state_frames, start, noise, emotion,
    intensity, condition_mix, guidance_scale) → (frames, next_state_audio, next_state_features,
    next_state_frames)``, shapes and meaning as in
    :func:`cafetalk_rt.backends.streaming_contract.graph_io` (B rows = B independent streams).

    Args:
        speech_encoder: the ``WhisperSpeechEncoder`` (mel → (B, T_a, 384)).
        model: the stage-1 ``Denoiser`` (x0 prediction).
        schedule: its noise schedule.
        layout: the fixed timing (``cafetalk_rt.backends.streaming_contract.StreamingLayout``; not
            imported here, so ``nn`` does not depend on ``backends``).
        dtype: the networks' compute dtype (the sampler, inpainting and join stay float32).
    """

    def __init__(self, speech_encoder: nn.Module, model: nn.Module, schedule: NoiseSchedule,
                 layout, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.layout, self.schedule = layout, schedule
        self.samples_per_frame = SAMPLE_RATE // layout.fps  # 640
        self.mel = LogMelSpectrogram()
        self.encoder = speech_encoder.to(dtype)
        self.guided = GuidedDenoiser(model.to(dtype), schedule, BranchPlan(2))
        self.enc_dtype = dtype
        if getattr(model, "streaming_encoder", None) is not None and not hasattr(speech_encoder, "encoder"):
            raise ValueError("this model's streaming encoder adapter fits the Whisper encoder; build the "
                             "streaming hop with build_speech_encoder('whisper-tiny.en')")
        self.timesteps = [int(t) for t in inference_timesteps(layout.num_inference_steps, schedule.num_train_timesteps)]
        h, p = layout.hop_frames, layout.past_frames
        decay = [math.exp(-k / max(1e-6, layout.join_s * layout.fps)) for k in range(h)]
        self.register_buffer("join_decay", torch.tensor(decay, dtype=torch.float32)[None, :, None])  # (1, H, 1)
        with torch.no_grad():  # what a long silent stream keeps: the new frames' features of silence
            silent = self._encode(torch.zeros(1, (layout.encoder_context_frames + h + layout.lookahead_frames)
                                              * self.samples_per_frame))[0, 2 * layout.encoder_context_frames:][: 2 * h]
        reps = -(-p // h)
        self.register_buffer("silence_features", silent.repeat(reps, 1)[-2 * p:].clone())  # (2P, 384)

    def _encode(self, audio: torch.Tensor) -> torch.Tensor:
        adapter = self.guided.model.streaming_encoder  # fitted to short right context, or None
        return self.encoder(self.mel(audio).to(self.enc_dtype), None, adapter).float()

    def forward(self, audio_chunk, state_audio, state_features, state_frames, start, noise, emotion, intensity,
                condition_mix, guidance_scale):
        lay = self.layout
        h, p, e = lay.hop_frames, lay.past_frames, lay.encoder_context_frames
        model = self.guided.model
        keep = (1.0 - start)[:, None]  # (B, 1)
        state_audio = state_audio * keep
        state_features = state_features * keep[:, :, None] + self.silence_features[None] * (1.0 - keep)[:, :, None]
        state_frames = state_frames * keep[:, :, None]
        audio = torch.cat([state_audio, audio_chunk], dim=1)  # (B, (E + H + L)·640)
        fresh = self._encode(audio)[:, 2 * e:]  # (B, 2(H + L), 384)
        features = torch.cat([state_features, fresh], dim=1)  # (B, 2T, 384)
        known = model.normalize(state_frames)  # (B, P, 52)
        w = condition_mix[:, None]
        coarse = (1.0 - w) * model.emotion_embedding(emotion[:, 0], intensity[:, 0]) \
            + w * model.emotion_embedding(emotion[:, 1], intensity[:, 1])  # (B, D)
        b = noise.shape[0]
        raw_last = []

        def denoise(x, t):
            timestep = torch.full((b,), t, dtype=torch.int64, device=x.device)
            x0 = self.guided(x, timestep, features, emotion[:, 1], intensity[:, 1], guidance_scale, 1.0, coarse=coarse)
            raw_last[:] = [x0[:, p - 1 : p]]
            return torch.cat([known, x0[:, p:]], dim=1)  # inpainting in x0

        x0 = sample_ddim(denoise, noise, self.timesteps, self.schedule)
        new = x0[:, p : p + h] + (known[:, p - 1 : p] - raw_last[0]) * self.join_decay  # (B, H, 52)
        frames = torch.clamp(model.denormalize(new), 0.0, 1.0)
        return (frames, audio[:, h * self.samples_per_frame:], torch.cat([state_features[:, 2 * h:], fresh[:, : 2 * h]], dim=1),
                torch.cat([state_frames[:, h:], frames], dim=1))
