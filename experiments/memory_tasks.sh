#!/usr/bin/env bash
# Memory tasks and sequential images (issue 3): reduced-budget comparisons. Only the
# seq_fashion_mnist_row stage is still an answer of experiments/README.md ("Sequential
# Fashion-MNIST, row by row"); the memory-task stages are quick checks, superseded as results
# by experiments/long_dependency.sh and its committed records. Each stage is one lstm-jax
# command (Hydra multirun over the cells where it compares cells); results land in
# experiments/results/<stage>/ (git-ignored), one summary.json per run.
#
#   bash experiments/memory_tasks.sh [STAGE ...]     # default: all stages, in this order
#   lstm-jax-compare experiments/results/<stage> --format markdown   # the table
#
# The budget here was ~45 CPU-minutes on 2 shared cores, so every run is reduced (hidden 64,
# batch 32, 1-2.5k steps, small eval sets); the presets in configs/experiment/ hold the full
# settings (drop the overrides after the experiment name to run them).
set -euo pipefail
cd "$(dirname "$0")/.."
LSTM_JAX=${LSTM_JAX:-/work/venv/bin/lstm-jax}
DATA=${DATA:-/work/shared/datasets}
OUT=experiments/results
export WANDB_MODE=offline
SMALL="model.hidden_size=64 trainer.batch_size=32 task.val_size=500 task.test_size=1000 logger=none trainer.progress_bar=false"
NODIAG="logger.diagnostics_every=100000"   # diagnostics off, except where they are the point
# The memory presets follow Tallec & Ollivier 2018 since issue 12 (RMSProp, no clipping, stop
# when solved); these runs were measured before, with the settings below.
OLD_COPY="optim.clip_grad_norm=1.0 trainer.stop_when=null"
OLD_ADDING="optim=adam optim.lr=1e-3 optim.clip_grad_norm=1.0 trainer.stop_when=null"

run() {  # run STAGE ARGS...: one lstm-jax command, timed
  local stage=$1; shift
  echo "== $stage: lstm-jax $*" | tee -a $OUT/commands.log
  local t0=$(date +%s)
  nice -n 5 "$LSTM_JAX" "$@" > $OUT/$stage.out 2>&1 || echo "!! $stage failed (see $OUT/$stage.out)"
  echo "   $stage wall $(( $(date +%s) - t0 )) s" | tee -a $OUT/commands.log
}

stage() {
  case $1 in
  adding_T50)      # cells at T=50
    run $1 -m experiment=adding_T100 task.seq_len=50 trainer.max_steps=1000 trainer.eval_every=250 \
      model=rnn,gru,lstm $SMALL $NODIAG $OLD_ADDING hydra.sweep.dir=$OUT/$1 ;;
  adding_T50_chrono)
    run $1 experiment=adding_T100 task.seq_len=50 trainer.max_steps=1000 trainer.eval_every=250 \
      model.chrono_max_steps=75 $SMALL $NODIAG $OLD_ADDING hydra.run.dir=$OUT/$1 ;;
  adding_T100)
    run $1 -m experiment=adding_T100 trainer.max_steps=2000 trainer.eval_every=250 \
      model=rnn,gru,lstm $SMALL $NODIAG $OLD_ADDING hydra.sweep.dir=$OUT/$1 ;;
  adding_T100_chrono)
    run $1 experiment=adding_T100 trainer.max_steps=2000 trainer.eval_every=250 \
      model.chrono_max_steps=150 $SMALL $NODIAG $OLD_ADDING hydra.run.dir=$OUT/$1 ;;
  copy_T50)
    run $1 -m experiment=copy_T100 task.seq_len=50 trainer.max_steps=1500 \
      model=rnn,gru,lstm $SMALL $NODIAG $OLD_COPY hydra.sweep.dir=$OUT/$1 ;;
  copy_T50_chrono)
    run $1 experiment=copy_T100 task.seq_len=50 trainer.max_steps=1500 \
      model.chrono_max_steps=75 $SMALL $NODIAG $OLD_COPY hydra.run.dir=$OUT/$1 ;;
  copy_T200_forget_bias1)   # Tallec & Ollivier comparison, reduced from T=500 to T=200;
    # diagnostics every 500 steps log grad_norm/dh_t and the forget-gate time constants
    run $1 experiment=copy_T500_forget_bias1 task.seq_len=200 trainer.max_steps=2500 \
      $SMALL logger.diagnostics_every=500 $OLD_COPY hydra.run.dir=$OUT/$1 ;;
  copy_T200_chrono)
    run $1 experiment=copy_T500_chrono task.seq_len=200 model.chrono_max_steps=300 \
      trainer.max_steps=2500 $SMALL logger.diagnostics_every=500 $OLD_COPY hydra.run.dir=$OUT/$1 ;;
  seq_fashion_mnist_row)
    run $1 experiment=seq_fashion_mnist_row paths.data_dir=$DATA trainer.max_steps=2580 \
      logger=none logger.diagnostics_every=100000 hydra.run.dir=$OUT/$1 ;;
  *) echo "unknown stage $1" >&2; exit 2 ;;
  esac
}

mkdir -p $OUT
STAGES=("$@")
if [ ${#STAGES[@]} -eq 0 ]; then
  STAGES=(adding_T50 adding_T50_chrono copy_T50 copy_T50_chrono copy_T200_forget_bias1
          copy_T200_chrono seq_fashion_mnist_row adding_T100 adding_T100_chrono)
fi
for s in "${STAGES[@]}"; do stage "$s"; done
