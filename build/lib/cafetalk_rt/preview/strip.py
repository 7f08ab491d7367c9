"""The curve strip under the face in the video: the main channels over the whole clip, a
label, a legend and second ticks, drawn once with Pillow; per frame only the playhead column
is painted (``CurveStrip.frame``), so it costs a memory copy.

``STRIP_CURVES`` is shared with the browser page, which draws the same curves in JS.
"""
from __future__ import annotations

import numpy as np

from cafetalk_rt.blendshapes import INDEX

#: (legend label, channels averaged, colour): what lip-sync and expression review look at.
STRIP_CURVES: "tuple[tuple[str, tuple[str, ...], str], ...]" = (
    ("jawOpen", ("jawOpen",), "#ffb000"),
    ("close", ("mouthClose",), "#ff5c5c"),
    ("funnel", ("mouthFunnel",), "#7fd1ff"),
    ("pucker", ("mouthPucker",), "#c58cff"),
    ("smile", ("mouthSmileLeft", "mouthSmileRight"), "#7ee081"),
    ("browUp", ("browInnerUp",), "#f4f4f4"),
    ("blinkL", ("eyeBlinkLeft",), "#ff8fd8"),
    ("blinkR", ("eyeBlinkRight",), "#4fe0c8"),
)
STRIP_BACKGROUND = "#1b2029"
PLAYHEAD_RGB = (255, 255, 255)


def strip_height(size_px: int) -> int:
    """Strip height in pixels for a face of ``size_px``: about 30 %, even (yuv420p)."""
    return 2 * int(round(0.15 * size_px))


def curve_values(blendshapes: np.ndarray) -> np.ndarray:
    """``blendshapes`` (T, 52) → (len(STRIP_CURVES), T) float32: each curve's channel mean."""
    x = np.asarray(blendshapes, np.float32)
    return np.stack([x[:, [INDEX[c] for c in chans]].mean(1) for _, chans, _ in STRIP_CURVES])


def frame_x(num_frames: int, width: int) -> np.ndarray:
    """x pixel of each frame's curve point and playhead: frame 0 at 0, the last at width-1."""
    return np.linspace(0.0, width - 1.0, num_frames) if num_frames > 1 else np.zeros(1)


class CurveStrip:
    """A ``width`` × ``strip_height(size_px)`` RGB strip of ``blendshapes`` (T, 52) at ``fps``.

    Raises:
        MissingDependencyError: Pillow is missing.
    """

    def __init__(self, blendshapes: np.ndarray, fps: float, width: int, size_px: int, label: str = "") -> None:
        from cafetalk_rt.preview.face import import_pillow

        Image, ImageDraw, ImageFont = import_pillow()
        self.width, self.height = int(width), strip_height(size_px)
        font = ImageFont.load_default(max(9, size_px // 30))
        self.top = int(font.getbbox("Ag")[3]) + 4  # header row: label and legend
        img = Image.new("RGB", (self.width, self.height), STRIP_BACKGROUND)
        draw = ImageDraw.Draw(img)
        num_frames = len(blendshapes)
        xs = frame_x(num_frames, self.width)
        plot_h = self.height - self.top - 2
        for sec in range(1, int(num_frames / fps) + 1):  # whole-second ticks
            x = float(np.interp(sec * fps, np.arange(num_frames), xs))
            draw.line([(x, self.top), (x, self.height)], fill="#39414f")
        for (name, _, color), ys in zip(STRIP_CURVES, curve_values(blendshapes)):
            y = self.top + 1 + (1.0 - ys) * plot_h
            if num_frames > 1:
                draw.line(np.stack([xs, y], 1).ravel().tolist(), fill=color, width=1)
        x = 3
        if label:
            draw.text((x, 1), label, fill="#ffffff", font=font)
            x += int(font.getlength(label)) + 10
        for name, _, color in STRIP_CURVES:
            if x + font.getlength(name) > self.width:
                break  # narrow strips show the legend entries that fit
            draw.text((x, 1), name, fill=color, font=font)
            x += int(font.getlength(name)) + 6
        self.image = np.asarray(img).copy()  # (H, W, 3) uint8
        self._xs = np.round(xs).astype(int)

    def frame(self, i: int, out: np.ndarray) -> None:
        """Write the strip with the playhead at frame ``i`` into ``out`` (height, width, 3)."""
        out[:] = self.image
        out[self.top:, self._xs[min(i, len(self._xs) - 1)]] = PLAYHEAD_RGB
