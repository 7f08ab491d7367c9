"""Stage-1 training loop: CFG condition dropout, EMA, periodic validation, safetensors
checkpoints, resume, and DDP under ``torchrun`` (same code path as one process).

Paper §3 / Appendix: AdamW, lr 1e-4, batch 16 — we default to a larger lr with warm-up and
cosine decay for our short CPU budget (our choice; see README).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from cafetalk_rt.blendshapes import INDEX
from cafetalk_rt.nn.checkpoint import load_denoiser, read_metadata, save_denoiser
from cafetalk_rt.nn.denoiser import CONFIGS, Denoiser
from cafetalk_rt.diffusion.schedule import make_schedule
from train.dataset import CropSampler, load_split, normalization_stats
from train.diffusion import diffusion_loss, q_sample
from train.config import RunConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(RunConfig):
    """A stage-1 run (:class:`~train.config.RunConfig` plus the model size)."""

    model: str = "small"
    #: start from this checkpoint (its config, normalisation and any adapter) instead of scratch
    init: str = ""
    #: share of batches that are live-stream windows (``train.streaming``; 0 = offline crops only)
    streaming_share: float = 0.0
    #: look-ahead frames (comma-separated) of the streaming windows (the default layout's other sizes)
    streaming_lookaheads: str = "4"
    #: extra loss weight on p/b/m closure frames: frame weight 1 + closure_weight · c, with c the
    #: target's mouthClose / 0.3 clipped to [0, 1] (the generator's bilabial closure, train.corpus.face)
    closure_weight: float = 0.0


def _dist_info() -> tuple[int, int]:
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(cfg: TrainConfig, rank: int) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return torch.device("cpu")


def _drop_masks(batch_size: int, p: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent keep flags for audio and coarse conditions (paper: drop each with p = 0.2)."""
    keep = (torch.rand(2, batch_size, generator=gen) >= p).float()
    return keep[0], keep[1]


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def optimizer_step(loss: torch.Tensor, opt, params, ema_params, step: int, cfg) -> None:
    """Backward, clip the gradient norm of ``params`` to 1, step, then move the EMA copy towards
    them with decay ``min(cfg.ema_decay, (1 + step) / (10 + step))`` (shared by stage 1 and 2)."""
    params = list(params)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        for pe, pm in zip(ema_params, params):
            pe.lerp_(pm, 1 - decay)


