"""A quick-look PNG: the waveform above the main blendshape curves on one time axis.

matplotlib is imported inside ``plot_animation`` and drawn through a ``Figure`` with the Agg
canvas directly, without pyplot, so the global backend of the caller's session is untouched.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cafetalk_rt.blendshapes import INDEX
from cafetalk_rt.errors import InputError, MissingDependencyError
from cafetalk_rt.frames import SAMPLE_RATE
from cafetalk_rt.writers import atomic_write, check_blendshapes, check_output_path

logger = logging.getLogger(__name__)

#: Panels below the waveform: (title, channels).
PANELS: "tuple[tuple[str, tuple[str, ...]], ...]" = (
    ("mouth", ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft",
               "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight")),
    ("brows", ("browInnerUp", "browDownLeft", "browOuterUpLeft")),
    ("eyes", ("eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeSquintLeft")),
)
_MAX_WAVE_POINTS = 20_000  # min/max envelope above this many samples keeps the PNG fast


def plot_animation(
    path_png: "str | Path",
    audio: np.ndarray,
    blendshapes: np.ndarray,
    fps: float,
    *,
    title: "str | None" = None,
    overwrite: bool = False,
) -> Path:
    """Draw ``audio`` (L,) float32 at 16 kHz and the ``PANELS`` curves of ``blendshapes``
    (T, 52) in [0, 1] at ``fps`` against time in seconds; write a PNG atomically.

    Frame ``i`` is drawn at its start time ``i / fps`` (as in the saved files).

    Returns:
        The written path.

    Raises:
        InputError: ``audio`` not a non-empty 1-D finite array; bad ``blendshapes``
            (see ``writers.check_blendshapes``); fps not > 0; missing parent directory.
        OutputExistsError: ``path_png`` exists and ``overwrite`` is False.
    """
    path = check_output_path(path_png, overwrite=overwrite)  # fail before drawing
    wave = _check_audio(audio)
    x = check_blendshapes(blendshapes)
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be a finite number > 0, got {fps!r}.")
    fig = _figure(wave, x, float(fps), title)
    with atomic_write(path, overwrite=overwrite) as fh:
        fig.savefig(fh, format="png", dpi=100)
    logger.info("wrote plot %s", path)
    return path


def _check_audio(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1 or a.size == 0 or a.dtype.kind != "f":
        raise InputError(f"audio must be a non-empty (L,) float array at {SAMPLE_RATE} Hz, got "
                         f"shape {a.shape} dtype {a.dtype}; use audio.load_audio().")
    if not np.all(np.isfinite(a)):
        raise InputError("audio has NaN/Inf samples; use audio.prepare_audio() to validate it.")
    return a.astype(np.float32, copy=False)


def _envelope(wave: np.ndarray) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """(times_s, low, high) of the waveform, decimated to at most ``_MAX_WAVE_POINTS`` bins."""
    step = max(1, int(np.ceil(wave.size / _MAX_WAVE_POINTS)))
    bins = wave[: wave.size // step * step].reshape(-1, step)  # (bins, step); step <= L
    t = np.arange(bins.shape[0]) * step / SAMPLE_RATE
    return t, bins.min(axis=1), bins.max(axis=1)


def require_matplotlib() -> None:
    """Raise ``MissingDependencyError`` naming the extra unless matplotlib can be imported (call it
    before the slow part, so ``--plot`` fails before anything is animated)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"--plot needs matplotlib: pip install 'cafetalk-rt[preview]' ({e})") from None


def _figure(wave: np.ndarray, x: np.ndarray, fps: float, title: "str | None"):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + len(PANELS), 1, sharex=True,
                        gridspec_kw={"height_ratios": [1] + [1.4] * len(PANELS)})
    t, lo, hi = _envelope(wave)
    axes[0].fill_between(t, lo, hi, color="0.3", linewidth=0.5)
    axes[0].set_ylabel("audio")
    axes[0].set_ylim(-1.05, 1.05)
    times = np.arange(x.shape[0]) / fps  # (T,) frame starts, seconds
    for ax, (label, names) in zip(axes[1:], PANELS):
        for name in names:
            ax.plot(times, x[:, INDEX[name]], label=name, linewidth=1.2)
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0.0, max(wave.size / SAMPLE_RATE, x.shape[0] / fps))
    if title:
        fig.suptitle(title)
    return fig
