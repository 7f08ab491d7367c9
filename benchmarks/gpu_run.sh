#!/usr/bin/env bash
# Every GPU check of issues 5 and 6 in one device-tool call (its command runs in the repo root
# and returns what is written under $OUT). Stages, each with its own time cap, so one that fails
# or hangs does not lose the others (worst case ~7 min, typically ~5 on an H100):
#
#   1. benchmarks.gpu_cudagraph_check: CUDA-graph vs eager parity and timings (K 1, 2, 4, 10) 120 s
#   2. the `gpu`-marked tests and pytest-benchmark cases                                      75 s
#   3. (GPU_COMPILE=1 only) the fused graph with torch.compile                                 90 s
#   4. python -m benchmarks report --device cuda: the issue-6 table with the in-run baseline  230 s
#      (REPORT_TIMEOUT, REPORT_BUDGET: its caps; rows still pending after the budget are listed
#      as skipped)
#
#   here, once after the last commit (needs PyPI):  python -m benchmarks.gpu_carry   # ~18 MB
#   device tool:  run(command="bash benchmarks/gpu_run.sh", carry=["benchmarks/.gpu_carry"], timeout_s=480)
#   then here:    cp <files_at>/cuda-*.json <files_at>/cuda-*.md <files_at>/gpu_cudagraph*.json benchmarks/results/
#
# Writes into $OUT (default benchmarks/results): run.log (everything printed, nvidia-smi first),
# gpu_cudagraph.json, cuda-<gpu>-<date>.json and .md (the report), pytest.log,
# pytest-benchmark.json and, with GPU_COMPILE=1, gpu_cudagraph_compile.json: at most 7 files,
# under the device tool's limit of 8. Extra arguments go to `python -m benchmarks report`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
CARRY=benchmarks/.gpu_carry
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG="$OUT/run.log"
exec > >(tee -a "$LOG") 2>&1
if [ -d "$CARRY/wheels" ]; then  # runtime dependencies missing from the GPU image, and the Whisper encoder
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/bench_site "$CARRY"/wheels/*.whl || exit 1
  export PYTHONPATH="$PWD:$PWD/$CARRY/site:/tmp/bench_site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -f "$CARRY/COMMIT" ] && export BENCH_COMMIT="$(cat "$CARRY/COMMIT")"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
status=0
stage() { echo; echo "=== $1 ($(date -u +%T))"; }

stage "1/4 CUDA-graph parity and timings"
timeout 120 python3 -m benchmarks.gpu_cudagraph_check --replays 50 --warmup 5 \
  --out "$OUT/gpu_cudagraph.json" || status=$?

stage "2/4 gpu tests and pytest-benchmark cases"
timeout 75 python3 -m pytest tests/test_cudagraph.py benchmarks/test_bench.py -m gpu -q -rs -p no:cacheprovider \
  --benchmark-json "$OUT/pytest-benchmark.json" > "$OUT/pytest.log" 2>&1 || status=$?
tail -n 15 "$OUT/pytest.log"

if [ "${GPU_COMPILE:-0}" = 1 ]; then
  stage "3/4 torch.compile"
  timeout 90 python3 -m benchmarks.gpu_cudagraph_check --compile-only --replays 50 --warmup 5 \
    --out "$OUT/gpu_cudagraph_compile.json" || status=$?
fi

stage "4/4 benchmark report"
timeout "${REPORT_TIMEOUT:-230}" python3 -m benchmarks report --device cuda --budget-s "${REPORT_BUDGET:-120}" \
  --baseline-repeats 2 --out "$OUT" "$@" || status=$?
stage "done, status $status"
exit "$status"
