"""Low-rank adaptation of the Whisper encoder to a live stream's short right context.

A live stream (:mod:`cafetalk_rt.nn.streaming`) encodes only the last ``E + H + L`` frames of
audio, and the features it keeps are the ones at that window's right edge, where the encoder hears
just L frames (0.04–0.32 s) of future. The denoiser was trained on whole-clip features; at the
right edge the frozen encoder's features differ from those (measured: with whole-clip features
the live hop is within 1 % of offline jawOpen correlation, with its own features 5 % below,
``benchmarks/live_features.py``).

:class:`StreamingEncoderAdapter` adds a rank-r update ``ΔW = B·A`` (LoRA, Hu et al. 2022) to every
linear layer of the encoder's transformer (q, k, v, out, fc1, fc2 of each layer); B starts at
zero, so an untrained adapter leaves the encoder unchanged. ``python -m train fit-stream-encoder``
distils it: the adapted encoder on a stream's window is trained to give the frozen encoder's
whole-clip features at the window's fresh frames. Only the streaming hop uses it; offline
features stay the frozen encoder's. It is stored in the denoiser checkpoint
(``streaming_encoder.*`` tensors and the ``streaming_encoder_config`` metadata), so one model
file serves offline and streaming alike. Rank 16 is 0.44 M parameters (0.9 MB in fp16).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

#: The adapted linear layers of each Whisper encoder layer (``transformers`` names).
TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


@dataclass(frozen=True)
class StreamingEncoderConfig:
    """Adapter shape: ``rank`` of every update, ``alpha`` its scale (update = alpha / rank · B·A),
    and the encoder it fits (``num_layers``, ``d_model``, ``ffn_dim``; Whisper tiny.en: 4, 384, 1536)."""

    rank: int = 16
    alpha: float = 16.0
    num_layers: int = 4
    d_model: int = 384
    ffn_dim: int = 1536

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StreamingEncoderConfig":
        return cls(**d)

    def shape(self, name: str) -> tuple[int, int]:
        """(in_features, out_features) of the adapted layer ``name``."""
        d, f = self.d_model, self.ffn_dim
        return {"fc1": (d, f), "fc2": (f, d)}.get(name, (d, d))


class LowRankUpdate(nn.Module):
    """``x (…, in) → x · Aᵀ · Bᵀ · alpha / rank (…, out)``; A (rank, in) random, B (out, rank) zero."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__()
        self.down = nn.Parameter(torch.randn(rank, in_features) / in_features ** 0.5)
        self.up = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.down.t()) @ (self.up.t() * self.scale)


class StreamingEncoderAdapter(nn.Module):
    """The low-rank updates of one Whisper encoder; ``delta(layer, name, x)`` is the update of
    layer ``layer``'s ``name`` (one of :data:`TARGETS`) for its input x (B, T_a, in), and
    :class:`~cafetalk_rt.nn.speech_encoder.WhisperSpeechEncoder` adds it when given the adapter."""

    def __init__(self, config: StreamingEncoderConfig):
        super().__init__()
        self.config = config
        self.updates = nn.ModuleDict({f"{i}_{n}": LowRankUpdate(*config.shape(n), config.rank, config.alpha)
                                      for i in range(config.num_layers) for n in TARGETS})

    def delta(self, layer: int, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.updates[f"{layer}_{name}"](x)
