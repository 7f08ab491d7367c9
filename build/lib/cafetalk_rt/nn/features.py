"""Whisper's 80-bin log-mel front end at the clip's own length (numpy only; never imports torch).

The maths is transformers' own numpy implementation (``transformers.audio_utils``: periodic Hann
window, ``spectrogram`` with n_fft 400, hop 160, centred reflect padding, power 2, Slaney mel
filters 0–8 kHz, log10 with floor 1e-10), followed by Whisper's clamp to ``max − 8`` and
``(x + 4) / 4``. ``transformers.audio_utils`` is imported lazily and does not import torch
(``WhisperFeatureExtractor`` itself does, so it is not used here).

What differs from ``WhisperFeatureExtractor``: the audio is NOT padded to 30 s. The clip is
followed by zeros (exactly what Whisper's padding puts there) only as far as the returned frames
reach, so mel frame ``i`` (centred at sample ``160 i``) is identical to frame ``i`` of Whisper's
30 s padded input. By default ``T_mel = L // 160``, like Whisper, which drops the STFT frame
centred past the end.

Normalisation max: taken over the returned frames only. Whisper takes it over all 3000 frames,
but the frames after the clip hold only zeros (log10 1e-10 = −10) and never hold the max, so the
two agree unless the loudest frame is one of the one or two frames straddling the clip's end that
are not returned (a click in the last 12.5 ms). Clips longer than 30 s are not truncated.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from cafetalk_rt.frames import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160  # 10 ms: two mel frames per 20 ms speech-encoder frame
N_MELS = 80
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below the clip's max (Whisper)


@lru_cache(maxsize=1)
def _window_and_filters() -> tuple[np.ndarray, np.ndarray]:
    """(400,) float64 periodic Hann window and (201, 80) float64 Slaney mel filters."""
    from transformers.audio_utils import mel_filter_bank, window_function  # numpy only

    filters = mel_filter_bank(num_frequency_bins=1 + N_FFT // 2, num_mel_filters=N_MELS, min_frequency=0.0,
                              max_frequency=8000.0, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return window_function(N_FFT, "hann"), filters


def log_mel(audio: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """Whisper log-mel spectrogram of one clip, without padding to 30 s.

    Args:
        audio: (L,) mono waveform at 16 kHz, float (cast to float32), nominally in [-1, 1].
        num_frames: mel frames to return (10 ms each; frame ``i`` is centred at sample 160 i).
            Default ``L // 160``. Larger values read zeros past the clip, as Whisper's padding
            does; ``2 * num_feature_frames(L)`` gives exactly one speech-encoder frame per 20 ms.

    Returns:
        (80, num_frames) float32, values in [max − 8 + 4, max + 4] / 4 (Whisper's scale).

    Raises:
        ValueError: ``audio`` is not 1-D, or there are no frames (fewer than 160 samples with
            the default ``num_frames``, or ``num_frames`` < 1).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"log_mel expects a 1-D (L,) waveform, got shape {audio.shape}")
    n = audio.shape[0] // HOP_LENGTH if num_frames is None else int(num_frames)
    if n < 1:
        raise ValueError(f"log_mel needs at least {HOP_LENGTH} samples (one 10 ms frame) or num_frames >= 1; "
                         f"got {audio.shape[0]} samples, num_frames={num_frames}")
    from transformers.audio_utils import spectrogram

    # Frames 0..n-1 read samples up to 160 (n - 1) + 200; 200 more zeros keep the start's reflect
    # padding identical to Whisper's for very short clips (it reads samples 1..200).
    signal = np.zeros(HOP_LENGTH * n + 240, np.float32)  # (L',)
    m = min(audio.shape[0], signal.shape[0])
    signal[:m] = audio[:m]
    window, filters = _window_and_filters()
    mel = spectrogram(signal, window, frame_length=N_FFT, hop_length=HOP_LENGTH, power=2.0,
                      mel_filters=filters, mel_floor=LOG_FLOOR, log_mel="log10")[:, :n]  # (80, n)
    mel = np.maximum(mel, mel.max() - DYNAMIC_RANGE)
    return ((mel + 4.0) / 4.0).astype(np.float32)
