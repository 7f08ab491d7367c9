"""Write the browser preview: one self-contained ``.html`` file (no network, no external
files) that plays the speech and draws the face in sync.

What goes in the page:

- the speech as a base64 16-bit PCM WAV ``data:`` URI in an ``<audio>`` element;
- the animation(s) as JSON in a ``<script type="application/json">``: ``values`` are the
  (T, 52) blendshapes flattened row-major and quantised to integers 0..1000;
- the face rig (``parts.face_rig``: base points, sparse per-channel displacements, shapes,
  clamps), so the canvas face is the same face as in the video;
- ``face.js`` (the rig drawing, shared with the live page) and ``viewer.js`` (next to this
  module), which draws frame ``floor(t · fps)`` for the audio
  element's ``currentTime`` t on every animation frame while playing.

Time seek: ``page.html#t=1.25`` (or ``?t=1.25``) opens the page paused at 1.25 s; changing
the fragment seeks again. Once drawn, ``<body>`` carries ``data-ready="1"``, ``data-frame``,
``data-time``, ``data-errors`` (count of script errors, also listed in ``#errors``) and
``data-face-rect`` (first face canvas, CSS px "x,y,w,h"), for tests and scripts.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import wave
from pathlib import Path
from typing import Sequence

import numpy as np

from cafetalk_rt.blendshapes import ARKIT_NAMES, INDEX, NUM_BLENDSHAPES
from cafetalk_rt.frames import SAMPLE_RATE
from cafetalk_rt.preview.parts import face_rig
from cafetalk_rt.preview.rig import COLORS, Rig
from cafetalk_rt.preview.strip import STRIP_CURVES
from cafetalk_rt.writers import atomic_write

logger = logging.getLogger(__name__)

VIEWER_JS = Path(__file__).with_name("viewer.js")
#: The face drawing (window.CafeFace) shared with the live page of ``cafetalk-rt serve``.
FACE_JS = Path(__file__).with_name("face.js")
#: Blendshape values are stored as round(1000 · w): 0.0005 resolution, 4-5 characters each.
VALUE_SCALE = 1000
#: Rig coordinates are stored as round(10000 · face units): 0.04 px at 400 px, compact JSON.
RIG_SCALE = 10_000

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script>
window.__errors = [];
window.addEventListener("error", function (e) {{ window.__errors.push(String(e.message || e)); }});
window.addEventListener("unhandledrejection", function (e) {{ window.__errors.push("unhandled rejection: " + e.reason); }});
(function () {{ var ce = console.error; console.error = function () {{
  window.__errors.push(Array.prototype.join.call(arguments, " ")); ce.apply(console, arguments); }}; }})();
</script>
<style>
body {{ margin: 0; background: {strip_bg}; color: #dde3ea; font: 13px system-ui, sans-serif; }}
#app {{ padding: 12px; display: inline-block; }}
#panels {{ display: flex; gap: 0; }}
.panel {{ display: flex; flex-direction: column; }}
.panel .label {{ padding: 2px 4px; color: #fff; white-space: nowrap; overflow: hidden; }}
canvas {{ display: block; }}
#controls {{ display: flex; align-items: center; gap: 8px; margin: 8px 0; }}
#controls input[type=range] {{ flex: 1; }}
#play {{ width: 64px; }}
#time {{ min-width: 15em; font-variant-numeric: tabular-nums; }}
#legend span {{ margin-right: 10px; cursor: pointer; user-select: none; }}
#legend span.off {{ opacity: 0.35; text-decoration: line-through; }}
#active {{ margin-top: 6px; font-family: ui-monospace, monospace; font-size: 12px; min-height: 3em; }}
#errors {{ color: #ff6b6b; white-space: pre-wrap; }}
#curves {{ cursor: crosshair; }}
</style></head>
<body>
<div id="app">
<div id="panels"></div>
<div id="controls">
<button id="play" type="button">Play</button>
<input id="scrub" type="range" min="0" max="{duration}" step="0.001" value="0">
<span id="time">0.00 s</span>
<label>add curve <select id="add"><option value="">…</option></select></label>
</div>
<canvas id="curves"></canvas>
<div id="legend"></div>
<div id="active"></div>
<pre id="errors" hidden></pre>
<audio id="audio" preload="auto" src="data:audio/wav;base64,{audio_b64}"></audio>
</div>
<script id="data" type="application/json">{data}</script>
<script>
{face_js}
{viewer_js}
</script>
</body></html>
"""


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """``audio`` (L,) float32 in [-1, 1] → a mono 16-bit PCM WAV file in memory."""
    pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def rig_json(rig: Rig) -> dict:
    """The rig as plain JSON, coordinates in integer 1/``RIG_SCALE`` face units: ``base``
    [x0, y0, x1, …]; ``deltas`` [[channel, [point…],
    [dx0, dy0, …]], …] (non-zero only); ``shapes``; ``clamps`` [[moving…], [fixed…], above]."""
    q = np.round(rig.deltas * RIG_SCALE).astype(int)  # (52, Nv, 2)
    deltas = []
    for c in range(NUM_BLENDSHAPES):
        pts = np.nonzero(np.any(q[c] != 0, axis=1))[0]
        if pts.size:
            deltas.append([c, pts.tolist(), q[c, pts].ravel().tolist()])
    shapes = [{"name": s.name, "kind": s.kind, "idx": list(s.idx), "color": s.color, "width": s.width,
               "clip": s.clip, "a0": s.alpha0, "aw": [list(p) for p in s.alpha_w], "fade": s.fade_to}
              for s in rig.shapes]
    return {"unit": RIG_SCALE, "base": np.round(rig.base * RIG_SCALE).astype(int).ravel().tolist(),
            "deltas": deltas, "shapes": shapes,
            "clamps": [[m.tolist(), f.tolist(), bool(a)] for m, f, a in rig.clamps],
            "background": COLORS["background"]}


