"""Training data for short right context: speech features exactly as a live stream computes them.

A live stream (:mod:`cafetalk_rt.nn.streaming`) encodes, every hop n, only the last
``E + H + L`` frames of audio: the features of the H new and L look-ahead frames are *fresh*
(their right context ends at the stream's newest sample), and the features of the P past frames
are the ones kept from the hop that emitted them. Offline features hear the whole clip, so a model
trained only on them meets unfamiliar features at the right edge of a stream. Here every hop of
every corpus clip is simulated once and cached:

``<corpus>/features/<encoder>/stream_la<L>_e<E>_h<H>_<variant>/<clip id>.npy``: (N hops,
2(H + L), D_a) float16, hop n's fresh features (the clip padded with the silence a stream starts
and ends with).

:class:`StreamWindowSampler` turns them into training windows of ``P + H + L`` frames with exactly
the features the streaming graph feeds the denoiser (kept past features, then hop n's fresh ones),
so a fine-tune sees what the stream sees (issue: "features computed from audio cut at a random
look-ahead").
"""
from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cafetalk_rt.backends.streaming_contract import SAMPLES_PER_FRAME, StreamingLayout
from train.augment import augment
from train.corpus.format import load_clip, read_manifest
from train.dataset import Clip

log = logging.getLogger(__name__)


def stream_feature_path(root, encoder: str, layout: StreamingLayout, variant: str, clip_id: str) -> Path:
    tag = f"stream_la{layout.lookahead_frames}_e{layout.encoder_context_frames}_h{layout.hop_frames}_{variant}"
    return Path(root) / "features" / encoder / tag / f"{clip_id}.npy"


def hop_window(audio: np.ndarray, layout: StreamingLayout, n: int) -> np.ndarray:
    """((E + H + L)·640,) float32: the audio hop ``n`` of a stream of ``audio`` encodes, clip
    samples [n·H − E − L, n·H + H) frames × 640, silence outside the clip."""
    h, la, e = layout.hop_frames, layout.lookahead_frames, layout.encoder_context_frames
    width = (e + h + la) * SAMPLES_PER_FRAME
    start = (n * h - e - la) * SAMPLES_PER_FRAME  # the window's first sample, clip time
    out = np.zeros(width, np.float32)
    lo, hi = max(0, start), min(audio.size, start + width)
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out


def num_hops(num_samples: int, layout: StreamingLayout) -> int:
    """Hops of a stream of ``num_samples``, from the first to the one that emits its last frame."""
    frames = int(round(num_samples / SAMPLES_PER_FRAME))
    return -(-(frames + layout.lookahead_frames) // layout.hop_frames)


def stream_windows(audio: np.ndarray, layout: StreamingLayout) -> np.ndarray:
    """(N, (E + H + L)·640) float32: :func:`hop_window` of every hop of a stream of ``audio``."""
    return np.stack([hop_window(audio, layout, n) for n in range(num_hops(audio.size, layout))])


def cache_stream_features(root, layouts, *, encoder_name: str = "whisper-tiny.en", variants=("clean", "aug"),
                          split: str = "train", batch_size: int = 64) -> int:
    """Simulate every hop of every ``split`` clip for each layout and variant; keep existing
    files (resumable). Returns the number of files written."""
    from cafetalk_rt.nn.log_mel import LogMelSpectrogram
    from cafetalk_rt.nn.speech_encoder import build_speech_encoder

    root = Path(root)
    encoder, mel = build_speech_encoder(encoder_name).eval(), LogMelSpectrogram()
    todo = [(e, lay, v) for e in read_manifest(root) if e["split"] == split for lay in layouts for v in variants
            if not stream_feature_path(root, encoder_name, lay, v, e["id"]).exists()]
    written = 0
    for entry, lay, variant in tqdm(todo, desc="stream features", dynamic_ncols=True):
        audio = load_clip(root, entry)[0]
        if variant == "aug":
            audio = augment(audio, np.random.default_rng(zlib.crc32(entry["id"].encode())))
        windows = torch.from_numpy(stream_windows(audio, lay))
        out = []
        with torch.inference_mode():
            for i in range(0, len(windows), batch_size):
                out.append(encoder(mel(windows[i : i + batch_size]))[:, 2 * lay.encoder_context_frames:])
        p = stream_feature_path(root, encoder_name, lay, variant, entry["id"])
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, torch.cat(out).numpy().astype(np.float16))
        written += 1
    return written


