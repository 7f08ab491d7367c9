"""Whisper's 80-bin log-mel front end (numpy only; no torch), at the clip's own length.

We reuse ``transformers.WhisperFeatureExtractor``'s numpy implementation (n_fft 400, hop 160,
Slaney mel filters, log10, clamp to max − 8, (x + 4) / 4) but do not pad to 30 s: the audio is
zero-padded only to a whole number of 20 ms encoder frames, so ``T_mel = 2 · ceil(L / 320)`` and
the encoder yields exactly ``cafetalk_rt.frames.num_feature_frames(L)`` frames. The max used in
the clamp is taken over the clip itself, as Whisper does (its zero padding never holds the max).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from cafetalk_rt.frames import SAMPLE_RATE, num_feature_frames

#: Audio samples per speech-encoder frame (20 ms at 16 kHz).
SAMPLES_PER_FEATURE = 320
MIN_SAMPLES = 400  # one STFT window


@lru_cache(maxsize=1)
def _extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, hop_length=160, n_fft=400)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(L,) float32 16 kHz audio → (80, T_mel) float32 log-mel, T_mel = 2 · ceil(L / 320).

    Raises:
        ValueError: fewer than 400 samples (25 ms), or not a 1-D array.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.shape[0] < MIN_SAMPLES:
        raise ValueError(f"log_mel needs a 1-D clip of at least {MIN_SAMPLES} samples, got shape {audio.shape}")
    n = num_feature_frames(audio.shape[0]) * SAMPLES_PER_FEATURE
    padded = np.zeros(n, np.float32)
    padded[: audio.shape[0]] = audio
    return _extractor()._np_extract_fbank_features(padded[None], "cpu")[0].astype(np.float32)
