"""The device a benchmark runs on: its name, synchronisation, and its MEASURED peak matmul rate
and memory bandwidth (the roofline's denominators)."""
from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch


def cpu_name() -> str:
    """CPU model from /proc/cpuinfo (e.g. "AMD EPYC"), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_name(device: str) -> str:
    """Human-readable device: the GPU's name for "cuda[:N]", else the CPU model with its core count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def slug(text: str) -> str:
    """Lower-case file-name form: "NVIDIA H100 80GB HBM3" → "nvidia-h100-80gb-hbm3"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_slug(device: str) -> str:
    """``cpu-<cpu model>`` or ``cuda-<gpu name>``: the results file's device part."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    name = torch.cuda.get_device_name(torch.device(device)) if kind == "cuda" else cpu_name()
    return slug(f"{kind} {name}")


def synchronize(device: str) -> None:
    """Wait for queued device work (no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _best_seconds(fn, device: str, repeats: int) -> tuple[float, float]:
    """Fastest wall time and fastest process CPU time (all threads) of ``repeats`` synchronised
    calls of ``fn`` after one warm-up, in seconds."""
    fn()
    synchronize(device)
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


@dataclass
class Peaks:
    """Measured device peaks.

    Attributes:
        matmul_flops_per_s: {precision: FLOP/s} of a large square matmul (best of a few runs).
        bandwidth_bytes_per_s: bytes/s of a large device-to-device copy, read + write counted.
        cpu_matmul_flops_per_cpu_s, cpu_bandwidth_bytes_per_cpu_s: CPU only, the same per second
            of process CPU time (all threads): what the cores do while they run us, which other
            jobs on a shared machine do not depress the way they depress wall-time rates.
        how: what was measured (sizes, dtypes).
    """

    matmul_flops_per_s: dict[str, float] = field(default_factory=dict)
    bandwidth_bytes_per_s: float = 0.0
    cpu_matmul_flops_per_cpu_s: float = 0.0
    cpu_bandwidth_bytes_per_cpu_s: float = 0.0
    how: str = ""

    def matmul(self, precision: str) -> float:
        """Peak for a precision; fp32's where that precision was not measured (e.g. fp16 on CPU).

        Raises:
            KeyError: neither ``precision`` nor fp32 was measured.
        """
        peaks = self.matmul_flops_per_s
        if precision in peaks:  # (not .get(p, peaks["fp32"]): that fails when only fp16 was measured)
            return peaks[precision]
        if "fp32" in peaks:
            return peaks["fp32"]
        raise KeyError(f"no matmul peak measured for {precision!r} or fp32 (measured: {sorted(peaks)})")

    def best(self, other: "Peaks") -> "Peaks":
        """Per-resource maximum of two measurements. Every measurement is a lower bound of the
        device's peak (on a shared CPU, other jobs depress it), so the highest is the closest."""
        keys = set(self.matmul_flops_per_s) | set(other.matmul_flops_per_s)
        return Peaks({k: max(self.matmul_flops_per_s.get(k, 0.0), other.matmul_flops_per_s.get(k, 0.0)) for k in keys},
                     max(self.bandwidth_bytes_per_s, other.bandwidth_bytes_per_s),
                     max(self.cpu_matmul_flops_per_cpu_s, other.cpu_matmul_flops_per_cpu_s),
                     max(self.cpu_bandwidth_bytes_per_cpu_s, other.cpu_bandwidth_bytes_per_cpu_s),
                     self.how.split("; ")[0] + "; the highest of all probes of the run")

    def to_json(self) -> dict:
        out = {"matmul_tflops": {k: round(v / 1e12, 4) for k, v in self.matmul_flops_per_s.items()},
               "bandwidth_gb_per_s": round(self.bandwidth_bytes_per_s / 1e9, 2), "how": self.how}
        if self.cpu_matmul_flops_per_cpu_s:
            out["cpu_time_matmul_tflops_fp32"] = round(self.cpu_matmul_flops_per_cpu_s / 1e12, 4)
            out["cpu_time_bandwidth_gb_per_s"] = round(self.cpu_bandwidth_bytes_per_cpu_s / 1e9, 2)
        return out


def measure_peaks(device: str, precisions=("fp32", "fp16"), *, repeats: int = 5) -> Peaks:
    """Measure the matmul rate (n × n × n, n = 8192 on CUDA, 2048 on CPU) per precision and the
    copy bandwidth (1 GiB on CUDA, 256 MiB on CPU), per wall second and (CPU) per CPU second.
    fp16 is measured on CUDA only; fp32 on CUDA runs with TF32 off (PyTorch's default for
    matmul), as the engine's fp32 rows do."""
    cuda = device.startswith("cuda")
    n = 8192 if cuda else 2048
    dtypes = {"fp32": torch.float32, "fp16": torch.float16}
    peaks = Peaks()
    for p in precisions:
        if p not in dtypes or (p != "fp32" and not cuda):
            continue
        a = torch.randn(n, n, device=device, dtype=dtypes[p])
        b = torch.randn(n, n, device=device, dtype=dtypes[p])
        wall, cpu = _best_seconds(lambda: torch.mm(a, b), device, repeats)
        peaks.matmul_flops_per_s[p] = 2 * n**3 / wall
        if not cuda:
            peaks.cpu_matmul_flops_per_cpu_s = 2 * n**3 / cpu
        del a, b
    numel = (1 << 30 if cuda else 1 << 28) // 4
    src = torch.empty(numel, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    wall, cpu = _best_seconds(lambda: dst.copy_(src), device, repeats)
    peaks.bandwidth_bytes_per_s = 2 * 4 * numel / wall
    if not cuda:
        peaks.cpu_bandwidth_bytes_per_cpu_s = 2 * 4 * numel / cpu
    threads = "" if cuda else f", {torch.get_num_threads()} torch threads"
    peaks.how = (f"best of {repeats}: torch.mm {n}x{n}x{n} ({', '.join(peaks.matmul_flops_per_s)}), "
                 f"copy of {4 * numel >> 20} MiB float32 counting read + write{threads}")
    return peaks
