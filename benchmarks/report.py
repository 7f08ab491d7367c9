"""``python -m benchmarks report``: the benchmark table, as JSON and markdown.

Writes ``<out>/<device-slug>-<date>.json`` and ``.md`` beside it. JSON schema (keep it stable):
top level :data:`TOP_LEVEL_FIELDS` (``device``, ``date``, ``commit``, ``torch``, ``rows``) plus
extra keys; each row :data:`ROW_FIELDS` first, then the extras of :data:`ROW_EXTRA_FIELDS`.

Units: ``latency_ms_*``, ``encoder_ms_p50``, ``floor_ms`` in milliseconds per call; ``audio_s``
seconds per clip; ``rtf`` = p50 seconds per second of audio processed (batch included);
``clips_per_s`` = batch / p50 seconds; ``speedup_vs_baseline`` = in-run paper-style baseline
ms per clip / this row's ms per clip (same audio length only); ``speedup_vs_paper`` = the
paper's 14 710 ms / this row's ms per clip (5 s rows only); ``floor_ratio`` = p50 / floor.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from benchmarks.engine import PAPER_AUDIO_S, PAPER_LATENCY_MS, RowSpec, Unavailable, measure, paper_baseline_spec
from benchmarks.roofline import RTX_2080_TI_PEAKS, Cost, call_cost

TOP_LEVEL_FIELDS = ("device", "date", "commit", "torch", "rows")
ROW_FIELDS = ("backend", "precision", "num_inference_steps", "batch_size", "audio_s", "cfg", "latency_ms_p50",
              "latency_ms_min", "rtf", "clips_per_s", "floor_ms", "is_paper_baseline")
ROW_EXTRA_FIELDS = ("sampler", "path", "encoder_ms_p50", "speedup_vs_baseline", "speedup_vs_paper", "floor_ratio",
                    "gflop_per_call", "mb_per_call", "repeats", "est_2080ti_ms", "cpu_ms_p50", "cpu_floor_ratio",
                    "load_avg_1m", "notes")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# -- rows -------------------------------------------------------------------------------------
def cpu_device() -> tuple[str, str]:
    """(this machine's CPU model, its file-name slug), e.g. ("AMD EPYC", "amd-epyc")."""
    from benchmarks.shipped_graphs import _cpu_name

    name = _cpu_name()
    return name, "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def write_result(result: dict, name: str, out: str | None = None) -> Path:
    """Write a benchmark's ``result`` (with a ``date``) as JSON to ``out``, or to
    ``results/<name>-<date>.json`` (``-2``, ``-3``, … when that day's file exists: an earlier
    result is never overwritten unless ``out`` names it); prints and returns the path."""
    path = Path(out) if out else RESULTS_DIR / f"{name}-{result['date']}.json"
    n = 1
    while not out and path.exists():
        n += 1
        path = RESULTS_DIR / f"{name}-{result['date']}-{n}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {path}")
    return path


def make_row(spec: RowSpec, times_ms: list[float], *, encoder_ms: float | None, cost: Cost, floor_s: float,
             notes: str = "") -> dict:
    """One row of the schema from measured call times (ms) and the call's roofline cost."""
    p50 = statistics.median(times_ms)
    audio = spec.audio_s * spec.batch_size
    row = {"backend": spec.backend, "precision": spec.precision, "num_inference_steps": spec.num_inference_steps,
           "batch_size": spec.batch_size, "audio_s": spec.audio_s, "cfg": spec.cfg,
           "latency_ms_p50": round(p50, 3), "latency_ms_min": round(min(times_ms), 3),
           "rtf": round(p50 / 1e3 / audio, 6), "clips_per_s": round(spec.batch_size / (p50 / 1e3), 3),
           "floor_ms": round(floor_s * 1e3, 4), "is_paper_baseline": spec.paper_baseline,
           "sampler": spec.sampler, "path": spec.path, "encoder_ms_p50": None if encoder_ms is None else round(encoder_ms, 3),
           "speedup_vs_baseline": None, "speedup_vs_paper": None,
           "floor_ratio": round(p50 / (floor_s * 1e3), 2) if floor_s > 0 else None,
           "gflop_per_call": round(cost.flops / 1e9, 3), "mb_per_call": round(cost.bytes / 1e6, 3),
           "repeats": len(times_ms), "est_2080ti_ms": None, "notes": notes}
    if spec.audio_s == PAPER_AUDIO_S:
        row["speedup_vs_paper"] = round(PAPER_LATENCY_MS / (p50 / spec.batch_size), 2)
    return row


