"""Seeded procedural blinks: the eye-blink layer laid over the denoiser's output.

Why a layer and not the denoiser: blink timing does not follow the speech, so an x0-predicting
denoiser trained on blinking faces learns their average, a shallow bump that few-step sampling
smooths away (measured in docs/training.md, "Closures and blinks": at K ≤ 2 no blink survived,
at K = 4 they peaked at 0.76). The model is trained with its targets' blinks removed
(``train.dataset``) and the runtime draws them here, from the clip's seed, so offline, windowed,
live and every backend give the same blinks for the same seed.

A blink (the corpus generator uses the same :class:`Blink` shape with its own draws, closed 110–130
ms: ``train.corpus.expression.blink_curve``):
closing ``U(40, 60)`` ms (smoothstep), closed ``U(130, 150)`` ms at a peak ``U(0.95, 1)``, opening
``U(70, 90)`` ms; so eyeBlink ≥ 0.9 for at least 130 ms, on at least three frames at 25 fps
(frames 40 ms apart) and four at 30 fps, and above half closed for about 180–230 ms. The first
starts after ``U(0.2, 2.5)`` s, each next one ``U(1.5, 5)`` s after the previous one ends (about 17
a minute, a speaker's rate; 17.5–19 measured on held-out clips). Both eyes together; eyeWide is scaled by ``1 − b`` and eyeSquint by
``1 − b/2`` while the lids close (b: the blink curve).

The random numbers are a counter-based hash, so a C++ or Node.js caller of the exported graphs
reproduces the layer exactly with 64-bit integers (docs/blinks.md gives the spec; a Node.js
version is ``tests/node/blinks.mjs``)::

    u(seed, k) = splitmix64(seed + (k + 1) · 0x9E3779B97F4A7C15 mod 2^64) >> 11, times 2^-53

with ``k = 0`` the first onset's draw and ``k = 1 + 5 j + i`` (i = 0..4: close, hold, open, peak,
gap) the draws of blink ``j``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from cafetalk_rt.blendshapes import INDEX

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def hash_uniform(seed: int, k: int) -> float:
    """A uniform number in [0, 1) from (``seed``, counter ``k``): SplitMix64's finaliser, top 53 bits.

    ``seed`` is taken modulo 2^64 (negative seeds wrap, as a uint64 cast does in C++)."""
    z = (seed + (k + 1) * _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class Blink:
    """One blink: ``onset_s`` (seconds), closing / closed / opening durations (seconds) and ``peak``."""

    onset_s: float
    close_s: float
    hold_s: float
    open_s: float
    peak: float

    @property
    def end_s(self) -> float:
        """Time the lids are open again, seconds."""
        return self.onset_s + self.close_s + self.hold_s + self.open_s

    def curve(self, t: np.ndarray) -> np.ndarray:
        """eyeBlink of this blink at times ``t`` (seconds, any shape float64), 0 outside it."""
        up = _smoothstep((t - self.onset_s) / self.close_s)
        down = 1.0 - _smoothstep((t - self.onset_s - self.close_s - self.hold_s) / self.open_s)
        return self.peak * np.minimum(up, down) * ((t >= self.onset_s) & (t <= self.end_s))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class BlinkTrack:
    """The seed's blinks, drawn lazily as time goes on (a stream asks for later frames each hop).

    Args:
        seed: the clip's seed (``AnimateOptions.seed``); any integer, taken modulo 2^64.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.blinks: list[Blink] = []
        self._onsets: list[float] = []  # blinks[i].onset_s / .end_s, both increasing: bisect per hop,
        self._ends: list[float] = []    # not a scan of an hour-long stream's blinks
        self._next_start = 0.2 + 2.3 * hash_uniform(self.seed, 0)

    def until(self, until_s: float) -> list[Blink]:
        """The blinks that start before ``until_s`` seconds, in order."""
        while self._next_start < until_s:
            j = len(self.blinks)
            u = [hash_uniform(self.seed, 1 + 5 * j + i) for i in range(5)]
            blink = Blink(self._next_start, 0.04 + 0.02 * u[0], 0.13 + 0.02 * u[1], 0.07 + 0.02 * u[2],
                          0.95 + 0.05 * u[3])
            self.blinks.append(blink)
            self._onsets.append(blink.onset_s)
            self._ends.append(blink.end_s)
            self._next_start = blink.end_s + 1.5 + 3.5 * u[4]
        return self.blinks[: bisect.bisect_left(self._onsets, until_s)]

    def curve(self, start_frame: int, num_frames: int, fps: float) -> np.ndarray:
        """eyeBlink on output frames ``[start_frame, start_frame + num_frames)`` at ``fps``; frame
        ``i`` is sampled at its centre ``(i + 0.5) / fps`` s. Returns (num_frames,) float32 in [0, 1]."""
        t = (np.arange(start_frame, start_frame + num_frames, dtype=np.float64) + 0.5) / fps
        out = np.zeros(num_frames)
        if num_frames:
            stop = len(self.until(float(t[-1])))  # blinks that start by the last frame ...
            for blink in self.blinks[bisect.bisect_left(self._ends, float(t[0])) : stop]:  # ... and end after the first
                out = np.maximum(out, blink.curve(t))
        return out.astype(np.float32)


def blink_curve(seed: int, start_frame: int, num_frames: int, fps: float) -> np.ndarray:
    """The seed's eyeBlink curve (num_frames,) float32 on output frames ``[start_frame,
    start_frame + num_frames)`` (``BlinkTrack(seed).curve``)."""
    return BlinkTrack(seed).curve(start_frame, num_frames, fps)


def apply_blinks(blendshapes: np.ndarray, seed: "int | BlinkTrack", fps: float, *, start_frame: int = 0) -> np.ndarray:
    """Lay the seed's blinks over (T, 52) ARKit blendshapes whose first row is output frame
    ``start_frame`` at ``fps`` (``seed``: the clip's seed, or a stream's ``BlinkTrack``): eyeBlinkLeft/Right = max(model, b), eyeWide ×(1 − b),
    eyeSquint ×(1 − b/2). Returns a new (T, 52) float32 array in [0, 1]; the input is not changed.

    Raises:
        ValueError: ``blendshapes`` is not (T, 52).
    """
    x = np.array(blendshapes, dtype=np.float32, copy=True)
    if x.ndim != 2 or x.shape[1] != len(INDEX):
        raise ValueError(f"expected (T, {len(INDEX)}) blendshapes, got shape {x.shape}")
    track = seed if isinstance(seed, BlinkTrack) else BlinkTrack(seed)
    lay_blink(x, track.curve(start_frame, x.shape[0], fps))
    return np.clip(x, 0.0, 1.0)


def lay_blink(blendshapes: np.ndarray, blink: np.ndarray) -> None:
    """In place on (T, 52) ARKit blendshapes: both eyes close with the blink curve ``blink`` (T,)
    in [0, 1]: eyeBlinkLeft/Right = max(x, b), eyeWide ×(1 − b), eyeSquint ×(1 − b/2). Not
    clipped. Shared by the runtime layer and the corpus generator (``train.corpus.face``)."""
    for side in ("Left", "Right"):
        blendshapes[:, INDEX["eyeBlink" + side]] = np.maximum(blendshapes[:, INDEX["eyeBlink" + side]], blink)
        blendshapes[:, INDEX["eyeWide" + side]] *= 1.0 - blink
        blendshapes[:, INDEX["eyeSquint" + side]] *= 1.0 - 0.5 * blink
