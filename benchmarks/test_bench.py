"""pytest-benchmark cases: end-to-end latency of 5 s of speech (speech encoder included).

Not part of the test suite (pyproject's ``testpaths`` is ``tests``); run them explicitly:

    python -m pytest benchmarks/test_bench.py                          # CPU: ONNX Runtime, torch
    python -m pytest benchmarks/test_bench.py -m gpu --benchmark-json out.json   # CUDA cases

CPU cases always run (ONNX Runtime exports its graphs into the cache on first use, ~1 min);
``gpu`` cases run every registry backend × precision on CUDA and skip, with the reason, what
cannot run there (and everything without CUDA). The full table with the paper baseline and the
roofline floor is ``python -m benchmarks report``.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks.engine import Engines, RowSpec, Unavailable
from benchmarks.hardware import synchronize
from cafetalk_rt.backends import BACKENDS

AUDIO_S = 5.0
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def cpu_engines():
    engines = Engines("cpu")
    yield engines
    engines.close()


@pytest.fixture(scope="module")
def cuda_engines():
    engines = Engines("cuda")
    yield engines
    engines.close()


def _bench(benchmark, engines: Engines, spec: RowSpec, rounds: int):
    try:
        work = engines.prepare(spec)
    except Unavailable as e:
        pytest.skip(f"{spec.backend} {spec.precision} on {engines.device}: {e}")

    def call():
        out = work.run()
        synchronize(engines.device)
        return out

    benchmark.group = f"{engines.device} {spec.audio_s:g} s batch {spec.batch_size}"
    benchmark.extra_info.update(backend=spec.backend, precision=spec.precision, num_inference_steps=spec.num_inference_steps,
                                batch_size=spec.batch_size, audio_s=spec.audio_s, cfg=spec.cfg)
    with work.context():
        out = benchmark.pedantic(call, rounds=rounds, warmup_rounds=1, iterations=1)
    assert out.shape[-1] == 52 and 0.0 <= out.min() and out.max() <= 1.0
    benchmark.extra_info["rtf"] = benchmark.stats.stats.median / (spec.audio_s * spec.batch_size)


@pytest.mark.parametrize("k", [1, 4])
def test_onnxruntime_cpu(benchmark, cpu_engines, k):
    _bench(benchmark, cpu_engines, RowSpec("onnxruntime", "fp32", k, 1, AUDIO_S, True), rounds=3)


def test_torch_cpu(benchmark, cpu_engines):
    _bench(benchmark, cpu_engines, RowSpec("torch", "fp32", 4, 1, AUDIO_S, True), rounds=3)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("k", [4, 10])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda(benchmark, cuda_engines, backend, precision, k):
    _bench(benchmark, cuda_engines, RowSpec(backend, precision, k, 1, AUDIO_S, True), rounds=20)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("batch_size", [16, 64])
def test_cuda_batch(benchmark, cuda_engines, batch_size):
    _bench(benchmark, cuda_engines, RowSpec("torch", "fp16", 4, batch_size, AUDIO_S, True), rounds=10)
