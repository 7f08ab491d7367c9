"""The stage-2 fine-grained control adapter (Cafe-Talk §3.3, ControlNet-like; paper.md
"Fine-grained control").

The AU condition (B, T, n_AU) in [0, 1] plus its mask (B, T) becomes one token per frame: a
linear embedding of the intensities plus a learned "controlled" embedding where the mask is set,
and a learned null token elsewhere. Before each frozen stage-1 DiT block ``l`` the adapter adds

    h ← h + s · fine_keep · Conv1d_l^0( FiLM_c( Attn_l(LN(h), tokens) ) )

* ``Attn_l``: multi-head cross-attention from the block's hidden frames to the AU tokens with the
  denoiser's ALiBi distance bias, so a frame mostly reads the AU condition around its own time;
* ``FiLM_c``: scale and shift from the stage-1 conditioning vector c (timestep + coarse
  embedding), so the injection can depend on the noise level and on the emotion;
* ``Conv1d^0``: a zero-initialised temporal convolution (kernel 3), so at initialisation the
  residual is exactly 0 and the model equals stage 1 bit for bit (ControlNet's zero convolution);
* ``s``: ``residual_scale``, ramped 0 → 1 during stage-2 training ("the adapter is added
  gradually"; the ramp length is ours, ``Stage2Config.adapter_ramp_steps``); 1.0 at inference;
* ``fine_keep`` (B,): 0 removes the adapter from a row exactly: the "no fine condition" CFG
  branch is the stage-1 model itself (our choice; the paper does not say how F is nulled).

Sizes are ours: one adapter block per DiT block at the DiT width (the paper's adapter has
5.39 M parameters next to a 25 M DiT; ours is about a third of the ``small`` DiT).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cafetalk_rt.control.au import NUM_AUS


@dataclass(frozen=True)
class AdapterConfig:
    """Adapter dimensions (stored in the checkpoint metadata as ``adapter_config``).

    Attributes:
        num_aus: n_AU, the length of ``cafetalk_rt.control.au.AU_NAMES`` the adapter was trained on.
        heads: attention heads of each adapter block (the DiT width must divide by it).
        kernel_size: temporal kernel of the zero-initialised output convolution (odd).
    """

    num_aus: int = NUM_AUS
    heads: int = 4
    kernel_size: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class AdapterBlock(nn.Module):
    """One injection: attention to the AU tokens, FiLM by c, zero-initialised Conv1d."""

    def __init__(self, dim: int, heads: int, kernel_size: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(approximate="tanh"))
        self.out = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.film[1].weight)
        nn.init.zeros_(self.film[1].bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor, c: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """h (B, T, D) hidden frames, tokens (B, T, D), c (B, D), bias (H, T, T) → (B, T, D)."""
        b, t, d = h.shape
        q = self.q(self.norm(h)).reshape(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, Dh)
        k, v = self.kv(tokens).reshape(b, t, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 2×(B, H, T, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # (B, H, T, Dh)
        y = self.attn_out(y.transpose(1, 2).reshape(b, t, d))  # (B, T, D)
        shift, scale = self.film(c).chunk(2, dim=-1)  # 2×(B, D)
        y = self.mlp(y * (1 + scale[:, None]) + shift[:, None])
        return self.out(y.transpose(1, 2)).transpose(1, 2)  # (B, T, D)


class FineAdapter(nn.Module):
    """AU condition → per-block residuals for a frozen stage-1 :class:`Denoiser` (module doc).

    ``residual_scale`` (float, default 1.0) is the training ramp ``s``; it is not saved.
    """

    def __init__(self, config: AdapterConfig, width: int, depth: int, heads_bias: int):
        super().__init__()
        if width % config.heads:
            raise ValueError(f"DiT width {width} must be divisible by adapter heads {config.heads}")
        if config.heads != heads_bias:
            raise ValueError(f"adapter heads ({config.heads}) must equal the DiT heads ({heads_bias}): "
                             "they share its ALiBi bias")
        self.config = config
        self.residual_scale = 1.0
        self.au_in = nn.Linear(config.num_aus, width)
        self.controlled = nn.Parameter(torch.zeros(width))
        self.null_token = nn.Parameter(torch.zeros(width))
        nn.init.normal_(self.controlled, std=0.02)
        nn.init.normal_(self.null_token, std=0.02)
        self.blocks = nn.ModuleList(AdapterBlock(width, config.heads, config.kernel_size) for _ in range(depth))

    def tokens(self, au: torch.Tensor, au_mask: torch.Tensor) -> torch.Tensor:
        """au (B, T, n_AU) float in [0, 1], au_mask (B, T) bool/float → tokens (B, T, D)."""
        if au.shape[-1] != self.config.num_aus:
            raise ValueError(f"au has {au.shape[-1]} AU channels, the adapter expects {self.config.num_aus}")
        m = au_mask.to(au.dtype)[..., None]  # (B, T, 1)
        on = self.au_in(au) + self.controlled.to(au.dtype)  # (B, T, D)
        return m * on + (1 - m) * self.null_token.to(au.dtype)

    def residual(self, i: int, h, tokens, c, bias, fine_keep) -> torch.Tensor:
        """Residual (B, T, D) added to the input of DiT block ``i``."""
        keep = fine_keep.to(h.dtype)[:, None, None] * self.residual_scale  # (B, 1, 1)
        return keep * self.blocks[i](h, tokens, c, bias)
