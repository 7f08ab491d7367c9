"""The Cafe-Talk denoiser: a diffusion transformer over ARKit blendshape sequences (paper §3).

One file, DiT style. The model predicts x0 (or ε, per ``DenoiserConfig.prediction_type``) of a
normalised (B, T, 52) sequence from x_t, the timestep, speech features and coarse conditions.
It never sees the noise schedule.

* Audio: speech-encoder features (B, T_a, D_a) at 50 Hz, projected to D and injected by
  cross-attention with a near-diagonal alignment mask (FaceFormer): frame i attends only to
  feature frames within ``audio_window_s`` of its own centre time. Dropped audio (CFG) is a
  learned null feature vector at every feature frame.
* Coarse conditions (emotion label, intensity 1–3) and the timestep enter through AdaLN-Zero
  (DiT, Peebles & Xie 2023). Intensity is a learned per-emotion embedding scaled by the level
  (paper: "learned embedding scaled by the numeric level"). Dropped coarse conditions use one
  learned null embedding.
* Fine-grained AU control (stage 2) is an optional adapter (``cafetalk_rt.nn.adapter``) that
  adds zero-initialised residuals before each block; without ``au`` it is not run at all.
* Self-attention over frames uses ALiBi-style symmetric distance biases (Press et al. 2022)
  instead of absolute positions, so clips of any length work (our choice).

Sizes are a small registry of named configs; the config is stored inside each checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.control.emotions import NUM_EMOTIONS
from cafetalk_rt.frames import FEATURE_RATE_HZ


@dataclass(frozen=True)
class DenoiserConfig:
    """Model dimensions and conditioning choices (stored in the checkpoint metadata).

    Attributes:
        depth, width, heads: transformer blocks, hidden size D, attention heads.
        audio_dim: D_a of the speech features (384 for Whisper tiny.en).
        audio_window_s: half-width in seconds of the audio alignment mask (our choice).
        fps: frame rate the model is trained at (the paper: 25).
        prediction_type: "x0" (paper) or "epsilon".
        num_train_timesteps, schedule: the noise schedule the model was trained with.
        speech_encoder: name of the speech encoder whose features the model expects.
    """

    depth: int = 4
    width: int = 256
    heads: int = 4
    mlp_ratio: float = 4.0
    audio_dim: int = 384
    audio_window_s: float = 0.1
    fps: int = 25
    num_channels: int = NUM_BLENDSHAPES
    num_emotions: int = NUM_EMOTIONS
    prediction_type: str = "x0"
    num_train_timesteps: int = 1000
    schedule: str = "linear"
    speech_encoder: str = "whisper-tiny.en"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DenoiserConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


#: Named sizes. "paper" is the published 8×512×8 (25 M params); "small" is the default we can
#: train on CPU and ship in the repo (≤ 30 MB).
CONFIGS: dict[str, DenoiserConfig] = {
    "paper": DenoiserConfig(depth=8, width=512, heads=8),
    "small": DenoiserConfig(depth=4, width=256, heads=4),
    "tiny": DenoiserConfig(depth=2, width=64, heads=2),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps t (B,) → (B, dim) float32 (DiT / ADM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def alibi_slopes(heads: int) -> torch.Tensor:
    """Per-head ALiBi slopes 2^(-8 i / H), i = 1..H (Press et al. 2022), shape (H,)."""
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: x (B, T, D) · (1 + scale) + shift, with shift/scale (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention through ``scaled_dot_product_attention`` with an additive bias."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), context (B, S, D), bias (H or 1, T, S) → (B, T, D)."""
        b, t, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, t, h, d // h).transpose(1, 2)  # (B, H, T, Dh)
        k, v = self.kv(context).reshape(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2×(B, H, S, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # (B, H, T, Dh)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """DiT block with adaLN-Zero: self-attention, audio cross-attention, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross_attn = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x, c, audio, self_bias, cross_bias):
        """x (B, T, D), c (B, D), audio (B, T_a, D), biases (H|1, T, T) and (1, T, T_a)."""
        s1, sc1, g1, s2, sc2, g2, s3, sc3, g3 = self.ada(c).chunk(9, dim=-1)  # 9×(B, D)
        h = modulate(self.norm1(x), s1, sc1)
        x = x + g1[:, None] * self.self_attn(h, h, self_bias)
        x = x + g2[:, None] * self.cross_attn(modulate(self.norm2(x), s2, sc2), audio, cross_bias)
        return x + g3[:, None] * self.mlp(modulate(self.norm3(x), s3, sc3))


class Denoiser(nn.Module):
    """Diffusion transformer G(x_t, t, A, C) → x0 (paper §3.1).

    Buffers ``bs_mean``/``bs_std`` (52,) hold the data normalisation; the model itself works
    in normalised units (see :meth:`normalize`).
    """

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.width
        if d % cfg.heads:
            raise ValueError(f"width {d} must be divisible by heads {cfg.heads}")
        self.x_in = nn.Linear(cfg.num_channels, d)
        self.audio_in = nn.Sequential(nn.LayerNorm(cfg.audio_dim), nn.Linear(cfg.audio_dim, d))
        self.null_audio = nn.Parameter(torch.zeros(cfg.audio_dim))
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.emotion_emb = nn.Embedding(cfg.num_emotions, d)
        self.intensity_emb = nn.Embedding(cfg.num_emotions, d)
        self.null_coarse = nn.Parameter(torch.zeros(d))
        nn.init.normal_(self.emotion_emb.weight, std=0.02)
        nn.init.normal_(self.intensity_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.x_out = nn.Linear(d, cfg.num_channels)
        for m in (self.ada_out[1], self.x_out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.register_buffer("slopes", alibi_slopes(cfg.heads), persistent=False)
        self.register_buffer("bs_mean", torch.zeros(cfg.num_channels))
        self.register_buffer("bs_std", torch.ones(cfg.num_channels))
        #: Stage-2 fine-control adapter (cafetalk_rt.nn.adapter), None for stage-1 models.
        self.adapter = None
        #: The live stream's speech-encoder adapter (cafetalk_rt.nn.streaming_encoder), or None.
        self.streaming_encoder = None

    def attach_streaming_encoder(self, config) -> None:
        """Add an untrained :class:`~cafetalk_rt.nn.streaming_encoder.StreamingEncoderAdapter`
        (it leaves the encoder unchanged until ``python -m train fit-stream-encoder`` fits it);
        the denoiser's own outputs never depend on it."""
        from cafetalk_rt.nn.streaming_encoder import StreamingEncoderAdapter

        self.streaming_encoder = StreamingEncoderAdapter(config).to(self.bs_mean.device)

    def attach_adapter(self, adapter_config) -> None:
        """Add a zero-initialised :class:`~cafetalk_rt.nn.adapter.FineAdapter` (stage 2); the
        model's outputs are unchanged until it is trained."""
        from cafetalk_rt.nn.adapter import FineAdapter

        cfg = self.config
        self.adapter = FineAdapter(adapter_config, cfg.width, cfg.depth, cfg.heads).to(self.bs_mean.device)

    # -- data normalisation ------------------------------------------------------------------
    def normalize(self, blendshapes: torch.Tensor) -> torch.Tensor:
        """(…, 52) in [0, 1] → normalised model units."""
        return (blendshapes - self.bs_mean) / self.bs_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (…, 52) → blendshape units (not clipped)."""
        return x * self.bs_std + self.bs_mean

    # -- conditioning ------------------------------------------------------------------------
    def emotion_embedding(self, emotion, intensity):
        """emotion (B,) int64, intensity (B,) float (1–3) → (B, D): the label's embedding plus its
        learned intensity embedding scaled by the level (paper §3.2)."""
        return self.emotion_emb(emotion) + (intensity.float() / 3.0)[:, None] * self.intensity_emb(emotion)

    def coarse_embedding(self, emotion, intensity, coarse_keep, embedding=None):
        """emotion (B,) int64, intensity (B,) float (1–3), coarse_keep (B,) float → (B, D); an
        ``embedding`` (B, D) (e.g. a blend of two :meth:`emotion_embedding`) replaces the label's."""
        e = self.emotion_embedding(emotion, intensity) if embedding is None else embedding
        keep = coarse_keep.float()[:, None]
        return keep * e + (1.0 - keep) * self.null_coarse

    def biases(self, num_frames: int, num_audio: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """ALiBi self bias (H, T, T) and audio alignment mask bias (1, T, T_a) (0 or −inf)."""
        pos = torch.arange(num_frames, device=device, dtype=torch.float32)
        self_bias = -self.slopes[:, None, None] * (pos[None, :, None] - pos[None, None, :]).abs()
        t_frame = (pos + 0.5) / self.config.fps  # (T,) seconds
        t_audio = (torch.arange(num_audio, device=device, dtype=torch.float32) + 0.5) / FEATURE_RATE_HZ
        near = (t_frame[:, None] - t_audio[None, :]).abs() <= self.config.audio_window_s + 1e-6
        # a frame past the end of the features still sees the last feature frame
        nearest = (t_frame[:, None] - t_audio[None, :]).abs().argmin(dim=1, keepdim=True)
        near = near | (torch.arange(num_audio, device=device)[None, :] == nearest)
        cross_bias = torch.zeros(near.shape, device=device).masked_fill(~near, float("-inf"))
        return self_bias, cross_bias[None]

    def forward(self, x_t, t, audio_features, emotion, intensity, audio_keep, coarse_keep,
                au=None, au_mask=None, fine_keep=None, coarse=None):
        """Predict x0 (or ε) from a noisy sequence.

        Args:
            x_t: (B, T, 52) float, normalised noisy blendshapes at ``self.config.fps``.
            t: (B,) int64 or float timesteps in [0, num_train_timesteps).
            audio_features: (B, T_a, D_a) float speech features at 50 Hz.
            emotion: (B,) int64 index into ``cafetalk_rt.control.emotions.EMOTIONS``.
            intensity: (B,) float level 1–3.
            audio_keep, coarse_keep: (B,) float, 1 = condition given, 0 = dropped (null).
            au: optional fine condition (B, T, n_AU) float in [0, 1] (``cafetalk_rt.control.au.AU_NAMES``
                order); None (default) = the stage-1 model, bit for bit.
            au_mask: (B, T) bool/float, frames that carry an AU condition (required with ``au``).
            fine_keep: (B,) float, 0 = no fine condition for that row (exactly stage 1);
                default all ones.
            coarse: optional (B, D) coarse embedding used instead of ``emotion``/``intensity``'s
                (live streams blend two conditions with it during a transition).
        Returns:
            (B, T, 52) float prediction in normalised units.
        Raises:
            ValueError: ``au`` given to a model without an adapter, or without ``au_mask``.
        """
        b, n, _ = x_t.shape
        keep = audio_keep.to(audio_features.dtype)[:, None, None]
        audio = keep * audio_features + (1 - keep) * self.null_audio.to(audio_features.dtype)
        audio = self.audio_in(audio)  # (B, T_a, D)
        c = self.t_mlp(timestep_embedding(t, self.config.width).to(x_t.dtype))
        c = c + self.coarse_embedding(emotion, intensity, coarse_keep, coarse).to(x_t.dtype)  # (B, D)
        self_bias, cross_bias = self.biases(n, audio.shape[1], x_t.device)
        h = self.x_in(x_t)  # (B, T, D)
        fine = self._fine_tokens(au, au_mask, fine_keep, b, x_t.dtype)
        for i, block in enumerate(self.blocks):
            if fine is not None:
                h = h + self.adapter.residual(i, h, fine[0], c, self_bias, fine[1])  # (B, T, D)
            h = block(h, c, audio, self_bias, cross_bias)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        return self.x_out(modulate(self.norm_out(h), shift, scale))  # (B, T, 52)

    def _fine_tokens(self, au, au_mask, fine_keep, batch_size: int, dtype):
        """(tokens (B, T, D), fine_keep (B,)) for the adapter, or None without an AU condition."""
        if au is None:
            return None
        if self.adapter is None:
            raise ValueError("this checkpoint has no fine-control adapter (stage 2); AU control needs one")
        if au_mask is None:
            raise ValueError("au_mask (B, T) is required with au")
        if fine_keep is None:
            fine_keep = torch.ones(batch_size, device=au.device)
        return self.adapter.tokens(au.to(dtype), au_mask), fine_keep
