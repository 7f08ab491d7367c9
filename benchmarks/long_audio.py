"""Long audio and streaming on CPU (torch or ONNX Runtime backend): a measurement, not a test.

``python -m benchmarks.long_audio [--backend onnxruntime] [--minutes 5] [--steps 10] [--stream-s 40]``
reports

* offline: wall time, real-time factor and peak RSS of ``Animator.animate`` on a recording of
  ``--minutes`` (the bundled real clip tiled with 1 s of digital silence between repetitions),
  after a warm-up call;
  Wall and CPU (process) time are both reported: on a busy machine the CPU time is the cost.
* streaming: for 0.1 s and 0.5 s chunks, the first-frame delay (audio look-ahead + compute of
  the push that completes the first window) and the per-push cost (median over all pushes and
  the maximum, i.e. a push that completes a window), for the default windows and ``LOW_LATENCY``.

Peak RSS is the process's high-water mark (``ru_maxrss``), model and audio included; run this
in a fresh process. Prints one JSON object; ``--out FILE`` also writes it.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from dataclasses import asdict

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def recording(clip: np.ndarray, seconds: float, gap_s: float = 1.0) -> np.ndarray:
    """(L,) float32: ``clip`` tiled with ``gap_s`` of silence between repetitions, cut to ``seconds``."""
    unit = np.concatenate([clip, np.zeros(int(gap_s * 16000), np.float32)])
    return np.resize(unit, int(seconds * 16000)).astype(np.float32)


def offline(animator, audio, options) -> dict:
    from cafetalk_rt.longform.windows import WindowOptions

    animator.animate(audio[: 25 * 16000], options)  # warm-up: windowed, two windows
    rss_before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    anim = animator.animate(audio, options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    dur = audio.size / 16000
    return {"audio_s": dur, "frames": anim.num_frames, "wall_s": round(wall, 2), "rtf": round(wall / dur, 4),
            "cpu_s": round(cpu, 2), "cpu_rtf": round(cpu / dur, 4), "rss_before_mb": round(rss_before),
            "peak_rss_mb": round(_rss_mb()), "windows": asdict(WindowOptions())}


def streaming(animator, audio, options, windows, chunk_s: float) -> dict:
    from cafetalk_rt.longform.streaming import StreamingAnimator

    s = StreamingAnimator(animator, options, windows=windows)
    chunk = int(chunk_s * 16000)
    costs, cpus, first = [], [], None
    for i in range(0, audio.size, chunk):
        t0, c0 = time.perf_counter(), time.process_time()
        out = s.push(audio[i : i + chunk])
        costs.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if first is None and len(out):
            first = {"audio_s": (i + chunk) / 16000, "compute_s": costs[-1], "cpu_s": cpus[-1]}
    s.flush()
    return {"window_s": windows.window_s, "overlap_s": windows.overlap_s, "context_s": windows.context_s,
            "chunk_s": chunk_s, "look_ahead_s": s.first_frame_delay_s,
            "first_frame_delay_s": round(first["audio_s"] + first["compute_s"], 3),
            "first_window_compute_s": round(first["compute_s"], 3),
            "push_median_ms": round(1e3 * statistics.median(costs), 3), "push_max_ms": round(1e3 * max(costs), 1),
            "first_window_cpu_s": round(first["cpu_s"], 3), "push_max_cpu_ms": round(1e3 * max(cpus), 1),
            "pushes": len(costs), "rtf": round(sum(costs) / (audio.size / 16000), 4),
            "cpu_rtf": round(sum(cpus) / (audio.size / 16000), 4)}


def main(argv=None) -> int:
    import torch

    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import DEMO_CLIP, Animator
    from cafetalk_rt.longform.streaming import LOW_LATENCY
    from cafetalk_rt.longform.windows import WindowOptions

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=None, help="K (default: the library default)")
    ap.add_argument("--stream-s", type=float, default=40.0, help="seconds of audio streamed per setting (0: skip)")
    ap.add_argument("--skip-offline", action="store_true")
    ap.add_argument("--backend", default="onnxruntime", help="backend name (onnxruntime, torch, …); default onnxruntime")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    options = AnimateOptions() if args.steps is None else AnimateOptions(num_inference_steps=args.steps)
    animator = Animator(backend=args.backend)
    clip = load_audio(DEMO_CLIP)
    result = {"backend": args.backend, "torch_threads": torch.get_num_threads(), "num_inference_steps": options.num_inference_steps,
              "sampler": options.sampler, "guidance_scale": options.guidance_scale}
    if not args.skip_offline:
        result["offline"] = offline(animator, recording(clip, 60 * args.minutes), options)
    if args.stream_s > 0:
        audio = recording(clip, args.stream_s)
        result["streaming"] = [streaming(animator, audio, options, w, c)
                               for w in (WindowOptions(), LOW_LATENCY) for c in (0.1, 0.5)]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