def page_data(clips: "Sequence[tuple[np.ndarray, str]]", fps: float, size_px: int) -> dict:
    """Everything ``viewer.js`` reads: clips, fps, curve list, channel names, rig."""
    return {
        "fps": float(fps), "num_frames": int(len(clips[0][0])), "size_px": int(size_px),
        "duration_s": len(clips[0][0]) / float(fps), "names": list(ARKIT_NAMES), "scale": VALUE_SCALE,
        "clips": [{"label": label, "values": np.round(np.asarray(x) * VALUE_SCALE).astype(int).ravel().tolist()}
                  for x, label in clips],
        "curves": [[name, [INDEX[c] for c in chans], color] for name, chans, color in STRIP_CURVES],
        "rig": rig_json(face_rig()),
    }


def build_page(audio: np.ndarray, clips: "Sequence[tuple[np.ndarray, str]]", fps: float, size_px: int = 320) -> str:
    """The page as a string; see the module docstring for what it holds."""
    data = json.dumps(page_data(clips, fps, size_px), separators=(",", ":")).replace("</", "<\\/")
    title = "cafetalk-rt preview: " + " vs ".join(label for _, label in clips if label)
    return _PAGE.format(title=html.escape(title), strip_bg="#1b2029", duration=f"{len(clips[0][0]) / fps:.6f}",
                        audio_b64=base64.b64encode(wav_bytes(audio)).decode("ascii"), data=data,
                        face_js=FACE_JS.read_text(encoding="utf-8"), viewer_js=VIEWER_JS.read_text(encoding="utf-8"))


def write_html(path: "str | Path", audio: np.ndarray, clips: "Sequence[tuple[np.ndarray, str]]", fps: float, *,
               size_px: int = 320, overwrite: bool = False) -> Path:
    """Write the self-contained preview page for ``clips`` (((T, 52), label), …) at ``fps``
    with ``audio`` (L,) float32 16 kHz, atomically.

    Raises:
        InputError, OutputExistsError: see ``writers.check_output_path``.
    """
    page = build_page(audio, clips, fps, size_px)
    with atomic_write(path, overwrite=overwrite) as fh:
        fh.write(page.encode("utf-8"))
    logger.info("wrote %s (%.1f kB)", path, len(page) / 1e3)
    return Path(path)
