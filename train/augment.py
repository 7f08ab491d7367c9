"""Audio augmentation so a model trained on clean TTS speech generalises to real recordings:
random gain, spectral tilt / band-limiting, room reverb (half synthetic, half one of six recorded
rooms, :mod:`train.rooms`) and additive noise. All randomness comes from the
``numpy.random.Generator`` passed in."""
from __future__ import annotations

import numpy as np

from cafetalk_rt.frames import SAMPLE_RATE


def _spectral_shape(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(audio)
    f = np.fft.rfftfreq(audio.shape[0], 1.0 / SAMPLE_RATE)
    tilt_db = rng.uniform(-6.0, 6.0) * np.log2(np.maximum(f, 50.0) / 1000.0)  # dB per octave
    gain = 10.0 ** (tilt_db / 20.0)
    lo, hi = rng.uniform(50, 300), rng.uniform(3400, 8000)  # telephone-ish to full band
    gain *= 1.0 / (1.0 + (lo / np.maximum(f, 1.0)) ** 4) / (1.0 + (f / hi) ** 8)
    return np.fft.irfft(spec * gain, n=audio.shape[0])


def _reverb(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.1, 0.6)
    n = int(rt60 * SAMPLE_RATE)
    ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)  # −60 dB at rt60
    ir[0] = 1.0 / rng.uniform(0.15, 0.6)  # direct-to-reverberant ratio
    wet = np.fft.irfft(np.fft.rfft(audio, audio.shape[0] + n) * np.fft.rfft(ir, audio.shape[0] + n))
    return wet[: audio.shape[0]] / (np.abs(ir).sum() ** 0.5)


def _real_room(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a recorded room (direct sound at sample 0), mixed with the dry signal."""
    from train.rooms import room_impulses

    rooms = room_impulses()
    ir = rooms[int(rng.integers(len(rooms)))]
    n = audio.shape[0] + ir.shape[0]
    wet = np.fft.irfft(np.fft.rfft(audio, n) * np.fft.rfft(ir, n))[: audio.shape[0]]
    dry = rng.uniform(0.0, 1.0)  # 0 = all room, 1 = mostly direct sound
    return dry * audio * np.abs(ir).max() + wet


def augment(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a degraded copy of a (L,) float32 16 kHz clip, peak-normalised to a random level."""
    x = audio.astype(np.float64)
    if rng.random() < 0.8:
        x = _spectral_shape(x, rng)
    if rng.random() < 0.5:
        x = _real_room(x, rng) if rng.random() < 0.5 else _reverb(x, rng)
    if rng.random() < 0.8:
        snr_db = rng.uniform(8.0, 40.0)
        noise = rng.standard_normal(x.shape[0])
        if rng.random() < 0.5:  # pink-ish noise
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        p_sig = np.mean(x**2) + 1e-12
        noise *= np.sqrt(p_sig / (np.mean(noise**2) + 1e-12) / 10 ** (snr_db / 10))
        x = x + noise
    peak = np.max(np.abs(x)) + 1e-9
    return (x / peak * rng.uniform(0.05, 0.95)).astype(np.float32)
