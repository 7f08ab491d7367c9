"""A stylised 2D face rig driven by the 52 ARKit blendshapes, shared by the video and HTML
previews.

Every drawn point is a linear blend, exactly like the blendshapes themselves::

    points = base + Σ_c w_c · deltas[c]          # (Nv, 2) face units, w (52,) in [0, 1]

followed by a few clamps that keep an upper curve above its lower partner (eyelids, lips), so
combinations such as blink + squint or mouthClose without jawOpen never turn inside out.
Face units: the face canvas is the unit square, x to the right, y down; a renderer scales by
its size in pixels. ``Shape`` lists say what to draw from which points, in painter's order.

Sides (documented choice): ARKit's ``…Left`` channels are the *subject's* left. The face is
seen from the front, so ``eyeBlinkLeft`` closes the eye on the **viewer's right** (larger x),
the mirror convention of ARKit's own front-camera captures. ``SUBJECT_LEFT_X_SIGN`` holds it.

This module is numpy only: ``parts.py`` builds the face with ``RigBuilder``; the rasteriser
(``face.py``, Pillow) and the browser page (``html.py``, canvas) both draw the same ``Rig``.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from cafetalk_rt.blendshapes import INDEX, NUM_BLENDSHAPES

#: +1: the subject's left side is drawn at larger x (viewer's right).
SUBJECT_LEFT_X_SIGN = 1.0
SIDES = (("Left", SUBJECT_LEFT_X_SIGN), ("Right", -SUBJECT_LEFT_X_SIGN))

COLORS = {
    "background": "#2b3340", "skin": "#f1c7a5", "shadow": "#d39f7f", "hair": "#4a3426",
    "shirt": "#3f6f8f", "brow": "#3d2a1f", "white": "#fbfbf8", "iris": "#4f7fa8",
    "pupil": "#15181c", "lid": "#3a2a22", "upper_lip": "#c0605c", "lower_lip": "#d0716a",
    "mouth": "#5a1f24", "teeth": "#f5f3ea", "tongue": "#d9626b", "blush": "#ee8a8a",
    "wrinkle": "#b27a60",
}


@dataclass(frozen=True)
class Shape:
    """One drawing step. ``idx`` indexes the posed points; ``kind`` is ``polygon`` (filled,
    closed), ``line`` (open polyline of ``width`` face units) or ``circle`` (idx = centre,
    rim point). ``clip`` names a polygon that masks it. Opacity is
    ``clip(alpha0 + Σ w_c · alpha_w[c], 0, 1)``, drawn as ``color`` mixed over ``fade_to``
    (the colour beneath); below 0.02 the shape is skipped."""

    name: str
    kind: str
    idx: tuple[int, ...]
    color: str
    width: float = 0.0
    clip: "str | None" = None
    alpha0: float = 1.0
    alpha_w: "tuple[tuple[int, float], ...]" = ()
    fade_to: str = "#000000"


@dataclass(frozen=True)
class Rig:
    """``base`` (Nv, 2) float32, ``deltas`` (52, Nv, 2) float32, ``shapes`` in painter's order,
    ``clamps`` ((moving idx, fixed idx, above), …): moving.y = min(moving.y, fixed.y) when
    ``above`` else max, applied in order."""

    base: np.ndarray
    deltas: np.ndarray
    shapes: "tuple[Shape, ...]"
    clamps: "tuple[tuple[np.ndarray, np.ndarray, bool], ...]"

    def pose(self, blendshapes: np.ndarray) -> np.ndarray:
        """Points for ``blendshapes`` (T, 52) or (52,) in [0, 1] → (T, Nv, 2) or (Nv, 2) float32
        face units (one matmul for all frames)."""
        w = np.asarray(blendshapes, dtype=np.float32)
        flat = w.reshape(-1, NUM_BLENDSHAPES) @ self.deltas.reshape(NUM_BLENDSHAPES, -1)  # (T, Nv*2)
        pts = self.base[None] + flat.reshape(-1, *self.base.shape)  # (T, Nv, 2)
        for moving, fixed, above in self.clamps:
            op = np.minimum if above else np.maximum
            pts[:, moving, 1] = op(pts[:, moving, 1], pts[:, fixed, 1])
        return pts.reshape(*w.shape[:-1], *self.base.shape)

    def alphas(self, blendshapes: np.ndarray) -> np.ndarray:
        """Opacity of every shape: (T, 52) → (T, num_shapes) float32 in [0, 1]."""
        w = np.asarray(blendshapes, dtype=np.float32).reshape(-1, NUM_BLENDSHAPES)
        a = np.zeros((NUM_BLENDSHAPES, len(self.shapes)), np.float32)
        for j, shape in enumerate(self.shapes):
            for c, k in shape.alpha_w:
                a[c, j] += k
        a0 = np.array([s.alpha0 for s in self.shapes], np.float32)
        return np.clip(a0 + w @ a, 0.0, 1.0)

    def is_static(self, j: int) -> bool:
        """True when shape ``j`` never moves nor fades (renderers may draw it once)."""
        s = self.shapes[j]
        return not s.alpha_w and not np.any(self.deltas[:, list(s.idx)])


class RigBuilder:
    """Accumulates points, per-channel displacement fields and shapes."""

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []
        self.n = 0
        self.moves: list[tuple[int, np.ndarray, np.ndarray]] = []  # (channel, idx, (n, 2))
        self.shapes: list[Shape] = []
        self.clamps: list[tuple[np.ndarray, np.ndarray, bool]] = []

    def add(self, x, y) -> np.ndarray:
        p = np.stack(np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float)), -1).reshape(-1, 2)
        self.points.append(p)
        idx = np.arange(self.n, self.n + len(p))
        self.n += len(p)
        return idx

    def move(self, channel: str, idx: np.ndarray, dx=0.0, dy=0.0) -> None:
        """Displace points ``idx`` by (``dx``, ``dy``) face units (scalars or per-point arrays)
        at ``channel`` weight 1; several moves of one channel add up."""
        n = len(idx)
        d = np.stack([np.broadcast_to(np.asarray(dx, float), (n,)), np.broadcast_to(np.asarray(dy, float), (n,))], -1)
        self.moves.append((INDEX[channel], np.asarray(idx), d))

    def copy_moves(self, src: int, idx: np.ndarray, scale: float = 1.0) -> None:
        """Give the points ``idx`` the displacement of point ``src`` (attached marks)."""
        for c, j, d in list(self.moves):
            hit = np.nonzero(j == src)[0]
            if hit.size:
                self.moves.append((c, np.asarray(idx), np.repeat(d[hit[:1]] * scale, len(idx), 0)))

    def shape(self, name: str, kind: str, idx, color: str, **kw) -> None:
        alpha_w = tuple((INDEX[c], float(k)) for c, k in kw.pop("alpha_w", {}).items())
        self.shapes.append(Shape(name, kind, tuple(int(i) for i in idx), COLORS.get(color, color),
                                 alpha_w=alpha_w, **kw))

    def scale_from(self, start: int, center: "tuple[float, float]", factor: "tuple[float, float]") -> None:
        """Scale every point with index >= ``start`` and its displacements about ``center``."""
        c, f = np.asarray(center, float), np.asarray(factor, float)
        for k, p in enumerate(self.points):
            first = sum(len(q) for q in self.points[:k])
            rows = np.arange(first, first + len(p)) >= start
            p[rows] = c + f * (p[rows] - c)
        for _, idx, d in self.moves:
            d[idx >= start] *= f

    def build(self) -> Rig:
        base = np.concatenate(self.points).astype(np.float32)
        deltas = np.zeros((NUM_BLENDSHAPES, self.n, 2), np.float32)
        for c, idx, d in self.moves:
            deltas[c, idx] += d
        return Rig(base, deltas, tuple(self.shapes), tuple(self.clamps))
