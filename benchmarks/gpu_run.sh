#!/usr/bin/env bash
# One-shot CUDA benchmark (issue 6), made for the device tool: its command runs in the repo root
# and returns what is written under $OUT. Finishes in under ~5 minutes on an H100.
#
#   here, once (needs PyPI):  python -m benchmarks.gpu_carry      # -> benchmarks/.gpu_carry, ~18 MB
#   device tool:              run(command="bash benchmarks/gpu_run.sh",
#                                 carry=["benchmarks/.gpu_carry"], timeout_s=420)
#   then, here:               cp <files_at>/*.json <files_at>/*.md benchmarks/results/
#
# Writes into $OUT (default benchmarks/results): <device>-<date>.json and .md (the report),
# report.log, nvidia-smi.csv, pytest-benchmark.json and pytest.log (the gpu-marked cases).
# Extra arguments go to `python -m benchmarks report`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
CARRY=benchmarks/.gpu_carry
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ -d "$CARRY/wheels" ]; then  # runtime dependencies missing from the GPU image, and the Whisper encoder
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/bench_site "$CARRY"/wheels/*.whl || exit 1
  export PYTHONPATH="$PWD/$CARRY/site:/tmp/bench_site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -f "$CARRY/COMMIT" ] && export BENCH_COMMIT="$(cat "$CARRY/COMMIT")"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv \
  > "$OUT/nvidia-smi.csv" 2>&1 || true
status=0
timeout 270 python3 -m benchmarks report --device cuda --budget-s 180 --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/report.log" || status=$?
timeout 60 python3 -m pytest benchmarks/test_bench.py -m gpu -q -rs -p no:cacheprovider \
  --benchmark-json "$OUT/pytest-benchmark.json" > "$OUT/pytest.log" 2>&1 || true
tail -n 5 "$OUT/pytest.log"
exit "$status"
