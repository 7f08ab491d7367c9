"""One-shot CUDA check of the ``torch_cudagraph`` backend (issue 5): parity, then timings.

On a CUDA machine (the device tool's command is in docs/gpu.md):

1. ``--pytest``: runs ``tests/test_cudagraph.py -m "gpu and not slow"`` (graph vs eager parity,
   replays with new inputs, bucket reuse, windows through ``Animator``, eager fallbacks) and
   keeps its log;
2. on 5 s of real speech (the bundled clip twice, cut to 5 s), batch 1, DDIM with CFG
   (s_c = 1.5, s_a = 1.3), K = 1, 2, 4, 10: the GPU log-mel against the host one, max abs differences of the graph against the same program
   run eagerly (``GRAPH_ATOL``), the eager fp16 path and the eager fp32 torch backend
   (``FP16_ATOL``), and a replay with new noise/scales/emotion/intensity against its eager result;
3. times, per K, audio (host numpy) → blendshapes (host numpy): eager fp32 (``TorchBackend`` on
   CUDA), eager fp16 (same weights as the graphs, no graph), the fused CUDA graph (one replay),
   the pipeline's encode + sample graphs (log-mel on the GPU in all graphs); plus the fused replay
   alone (device time, no host work) and the host log-mel the eager paths use. Each: median (p10, p90) of ``--replays`` (≥ 50) calls after warm-up,
   each call followed by ``torch.cuda.synchronize()``;
4. ``--compile``: the same fused graph with ``torch.compile`` for every K (first-call time, timings,
   parity).

Writes JSON (``torch.cuda.get_device_name()``, versions, tolerances, results) after every step to
``--out`` (default ``$OUT/gpu_cudagraph.json``, else ``benchmarks/results/gpu-cudagraph.json``), so
a run cut short keeps what it measured. Exit status: 0 all parity checks passed, 1 one failed,
2 no CUDA device.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AUDIO_S = 5.0
STEPS = (1, 2, 4, 10)
SCALES = {"guidance_scale": 1.5, "audio_guidance_scale": 1.3}


def timed(fn, *, replays: int, warmup: int) -> dict:
    """Median / p10 / p90 / min in ms of ``replays`` calls of ``fn`` after ``warmup`` calls, each
    ended by ``torch.cuda.synchronize()`` (device work included)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(replays):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ms.append(1e3 * (time.perf_counter() - t0))
    q = statistics.quantiles(ms, n=10)
    return {"median_ms": statistics.median(ms), "p10_ms": q[0], "p90_ms": q[-1], "min_ms": min(ms), "n": replays}


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max())


