"""Audio input: read any common file or array and return ``audio`` as float32 mono 16 kHz.

``load_audio`` (files, via libsndfile) and ``prepare_audio`` (in-memory arrays, used by the
Python API) share one validation path, so a file and the same samples passed as an array
fail with the same message. Resampling is soxr "HQ" (the quality faster-whisper and
librosa's default "soxr_hq" use).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cafetalk_rt.errors import AudioInputError
from cafetalk_rt.frames import SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Peak (full scale = 1.0) below which a clip counts as digital silence (-80 dBFS).
SILENCE_PEAK = 1e-4
#: Extensions libsndfile reads here; MP3 needs libsndfile >= 1.1 (checked at run time).
READABLE_FORMATS = ("wav", "flac", "ogg", "mp3")


def _readable_formats() -> str:
    import soundfile as sf

    available = {k.lower() for k in sf.available_formats()}
    return ", ".join(f for f in READABLE_FORMATS if f in available)


def load_audio(path: "str | Path", *, min_duration_s: float = 0.1) -> np.ndarray:
    """Read an audio file and return it as ``audio`` (L,) float32 mono at 16 kHz.

    Any sample rate and channel count libsndfile reads (wav, flac, ogg/vorbis/opus, and mp3
    with libsndfile >= 1.1) is accepted; channels are averaged, then the signal is resampled
    with soxr (HQ) to ``SAMPLE_RATE`` = 16 000 Hz.

    Args:
        path: audio file.
        min_duration_s: shortest accepted clip in seconds.

    Returns:
        ``audio`` (L,) float32, 16 kHz, L ≈ round(duration_s * 16000).

    Raises:
        AudioInputError: the file is missing or not a file; its format is unreadable; it has
            0 samples; it is shorter than ``min_duration_s``; it holds NaN/Inf samples; it is
            digitally silent (peak < 1e-4 full scale). The message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"audio file {str(path)!r} does not exist; check the path.")
    if not path.is_file():
        raise AudioInputError(f"audio path {str(path)!r} is not a file; pass an audio file.")
    if path.stat().st_size == 0:
        raise AudioInputError(f"audio file {str(path)!r} is empty (0 bytes); pass a recording.")
    return _decode(str(path), str(path), min_duration_s)


def load_audio_bytes(data: bytes, name: str = "request body", *, min_duration_s: float = 0.1) -> np.ndarray:
    """:func:`load_audio` for the bytes of an audio file (an upload); messages name ``name``.

    Raises:
        AudioInputError: as :func:`load_audio` (empty, unreadable, too short, non-finite, silent).
    """
    import io

    if not data:
        raise AudioInputError(f"audio file {name!r} is empty (0 bytes); pass a recording.")
    return _decode(io.BytesIO(data), name, min_duration_s)


def _decode(source, name: str, min_duration_s: float) -> np.ndarray:
    import soundfile as sf

    try:
        data, sample_rate = sf.read(source, dtype="float32", always_2d=True)  # (L, C)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise AudioInputError(
            f"cannot read audio file {name!r} ({exc}); readable formats: "
            f"{_readable_formats()}. Convert it, e.g. `ffmpeg -i {Path(name).name} out.wav`."
        ) from exc
    logger.debug("read %s: %d samples x %d channels at %d Hz", name, data.shape[0], data.shape[1], sample_rate)
    return prepare_audio(data, sample_rate, name=name, min_duration_s=min_duration_s)


