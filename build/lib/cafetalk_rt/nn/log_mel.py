"""Whisper's log-mel front end as a torch module, for graphs: ONNX/TensorRT export
(``export/graphs.py``) and the CUDA graphs of ``torch_cudagraph``, which compute it on the GPU.

The numpy reference is :func:`cafetalk_rt.nn.features.log_mel` (host, no torch).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cafetalk_rt.nn.features import DYNAMIC_RANGE, HOP_LENGTH, LOG_FLOOR, N_FFT, _window_and_filters

SAMPLES_PER_FEATURE = 2 * HOP_LENGTH  # 320 samples = 20 ms = one speech-encoder frame


def exact_fp32_conv():
    """Context in which cuDNN convolutions run in full float32 (TF32 off, the other cuDNN flags
    unchanged): PyTorch allows TF32 convolutions by default, whose 10-bit mantissa would move the
    log-mel's STFT away from the host ``log_mel``. Wrap a :class:`LogMelSpectrogram` call on a
    GPU in it (a no-op on CPU)."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                       allow_tf32=False)


class LogMelSpectrogram(nn.Module):
    """Whisper's log-mel (``cafetalk_rt.nn.features.log_mel``) in graph-friendly ops.

    ``forward(audio (B, L) float32 16 kHz) → (B, 80, 2·ceil(L / 320)) float32``, frame ``i``
    centred at sample 160 i, the same frames ``log_mel(audio, 2 * num_feature_frames(L))``
    returns (max abs difference ~1e-5: float32 DFT against numpy's float64 FFT).

    The STFT is a Conv1d with a fixed (402, 1, 400) kernel (Hann-windowed cos and −sin rows of
    the 400-point DFT, bins 0..200), stride 160: no DFT/STFT op, which TensorRT lacks. Whisper's
    centred reflect padding only matters at the start (the end reads zeros), so it is a reversed
    slice; the per-clip max for the 8-decade clamp is taken over each row of the batch.
    """

    def __init__(self):
        super().__init__()
        window, filters = _window_and_filters()  # (400,), (201, 80) float64
        n, k = np.arange(N_FFT), np.arange(N_FFT // 2 + 1)
        angle = 2.0 * np.pi * np.outer(k, n) / N_FFT  # (201, 400)
        kernel = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])[:, None, :]
        self.register_buffer("dft", torch.tensor(kernel, dtype=torch.float32))  # (402, 1, 400)
        self.register_buffer("mel_filters", torch.tensor(filters.T, dtype=torch.float32))  # (80, 201)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        length = audio.shape[1]
        n_mel = 2 * ((length + SAMPLES_PER_FEATURE - 1) // SAMPLES_PER_FEATURE)  # T_mel = 2 T_a
        pad = N_FFT // 2
        signal = F.pad(audio, (0, HOP_LENGTH * n_mel + 240 - length))  # zeros after the clip, as log_mel
        signal = torch.cat([signal[:, 1 : pad + 1].flip(1), signal], dim=1)  # reflect pad at the start
        spec = F.conv1d(signal[:, None], self.dft, stride=HOP_LENGTH)[:, :, :n_mel]  # (B, 402, T_mel)
        half = N_FFT // 2 + 1
        power = spec[:, :half] ** 2 + spec[:, half:] ** 2  # (B, 201, T_mel)
        mel = torch.log10(torch.matmul(self.mel_filters, power).clamp(min=LOG_FLOOR))  # (B, 80, T_mel)
        peak = mel.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        return (torch.maximum(mel, peak - DYNAMIC_RANGE) + 4.0) / 4.0