def add_speedups(rows: list[dict]) -> None:
    """Fill ``speedup_vs_baseline`` of every row with the audio length of the in-run baseline
    (per clip: baseline ms / (row ms / batch))."""
    base = next((r for r in rows if r["is_paper_baseline"]), None)
    if base is None:
        return
    for r in rows:
        if r["audio_s"] == base["audio_s"]:
            r["speedup_vs_baseline"] = round(base["latency_ms_p50"] / (r["latency_ms_p50"] / r["batch_size"]), 2)


def est_2080ti_ms(latency_ms: float, cost: Cost, precision: str, peaks) -> float:
    """LABELLED ESTIMATE of a CUDA row's latency on an RTX 2080 Ti: the measured latency scaled by
    (this device's measured peak / the 2080 Ti's published peak) of the resource that bounds the
    floor (matmul rate or bandwidth). Launch and host overheads do not scale so; read it as a
    rough guide only."""
    compute_bound = cost.flops / peaks.matmul(precision) >= cost.bytes / peaks.bandwidth_bytes_per_s
    if compute_bound:
        ratio = peaks.matmul(precision) / RTX_2080_TI_PEAKS["matmul_flops_per_s"][precision]
    else:
        ratio = peaks.bandwidth_bytes_per_s / RTX_2080_TI_PEAKS["bandwidth_bytes_per_s"]
    return round(latency_ms * ratio, 2)


