"""``python -m train fit-stream-encoder``: distil the live stream's speech-encoder adapter.

Teacher: the frozen Whisper encoder over the whole clip (the features the denoiser was trained
on, cached by ``python -m train features``). Student: the same encoder with a low-rank adapter
(:mod:`cafetalk_rt.nn.streaming_encoder`) over one hop's window exactly as a live stream encodes it
(:func:`train.streaming.stream_windows`: E frames of past audio, the H new frames and L frames of
look-ahead, silence before the stream's start and after its end). The loss is the mean squared
error of the window's fresh features (its last 2(H + L) 50 Hz frames, the ones a stream uses and
keeps) against the teacher's at the same times, on clean and degraded audio
(:mod:`train.augment`). Each batch draws one look-ahead L from ``lookaheads`` and one encoder
context E (the shipped one, or with probability ``other_context_prob`` any in [10, 75]
frames), so one adapter serves every layout. The denoiser is untouched: offline output does not
change. The result is the base checkpoint plus the adapter (``<out>/model.safetensors``, fp16).
"""
from __future__ import annotations

import json
import logging
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cafetalk_rt.backends.streaming_contract import DEFAULT_LAYOUT, SAMPLES_PER_FRAME, StreamingLayout
from cafetalk_rt.frames import num_feature_frames
from train.augment import augment
from train.corpus.format import load_clip, read_manifest
from train.features import feature_path
from train.streaming import hop_window, num_hops

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StreamEncoderConfig:
    """One distillation run (saved as ``<out>/stream_encoder_config.json``).

    Attributes:
        corpus, out: corpus directory (features cached) and run directory.
        model: the denoiser checkpoint the adapter is added to ("" = the shipped model).
        steps, batch_size, lr: AdamW on the adapter only, cosine decay after 50 warm-up steps.
        rank: the adapter's rank.
        lookaheads: look-ahead frames (25 fps) drawn per batch.
        other_context_prob: share of batches with a random encoder context instead of the shipped one.
        val_windows, ckpt_every: validation set size (test split, shipped layout), checkpoint period.
        seed, threads (0 = torch's default).
    """

    corpus: str
    out: str
    model: str = ""
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    rank: int = 16
    lookaheads: str = "1,2,4,8"
    other_context_prob: float = 0.3
    val_windows: int = 192
    ckpt_every: int = 50
    seed: int = 0
    threads: int = 0


class HopWindows:
    """Random live-stream windows of a corpus split with the teacher's features for their fresh frames.

    ``batch(rng, n, e, la)`` → (audio (n, (E + H + L)·640) float32 16 kHz, target (n, 2(H + L), D)
    float32, mask (n, 2(H + L)) bool: True where the teacher has a feature, i.e. inside the clip).

    Raises:
        FileNotFoundError: a clip's whole-clip features are not cached (names the command).
    """

    def __init__(self, root, split: str, encoder: str = "whisper-tiny.en", hop_frames: int = DEFAULT_LAYOUT.hop_frames):
        self.h = hop_frames
        self.items = []  # (audio (L,), teacher (T_a, D)) per clip and variant
        for entry in (e for e in read_manifest(root) if e["split"] == split and e["fps"] == 25):
            clean = load_clip(root, entry)[0]
            for variant in ("clean", "aug"):
                path = feature_path(root, encoder, variant, entry["id"])
                if not path.exists():
                    raise FileNotFoundError(f"no cached features for clip {entry['id']}: run "
                                            f"`python -m train features --corpus {root}`")
                audio = clean if variant == "clean" else augment(clean, np.random.default_rng(zlib.crc32(entry["id"].encode())))
                self.items.append((audio.astype(np.float32), np.load(path)))
        if not self.items:
            raise ValueError(f"no 25 fps {split} clips in {root}")

    def batch(self, rng: np.random.Generator, n: int, e: int, la: int):
        lay = StreamingLayout(hop_frames=self.h, lookahead_frames=la, encoder_context_frames=e)
        h = self.h
        audio = np.zeros((n, (e + h + la) * SAMPLES_PER_FRAME), np.float32)
        target = np.zeros((n, 2 * (h + la), self.items[0][1].shape[1]), np.float32)
        mask = np.zeros((n, 2 * (h + la)), bool)
        for row, j in enumerate(rng.integers(0, len(self.items), n)):
            clip, teacher = self.items[j]
            hop = int(rng.integers(0, num_hops(clip.size, lay)))  # hops whose fresh frames touch the clip
            audio[row] = hop_window(clip, lay, hop)
            first = 2 * (hop * h - la)  # the first fresh 50 Hz frame, clip time
            idx = np.arange(first, first + 2 * (h + la))
            ok = (idx >= 0) & (idx < min(teacher.shape[0], num_feature_frames(clip.size)))
            target[row, ok] = teacher[idx[ok]]
            mask[row] = ok
        return audio, target, mask


