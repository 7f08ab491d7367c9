"""The hyper-parameters every denoiser training run shares (stage 1 and the stage-2 adapter),
declared once; each stage's config adds its own fields and overrides the defaults it needs."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One training run; saved as ``train_config.json`` in the run directory.

    Attributes:
        corpus, out: binarized corpus directory and run directory.
        steps, batch_size, lr, warmup_steps, weight_decay: AdamW with linear warm-up then cosine.
        min_crop_s, max_crop_s: random crop length of a training clip, seconds.
        cond_drop_prob: probability of dropping the audio / coarse condition (CFG training).
        velocity_weight: weight of the frame-to-frame velocity loss.
        ema_decay: decay of the weight EMA that is saved.
        val_every, ckpt_every, val_clips: validation / checkpoint period (steps) and size.
        seed, device ("auto", "cpu", "cuda"), threads (0 = torch's default).
    """

    corpus: str
    out: str
    steps: int = 6000
    batch_size: int = 32
    lr: float = 4e-4
    warmup_steps: int = 300
    weight_decay: float = 0.01
    min_crop_s: float = 0.4
    max_crop_s: float = 4.0
    cond_drop_prob: float = 0.2
    velocity_weight: float = 1.0
    ema_decay: float = 0.999
    val_every: int = 250
    ckpt_every: int = 500
    val_clips: int = 64
    seed: int = 0
    device: str = "auto"
    threads: int = 0
