"""In-memory training set: cached speech features + blendshape curves + coarse labels, and a
random-crop batch sampler. Curves are resampled to the model's fps (25 by default); at 25 fps
frame f is aligned with speech-feature frames 2f and 2f+1 (50 Hz).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cafetalk_rt.blendshapes import INDEX
from cafetalk_rt.control.emotions import emotion_index
from cafetalk_rt.frames import FEATURE_RATE_HZ, resample_sequence
from train.corpus.format import read_manifest
from train.features import feature_path, VARIANTS


@dataclass
class Clip:
    """One training clip: features per audio variant (T_a, D_a) float16, motion (T, 52) float32."""

    id: str
    features: list[np.ndarray]
    motion: np.ndarray
    emotion: int
    intensity: int


def load_split(root: str | Path, split: str, fps: int, encoder: str, limit: int | None = None) -> list[Clip]:
    """Load every clip of ``split`` with cached features (run ``python -m train features`` first).

    Raises:
        FileNotFoundError: features missing for a clip (names the command that makes them).
    """
    root = Path(root)
    clips = []
    for entry in [e for e in read_manifest(root) if e["split"] == split][:limit]:
        feats = []
        for variant in VARIANTS:
            p = feature_path(root, encoder, variant, entry["id"])
            if p.exists():
                feats.append(np.load(p))
        if not feats:
            raise FileNotFoundError(f"no cached features for clip {entry['id']}: run `python -m train features --corpus {root}`")
        with np.load(root / entry["motion"]) as z:
            motion, src_fps = z["blendshapes"].astype(np.float32), float(z["fps"])
        n = int(round(entry["duration_s"] * fps))
        if src_fps != fps:
            motion = resample_sequence(motion, src_fps, n, fps)
        if entry.get("source") == "tts":
            motion = remove_generated_blinks(motion)
        clips.append(Clip(entry["id"], feats, motion[:n], emotion_index(entry["emotion"]), int(entry["intensity"])))
    return clips


def remove_generated_blinks(motion: np.ndarray) -> np.ndarray:
    """A generated clip's (T, 52) curves without its random blinks: the denoiser is not asked to
    guess blink timing, which speech does not carry (the runtime lays seeded blinks over its output,
    ``cafetalk_rt.blinks``; why: docs/training.md "Closures and blinks").

    In generated clips eyeBlink L/R is the blink curve alone (no emotion drives it), and the
    generator scaled eyeWide / eyeSquint down while the lids were closed
    (``train.corpus.face.face_curves``). Both eyeBlink channels become 0; eyeWide / eyeSquint on
    blink frames (eyeBlink > 0) are interpolated from the frames around them. Returns a new
    (T, 52) float32 array.
    """
    out = np.array(motion, dtype=np.float32, copy=True)
    for side in ("Left", "Right"):
        blink = out[:, INDEX["eyeBlink" + side]] > 0.0
        out[:, INDEX["eyeBlink" + side]] = 0.0
        if blink.any() and not blink.all():
            frames, keep = np.arange(len(out)), ~blink
            for name in ("eyeWide", "eyeSquint"):
                c = INDEX[name + side]
                out[blink, c] = np.interp(frames[blink], frames[keep], out[keep, c])
    return out


def normalization_stats(clips: list[Clip], std_floor: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (52,) of the training curves; std floored so constant channels
    (e.g. tongueOut) do not blow up."""
    allm = np.concatenate([c.motion for c in clips])
    return allm.mean(0).astype(np.float32), np.maximum(allm.std(0), std_floor).astype(np.float32)


def crop_features(feats: np.ndarray, start_frame: int, num_frames: int, fps: int) -> np.ndarray:
    """Features aligned with frames [start, start + n): (round(n·50/fps), D_a), edge-padded."""
    ratio = FEATURE_RATE_HZ / fps
    a0, na = int(round(start_frame * ratio)), int(round(num_frames * ratio))
    out = feats[a0 : a0 + na]
    if out.shape[0] < na:
        out = np.concatenate([out, np.repeat(out[-1:], na - out.shape[0], axis=0)])
    return out


class CropSampler:
    """Random batches of equal-length crops. Each batch draws a length between ``min_frames`` and
    ``max_frames`` (so short clips and short inputs are trained too), then clips long enough."""

    def __init__(self, clips: list[Clip], fps: int, min_frames: int, max_frames: int, seed: int):
        self.clips, self.fps = clips, fps
        self.min_frames, self.max_frames = min_frames, max_frames
        self.lengths = np.array([c.motion.shape[0] for c in clips])
        self.rng = np.random.default_rng(seed)

    def batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        n = int(self.rng.integers(self.min_frames, self.max_frames + 1))
        n = min(n, int(self.lengths.max()))
        pool = np.flatnonzero(self.lengths >= n)
        idx = self.rng.choice(pool, size=batch_size, replace=len(pool) < batch_size)
        motion, feats, emo, inten = [], [], [], []
        for i in idx:
            clip = self.clips[i]
            start = int(self.rng.integers(0, clip.motion.shape[0] - n + 1))
            variant = clip.features[int(self.rng.integers(len(clip.features)))]
            motion.append(clip.motion[start : start + n])
            feats.append(crop_features(variant, start, n, self.fps).astype(np.float32))
            emo.append(clip.emotion)
            inten.append(clip.intensity)
        return {
            "blendshapes": torch.from_numpy(np.stack(motion)),  # (B, T, 52)
            "audio_features": torch.from_numpy(np.stack(feats)),  # (B, T_a, D_a)
            "emotion": torch.tensor(emo, dtype=torch.int64),
            "intensity": torch.tensor(inten, dtype=torch.float32),
        }
