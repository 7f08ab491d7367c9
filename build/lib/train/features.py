"""Cache frozen speech-encoder features for every corpus clip (clean and augmented audio).

Layout: ``<corpus>/features/<encoder>/<variant>/<clip id>.npy``, (T_a, D_a) float16 at 50 Hz,
with T_a = ``cafetalk_rt.frames.num_feature_frames(len(audio))``. Variants: ``clean`` (the
corpus audio) and ``aug`` (one random degradation per clip, :mod:`train.augment`, seeded by
the clip id). Existing files are kept, so the command is resumable.
"""
from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from train.augment import augment
from train.corpus.format import load_clip, read_manifest

log = logging.getLogger(__name__)
VARIANTS = ("clean", "aug")


def feature_path(root: str | Path, encoder: str, variant: str, clip_id: str) -> Path:
    """Where the cached features of one clip live."""
    return Path(root) / "features" / encoder / variant / f"{clip_id}.npy"


def cache_features(root: str | Path, encoder_name: str = "whisper-tiny.en", *, batch_size: int = 16,
                   variants: tuple[str, ...] = VARIANTS) -> int:
    """Compute and store missing features; returns the number of files written."""
    from cafetalk_rt.nn.speech_encoder import build_speech_encoder, encode_audio_batch

    root = Path(root)
    encoder = build_speech_encoder(encoder_name)
    todo = [(e, v) for e in read_manifest(root) for v in variants
            if not feature_path(root, encoder_name, v, e["id"]).exists()]
    written = 0
    for i in tqdm(range(0, len(todo), batch_size), desc="features", dynamic_ncols=True):
        chunk = todo[i : i + batch_size]
        audios = []
        for entry, variant in chunk:
            audio = load_clip(root, entry)[0]
            if variant == "aug":
                audio = augment(audio, np.random.default_rng(zlib.crc32(entry["id"].encode())))
            audios.append(audio)
        with torch.inference_mode():
            feats = encode_audio_batch(encoder, audios)
        for (entry, variant), f in zip(chunk, feats):
            p = feature_path(root, encoder_name, variant, entry["id"])
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, f.astype(np.float16))
            written += 1
    return written