def window_features(fresh: np.ndarray, n: int, layout: StreamingLayout) -> np.ndarray:
    """(2T, D) features the streaming graph gives the denoiser at hop ``n`` (requires
    n·H − L ≥ P): the kept features of the P past frames, then hop n's fresh ones."""
    h, la, p = layout.hop_frames, layout.lookahead_frames, layout.past_frames
    f0 = n * h - la
    past = []
    for f in range(f0 - p, f0):
        m = (f + la) // h  # the hop that emitted frame f
        k = f - (m * h - la)
        past.append(fresh[m, 2 * k : 2 * k + 2])
    return np.concatenate([*past, fresh[n]])


class StreamWindowSampler:
    """Random batches of streaming windows (P + H + L frames) with the stream's own features.

    Args:
        clips: training clips (their motion at 25 fps).
        fresh: per clip, a list over variants of its cached (N, 2(H + L), D) fresh features.
        layout: the streaming layout the features were cached for.
    """

    def __init__(self, clips: list[Clip], fresh: list[list[np.ndarray]], layout: StreamingLayout, seed: int):
        self.clips, self.fresh, self.layout = clips, fresh, layout
        self.rng = np.random.default_rng(seed)
        lay = layout
        first = -(-(lay.past_frames + lay.lookahead_frames) // lay.hop_frames)  # f0 ≥ P
        self.hops = [(i, n) for i, c in enumerate(clips) for n in range(first, len(fresh[i][0]))
                     if n * lay.hop_frames - lay.lookahead_frames < c.motion.shape[0]]

    def batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        lay = self.layout
        t = lay.window_frames
        motion, feats, emo, inten = [], [], [], []
        for j in self.rng.integers(0, len(self.hops), batch_size):
            i, n = self.hops[j]
            clip = self.clips[i]
            f0 = n * lay.hop_frames - lay.lookahead_frames
            m = clip.motion[f0 - lay.past_frames : f0 - lay.past_frames + t]
            if m.shape[0] < t:  # the stream's end: the face holds its last frame
                m = np.concatenate([m, np.repeat(m[-1:], t - m.shape[0], axis=0)])
            variant = self.fresh[i][int(self.rng.integers(len(self.fresh[i])))]
            motion.append(m)
            feats.append(window_features(variant, n, lay).astype(np.float32))
            emo.append(clip.emotion)
            inten.append(clip.intensity)
        return {"blendshapes": torch.from_numpy(np.stack(motion)), "audio_features": torch.from_numpy(np.stack(feats)),
                "emotion": torch.tensor(emo, dtype=torch.int64), "intensity": torch.tensor(inten, dtype=torch.float32)}


def load_stream_features(root, clips: list[Clip], layout: StreamingLayout, encoder: str,
                         variants=("clean", "aug")) -> list[list[np.ndarray]]:
    """The cached fresh features of ``clips`` for ``layout`` (every variant found).

    Raises:
        FileNotFoundError: none cached for a clip (names the command that makes them).
    """
    out = []
    for c in clips:
        have = [np.load(p) for v in variants if (p := stream_feature_path(root, encoder, layout, v, c.id)).exists()]
        if not have:
            raise FileNotFoundError(f"no streaming features for clip {c.id}: run `python -m train stream-features "
                                    f"--corpus {root}`")
        out.append(have)
    return out
