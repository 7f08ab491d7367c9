"""``python -m benchmarks.serve_load DEVSET``: ``cafetalk-rt serve`` under load and faults.

Starts ``cafetalk-rt serve`` (a subprocess, ONNX Runtime, loopback only), then for each client
count N: N clients stream real speech (the dev set's recordings, each client a different order,
``--seconds`` long) at real time over ``/v1/stream`` at once, in ``--chunk-ms`` chunks; with
``--faults`` three more clients run beside them: one vanishes after 1 s, one sends garbage, one
sends 12 s of audio at once (faster than real time). Reports, per N: frames received vs expected,
frame latency p50/p95/max (pooled over the N clients and the worst client's p95; latency of frame
t = arrival − the moment the audio up to t / fps had been sent), the largest difference from what
each client's audio gives a LiveStream alone (same seed), and /healthz afterwards. Writes
``benchmarks/results/serve-load-<device>-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.report import write_result


def _streams(devset: Path, n: int, seconds: float) -> list[np.ndarray]:
    from cafetalk_rt.audio import load_audio

    clips = [load_audio(p) for p in sorted(devset.glob("*.wav"))]
    out = []
    for i in range(n):
        parts, total = [], 0
        k = i
        while total < seconds * 16000:
            parts.append(clips[k % len(clips)])
            total += parts[-1].size
            k += 3
        out.append(np.concatenate(parts)[: int(seconds * 16000)])
    return out


def _faults(host: str, flood_audio: np.ndarray, results: dict) -> list[threading.Thread]:
    from websockets.sync.client import connect

    from cafetalk_rt.serve.client import stream_clip

    def vanish():
        r = stream_clip(host, flood_audio[:48000], realtime=True, stop_after_s=1.0)
        results["vanish"] = {"frames_before_leaving": int(r.frames.shape[0])}

    def garbage():
        answers = []
        with connect(f"ws://{host}/v1/stream") as ws:
            for msg in (b"\x00\x01\x02", "{nope", json.dumps({"type": "start", "emotion": "zzz"})):
                ws.send(msg)
                answers.append(json.loads(ws.recv(timeout=30))["type"])
        results["garbage"] = answers

    def flood():
        r = stream_clip(host, np.tile(flood_audio, 3)[: 12 * 16000], chunk_s=0.5)
        results["flood"] = [m.get("message", m["type"]) for m in r.messages][:2]

    return [threading.Thread(target=f) for f in (vanish, garbage, flood)]


def run_load(host: str, audios: list[np.ndarray], chunk_s: float, faults: bool) -> dict:
    from cafetalk_rt.serve.client import stream_clip

    results, fault_results = {}, {}

    def client(i):
        results[i] = stream_clip(host, audios[i], chunk_s=chunk_s, realtime=True)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(audios))]
    if faults:
        threads += _faults(host, audios[0], fault_results)
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return {"clients": [results.get(i) for i in range(len(audios))], "faults": fault_results}


def _alone(audios: list[np.ndarray]) -> list[np.ndarray]:
    from cafetalk_rt.longform.live import LiveStream
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import Animator

    animator = Animator()
    out = []
    for a in audios:
        s = LiveStream(animator, AnimateOptions(num_inference_steps=2, seed=0))
        out.append(np.concatenate([s.push(a), s.flush()]))
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import cpu_device
    from cafetalk_rt.serve.client import free_port

    ap = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("devset", help="folder of real recordings (../shared/devset)")
    ap.add_argument("--clients", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--seconds", type=float, default=8.0, help="audio per client")
    ap.add_argument("--chunk-ms", type=float, default=40.0, help="client chunk size")
    ap.add_argument("--faults", action="store_true", help="also run the three faulty clients beside them")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    port = free_port()
    host = f"127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "cafetalk_rt.cli", "serve", "--port", str(port),
                               "--max-streams", str(max(args.clients) + 4), "--log-level", "warning"])
    rows = []
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://{host}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        for n in args.clients:
            audios = _streams(Path(args.devset), n, args.seconds)
            res = run_load(host, audios, args.chunk_ms / 1e3, args.faults)
            alone = _alone(audios)
            lat = [c.latencies_ms for c in res["clients"] if c is not None]
            pooled = np.concatenate(lat) if lat else np.zeros(1)
            with urllib.request.urlopen(f"http://{host}/healthz", timeout=10) as r:
                health = json.loads(r.read())
            row = {"clients": n, "faults": args.faults, "audio_s_per_client": args.seconds,
                   "chunk_ms": args.chunk_ms,
                   "frames_expected": int(sum(a.shape[0] for a in alone)),
                   "frames_received": int(sum(c.frames.shape[0] for c in res["clients"] if c is not None)),
                   "all_done": all(c is not None and c.done for c in res["clients"]),
                   "latency_ms_p50": round(float(np.percentile(pooled, 50)), 1),
                   "latency_ms_p95": round(float(np.percentile(pooled, 95)), 1),
                   "latency_ms_max": round(float(pooled.max()), 1),
                   "worst_client_p95_ms": round(max(float(np.percentile(x, 95)) for x in lat), 1),
                   "max_abs_diff_vs_alone": float(max(np.abs(c.frames - a).max() if c.frames.shape == a.shape else np.inf
                                                      for c, a in zip(res["clients"], alone))),
                   "fault_results": res["faults"], "healthz_after": health}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "healthz_after"}), flush=True)
    finally:
        server.terminate()
        server.wait(30)
    result = {"what": "cafetalk-rt serve (ONNX Runtime, shipped 0.16 s streaming graph) with N real-time WebSocket "
                      "clients streaming the dev set's real recordings on loopback",
              "device": cpu_device()[0], "date": date.today().isoformat(), "rows": rows}
    write_result(result, f"serve-load-{cpu_device()[1]}", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
