"""Stage-2 training (Cafe-Talk §3.3–3.4): the fine-control adapter on a frozen stage-1 model.

Per batch (crops from :class:`train.dataset.CropSampler`):

1. random AU events are added to the curves and Algorithm 1 derives AU segments from them
   (``train.binarize``; the events are our deviation for a corpus with few AUs);
2. condition dropout: 80 % of the entries that do not come from an added event, 10 % of those
   that do, and with probability 0.3 one whole AU (``train.binarize.drop_entries``);
3. swap-label training: with ``swap_prob`` a row's coarse label (emotion, intensity) is replaced
   by a different one while the AU condition and the target motion stay, and the loss covers
   only its AU-active frames; other rows get the plain loss over all frames;
4. the x0 loss (plus the stage-1 velocity term) on the frozen model + adapter, whose residuals
   are scaled by a ramp 0 → 1 over ``adapter_ramp_steps`` (paper: the adapter is added
   gradually).

Only adapter parameters train; EMA, checkpoints (``ema.safetensors`` = stage 1 + EMA adapter),
resume state and the lr schedule reuse ``train.loop``. Audio and coarse conditions are always
given (``cond_drop_prob`` 0 by default): at sampling time the adapter runs only in the
G_{A,C,F} branch of Eq. 6. ``init_adapter`` warm-starts the adapter from another stage-2
checkpoint (same base) with a fresh schedule. Single process (no DDP: the adapter trains in minutes on CPU).
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cafetalk_rt.control.emotions import NUM_EMOTIONS
from cafetalk_rt.nn.adapter import AdapterConfig
from cafetalk_rt.nn.checkpoint import load_denoiser, read_metadata, save_denoiser
from cafetalk_rt.diffusion.schedule import make_schedule
from train.binarize import add_random_events, binarize, drop_entries, segments_to_condition
from train.dataset import CropSampler, load_split
from train.diffusion import q_sample
from train.loop import _device, _drop_masks, _lr_at, _save_state, optimizer_step, record_history
from train.config import RunConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Stage2Config(RunConfig):
    """A stage-2 run (:class:`~train.config.RunConfig` with the stage's own defaults); ``base`` is
    the stage-1 checkpoint (frozen). Defaults are ours unless the module doc cites the paper."""

    base: str
    steps: int = 2000
    lr: float = 3e-4
    warmup_steps: int = 100
    min_crop_s: float = 2.0
    adapter_ramp_steps: int = 200
    swap_prob: float = 0.5
    entry_drop_prob: float = 0.8
    event_drop_prob: float = 0.1
    single_au_drop_prob: float = 0.3
    cond_drop_prob: float = 0.0
    ema_decay: float = 0.998
    val_every: int = 100
    ckpt_every: int = 250
    val_clips: int = 32
    init_adapter: str = ""


def fine_condition(blendshapes: np.ndarray, fps: float, rng: np.random.Generator, cfg: Stage2Config):
    """Steps 1–2 for a batch: curves (B, T, 52) → (augmented curves (B, T, 52), au (B, T, n_AU),
    mask (B, T) bool), all numpy float32/bool."""
    curves, aus, masks = [], [], []
    for x in blendshapes:
        aug, events = add_random_events(x, fps, rng)
        segs = drop_entries(binarize(aug, fps, rng), events, rng, entry_drop_prob=cfg.entry_drop_prob,
                            event_drop_prob=cfg.event_drop_prob, single_au_drop_prob=cfg.single_au_drop_prob)
        au, mask = segments_to_condition(segs, x.shape[0])
        curves.append(aug), aus.append(au), masks.append(mask)
    return np.stack(curves), np.stack(aus), np.stack(masks)


def swap_labels(emotion: torch.Tensor, intensity: torch.Tensor, mask: torch.Tensor, prob: float,
                gen: torch.Generator):
    """Step 3: (emotion, intensity, frame weights (B, T)). Rows with AU frames are swapped with
    ``prob`` to a different emotion and a random level 1–3 and weighted by their mask."""
    b = emotion.shape[0]
    swap = (torch.rand(b, generator=gen) < prob) & mask.any(dim=1)
    other = (emotion + torch.randint(1, NUM_EMOTIONS, (b,), generator=gen)) % NUM_EMOTIONS
    level = torch.randint(1, 4, (b,), generator=gen).float()
    weights = torch.where(swap[:, None], mask.float(), torch.ones_like(mask, dtype=torch.float32))
    return torch.where(swap, other, emotion), torch.where(swap, level, intensity), weights


def weighted_loss(pred, x0, weights, velocity_weight: float):
    """x0 MSE (Ho et al. 2020 simple loss) with per-frame weights (B, T), plus the velocity term."""
    w = weights[..., None]  # (B, T, 1)
    mse = ((pred - x0).pow(2) * w).sum() / (w.sum() * x0.shape[-1]).clamp_min(1.0)
    loss, parts = mse, {"mse": mse.detach()}
    if velocity_weight > 0 and x0.shape[1] > 1:
        wv = torch.minimum(w[:, 1:], w[:, :-1])
        d = (pred[:, 1:] - pred[:, :-1]) - (x0[:, 1:] - x0[:, :-1])
        vel = (d.pow(2) * wv).sum() / (wv.sum() * x0.shape[-1]).clamp_min(1.0)
        loss, parts["vel"] = loss + velocity_weight * vel, vel.detach()
    return loss, parts


def train_step(model, batch, schedule, cfg: Stage2Config, rng, gen, device, *, swap_prob: float | None = None):
    """One stage-2 loss on a CropSampler batch; returns (loss, parts)."""
    fps = model.config.fps
    curves, au, mask = fine_condition(batch["blendshapes"].numpy(), fps, rng, cfg)
    au, mask = torch.from_numpy(au), torch.from_numpy(mask)
    emotion, intensity, weights = swap_labels(batch["emotion"], batch["intensity"], mask,
                                              cfg.swap_prob if swap_prob is None else swap_prob, gen)
    x0 = model.normalize(torch.from_numpy(curves).to(device))  # (B, T, 52)
    b = x0.shape[0]
    t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    audio_keep, coarse_keep = _drop_masks(b, cfg.cond_drop_prob, gen)
    pred = model(q_sample(x0, t.to(device), noise, schedule), t.to(device), batch["audio_features"].to(device),
                 emotion.to(device), intensity.to(device), audio_keep.to(device), coarse_keep.to(device),
                 au=au.to(device), au_mask=mask.to(device))
    loss, parts = weighted_loss(pred, x0, weights.to(device), cfg.velocity_weight)
    parts["au_frames"] = mask.float().mean()
    return loss, parts


@torch.no_grad()
def control_validation(model, batches, schedule, cfg: Stage2Config, device) -> dict[str, float]:
    """MSE on AU frames of fixed held-out batches (fixed events, labels swapped, fixed t and noise),
    with the adapter (``val_au_mse``) and without it (``val_au_mse_stage1``)."""
    rng, gen = np.random.default_rng(99), torch.Generator().manual_seed(99)
    out = {"val_au_mse": [], "val_au_mse_stage1": []}
    for batch in batches:
        curves, au, mask = fine_condition(batch["blendshapes"].numpy(), model.config.fps, rng, cfg)
        au, mask = torch.from_numpy(au).to(device), torch.from_numpy(mask).to(device)
        emotion, intensity, weights = swap_labels(batch["emotion"], batch["intensity"], mask.cpu(), 1.0, gen)
        x0 = model.normalize(torch.from_numpy(curves).to(device))
        b, ones = x0.shape[0], torch.ones(x0.shape[0], device=device)
        for t_val in (100, 400, 700):
            t = torch.full((b,), t_val, dtype=torch.int64, device=device)
            x_t = q_sample(x0, t, torch.randn(x0.shape, generator=gen).to(device), schedule)
            args = (x_t, t, batch["audio_features"].to(device), emotion.to(device), intensity.to(device), ones, ones)
            w = mask.float()
            for key, fk in (("val_au_mse", ones), ("val_au_mse_stage1", 0 * ones)):
                pred = model(*args, au=au, au_mask=mask, fine_keep=fk)
                out[key].append(weighted_loss(pred, x0, w, 0.0)[1]["mse"].item())
    return {k: float(np.mean(v)) for k, v in out.items()}


def fit_adapter(cfg: Stage2Config, *, resume: bool = False) -> Path:
    """Train the adapter on top of the frozen ``cfg.base``; returns ``<out>/ema.safetensors``.

    Raises:
        FileExistsError: ``out`` already holds a run and ``resume`` is False.
    """
    device = _device(cfg, 0)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out, state_path = Path(cfg.out), Path(cfg.out) / "last.pt"
    if state_path.exists() and not resume:
        raise FileExistsError(f"{out} already holds a stage-2 run: pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    model = load_denoiser(cfg.base, device=str(device))  # frozen, eval
    model.attach_adapter(AdapterConfig(heads=model.config.heads))
    adapter = model.adapter.train().requires_grad_(True)
    if cfg.init_adapter:  # warm start (e.g. a longer run continuing an earlier one, new schedule)
        donor = load_denoiser(cfg.init_adapter, device=str(device)).adapter
        if donor is None:
            raise ValueError(f"--init-adapter {cfg.init_adapter} has no fine-control adapter")
        adapter.load_state_dict(donor.state_dict())
    ema = copy.deepcopy(adapter).requires_grad_(False)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, history = 0, []
    if resume and state_path.exists():
        st = torch.load(state_path, map_location=device, weights_only=False)
        adapter.load_state_dict(st["model"]), ema.load_state_dict(st["ema"]), opt.load_state_dict(st["opt"])
        step, history = st["step"], st["history"]
        log.info("resumed stage 2 from step %d", step)
    fps, enc = model.config.fps, model.config.speech_encoder
    sampler = CropSampler(load_split(cfg.corpus, "train", fps, enc), fps, int(cfg.min_crop_s * fps),
                          int(cfg.max_crop_s * fps), seed=cfg.seed * 1000 + step)
    val_clips = load_split(cfg.corpus, "val", fps, enc, limit=cfg.val_clips)
    val_batches = [CropSampler(val_clips, fps, int(cfg.max_crop_s * fps), int(cfg.max_crop_s * fps), seed=7).batch(16)
                   for _ in range(2)] if val_clips else []
    schedule = make_schedule(model.config.schedule, model.config.num_train_timesteps)
    rng = np.random.default_rng([cfg.seed, step])
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    _, base_info = read_metadata(cfg.base)
    info = {"stage": 2, "base": str(cfg.base), "base_step": base_info.get("step"), "corpus": str(cfg.corpus),
            "batch_size": cfg.batch_size, "device": str(device)}
    bar = tqdm(total=cfg.steps, initial=step, desc="stage2", dynamic_ncols=True)
    t_start = time.time()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        adapter.residual_scale = min(1.0, (step + 1) / max(1, cfg.adapter_ramp_steps))
        loss, parts = train_step(model, sampler.batch(cfg.batch_size), schedule, cfg, rng, gen, device)
        optimizer_step(loss, opt, adapter.parameters(), ema.parameters(), step, cfg)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.val_every == 0 or step == cfg.steps:
            rec = {"step": step, "loss": loss.item(), **{k: float(v) for k, v in parts.items()},
                   "elapsed_s": round(time.time() - t_start, 1)}
            if val_batches:
                rec.update(_with_adapter(model, ema, lambda: control_validation(model, val_batches, schedule, cfg, device)))
            record_history(out, history, rec)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            _with_adapter(model, ema, lambda: save_denoiser(out / "ema.safetensors", model, info={**info, "step": step}))
            _save_state(state_path, step, adapter, ema, opt, history)
    bar.close()
    return out / "ema.safetensors"


def _with_adapter(model, adapter, fn):
    """Run ``fn()`` with ``adapter`` (residual scale 1) temporarily installed in ``model``."""
    current = model.adapter
    scale, adapter.residual_scale = adapter.residual_scale, 1.0
    model.adapter = adapter
    try:
        return fn()
    finally:
        model.adapter, adapter.residual_scale = current, scale
