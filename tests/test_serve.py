"""``cafetalk-rt serve``: live streams over the WebSocket equal a LiveStream alone, under load and
faults; HTTP /v1/animate equals the CLI; bad clients get clear errors and disturb nobody."""
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from cafetalk_rt.serve.client import ServerThread, stream_clip  # noqa: E402

MAX_STREAMS = 8


@pytest.fixture(scope="module")
def server(animator):
    from cafetalk_rt.serve.app import create_app

    app = create_app(animator, max_streams=MAX_STREAMS, max_buffer_s=5.0)
    with ServerThread(app) as host:
        yield host, app


@pytest.fixture(scope="module")
def alone(animator, demo_audio):
    """The frames one LiveStream gives the bundled clip (seed 0, 0.16 s look-ahead, intensity 2)."""
    from cafetalk_rt.longform.live import LiveStream
    from cafetalk_rt.options import AnimateOptions

    s = LiveStream(animator, AnimateOptions(num_inference_steps=2, intensity=2, seed=0))
    return np.concatenate([s.push(demo_audio), s.flush()])


def _get(host, path):
    with urllib.request.urlopen(f"http://{host}{path}", timeout=60) as r:
        return r.status, r.read()


def _post(host, path, body):
    req = urllib.request.Request(f"http://{host}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_stream_equals_the_live_stream_alone(server, demo_audio, alone):
    host, _ = server
    res = stream_clip(host, demo_audio, chunk_s=0.05)
    assert res.done and res.frames.shape == alone.shape == (round(demo_audio.size / 16000 * 25), 52)
    assert np.abs(res.frames - alone).max() < 1e-4
    assert res.messages[-1] == {"type": "done", "frames": len(alone)}


def test_any_rate_and_s16le_are_resampled(server, demo_audio, alone):
    import soxr

    host, _ = server
    x44 = soxr.resample(demo_audio, 16000, 44100).astype(np.float32)
    res = stream_clip(host, x44, chunk_s=0.033, sample_rate=44100, fmt="s16le")
    assert res.done and res.frames.shape == alone.shape
    jaw = 17  # jawOpen in ARKit order
    assert np.corrcoef(res.frames[:, jaw], alone[:, jaw])[0, 1] > 0.95


def test_concurrent_real_time_streams_with_faults_disturb_nobody(server, demo_audio, alone):
    """4 real-time clients, plus one that vanishes mid-stream, one sending garbage and one
    sending far faster than real time: the 4 get exactly their frames, the server stays healthy."""
    from websockets.sync.client import connect

    host, app = server
    results, faults = {}, {}

    def normal(i):
        results[i] = stream_clip(host, demo_audio, realtime=True)

    def vanish():
        faults["vanish"] = stream_clip(host, demo_audio, realtime=True, stop_after_s=1.0)

    def garbage():
        with connect(f"ws://{host}/v1/stream") as ws:
            answers = []
            for msg in (b"\x00\x01binary before start", "{not json", json.dumps({"type": "dance"}),
                        json.dumps({"type": "start", "emotion": "zzz"}), json.dumps({"type": "start", "fps": 12})):
                ws.send(msg)
                answers.append(json.loads(ws.recv(timeout=30)))
            ws.send(json.dumps({"type": "start"}))
            answers.append(json.loads(ws.recv(timeout=30)))  # usable after all that
            ws.send(np.full(160, np.nan, "<f4").tobytes())
            answers.append(json.loads(ws.recv(timeout=30)))
            faults["garbage"] = answers

    def flood():
        long = np.tile(demo_audio, 4)  # 12 s, sent at once: past the 5 s bound
        faults["flood"] = stream_clip(host, long, chunk_s=0.5)

    threads = [threading.Thread(target=normal, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=f) for f in (vanish, garbage, flood)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for i in range(4):
        assert results[i].done and results[i].frames.shape == alone.shape
        assert np.abs(results[i].frames - alone).max() < 1e-4, i
    kinds = [a["type"] for a in faults["garbage"]]
    assert kinds == ["error", "error", "error", "error", "error", "ready", "error"], faults["garbage"]
    texts = " | ".join(a.get("message", "") for a in faults["garbage"])
    for words in ("before start", "malformed JSON", "unknown message type", "unknown emotion", "fps must be",
                  "NaN or Inf"):
        assert words in texts
    flood_errors = [m["message"] for m in faults["flood"].messages if m["type"] == "error"]
    assert flood_errors and "faster than real time" in flood_errors[0]
    status, body = _get(host, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["backend"] == "onnxruntime"
    assert health["active_streams"] == 0 and health["streams_served"] >= 5


def test_over_max_streams_is_refused_clearly(server):
    from websockets.sync.client import connect

    host, _ = server
    with contextlib.ExitStack() as held:
        for _ in range(MAX_STREAMS):
            held.enter_context(connect(f"ws://{host}/v1/stream"))
        with connect(f"ws://{host}/v1/stream") as extra:
            msg = json.loads(extra.recv(timeout=30))
            assert msg["type"] == "error" and f"limit of {MAX_STREAMS}" in msg["message"]
    time.sleep(0.5)
    with connect(f"ws://{host}/v1/stream") as again:  # the slots are free again
        again.send(json.dumps({"type": "start"}))
        assert json.loads(again.recv(timeout=30))["type"] == "ready"


def test_mid_stream_emotion_change_moves_the_face(server, demo_audio, alone):
    """A control message changes the brows/cheeks after it and not before (smooth change)."""
    from websockets.sync.client import connect

    host, _ = server
    frames = []
    with connect(f"ws://{host}/v1/stream", max_size=None) as ws:
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        half = demo_audio.size // 2
        ws.send(demo_audio[:half].astype("<f4").tobytes())
        ws.send(json.dumps({"type": "control", "emotion": "happy", "intensity": 3}))
        ws.send(demo_audio[half:].astype("<f4").tobytes())
        ws.send(json.dumps({"type": "end"}))
        while True:
            m = json.loads(ws.recv(timeout=60))
            if m["type"] == "frames":
                frames.extend(m["blendshapes"])
            if m["type"] in ("done", "error"):
                break
    assert m["type"] == "done"
    out = np.asarray(frames, np.float32)
    change = round(half / 16000 * 25)
    assert np.abs(out[: change - 6] - alone[: change - 6]).max() < 1e-4  # before: untouched
    from cafetalk_rt.blendshapes import INDEX

    smile = [INDEX["mouthSmileLeft"], INDEX["mouthSmileRight"]]
    assert out[change + 10 :, smile].mean() > alone[change + 10 :, smile].mean() + 0.05


def test_http_animate_equals_the_cli(server, tmp_path, demo_audio):
    from cafetalk_rt.model_files import DEMO_CLIP

    host, _ = server
    status, body = _post(host, "/v1/animate?format=csv&emotion=happy&intensity=3&seed=7", DEMO_CLIP.read_bytes())
    assert status == 200
    out = tmp_path / "cli.csv"
    subprocess.run([sys.executable, "-m", "cafetalk_rt.cli", "animate", str(DEMO_CLIP), "-o", str(out),
                    "--emotion", "happy", "--intensity", "3", "--seed", "7"], check=True, capture_output=True)
    assert body == out.read_bytes()
    status, body = _post(host, "/v1/animate?format=npz&au=AU12%3D0.8%401.0-2.0", DEMO_CLIP.read_bytes())
    assert status == 200
    import io

    npz = np.load(io.BytesIO(body))
    assert npz["blendshapes"].shape == (round(demo_audio.size / 16000 * 25), 52)


def test_http_bad_audio_gets_the_clis_message(server, tmp_path):
    host, _ = server
    status, body = _post(host, "/v1/animate?filename=talk.wav", b"RIFF not really a wav")
    assert status == 422
    message = json.loads(body)["error"]
    bad = tmp_path / "talk.wav"
    bad.write_bytes(b"RIFF not really a wav")
    cli = subprocess.run([sys.executable, "-m", "cafetalk_rt.cli", "animate", str(bad), "-o", str(tmp_path / "o.csv")],
                         capture_output=True, text=True)
    assert message.startswith("cannot read audio file 'talk.wav' (")
    assert cli.returncode == 2 and "cannot read audio file" in cli.stderr and message.split("); ")[1] in cli.stderr
    status, body = _post(host, "/v1/animate?emotion=zzz", b"")
    assert status in (400, 422) and json.loads(body)["error"]


def test_serve_cli_starts_on_loopback_and_stops_cleanly_on_ctrl_c():
    import signal

    from cafetalk_rt.serve.client import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cafetalk_rt.cli", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):
            try:
                status, body = _get(f"127.0.0.1:{port}", "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200 and json.loads(body)["active_streams"] == 0
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "127.0.0.1" in out and "Traceback" not in out


def test_serve_cli_refuses_bad_flags():
    bad = subprocess.run([sys.executable, "-m", "cafetalk_rt.cli", "serve", "--max-streams", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--max-streams must be at least 1" in bad.stderr


def test_edge_cases_get_clear_answers(server, demo_audio):
    """end without audio, a look-ahead with no graph, control before start, 30 fps output."""
    from websockets.sync.client import connect

    host, _ = server
    with connect(f"ws://{host}/v1/stream", max_size=None) as ws:
        ws.send(json.dumps({"type": "control", "emotion": "happy"}))
        assert "before start" in json.loads(ws.recv(timeout=30))["message"]
        ws.send(json.dumps({"type": "start", "lookahead_ms": 120}))
        msg = json.loads(ws.recv(timeout=60))
        assert msg["type"] == "error" and "cafetalk-rt export streaming" in msg["message"]
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "end"}))
        msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "error" and "empty or silent" in msg["message"]
        ws.send(json.dumps({"type": "start", "fps": 30}))  # the connection is usable again
        assert json.loads(ws.recv(timeout=30))["fps"] == 30
        ws.send(demo_audio.astype("<f4").tobytes())
        ws.send(json.dumps({"type": "end"}))
        frames = 0
        while (m := json.loads(ws.recv(timeout=60)))["type"] == "frames":
            frames += len(m["blendshapes"])
        assert m == {"type": "done", "frames": frames} and frames == round(demo_audio.size / 16000 * 30)
