"""``python -m benchmarks.shipped_graphs --reference DIR``: the shipped graphs (fp16-stored
weights computed in fp32, one shared weights file) against plain fp32 graphs of the same model,
on ONNX Runtime CPU: session load time, resident memory, per-call speed and bit-level parity.

``DIR`` holds fp32 graphs exported the usual way (``cafetalk-rt export onnx --out DIR --graphs
speech_encoder denoiser_step sampler``). Each side runs in its own child process, so memory and
load time are not shared. Writes ``benchmarks/results/shipped-graphs-cpu-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.report import write_result
from cafetalk_rt.backends.contract import graph_filename
from cafetalk_rt.model_files import DEMO_CLIP, SHIPPED_GRAPHS_DIR
from cafetalk_rt.options import DEFAULT_NUM_INFERENCE_STEPS

K = DEFAULT_NUM_INFERENCE_STEPS
AUDIO_S = 5.0


def _feeds(encoder_meta) -> tuple[dict, dict]:
    """5 s of the bundled real clip (tiled), seeded noise, one emotion: the encoder and sampler feeds."""
    from cafetalk_rt.audio import load_audio

    audio = np.resize(load_audio(DEMO_CLIP), int(AUDIO_S * 16_000))[None]  # (1, L)
    noise = np.random.default_rng(0).standard_normal((1, int(AUDIO_S * 25), 52), dtype=np.float32)
    conds = {"emotion": np.array([5]), "intensity": np.array([2.0], np.float32),
             "guidance_scale": np.array([1.5], np.float32), "audio_guidance_scale": np.array([1.0], np.float32)}
    return {"audio": audio}, {"noise": noise, **conds}


def measure_side(graph_dir: str, repeats: int) -> dict:
    """Load the speech encoder and the fused K-step sampler from ``graph_dir`` (1 thread) and time
    them; returns timings (ms), load time (s), peak RSS (MB) and the outputs (as lists)."""
    from cafetalk_rt.backends.contract import GraphMetadata
    from cafetalk_rt.backends.onnxruntime_backend import OnnxRuntimeRunner

    t0 = time.perf_counter()
    enc = OnnxRuntimeRunner(Path(graph_dir) / graph_filename("speech_encoder", "fp32"), intra_op_num_threads=1)
    smp = OnnxRuntimeRunner(Path(graph_dir) / graph_filename("sampler", "fp32", K), intra_op_num_threads=1)
    load_s = time.perf_counter() - t0
    enc_meta, smp_meta = (GraphMetadata.from_metadata(r.metadata) for r in (enc, smp))
    audio_feed, cond_feed = _feeds(enc_meta)
    times = {"speech_encoder": [], "sampler": []}
    for i in range(repeats + 1):
        t = time.perf_counter()
        feats = enc(enc_meta.feed(**audio_feed))["audio_features"]
        t_enc = time.perf_counter()
        out = smp(smp_meta.feed(audio_features=feats, **cond_feed))["blendshapes"]
        t_end = time.perf_counter()
        if i:  # the first call warms up
            times["speech_encoder"].append(1e3 * (t_enc - t))
            times["sampler"].append(1e3 * (t_end - t_enc))
    times["host_ddim_over_step_graph"] = _host_ddim_ms(graph_dir, feats, cond_feed, repeats)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"load_s": load_s, "peak_rss_mb": rss_mb,
            "ms": {k: {"min": min(v), "p50": float(np.median(v))} for k, v in times.items()},
            "features": feats.tolist(), "blendshapes": out.tolist()}


def _host_ddim_ms(graph_dir: str, feats: np.ndarray, cond_feed: dict, repeats: int) -> list[float]:
    """The same K DDIM steps run on the host over the ``denoiser_step`` graph (what the runtime
    does for a K without a fused graph), ms per call after one warm-up."""
    from cafetalk_rt.backends.contract import GraphMetadata
    from cafetalk_rt.backends.onnxruntime_backend import OnnxRuntimeRunner
    from cafetalk_rt.diffusion.samplers import sample_ddim
    from cafetalk_rt.diffusion.schedule import inference_timesteps, make_schedule

    step = OnnxRuntimeRunner(Path(graph_dir) / graph_filename("denoiser_step", "fp32"), intra_op_num_threads=1)
    meta = GraphMetadata.from_metadata(step.metadata)
    schedule = make_schedule(meta.schedule, meta.num_train_timesteps)
    conds = {k: v for k, v in cond_feed.items() if k != "noise"}

    def denoiser(x_t, t):
        return step(meta.feed(x_t=x_t, timestep=np.array([t]), audio_features=feats, **conds))["x0_pred"]

    out = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        sample_ddim(denoiser, cond_feed["noise"], inference_timesteps(K, meta.num_train_timesteps), schedule)
        if i:
            out.append(1e3 * (time.perf_counter() - t0))
    return out


def _child(graph_dir: Path, repeats: int) -> dict:
    code = (f"import json, sys; from benchmarks.shipped_graphs import measure_side; "
            f"print(json.dumps(measure_side({str(graph_dir)!r}, {repeats})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _bytes(graph_dir: Path, shipped: bool) -> int:
    if shipped:
        return sum(p.stat().st_size for p in graph_dir.iterdir())
    names = [graph_filename("speech_encoder", "fp32"), graph_filename("denoiser_step", "fp32"),
             graph_filename("sampler", "fp32", K)]
    return sum((graph_dir / n).stat().st_size for n in names if (graph_dir / n).is_file())


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.shipped_graphs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="directory of plain fp32 graphs of the shipped model")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/shipped-graphs-cpu-<date>.json)")
    args = ap.parse_args(argv)
    ref, shipped = _child(Path(args.reference), args.repeats), _child(SHIPPED_GRAPHS_DIR, args.repeats)
    diff = {k: float(np.abs(np.asarray(ref[k]) - np.asarray(shipped[k])).max()) for k in ("features", "blendshapes")}
    result = {
        "what": f"ONNX Runtime CPU, 1 thread, {AUDIO_S:g} s of real speech, DDIM K={K} with CFG 1.5: plain fp32 graphs "
                "vs the shipped graphs (fp16-stored weights computed in fp32, one shared weights.bin)",
        "device": _cpu_name(), "python": platform.python_version(),
        "onnxruntime": __import__("onnxruntime").__version__, "date": date.today().isoformat(),
        "max_abs_diff": diff,
        "reference": {k: v for k, v in ref.items() if k not in ("features", "blendshapes")} | {
            "bytes_on_disk": _bytes(Path(args.reference), False)},
        "shipped": {k: v for k, v in shipped.items() if k not in ("features", "blendshapes")} | {
            "bytes_on_disk": _bytes(SHIPPED_GRAPHS_DIR, True)},
    }
    print(json.dumps({k: result[k] for k in ("max_abs_diff", "reference", "shipped")}, indent=1))
    write_result(result, "shipped-graphs-cpu", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