def record_history(out: Path, history: list, rec: dict) -> None:
    """Append one validation record to ``history`` and ``<out>/history.jsonl``."""
    history.append(rec)
    with open(out / "history.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    log.info("step %d %s", rec["step"], rec)


def train_step(model, batch, schedule, cfg: TrainConfig, gen: torch.Generator, device):
    """One loss evaluation on a batch (from :class:`CropSampler`); returns (loss, parts)."""
    raw = model.module if hasattr(model, "module") else model
    x0 = raw.normalize(batch["blendshapes"].to(device))  # (B, T, 52)
    b = x0.shape[0]
    t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    audio_keep, coarse_keep = _drop_masks(b, cfg.cond_drop_prob, gen)
    x_t = q_sample(x0, t.to(device), noise, schedule)
    pred = model(x_t, t.to(device), batch["audio_features"].to(device), batch["emotion"].to(device),
                 batch["intensity"].to(device), audio_keep.to(device), coarse_keep.to(device))
    weight = None
    if getattr(cfg, "closure_weight", 0.0) > 0:
        closure = (batch["blendshapes"][..., INDEX["mouthClose"]] / 0.3).clamp(0.0, 1.0)  # (B, T)
        weight = (1.0 + cfg.closure_weight * closure).to(device)
    return diffusion_loss(pred, x0, noise, prediction_type=raw.config.prediction_type,
                          velocity_weight=cfg.velocity_weight, frame_weight=weight)


@torch.no_grad()
def validation_loss(model, batches, schedule, device) -> float:
    """Mean x0/ε MSE over fixed validation batches, fixed timesteps and fixed noise."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    total = []
    for batch in batches:
        x0 = model.normalize(batch["blendshapes"].to(device))
        b = x0.shape[0]
        for t_val in (50, 250, 500, 750, 950):
            t = torch.full((b,), t_val, dtype=torch.int64)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            ones = torch.ones(b, device=device)
            pred = model(q_sample(x0, t.to(device), noise, schedule), t.to(device), batch["audio_features"].to(device),
                         batch["emotion"].to(device), batch["intensity"].to(device), ones, ones)
            total.append(diffusion_loss(pred, x0, noise, prediction_type=model.config.prediction_type)[1]["mse"].item())
    model.train()
    return float(np.mean(total))


def _stream_samplers(cfg: TrainConfig, clips, encoder: str, seed: int) -> list:
    """One :class:`train.streaming.StreamWindowSampler` per look-ahead of
    ``cfg.streaming_lookaheads`` (none when ``cfg.streaming_share`` is 0)."""
    if cfg.streaming_share <= 0:
        return []
    from cafetalk_rt.backends.streaming_contract import StreamingLayout
    from train.streaming import StreamWindowSampler, load_stream_features

    out = []
    for la in (int(x) for x in cfg.streaming_lookaheads.split(",")):
        layout = StreamingLayout(lookahead_frames=la)
        out.append(StreamWindowSampler(clips, load_stream_features(cfg.corpus, clips, layout, encoder), layout, seed + la))
    return out


def _save_state(path: Path, step, model, ema, opt, history):
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                "opt": opt.state_dict(), "history": history}, tmp)
    tmp.replace(path)


def fit(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Train a denoiser on a corpus with cached features; returns the EMA checkpoint path.

    Writes ``<out>/ema.safetensors`` (EMA weights + config + info), ``<out>/last.pt`` (resume
    state) and ``<out>/history.jsonl``. Raises FileExistsError if ``out`` already holds a run and
    ``resume`` is False (nothing a user made is overwritten without asking).
    """
    rank, world = _dist_info()
    device = _device(cfg, rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    state_path = out / "last.pt"
    if rank == 0:
        if state_path.exists() and not resume:
            raise FileExistsError(f"{out} already holds a training run: pass --resume to continue it or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model_cfg = read_metadata(cfg.init)[0] if cfg.init else CONFIGS[cfg.model]
    fps = model_cfg.fps
    train_clips = load_split(cfg.corpus, "train", fps, model_cfg.speech_encoder)
    val_clips = load_split(cfg.corpus, "val", fps, model_cfg.speech_encoder, limit=cfg.val_clips)
    torch.manual_seed(cfg.seed)
    if cfg.init:  # a fine-tune keeps the checkpoint's normalisation (and its adapters, untouched)
        model = load_denoiser(cfg.init).requires_grad_(True)
        for frozen in (model.adapter, model.streaming_encoder):
            if frozen is not None:
                frozen.requires_grad_(False)
    else:
        model = Denoiser(model_cfg)
        mean, std = normalization_stats(train_clips)
        model.bs_mean.copy_(torch.from_numpy(mean))
        model.bs_std.copy_(torch.from_numpy(std))
    model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, history = 0, []
    if resume and state_path.exists():
        st = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(st["model"]), ema.load_state_dict(st["ema"]), opt.load_state_dict(st["opt"])
        step, history = st["step"], st["history"]
        log.info("resumed from step %d", step)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    schedule = make_schedule(model_cfg.schedule, model_cfg.num_train_timesteps)
    sampler = CropSampler(train_clips, fps, max(1, int(cfg.min_crop_s * fps)), int(cfg.max_crop_s * fps),
                          seed=cfg.seed * 1000 + rank + step)
    stream_samplers = _stream_samplers(cfg, train_clips, model_cfg.speech_encoder, seed=cfg.seed * 1000 + rank + step)
    val_batches = [CropSampler(val_clips, fps, int(cfg.max_crop_s * fps), int(cfg.max_crop_s * fps), seed=7).batch(16)
                   for _ in range(4)] if val_clips else []
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank + step)
    hours = sum(c.motion.shape[0] for c in train_clips) / fps / 3600
    info = {"corpus": str(cfg.corpus), "train_hours": round(hours, 3), "train_clips": len(train_clips),
            "model": cfg.model, "batch_size": cfg.batch_size, "world_size": world, "device": str(device)}
    per_rank = max(1, cfg.batch_size // world)
    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, desc="train", dynamic_ncols=True)
    t_start = time.time()
    model.train()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        use_stream = stream_samplers and float(torch.rand((), generator=gen)) < cfg.streaming_share
        source = stream_samplers[int(torch.randint(len(stream_samplers), (), generator=gen))] if use_stream else sampler
        loss, parts = train_step(ddp, source.batch(per_rank), schedule, cfg, gen, device)
        optimizer_step(loss, opt, model.parameters(), ema.parameters(), step, cfg)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if rank == 0 and (step % cfg.val_every == 0 or step == cfg.steps):
            rec = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()},
                   "val_loss": validation_loss(ema, val_batches, schedule, device) if val_batches else None,
                   "elapsed_s": round(time.time() - t_start, 1)}
            record_history(out, history, rec)
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            save_denoiser(out / "ema.safetensors", ema, info={**info, "step": step})
            _save_state(state_path, step, model, ema, opt, history)
    bar.close()
    if world > 1:
        dist.barrier()
    return out / "ema.safetensors"
