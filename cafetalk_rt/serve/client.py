"""A Python client of ``/v1/stream`` (``websockets``), and the server in a thread.

* :func:`stream_clip`: stream audio to a running ``cafetalk-rt serve`` as a live client does
  (chunks, optionally paced at real time), collect the frames and each frame's latency (the
  wall time from the moment the audio up to the frame's own time had been sent to the moment the
  frame arrived, as ``cafetalk-rt stream --report`` defines it).
* :class:`ServerThread`: ``uvicorn`` serving an app in a daemon thread (tests, benchmarks,
  embedding in a Python program).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """``uvicorn`` serving ``app`` on 127.0.0.1 in a daemon thread (``with ServerThread(app) as url``)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                   ws_ping_interval=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class StreamResult:
    """``frames`` (T, 52) float32 ARKit weights; ``latencies_ms`` (T,) per frame (empty when the
    client vanished); ``messages``: every message but ``frames`` (ready is not kept); ``done``:
    the server sent ``done``."""

    frames: np.ndarray
    latencies_ms: np.ndarray
    messages: list = field(default_factory=list)
    done: bool = False


def stream_clip(host: str, audio: np.ndarray, *, chunk_s: float = 0.08, realtime: bool = False,
                start: dict | None = None, sample_rate: int = 16000, fmt: str = "f32le",
                stop_after_s: float | None = None, timeout_s: float = 120.0) -> StreamResult:
    """Stream ``audio`` (L,) float32 at ``sample_rate`` Hz to ``ws://host/v1/stream`` in chunks of
    ``chunk_s`` seconds and collect the frames.

    Args:
        start: extra fields of the start message (emotion, intensity, lookahead_ms, seed, fps).
        fmt: "f32le" or "s16le".
        stop_after_s: vanish (close the socket without ``end``) after that much audio.
    Returns:
        :class:`StreamResult`; when the server refuses the start, its error is the only message.
    Raises:
        OSError / websockets errors: the server cannot be reached.
    """
    from websockets.sync.client import connect

    hop = max(1, int(round(chunk_s * sample_rate)))
    pushes, arrivals, frames, others = [], [], [], []
    with connect(f"ws://{host}/v1/stream", open_timeout=timeout_s, max_size=None) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": sample_rate, "format": fmt, **(start or {})}))
        ready = json.loads(ws.recv(timeout=timeout_s))
        if ready["type"] != "ready":
            return StreamResult(np.zeros((0, 52), np.float32), np.zeros(0), [ready])
        fps = ready["fps"]
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    m = json.loads(ws.recv(timeout=timeout_s))
                except Exception:  # closed by us or the server
                    return
                if m["type"] == "frames":
                    frames.extend(m["blendshapes"])
                    arrivals.append((m["start"], len(m["blendshapes"]), time.perf_counter()))
                else:
                    others.append(m)
                    if m["type"] in ("done",) or m.get("fatal"):
                        return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t0 = time.perf_counter()
        for i in range(0, audio.size, hop):
            if stop_after_s is not None and i >= stop_after_s * sample_rate:
                stop.set()
                ws.close()
                return StreamResult(np.asarray(frames, np.float32), np.zeros(0), others)
            chunk = audio[i : i + hop]
            if realtime:
                time.sleep(max(0.0, t0 + (i + chunk.size) / sample_rate - time.perf_counter()))
            data = chunk.astype("<f4").tobytes() if fmt == "f32le" else \
                (np.clip(chunk, -1, 1) * 32767).round().astype("<i2").tobytes()
            pushes.append((i + chunk.size, time.perf_counter()))
            ws.send(data)
        ws.send(json.dumps({"type": "end"}))
        t.join(timeout_s)
    from cafetalk_rt.longform.live import frame_latencies_ms

    lat = frame_latencies_ms(pushes, [(count, wall) for _, count, wall in arrivals], fps, sample_rate)
    return StreamResult(np.asarray(frames, np.float32), np.asarray(lat), others,
                        done=any(m["type"] == "done" for m in others))