def _loss(encoder, mel, adapter, audio, target, mask, e: int) -> torch.Tensor:
    fresh = encoder(mel(torch.from_numpy(audio)), None, adapter)[:, 2 * e:]  # (n, 2(H + L), D)
    err = ((fresh - torch.from_numpy(target)) ** 2).mean(-1)  # (n, 2(H + L))
    m = torch.from_numpy(mask).float()
    return (err * m).sum() / m.sum().clamp(min=1.0)


def fit_stream_encoder(config: StreamEncoderConfig, *, resume: bool = False) -> Path:
    """Run the distillation; returns the written checkpoint (base model + adapter, fp16).

    Raises:
        FileExistsError: ``out`` holds a run and ``resume`` is False.
    """
    from cafetalk_rt.model_files import DEFAULT_MODEL
    from cafetalk_rt.nn.checkpoint import load_denoiser, read_metadata, save_denoiser
    from cafetalk_rt.nn.log_mel import LogMelSpectrogram
    from cafetalk_rt.nn.speech_encoder import build_speech_encoder
    from cafetalk_rt.nn.streaming_encoder import StreamingEncoderConfig

    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    state_path = out / "state.pt"
    if state_path.exists() and not resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_encoder_config.json").write_text(json.dumps(asdict(config), indent=2))
    base = config.model or DEFAULT_MODEL
    model = load_denoiser(base)
    model.attach_streaming_encoder(StreamingEncoderConfig(rank=config.rank))
    adapter = model.streaming_encoder.train().requires_grad_(True)
    encoder, mel = build_speech_encoder(), LogMelSpectrogram()
    opt = torch.optim.AdamW(adapter.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / config.steps))))
    step, history = 0, []
    if resume and state_path.exists():
        ckpt = torch.load(state_path, weights_only=False)
        adapter.load_state_dict(ckpt["adapter"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        step, history = ckpt["step"], ckpt["history"]
    train, test = HopWindows(config.corpus, "train"), HopWindows(config.corpus, "test")
    e0, la0 = DEFAULT_LAYOUT.encoder_context_frames, DEFAULT_LAYOUT.lookahead_frames
    val = test.batch(np.random.default_rng(12345), config.val_windows, e0, la0)
    lookaheads = [int(x) for x in config.lookaheads.split(",")]

    def validate(with_adapter: bool) -> float:
        with torch.no_grad():
            return float(_loss(encoder, mel, adapter if with_adapter else None, *val, e0))

    if step == 0:
        history.append({"step": 0, "val_mse": validate(False)})
        log.info("frozen encoder: val mse %.4f", history[-1]["val_mse"])
    t0 = time.time()
    while step < config.steps:
        rng = np.random.default_rng([config.seed, step])
        la = int(rng.choice(lookaheads))
        e = int(rng.integers(10, 76)) if rng.random() < config.other_context_prob else e0
        loss = _loss(encoder, mel, adapter, *train.batch(rng, config.batch_size, e, la), e)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if step % config.ckpt_every == 0 or step == config.steps:
            history.append({"step": step, "train_mse": float(loss.detach()), "val_mse": validate(True)})
            log.info("step %d  train %.4f  val %.4f  (%.1f s/step)", step, float(loss.detach()), history[-1]["val_mse"],
                     (time.time() - t0) / config.ckpt_every)
            t0 = time.time()
            torch.save({"adapter": adapter.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step, "history": history}, state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
    model.streaming_encoder.eval().requires_grad_(False)
    info = {**read_metadata(base)[1], "stream_encoder": {"steps": step, "history": history, "config": asdict(config)}}
    return save_denoiser(out / "model.safetensors", model, info=info, dtype=torch.float16)