class Report:
    """The JSON result, rewritten to ``path`` after every step."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data
        self.failed = False

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")

    def check(self, section: dict, name: str, value: float, bound: float) -> None:
        ok = value <= bound
        section[name] = {"max_abs": value, "bound": bound, "ok": ok}
        self.failed |= not ok


def environment() -> dict:
    import torch

    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "commit": os.environ.get("BENCH_COMMIT") or _git_commit(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def run_pytest(report: Report, log_path: Path, timeout_s: int) -> None:
    cmd = [sys.executable, "-m", "pytest", "tests/test_cudagraph.py", "-m", "gpu and not slow", "-q", "-rs",
           "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:  # its stdout/stderr may be bytes even with text=True
        text = [x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr)]
        log, rc = "".join(text) + f"\nTIMEOUT after {timeout_s} s", -1
    log_path.write_text(log)
    report.data["pytest"] = {"command": " ".join(cmd[1:]), "returncode": rc, "seconds": time.perf_counter() - t0,
                             "summary": log.strip().splitlines()[-1] if log.strip() else "", "log": log_path.name}
    report.failed |= rc != 0
    report.save()


def check_and_time(report: Report, be, ref, audio: np.ndarray, *, replays: int, warmup: int) -> None:
    """Steps 2 and 3 of the module doc for every K in STEPS."""
    import torch

    from cafetalk_rt.backends.torch_cudagraph_backend import FP16_ATOL, GRAPH_ATOL
    from cafetalk_rt.frames import num_frames
    from cafetalk_rt.nn.speech_encoder import whisper_mel_batch
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.diffusion.noise import initial_noise

    t = num_frames(len(audio), be.config.fps)
    report.data["host_logmel"] = timed(lambda: whisper_mel_batch([audio]), replays=replays, warmup=warmup)
    from cafetalk_rt.nn.log_mel import exact_fp32_conv

    with torch.no_grad(), exact_fp32_conv():  # as in the graphs
        gpu_mel = be.log_mel(torch.from_numpy(audio)[None].to(be.device)).cpu().numpy()
    report.check(report.data, "gpu_logmel_vs_host_logmel", max_abs(gpu_mel, whisper_mel_batch([audio])[0]), 1e-4)
    for k in STEPS:
        opts = AnimateOptions(num_inference_steps=k, **SCALES)
        x, _ = initial_noise(0, t, k, False)
        kw = dict(emotion=5, intensity=3, options=opts)
        paths = {
            "eager_fp32": lambda: ref.sample(ref.encode(audio)[None], x, **kw),
            "eager_fp16": lambda: be.eager_sample(be.eager_encode(audio)[None], x, **kw),
            "graph_fp16_fused": lambda: be.animate_batch(audio[None], x, **kw),
            "graph_fp16_encode_then_sample": lambda: be.sample(be.encode(audio)[None], x, **kw),
        }
        entry = {"num_inference_steps": k, "sampler": opts.sampler, **SCALES, "frames": t, "parity": {}}
        report.data["results"].append(entry)
        captures = be.captures
        t0 = time.perf_counter()
        graph = paths["graph_fp16_fused"]()
        entry["first_call_ms"] = 1e3 * (time.perf_counter() - t0)  # log-mel + warm-up + capture + replay
        entry["graphs_captured"] = be.captures - captures
        p = entry["parity"]
        same_program = be.animate_batch(audio[None], x, **kw, graph=False)
        report.check(p, "graph_vs_same_program_eager", max_abs(graph, same_program), GRAPH_ATOL)
        report.check(p, "graph_vs_eager_fp16", max_abs(graph, paths["eager_fp16"]()), FP16_ATOL)
        report.check(p, "graph_vs_eager_fp32", max_abs(graph, paths["eager_fp32"]()), FP16_ATOL)
        report.check(p, "encode_then_sample_vs_eager_fp32",
                     max_abs(paths["graph_fp16_encode_then_sample"](), paths["eager_fp32"]()), FP16_ATOL)
        new = AnimateOptions(num_inference_steps=k, guidance_scale=2.5, audio_guidance_scale=1.1)
        x2 = np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32)
        kw2 = dict(emotion=2, intensity=1, options=new)
        before = be.captures
        replayed = be.animate_batch(audio[None], x2, **kw2)
        p["replay_new_inputs_recaptured"] = be.captures != before
        report.failed |= be.captures != before
        report.check(p, "replay_new_inputs_vs_same_program_eager",
                     max_abs(replayed, be.animate_batch(audio[None], x2, **kw2, graph=False)), GRAPH_ATOL)
        report.check(p, "replay_new_inputs_vs_eager_fp32",
                     max_abs(replayed, ref.sample(ref.encode(audio)[None], x2, **kw2)), FP16_ATOL)
        report.save()
        entry["timings"] = {name: timed(fn, replays=replays, warmup=warmup) for name, fn in paths.items()}
        be.animate_batch(audio[None], x, **kw)  # make the fused bucket the last one used
        graph_obj = be.cached_graph(be.last_key)
        entry["timings"]["graph_fp16_fused_replay_only"] = timed(graph_obj.replay, replays=replays, warmup=warmup)
        e = entry["timings"]
        entry["speedup_fused_vs_eager_fp32"] = e["eager_fp32"]["median_ms"] / e["graph_fp16_fused"]["median_ms"]
        entry["speedup_fused_vs_eager_fp16"] = e["eager_fp16"]["median_ms"] / e["graph_fp16_fused"]["median_ms"]
        report.save()
        print(f"K={k}: " + ", ".join(f"{n} {v['median_ms']:.2f} ms" for n, v in e.items()), flush=True)


def check_compile(report: Report, model, audio: np.ndarray, *, replays: int, warmup: int) -> None:
    """Step 4: the fused graph with ``torch.compile``, every K in STEPS (largest first: it compiles;
    the others reuse the compiled networks, whose shapes do not depend on K)."""
    from cafetalk_rt.backends.torch_cudagraph_backend import FP16_ATOL, CudaGraphBackend
    from cafetalk_rt.frames import num_frames
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.diffusion.noise import initial_noise

    report.data["compile"] = []
    try:
        be = CudaGraphBackend(model, compile=True)
    except Exception as e:  # recorded, not fatal: compile is optional
        report.data["compile_error"] = f"{type(e).__name__}: {e}"
        return
    for k in sorted(STEPS, reverse=True):
        section = {"num_inference_steps": k, "parity": {}}
        report.data["compile"].append(section)
        try:
            opts = AnimateOptions(num_inference_steps=k, **SCALES)
            x, _ = initial_noise(0, num_frames(len(audio), be.config.fps), k, False)
            kw = dict(emotion=5, intensity=3, options=opts)
            t0 = time.perf_counter()
            got = be.animate_batch(audio[None], x, **kw)
            section["first_call_s"] = time.perf_counter() - t0  # (compile +) warm-up + capture
            eager = be.eager_sample(be.eager_encode(audio)[None], x, **kw)
            report.check(section["parity"], "compiled_graph_vs_eager_fp16", max_abs(got, eager), FP16_ATOL)
            section["timings"] = {"graph_fp16_fused_compiled": timed(lambda: be.animate_batch(audio[None], x, **kw),
                                                                     replays=replays, warmup=warmup)}
            section["timings"]["replay_only"] = timed(be.cached_graph(be.last_key).replay, replays=replays,
                                                      warmup=warmup)
            print(f"compiled K={k}: " + ", ".join(f"{n} {v['median_ms']:.2f} ms" for n, v in section["timings"].items()),
                  flush=True)
        except Exception as e:  # recorded, not fatal: compile is optional
            section["error"] = f"{type(e).__name__}: {e}"
            section["traceback"] = traceback.format_exc()[-3000:]
        report.save()
    report.save()


def speech(seconds: float) -> np.ndarray:
    """The bundled real clip (3.1 s) repeated and cut to ``seconds`` (16 kHz float32)."""
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.pipeline import DEMO_CLIP

    clip = load_audio(DEMO_CLIP)
    n = int(round(seconds * 16_000))
    return np.tile(clip, -(-n // len(clip)))[:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = Path(os.environ["OUT"]) / "gpu_cudagraph.json" if os.environ.get("OUT") else \
        ROOT / "benchmarks" / "results" / "gpu-cudagraph.json"
    ap.add_argument("--out", type=Path, default=default_out, help="JSON result path")
    ap.add_argument("--replays", type=int, default=100, help="timed calls per path (≥ 50)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--pytest", action="store_true", help="run the gpu-marked tests first")
    ap.add_argument("--pytest-timeout", type=int, default=300)
    ap.add_argument("--compile", action="store_true", help="also time the graph with torch.compile")
    ap.add_argument("--compile-only", action="store_true", help="only step 4 (torch.compile), nothing else")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped model)")
    args = ap.parse_args(argv)
    if args.replays < 50:
        ap.error("--replays must be at least 50")
    import torch

    if not torch.cuda.is_available():
        print("gpu_cudagraph_check needs a CUDA device (torch.cuda.is_available() is False); "
              "on a CPU use --backend torch", file=sys.stderr)
        return 2
    from cafetalk_rt.backends.torch_backend import TorchBackend
    from cafetalk_rt.backends.torch_cudagraph_backend import FP16_ATOL, GRAPH_ATOL, CudaGraphBackend
    from cafetalk_rt.pipeline import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    report = Report(args.out, {
        **environment(), "model": Path(model).name, "audio_s": AUDIO_S, "batch": 1, "replays": args.replays,
        "warmup": args.warmup, "tolerances": {"GRAPH_ATOL": GRAPH_ATOL, "FP16_ATOL": FP16_ATOL},
        "results": []})
    report.save()
    env = report.data
    print(f"{env['device']}, torch {env['torch']} (CUDA {env['cuda']}) -> {args.out}", flush=True)
    if args.pytest:
        run_pytest(report, args.out.with_name(args.out.stem + "_pytest.log"), args.pytest_timeout)
        print("pytest:", report.data["pytest"]["summary"], flush=True)
    try:
        audio = speech(AUDIO_S)
        if not args.compile_only:
            t0 = time.perf_counter()
            be, ref = CudaGraphBackend(model), TorchBackend(model, device="cuda")
            report.data["load_s"] = time.perf_counter() - t0
            check_and_time(report, be, ref, audio, replays=args.replays, warmup=args.warmup)
            del be, ref
            torch.cuda.empty_cache()
        if args.compile or args.compile_only:
            check_compile(report, model, audio, replays=args.replays, warmup=args.warmup)
    except Exception as e:
        report.data["error"] = f"{type(e).__name__}: {e}"
        report.data["traceback"] = traceback.format_exc()[-4000:]
        report.failed = True
        report.save()
        raise
    report.data["all_parity_ok"] = not report.failed
    report.save()
    print("parity", "ok" if not report.failed else "FAILED", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
