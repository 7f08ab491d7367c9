"""``cafetalk-rt stream INPUT -o OUT``: replay a file as a live stream (:mod:`cafetalk_rt.longform.live`).

The file is pushed in hop-sized chunks, at real time with ``--realtime`` (each chunk when its
audio would have been spoken), else as fast as the machine goes. The frames are written in any
format ``animate`` writes, and ``--report`` writes the stream's timing as JSON:

* ``rtf``: compute seconds (inside push/flush) per second of audio;
* ``latency_ms_p50/p95/max``: per output frame t, the wall time from the moment the stream had
  been given the audio up to t's own time (t / fps) to the moment frame t was returned.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def register(sub) -> None:
    """Add the ``stream`` subcommand (see ``cafetalk_rt.cli.main.SUBCOMMAND_MODULES``)."""
    from cafetalk_rt.backends import BACKENDS, DEFAULT_BACKEND
    from cafetalk_rt.control.emotions import EMOTIONS
    from cafetalk_rt.frames import SUPPORTED_FPS
    from cafetalk_rt.longform.live import LiveOptions

    d = LiveOptions()
    p = sub.add_parser("stream", help="replay a speech file as a live stream (low look-ahead), with a latency report",
                       description="Animate a file the way a live stream is animated: every hop, the newest frames, "
                                   "final at once, hearing only --lookahead-ms of future audio.")
    p.add_argument("input", help="speech audio file")
    p.add_argument("-o", "--output", required=True, help="frames: .npz, .csv (Live Link Face) or .json (three.js)")
    p.add_argument("--lookahead-ms", type=float, default=1e3 * d.lookahead_s,
                   help=f"future audio a frame may hear (default {1e3 * d.lookahead_s:g}; 80 supported)")
    p.add_argument("--hop-ms", type=float, default=1e3 * d.hop_s,
                   help=f"audio per step, a whole number of 25 fps frames (default {1e3 * d.hop_s:g})")
    p.add_argument("--realtime", action="store_true", help="push chunks at the pace of real time")
    p.add_argument("--emotion", default="neutral", help=f"one of {', '.join(EMOTIONS)}")
    p.add_argument("--intensity", type=int, default=2, choices=(1, 2, 3))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-blinks", dest="blinks", action="store_false",
                   help="leave out the seeded procedural blinks (docs/blinks.md)")
    p.add_argument("--num-inference-steps", type=int, default=2, metavar="K",
                   help="denoising steps per hop (default 2: K = 2 matches K = 4 on lip metrics at half the cost)")
    p.add_argument("--guidance-scale", type=float, default=1.5, help="CFG scale of the emotion condition (1 = off)")
    p.add_argument("--fps", type=int, default=25, choices=SUPPORTED_FPS)
    p.add_argument("--model", default=None, help="denoiser checkpoint (default: the shipped model)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--report", default=None, metavar="REPORT.json", help="write the timing report here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Stream ``args.input`` through a :class:`~cafetalk_rt.longform.live.LiveStream`; returns 0."""
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.frames import SAMPLE_RATE
    from cafetalk_rt.longform.live import LiveOptions, LiveStream, frame_latencies_ms
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import Animator
    from cafetalk_rt.writers import check_output_path, save_animation

    check_output_path(args.output, overwrite=args.overwrite)
    if args.report:
        check_output_path(args.report, overwrite=args.overwrite)
    live = LiveOptions(lookahead_s=args.lookahead_ms / 1e3, hop_s=args.hop_ms / 1e3)
    options = AnimateOptions(emotion=args.emotion, intensity=args.intensity, seed=args.seed, fps=args.fps,
                             num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                             blinks=args.blinks)
    audio = load_audio(args.input)
    animator = Animator(args.model, backend=args.backend, device=args.device)
    stream = LiveStream(animator, options, live)
    hop = int(round(live.hop_s * SAMPLE_RATE))
    frames, pushes, returns, compute_s = [], [], [], 0.0
    start = time.perf_counter()
    for i in range(0, audio.size, hop):
        chunk = audio[i : i + hop]
        if args.realtime:  # this chunk exists once its last sample has been spoken
            time.sleep(max(0.0, start + (i + chunk.size) / SAMPLE_RATE - time.perf_counter()))
        t0 = time.perf_counter()
        pushes.append((i + chunk.size, t0))
        out = stream.push(chunk)
        t1 = time.perf_counter()
        compute_s += t1 - t0
        frames.append(out)
        returns.append((len(out), t1))
    t0 = time.perf_counter()
    out = stream.flush()
    t1 = time.perf_counter()
    compute_s += t1 - t0
    frames.append(out)
    returns.append((len(out), t1))
    blend = np.concatenate(frames)
    duration_s = audio.size / SAMPLE_RATE
    path = save_animation(args.output, blend, float(args.fps), overwrite=args.overwrite,
                          metadata={"input": str(args.input), "mode": "live stream", "lookahead_ms": args.lookahead_ms,
                                    "hop_ms": args.hop_ms, "emotion": args.emotion, "intensity": args.intensity,
                                    "seed": args.seed, "num_inference_steps": args.num_inference_steps})
    lat = frame_latencies_ms(pushes, returns, args.fps)
    report = {"input": str(args.input), "backend": args.backend, "realtime": bool(args.realtime),
              "lookahead_ms": args.lookahead_ms, "hop_ms": args.hop_ms, "fps": args.fps,
              "num_inference_steps": args.num_inference_steps, "frames": int(blend.shape[0]),
              "audio_s": duration_s, "compute_s": compute_s, "rtf": compute_s / duration_s,
              "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p95": float(np.percentile(lat, 95)),
              "latency_ms_max": float(lat.max())}
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{path}: {blend.shape[0]} frames at {args.fps} fps ({duration_s:.2f} s); look-ahead {args.lookahead_ms:g} ms, "
          f"rtf {report['rtf']:.3f}, latency p50 {report['latency_ms_p50']:.0f} ms, p95 {report['latency_ms_p95']:.0f} ms")
    return 0
