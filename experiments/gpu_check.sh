#!/usr/bin/env bash
# The GPU check of issue 13, one command on a CUDA machine (JAX with CUDA and, for the PyTorch
# columns, torch with CUDA installed):
#   1. parity: cuDNN vs the scan kernel vs PyTorch's cuDNN LSTM (outputs and gradients);
#   2. the benchmark at S1-S5 (lstm_jax scan and cuDNN, PyTorch, the JAX peers);
#   3. one preset's step time with backend=auto (cuDNN) and backend=scan.
#
#   bash experiments/gpu_check.sh [OUT_DIR]      # logs and bench.json land in OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-experiments/results/gpu_check}
mkdir -p "$OUT"
export WANDB_MODE=offline PYTHONUNBUFFERED=1
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
  python - "$dir" "$backend" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl") if "perf/step_time_s" in l]
times = [r["perf/step_time_s"] for r in rows][1:]  # the first window holds compilation
print(f"  backend={sys.argv[2]}: median step {1e3 * statistics.median(times):.2f} ms over "
      f"{len(times)} windows of 50 steps")
PY
done
exit $status
