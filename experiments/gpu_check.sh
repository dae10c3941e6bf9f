#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine with the CUDA install
# (pip install -e ".[dev,cuda]": JAX's CUDA plugin, and PyPI's torch, a CUDA build):
#   1. parity: cuDNN vs the scan kernel vs PyTorch's cuDNN LSTM (outputs and gradients, each
#      relative to its array's scale), at matmul precision "highest" and at the default;
#   2. the benchmark at S1-S5 (lstm_jax scan and cuDNN, PyTorch, the JAX peers);
#   3. one preset's step time with backend=auto and backend=scan, and the kernel each ran.
# Where JAX sees no GPU it stops at once, in one line, and exits 1: nothing is timed on a CPU.
#
#   bash experiments/gpu_check.sh [OUT_DIR]      # logs and bench.json land in OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-experiments/results/gpu_check}
export WANDB_MODE=offline PYTHONUNBUFFERED=1
# Several JAX processes share the GPU (the benchmark runs one per implementation, PyTorch
# beside JAX in the parity check): none may take 75 % of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# JAX's own warnings on a machine without a GPU would bury the one line; they are kept in
# the probe's log.
probe_log=$(mktemp)
python - 2>"$probe_log" <<'PY'
import sys

import jax

from lstm_jax.nn import cudnn

if not cudnn.on_cuda():
    print(
        f"gpu_check: JAX sees no CUDA GPU (default backend {jax.default_backend()!r}, devices "
        f"{sorted({d.device_kind for d in jax.devices()})}); on a machine with an NVIDIA GPU install "
        'the CUDA build with pip install -e ".[dev,cuda]". Nothing was run.'
    )
    sys.exit(3)
PY
probe=$?
if [ "$probe" -eq 3 ]; then
  rm -f "$probe_log"
  exit 1
elif [ "$probe" -ne 0 ]; then
  echo "gpu_check: the GPU probe failed (exit $probe); its stderr is in $probe_log"
  exit 1
fi
rm -f "$probe_log"

mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

echo "== 1. parity"
python experiments/gpu_parity.py 2>&1 | tee "$OUT/parity.log" || status=1

echo "== 2. benchmark S1-S5"
python experiments/bench_lstm.py --repeats 21 --warmup 5 --json "$OUT/bench.json" 2>&1 \
  | tee "$OUT/bench.log" || status=1

echo "== 3. preset step time (copy_T500_chrono, 300 steps, diagnostics off)"
for backend in auto scan; do
  dir="$OUT/preset_$backend"
  rm -rf "$dir"
  lstm-jax experiment=copy_T500_chrono model.backend=$backend trainer.max_steps=300 \
    trainer.log_every=50 trainer.eval_every=300 trainer.evaluate_test=false \
    logger=none logger.diagnostics_every=0 hydra.run.dir="$dir" > "$dir.log" 2>&1 || status=1
  python - "$dir" "$backend" <<'PY' || status=1
import json, statistics, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl") if "perf/step_time_s" in l]
times = [r["perf/step_time_s"] for r in rows][1:]  # the first window holds compilation
kernels = json.load(open(f"{sys.argv[1]}/summary.json"))["backends"]
print(f"  backend={sys.argv[2]}: median step {1e3 * statistics.median(times):.2f} ms over "
      f"{len(times)} windows of 50 steps; kernels {kernels}")
PY
done
exit $status
