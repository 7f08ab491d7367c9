"""The live page of ``cafetalk-rt serve`` in headless Chromium: a fake microphone plays real
speech, the page streams it over the WebSocket, frames come back and the mouth moves.

Chromium is driven over its DevTools protocol (``--remote-debugging-port``, JSON over a
WebSocket) to read the page's ``data-*`` state and take a screenshot."""
import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from cafetalk_rt.serve.client import ServerThread, free_port  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium; "
                                                         ".ci/run installs it)")


class DevTools:
    """The page target of a Chromium started with ``--remote-debugging-port``."""

    def __init__(self, port: int, timeout_s: float = 60.0):
        from websockets.sync.client import connect

        deadline = time.time() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as r:
                    pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("Chromium's DevTools endpoint did not come up")
            time.sleep(0.2)
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None).__enter__()
        self.id = 0

    def close(self) -> None:
        self.ws.__exit__(None, None, None)

    def call(self, method: str, **params) -> dict:
        self.id += 1
        self.ws.send(json.dumps({"id": self.id, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv(timeout=60))
            if m.get("id") == self.id:
                return m.get("result", {})

    def dataset(self) -> dict:
        r = self.call("Runtime.evaluate", expression="JSON.stringify(Object.assign({}, (document.body || {}).dataset))",
                      returnByValue=True)
        value = r.get("result", {}).get("value")
        return json.loads(value) if value else {}  # the page is still loading: ask again


def test_live_page_animates_from_a_fake_microphone(animator, demo_audio, tmp_path):
    import soundfile as sf

    from cafetalk_rt.serve.app import create_app

    wav = tmp_path / "speech.wav"
    sf.write(wav, demo_audio, 16000, subtype="PCM_16")
    port = free_port()
    with ServerThread(create_app(animator, max_streams=2)) as host:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
               f"--user-data-dir={tmp_path / 'profile'}", "--use-fake-device-for-media-stream",
               "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
               "--autoplay-policy=no-user-gesture-required", f"--remote-debugging-port={port}",
               "--remote-allow-origins=*", "--window-size=560,640", f"http://{host}/?autostart=mic&seconds=4"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            page = DevTools(port)
            deadline, state, png = time.time() + 90, {}, None
            while time.time() < deadline:
                state = page.dataset()
                if png is None and int(state.get("frames", 0)) >= 50:  # mid-stream, with the delay shown
                    png = page.call("Page.captureScreenshot", format="png")["data"]
                if state.get("state") in ("done", "error"):
                    break
                time.sleep(0.25)
            page.close()
        finally:
            proc.terminate()
            proc.wait(30)
    assert state.get("state") == "done", state
    assert state["capture"] == "audio-worklet"  # 127.0.0.1 is a secure context
    assert int(state["frames"]) >= 90  # 4 s of microphone at 25 fps
    assert float(state["jawMax"]) - float(state["jawMin"]) > 0.15  # the mouth moved with the speech
    assert 0 < int(state["delayP95"]) < 3000
    import base64
    import io

    from PIL import Image

    assert png is not None
    shot = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB"))
    (tmp_path / "live_page.png").write_bytes(base64.b64decode(png))
    assert shot.shape[0] > 300 and shot[:320, :320].std() > 10  # a face was drawn on the canvas