def prepare_audio(
    audio: np.ndarray,
    sample_rate: int,
    *,
    name: str = "<array>",
    min_duration_s: float = 0.1,
) -> np.ndarray:
    """Validate, downmix and resample in-memory audio to ``audio`` (L,) float32 mono 16 kHz.

    Args:
        audio: (L,) or (L, C) samples (channels last). Float arrays are taken as full scale
            ±1.0; integer arrays are scaled by their type's range (int16 / 32768).
        sample_rate: rate of ``audio`` in Hz (positive integer).
        name: what to call the input in error messages (a file name or ``"<array>"``).
        min_duration_s: shortest accepted clip in seconds.

    Returns:
        (L',) float32 at 16 kHz, L' = round(L * 16000 / sample_rate) (± 1 sample).

    Raises:
        AudioInputError: bad shape or dtype, bad ``sample_rate``, 0 samples, shorter than
            ``min_duration_s``, NaN/Inf samples, or digital silence.
    """
    x = _as_float_2d(audio, name)  # (L, C) float32
    sample_rate = _check_rate(sample_rate, name)
    num_samples = x.shape[0]
    if num_samples == 0:
        raise AudioInputError(f"audio {name!r} is empty (0 samples); pass a recording with speech.")
    dur = num_samples / sample_rate
    if dur < min_duration_s:
        raise AudioInputError(
            f"audio {name!r} is too short: {dur:.3f} s ({num_samples} samples at {sample_rate} Hz);"
            f" at least {min_duration_s:g} s is needed."
        )
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad)[0, 0])
        raise AudioInputError(
            f"audio {name!r} has {int(bad.sum())} non-finite (NaN/Inf) samples, the first at "
            f"{first / sample_rate:.3f} s; the file is corrupt or was written from broken data."
        )
    mono = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]  # (L,)
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        how = " after averaging its channels" if x.shape[1] > 1 else ""
        raise AudioInputError(
            f"audio {name!r} is silent{how} (peak {peak:.2e} < {SILENCE_PEAK:g} full scale); "
            "check the recording level or that the right file/channel was passed."
        )
    return _resample(mono, sample_rate)


def duration_s(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Duration in seconds of ``audio`` (L,) or (L, C) at ``sample_rate`` Hz."""
    return np.shape(audio)[0] / float(sample_rate)


def _as_float_2d(audio: np.ndarray, name: str) -> np.ndarray:
    """(L,) or (L, C) number array → (L, C) float32; integers scaled to ±1."""
    x = np.asarray(audio)
    if x.dtype.kind not in "fiu":
        raise AudioInputError(f"audio {name!r} has dtype {x.dtype}; pass float32 samples in [-1, 1].")
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim != 2:
        raise AudioInputError(f"audio {name!r} has shape {x.shape}; pass (L,) or (L, channels).")
    elif 0 < x.shape[0] < x.shape[1]:
        raise AudioInputError(
            f"audio {name!r} has shape {x.shape}, more channels than samples; it looks like "
            "(channels, L): pass audio.T, channels last."
        )
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        mid = (int(info.max) + int(info.min) + 1) / 2.0  # 0 for signed, 2**(b-1) for unsigned
        return ((x.astype(np.float64) - mid) / (int(info.max) + 1 - mid)).astype(np.float32)
    return x.astype(np.float32, copy=False)


def _check_rate(sample_rate: int, name: str) -> int:
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or sample_rate <= 0:
        raise AudioInputError(
            f"audio {name!r}: sample_rate must be a positive integer in Hz, got {sample_rate!r}."
        )
    return int(sample_rate)


def _resample(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """(L,) float32 at ``sample_rate`` → (L',) float32 at 16 kHz (soxr HQ)."""
    if sample_rate == SAMPLE_RATE:
        return np.ascontiguousarray(mono, dtype=np.float32)
    import soxr  # lazy

    logger.debug("resampling %d Hz -> %d Hz", sample_rate, SAMPLE_RATE)
    out = soxr.resample(np.ascontiguousarray(mono), sample_rate, SAMPLE_RATE, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def check_chunk(chunk, *, at_s: float) -> np.ndarray:
    """One chunk of a stream as (L,) float32 16 kHz mono samples ((L, 1) is accepted).

    Args:
        at_s: stream time of the chunk's first sample (for the message).
    Raises:
        AudioInputError: not 1-D float audio, or non-finite samples.
    """
    x = np.asarray(chunk)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.dtype.kind != "f":
        raise AudioInputError(f"push() takes (L,) float 16 kHz mono samples, got shape {x.shape} dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.size and not np.isfinite(x).all():
        raise AudioInputError(f"audio chunk at {at_s:.3f} s has non-finite samples")
    return x
