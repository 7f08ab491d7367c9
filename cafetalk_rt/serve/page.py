"""The live page ``cafetalk-rt serve`` hosts at ``/``: one self-contained HTML document (no
network fetches but its own WebSocket) with the preview's face rig and drawing
(``preview/face.js``) and ``live.js``, which streams the microphone or a chosen file to
``/v1/stream`` and draws each frame as it arrives, with the measured sound → face delay."""
from __future__ import annotations

import functools
import json
from pathlib import Path

from cafetalk_rt.blendshapes import ARKIT_NAMES
from cafetalk_rt.control.emotions import EMOTIONS

LIVE_JS = Path(__file__).with_name("live.js")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cafetalk-rt live</title>
<style>
body {{ margin: 0; background: #1b2029; color: #dde3ea; font: 14px system-ui, sans-serif; }}
#app {{ padding: 12px; display: inline-block; }}
#controls {{ display: flex; flex-wrap: wrap; align-items: center; gap: 8px; margin: 8px 0; }}
#delay {{ font-variant-numeric: tabular-nums; min-height: 1.4em; }}
#status {{ color: #9fb3c8; }}
canvas {{ display: block; }}
</style></head>
<body data-state="loading" data-frames="0">
<div id="app">
<canvas id="face" width="{size}" height="{size}"></canvas>
<div id="controls">
<button id="mic" type="button">Microphone</button>
<input id="file" type="file" accept="audio/*"><button id="play" type="button">Play file</button>
<button id="stop" type="button">Stop</button>
<label>emotion <select id="emotion">{emotions}</select></label>
<label>look-ahead <select id="lookahead"><option>160</option><option>80</option></select> ms</label>
</div>
<div id="delay"></div>
<div id="status"></div>
</div>
<script id="data" type="application/json">{data}</script>
<script>
{face_js}
{live_js}
</script>
</body></html>
"""


@functools.lru_cache(maxsize=1)
def live_page(size_px: int = 320) -> str:
    """The page as a string (built once)."""
    from cafetalk_rt.preview.html import FACE_JS, rig_json
    from cafetalk_rt.preview.parts import face_rig

    data = json.dumps({"size_px": size_px, "names": list(ARKIT_NAMES), "rig": rig_json(face_rig())},
                      separators=(",", ":")).replace("</", "<\\/")
    emotions = "".join(f"<option>{e}</option>" for e in EMOTIONS)
    return _PAGE.format(size=size_px, emotions=emotions, data=data, face_js=FACE_JS.read_text(encoding="utf-8"),
                        live_js=LIVE_JS.read_text(encoding="utf-8"))