def validate_report(report: dict) -> None:
    """Raise ValueError unless ``report`` follows the schema (fields present, types right)."""
    missing = [k for k in TOP_LEVEL_FIELDS if k not in report]
    if missing:
        raise ValueError(f"report lacks top-level fields {missing}")
    types = {"backend": str, "precision": str, "num_inference_steps": int, "batch_size": int, "audio_s": (int, float),
             "cfg": bool, "latency_ms_p50": (int, float), "latency_ms_min": (int, float), "rtf": (int, float),
             "clips_per_s": (int, float), "floor_ms": (int, float), "is_paper_baseline": bool}
    for i, row in enumerate(report["rows"]):
        for k, t in types.items():
            if k not in row:
                raise ValueError(f"row {i} lacks {k!r}")
            if not isinstance(row[k], t) or (t is int and isinstance(row[k], bool)):
                raise ValueError(f"row {i}: {k}={row[k]!r} is not {t}")
        if row["latency_ms_min"] > row["latency_ms_p50"]:
            raise ValueError(f"row {i}: min latency above p50")


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Validate, then write ``<device_slug>-<date>.json`` and ``.md`` into ``out_dir``; returns
    both paths. Rows keep the schema's field order."""
    validate_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report['device_slug']}-{report['date']}"
    order = ROW_FIELDS + ROW_EXTRA_FIELDS
    rows = [{k: r[k] for k in order if k in r} | {k: v for k, v in r.items() if k not in order} for r in report["rows"]]
    report = {k: report[k] for k in TOP_LEVEL_FIELDS if k != "rows"} | \
             {k: v for k, v in report.items() if k not in TOP_LEVEL_FIELDS} | {"rows": rows}
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) >= 1 or v == 0 else f"{v:.{digits + 2}g}"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    """The rows as a GitHub markdown table (ms, ×)."""
    cpu = any(r.get("cpu_ms_p50") is not None for r in rows)
    head = ["backend", "precision", "sampler", "K", "CFG", "batch", "audio s", "p50 ms", "min ms"]
    head += ["encoder ms", "RTF", "clips/s", "floor ms", "p50/floor"] + ["CPU ms", "CPU/floor"] * cpu
    head += ["× baseline", "× paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"**{r['backend']} (paper-style baseline)**" if r["is_paper_baseline"] else r["backend"]
        name += " (fused animate_batch)" if r.get("path") == "animate_batch" else ""
        cells = [name, r["precision"], r.get("sampler", ""), r["num_inference_steps"], _fmt(r["cfg"]), r["batch_size"],
                 _fmt(float(r["audio_s"]), 0), _fmt(r["latency_ms_p50"]), _fmt(r["latency_ms_min"])]
        cells += [_fmt(r.get("encoder_ms_p50")), f"{r['rtf']:.3g}", _fmt(r["clips_per_s"], 2), _fmt(r["floor_ms"], 2),
                  _fmt(r.get("floor_ratio"))]
        cells += [_fmt(r.get("cpu_ms_p50")), _fmt(r.get("cpu_floor_ratio"))] * cpu
        cells += [_fmt(r.get("speedup_vs_baseline")), _fmt(r.get("speedup_vs_paper"))]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    """The whole markdown page of a report: setup lines, the table, skips and notes."""
    peaks = report.get("peaks", {})
    out = [f"# Benchmarks: {report['device']}", "",
           f"date {report['date']} · commit {report['commit']} · torch {report['torch']} · "
           f"onnxruntime {report.get('onnxruntime') or '—'} · {report.get('threads_note', '')}", "",
           f"Measured peaks: matmul {peaks.get('matmul_tflops')} TFLOP/s, copy {peaks.get('bandwidth_gb_per_s')} GB/s "
           f"({peaks.get('how', '')})" + (f"; per second of process CPU time: matmul "
           f"{peaks['cpu_time_matmul_tflops_fp32']} TFLOP/s, copy {peaks['cpu_time_bandwidth_gb_per_s']} GB/s "
           "(the `CPU/floor` column)" if "cpu_time_matmul_tflops_fp32" in peaks else "") + ".", "",
           f"Command: `{report.get('command', '')}`", ""]
    if report.get("partial"):
        out += ["**PARTIAL: the run was stopped before its last row.**", ""]
    out.append(markdown_table(report["rows"]))
    est = [r for r in report["rows"] if r.get("est_2080ti_ms") is not None]
    if est:
        out += ["**RTX 2080 Ti ESTIMATE** (not measured: measured latency × this device's measured peak / the 2080 Ti's "
                "published peak of the floor's bounding resource; overheads do not scale so):", "",
                "| backend | precision | K | CFG | batch | audio s | est. 2080 Ti ms |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['backend']}{' (baseline)' if r['is_paper_baseline'] else ''} | {r['precision']} | "
                f"{r['num_inference_steps']} | {_fmt(r['cfg'])} | {r['batch_size']} | {_fmt(float(r['audio_s']), 0)} | "
                f"{_fmt(r['est_2080ti_ms'])} |" for r in est if r["audio_s"] == PAPER_AUDIO_S and r["batch_size"] == 1]
        out.append("")
    if report.get("skipped"):
        out += ["Not measured:", ""] + [f"* {s['what']}: {s['reason']}" for s in report["skipped"]] + [""]
    out += [f"* {n}" for n in report.get("notes", [])]
    return "\n".join(out) + "\n"


# -- planning and running ---------------------------------------------------------------------
def plan_rows(pairs: list[tuple[str, str]], *, steps, batch_sizes, audio_s, cfgs, reference_steps: int,
              reference_audio_s: float = PAPER_AUDIO_S, baseline: bool = True, fused_pairs=()) -> list[RowSpec]:
    """Rows in priority order: the paper-style baseline; per (backend, precision) the K × CFG
    grid at batch 1 and the reference audio length (again through the one-call ``animate_batch``
    for ``fused_pairs``); the batches (> 1) and the other audio lengths at K =
    ``reference_steps`` with CFG, batch 1 for audio other than the reference (so the longest
    audio is measured at one K and batch 1 only)."""
    rows = [paper_baseline_spec(reference_audio_s)] if baseline else []
    for b, p in pairs:
        rows += [RowSpec(b, p, k, 1, reference_audio_s, c) for k in steps for c in cfgs]
    for b, p in fused_pairs:
        rows += [RowSpec(b, p, k, 1, reference_audio_s, c, fused=True) for k in steps for c in cfgs]
    for b, p in pairs:
        rows += [RowSpec(b, p, reference_steps, n, reference_audio_s, True) for n in batch_sizes if n > 1]
    for b, p in fused_pairs:
        rows += [RowSpec(b, p, reference_steps, n, reference_audio_s, True, fused=True) for n in batch_sizes if n > 1]
    for a in sorted(audio_s):
        if a != reference_audio_s:
            rows += [RowSpec(b, p, reference_steps, 1, a, True) for b, p in pairs]
    return rows


def _commit() -> str:
    """``$BENCH_COMMIT`` when set (the GPU machine's copy of the tree may carry a stale .git:
    ``gpu_run.sh`` sets it from the carried COMMIT file), else the ``git``-short commit (+
    "-dirty" with uncommitted tracked changes), else "unknown"."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "cafetalk_rt", "benchmarks", "export"],
                               cwd=root).returncode
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_report(args, out_dir: str | Path | None = None) -> dict:
    """Measure every planned row (see :func:`plan_rows`) and return the report dict. With
    ``out_dir`` a partial report (``"partial": true``) is written there after every row, so a run
    stopped early still leaves its rows; the caller writes the final one."""
    import torch
    from tqdm import tqdm

    from benchmarks.engine import Engines
    from benchmarks.hardware import device_name, device_slug, measure_peaks
    from cafetalk_rt.options import DEFAULT_NUM_INFERENCE_STEPS

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA device here")
    started = dt.datetime.now(dt.timezone.utc)
    load_start = os.getloadavg()[0]
    engines = Engines(args.device, args.model, threads=args.threads)
    peaks = measure_peaks(args.device, args.precisions)
    skipped: list[dict] = []
    pairs = []
    for name in args.backends or engines.names:
        for p in args.precisions:
            try:
                engines.animator(name, p)
                pairs.append((name, p))
            except Unavailable as e:
                skipped.append({"what": f"{name} {p}", "reason": str(e)})
    ref_k = DEFAULT_NUM_INFERENCE_STEPS if DEFAULT_NUM_INFERENCE_STEPS in args.steps else max(args.steps)
    ref_audio = PAPER_AUDIO_S if PAPER_AUDIO_S in args.audio_s else args.audio_s[0]
    fused = [(n, p) for n, p in pairs if hasattr(engines.animator(n, p).backend, "animate_batch")]
    specs = plan_rows(pairs, steps=args.steps, batch_sizes=args.batch_sizes, audio_s=args.audio_s, cfgs=args.cfg,
                      reference_steps=ref_k, reference_audio_s=ref_audio, baseline=args.baseline, fused_pairs=fused)
    for name, p in pairs:
        try:
            engines.preload(name, p, sorted({s.num_inference_steps for s in specs if s.backend == name}))
        except Unavailable as e:
            skipped.append({"what": f"{name} {p} graphs", "reason": str(e)})
    config = engines.animator("torch", "fp32").backend.config
    measured, encoder_cache = [], {}

    def report(final: bool) -> dict:
        rows = [_row(config, *m, peaks=peaks, cuda=cuda) for m in measured]
        add_speedups(rows)
        out = _report_dict(args, rows, skipped, peaks, started, load_start, device_name(args.device),
                           device_slug(args.device))
        if out_dir is not None and not final:
            write_report(dict(out, partial=True), out_dir)
        return out

    t_start = time.perf_counter()
    for spec in tqdm(specs, desc="rows", unit="row", file=sys.stderr):
        what = (f"{spec.backend}{' fused' if spec.fused else ''} {spec.precision} K={spec.num_inference_steps} cfg={'on' if spec.cfg else 'off'} "
                f"B={spec.batch_size} {spec.audio_s:g}s{' (paper baseline)' if spec.paper_baseline else ''}")
        if args.budget_s and time.perf_counter() - t_start > args.budget_s:
            skipped.append({"what": what, "reason": f"time budget of {args.budget_s:g} s spent"})
            continue
        try:
            work = engines.prepare(spec)
        except Unavailable as e:
            skipped.append({"what": what, "reason": str(e)})
            continue
        try:
            times, cpu_ms, enc_ms = _measure_row(engines, spec, work, args, encoder_cache)
        except Exception as e:  # noqa: BLE001 - one failing row must not lose a one-shot GPU run
            traceback.print_exc()
            skipped.append({"what": what, "reason": f"error: {type(e).__name__}: {str(e).strip()[:300]}"})
            continue
        measured.append((spec, times, cpu_ms, enc_ms, work, os.getloadavg()[0]))
        tqdm.write(f"{what:60s} p50 {statistics.median(times):10.2f} ms  min {min(times):10.2f} ms  "
                   f"({len(times)} runs)", file=sys.stderr)
        report(final=False)
        if not cuda:  # a shared CPU's measured peak varies with the other jobs: keep the best probe
            peaks = peaks.best(measure_peaks(args.device, args.precisions, repeats=2))
    peaks = peaks.best(measure_peaks(args.device, args.precisions))
    out = report(final=True)
    engines.close()
    return out


def _measure_row(engines, spec: RowSpec, work, args, encoder_cache: dict) -> tuple[list[float], list[float], float]:
    """Wall and process-CPU times (ms) of one row's calls, and the p50 of its speech encoder
    alone (ms, measured once per backend, precision, batch and audio length)."""
    timing = dict(warmup=args.warmup, repeats=args.repeats, min_time_s=args.min_time_s, max_time_s=args.max_time_s)
    cpu_ms: list[float] = []
    with work.context():
        if spec.paper_baseline:  # warm-up: the same kernels over 2 steps; then the full run
            measure(engines.prepare(replace(spec, num_inference_steps=2)).run, args.device, warmup=0, repeats=1)
            times = measure(work.run, args.device, warmup=0, repeats=args.baseline_repeats, cpu_ms=cpu_ms)
        else:
            times = measure(work.run, args.device, **timing, cpu_ms=cpu_ms)
        key = (spec.backend, spec.precision, spec.batch_size, spec.audio_s)
        if key not in encoder_cache:
            encoder_cache[key] = statistics.median(measure(work.encode, args.device, **timing))
    return times, cpu_ms, encoder_cache[key]


def _row(config, spec: RowSpec, times: list[float], cpu_ms: list[float], encoder_ms: float, work, load: float, *,
         peaks, cuda: bool) -> dict:
    """A schema row with its roofline figures (``config``: the ``DenoiserConfig``)."""
    cost = call_cost(config, work.segments, num_inference_steps=spec.num_inference_steps, branches=spec.branches,
                     precision=spec.precision, separate_branches=spec.paper_baseline)
    floor_s = cost.floor_s(peaks.matmul(spec.precision), peaks.bandwidth_bytes_per_s)
    row = make_row(spec, times, encoder_ms=encoder_ms, cost=cost, floor_s=floor_s, notes=work.notes)
    if cuda:
        row["est_2080ti_ms"] = est_2080ti_ms(row["latency_ms_p50"], cost, spec.precision, peaks)
    else:  # the same ratio in process CPU time, robust to other jobs on a shared CPU
        row["cpu_ms_p50"] = round(statistics.median(cpu_ms), 3)
        cpu_floor_s = cost.floor_s(peaks.cpu_matmul_flops_per_cpu_s, peaks.cpu_bandwidth_bytes_per_cpu_s)
        row["cpu_floor_ratio"] = round(row["cpu_ms_p50"] / (cpu_floor_s * 1e3), 2)
    row["load_avg_1m"] = round(load, 2)
    return row


def _report_dict(args, rows, skipped, peaks, started, load_start, device, slug) -> dict:
    import torch

    ort = sys.modules.get("onnxruntime")
    load_end = os.getloadavg()[0]
    threads = (f"{torch.get_num_threads()} torch threads" if not args.device.startswith("cuda")
               else f"CUDA {torch.version.cuda}") + (f", ONNX Runtime intra-op {args.threads}" if args.threads else "")
    notes = [f"1-min load average {load_start:.1f} at start, {load_end:.1f} at end on {os.cpu_count()} cores"
             + (": other jobs shared the machine, read wall times as upper bounds (cpu_ms_p50 is the work done)"
                if max(load_start, load_end)
                > (args.threads or os.cpu_count()) + 0.5 else ""),
             "latency = one end-to-end call (speech encoder + sampler + output), device synchronised, after warm-up; "
             "batch 1 through Animator.animate",
             f"paper: {PAPER_LATENCY_MS / 1e3:.2f} s for {PAPER_AUDIO_S:g} s of audio on an RTX 2080 Ti (paper config "
             "8x512 DiT + wav2vec2; ours is the shipped 4x256 model + Whisper tiny.en)",
             "floor = max(FLOPs / measured matmul peak, weight+I/O bytes / measured copy bandwidth), FLOPs counted from "
             "the model config (benchmarks/roofline.py)"]
    return {"device": device, "date": started.date().isoformat(), "commit": _commit(), "torch": torch.__version__,
            "device_slug": slug, "device_kind": "cuda" if args.device.startswith("cuda") else "cpu",
            "onnxruntime": getattr(ort, "__version__", None), "threads_note": threads,
            "command": "python -m benchmarks report " + " ".join(args.argv), "peaks": peaks.to_json(),
            "paper": {"latency_ms": PAPER_LATENCY_MS, "audio_s": PAPER_AUDIO_S, "device": "NVIDIA RTX 2080 Ti"},
            "rtx_2080_ti_published_peaks": RTX_2080_TI_PEAKS, "load_avg_1m": [round(load_start, 2), round(load_end, 2)],
            "started": started.isoformat(timespec="seconds"), "skipped": skipped, "notes": notes, "rows": rows}
