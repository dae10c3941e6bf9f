#!/usr/bin/env bash
# Long-dependency results at the literature's budgets (issues 12 and 27), in one optimiser
# setup of the grid (SETUP, below). Each job is one lstm-jax command: a preset of
# configs/experiment/ (each states the paper whose setup it follows), one initialisation or
# cell, one seed. Runs land in $OUT/<job>/seed<S>/ (default
# experiments/results/setup_grid/<setup>); a finished run (one with summary.json) is skipped
# and a killed one continues from its last checkpoint (trainer.resume=true), so rerunning this
# script picks up where it stopped.
#
# A finished run's record (metrics.jsonl, summary.json, .hydra/, cli.log: no checkpoints,
# ~0.1-0.5 MB) is copied to $RECORDS/<job>/seed<S>/ (default
# experiments/setup_grid_runs/<setup>, which is committed): the machines are fresh each
# session, so the record is what the tables and figures are drawn from later
# (experiments/long_dependency_figures.py), and a recorded run is skipped on any machine.
#
# A run the session's end would cut is kept too: `--snapshot` copies each unfinished run's
# newest and best checkpoints (~1 MB each) with its metrics and config into its
# $RECORDS dir, and on the next machine the script restores that dir and resumes it from the
# checkpoint's step. The finished run's record replaces the snapshot.
#
#   bash experiments/long_dependency.sh [JOB_PREFIX ...] [--lanes N]   # default: every job, 2 lanes
#   SETUP=adam_clip1.0 bash experiments/long_dependency.sh adding_T400   # one setup of the grid
#
# SETUP names one optimiser setup of sweep=setup_grid (configs/sweep/setup_grid.yaml), as its
# run dirs do: {rmsprop,adam}_clip{None,1.0}; default rmsprop_clipNone, the presets' own
# (PyTorch's RMSprop, no clipping). The issue-12 records of optax's eps-in-the-root RMSProp
# (experiments/setup_grid_runs/optax-rmsprop_clipNone) are read, never run again.
#   bash experiments/long_dependency.sh --snapshot   # after stopping the runs (kill the driver)
#   lstm-jax-compare $OUT/copy_T500_* --over seed --solved "val/solved>0"   # the seed table
#
# Lanes run side by side, each pinned to one core (taskset) at nice 10: one run's XLA step
# does not scale past one core at these sizes (0.31 s/step at copy T=500 on 1 or 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
LSTM_JAX=${LSTM_JAX:-lstm-jax}
SETUP=${SETUP:-rmsprop_clipNone}
[[ $SETUP =~ ^(rmsprop|adam)_clip(None|1\.0)$ ]] \
  || { echo "long_dependency.sh: SETUP=$SETUP is not a setup of the grid; choose {rmsprop,adam}_clip{None,1.0}" >&2; exit 2; }
clip=${BASH_REMATCH[2]}; [ "$clip" = None ] && clip=null
SETUP_OVERRIDES=("optim=${BASH_REMATCH[1]}" "optim.clip_grad_norm=$clip")
OUT=${OUT:-experiments/results/setup_grid/$SETUP}
RECORDS=${RECORDS:-experiments/setup_grid_runs/$SETUP}
LANES=2
SNAPSHOT=0
prefixes=()
while [ $# -gt 0 ]; do  # options in any order, among the job prefixes
  case $1 in
    --lanes) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] \
      || { echo "long_dependency.sh: --lanes needs a positive count, got '${2:-}'" >&2; exit 2; }
      LANES=$2; shift 2 ;;
    --snapshot) SNAPSHOT=1; shift ;;
    -*) echo "long_dependency.sh: unknown option $1 (options: --lanes N, --snapshot)" >&2; exit 2 ;;
    *) prefixes+=("$1"); shift ;;
  esac
done
set -- "${prefixes[@]}"
export WANDB_MODE=${WANDB_MODE:-offline}

# job name | overrides (seed=S is appended) [| seeds, default $SEEDS], in issue 27's order:
# adding T=400 (both inits); copy T=200 (with adding T=400, the rows the whole grid runs);
# the rows issue 12 had only transcribed (copy T=100, adding T=200); copy and variable copy at
# T=500 (two seeds: a pair of their 20k-step runs is 3-4 hours on this machine); then the
# cells, Hochreiter & Schmidhuber's adding T=100 anchor, and adding T=750 if affordable.
JOBS=(
  "adding_T400_lstm|experiment=adding_T400"
  "adding_T400_chrono|experiment=adding_T400 init=chrono"
  "copy_T200_lstm|experiment=copy_T200"
  "copy_T200_chrono|experiment=copy_T200 init=chrono"
  "copy_T100_lstm|experiment=copy_T100"
  "copy_T100_chrono|experiment=copy_T100 init=chrono"
  "adding_T200_lstm|experiment=adding_T200"
  "adding_T200_chrono|experiment=adding_T200 init=chrono"
  "copy_T500_lstm|experiment=copy_T500_forget_bias1|0 1"
  "copy_T500_chrono|experiment=copy_T500_chrono|0 1"
  "variable_copy_T500_lstm|experiment=variable_copy_T500|0 1"
  "variable_copy_T500_chrono|experiment=variable_copy_T500 init=chrono|0 1"
  "copy_T100_rnn|experiment=copy_T100 model=rnn"
  "copy_T100_gru|experiment=copy_T100 model=gru"
  "adding_T200_rnn|experiment=adding_T200 model=rnn"
  "adding_T200_gru|experiment=adding_T200 model=gru"
  "adding_T100_lstm|experiment=adding_T100"
  "adding_T100_chrono|experiment=adding_T100 init=chrono"
  "adding_T750_lstm|experiment=adding_T750"
  "adding_T750_chrono|experiment=adding_T750 init=chrono"
)
SEEDS=${SEEDS:-0 1 2}

# The queue: each row's jobs seed by seed, so the first hours give both inits two seeds.
queue=()
for job in "${JOBS[@]}"; do
  name=${job%%|*}
  if [ $# -gt 0 ]; then
    keep=0; for prefix in "$@"; do [[ $name == $prefix* ]] && keep=1; done
    [ $keep = 1 ] || continue
  fi
  queue+=("$job")
done
seeds_of() {  # the seed list of a JOBS entry
  local rest=${1#*|}
  [[ $rest == *"|"* ]] && echo "${rest##*|}" || echo "$SEEDS"
}
add_run() {  # JOBS entry, seed -> NAME|OVERRIDES|SEED on the queue
  ordered+=("${1%%|*}|$(cut -d'|' -f2 <<< "$1")|$2")
}
ordered=()
for ((i = 0; i < ${#queue[@]}; i += 2)); do   # jobs come in pairs (an init and its rival)
  rival=${queue[i+1]:-}
  for seed in $(seeds_of "${queue[i]}"); do
    add_run "${queue[i]}" "$seed"
    if [[ -n $rival && " $(seeds_of "$rival") " == *" $seed "* ]]; then add_run "$rival" "$seed"; fi
  done
done

keep_commands() {  # RUN_DIR RECORD_DIR: the run's start and end lines, the earlier machines' first
  local lines
  lines=$( { cat "$2/commands.log" 2>/dev/null || true; grep -F " $1:" "$OUT/commands.log" || true; } \
    | awk '!seen[$0]++')
  printf '%s\n' "$lines" > "$2/commands.log"
}

copy_run_files() {  # RUN_DIR RECORD_DIR: the metrics, log, config and command lines of a record
  mkdir -p "$2/.hydra"
  cp "$1"/{metrics.jsonl,cli.log} "$2/"
  cp "$1"/.hydra/{config,overrides}.yaml "$2/.hydra/"
  keep_commands "$1" "$2"
}

keep_record() {  # RUN_DIR RECORD_DIR: what the tables and figures read, and its start lines
  rm -rf "$2/checkpoints" "$2/wandb_run_id.txt"  # a snapshot's, now superseded
  copy_run_files "$1" "$2"
  cp "$1/summary.json" "$2/"
}

newest_step() {  # CHECKPOINT_DIR [FILE]: its newest finished step (orbax names a step's dir by
  # its number), or the newest that holds FILE. A snapshot kept before one checkpoint manager
  # has its steps under last/ and best/ (the trainer moves them into one layout on resume).
  local dir
  for dir in "$1"/[0-9]* "$1"/last/[0-9]* "$1"/best/[0-9]*; do
    [[ -d $dir && ${dir##*/} =~ ^[0-9]+$ ]] || continue
    [ -z "${2:-}" ] || [ -e "$dir/$2" ] || continue
    echo "${dir##*/}"
  done | sort -n | tail -n 1
}

keep_snapshot() {  # RUN_DIR RECORD_DIR: what resuming the unfinished run on another machine needs
  local step best
  [ -f "$2/summary.json" ] && { echo "recorded $2 (finished): no snapshot of $1"; return 0; }
  step=$(newest_step "$1/checkpoints")
  [ -n "$step" ] || { echo "no checkpoint yet in $1: nothing to keep"; return 0; }
  rm -rf "$2/checkpoints"
  mkdir -p "$2/checkpoints"
  # The newest checkpoint (to resume from) and the best: the newest with metrics, as only
  # the trainer's improvements carry them (lstm_jax/train/checkpoint.py).
  cp -r "$1/checkpoints/$step" "$2/checkpoints/"
  best=$(newest_step "$1/checkpoints" metrics/metrics)
  [ -z "$best" ] || [ "$best" = "$step" ] || cp -r "$1/checkpoints/$best" "$2/checkpoints/"
  copy_run_files "$1" "$2"
  [ -f "$1/wandb_run_id.txt" ] && cp "$1/wandb_run_id.txt" "$2/"
  echo "snapshot $2 at step $step"
}

restore_snapshot() {  # RECORD_DIR RUN_DIR: an unfinished run kept by --snapshot, ready to resume
  [ -d "$1/checkpoints" ] && [ ! -f "$1/summary.json" ] && [ ! -d "$2/checkpoints" ] || return 0
  mkdir -p "$2"
  cp -r "$1"/{checkpoints,.hydra,metrics.jsonl,cli.log} "$2/"
  [ -f "$1/wandb_run_id.txt" ] && cp "$1/wandb_run_id.txt" "$2/"
  echo "restore $2: from $1 (step $(newest_step "$2/checkpoints"))" | tee -a "$OUT/commands.log"
}

run_one() {  # NAME|OVERRIDES|SEED CORE
  local name=${1%%|*} rest=${1#*|}
  local overrides=${rest%|*} seed=${rest##*|}
  local dir=$OUT/$name/seed$seed
  [ -f "$dir/summary.json" ] && { echo "done   $dir"; return 0; }
  [ -f "$RECORDS/$name/seed$seed/summary.json" ] && { echo "recorded $RECORDS/$name/seed$seed"; return 0; }
  mkdir -p "$dir"
  restore_snapshot "$RECORDS/$name/seed$seed" "$dir"
  overrides="$overrides ${SETUP_OVERRIDES[*]}"
  echo "start  $dir: lstm-jax $overrides seed=$seed  ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD))" \
    | tee -a "$OUT/commands.log"
  local t0=$(date +%s)
  # Appends: a resumed run keeps the output of the attempts before it.
  # shellcheck disable=SC2086
  if nice -n 10 taskset -c "$2" "$LSTM_JAX" $overrides seed=$seed trainer.resume=true \
      hydra.run.dir="$dir" >> "$dir/stdout.log" 2>&1; then
    echo "end    $dir: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/commands.log"
    keep_record "$dir" "$RECORDS/$name/seed$seed"
  else
    echo "FAILED $dir: after $(( $(date +%s) - t0 )) s (see $dir/stdout.log)" | tee -a "$OUT/commands.log"
  fi
}

mkdir -p "$OUT"
if [ $SNAPSHOT = 1 ]; then
  for entry in "${ordered[@]}"; do
    name=${entry%%|*} seed=${entry##*|}
    dir=$OUT/$name/seed$seed
    [ -d "$dir/checkpoints" ] && [ ! -f "$dir/summary.json" ] || continue
    keep_snapshot "$dir" "$RECORDS/$name/seed$seed"
  done
  exit 0
fi

# One shared queue: each lane takes the next job when its run ends, so a lane whose runs
# stop early (solved) never idles while the other has work waiting.
queue_file=$(mktemp)
printf '%s\n' "${ordered[@]}" > "$queue_file"
take() {  # the next job of the queue, or nothing once it is empty
  flock "$queue_file.lock" bash -c 'head -n 1 "$1"; sed -i 1d "$1"' _ "$queue_file"
}
for ((lane = 0; lane < LANES; lane++)); do
  (
    core=$((lane % $(nproc)))
    while job=$(take) && [ -n "$job" ]; do run_one "$job" "$core"; done
  ) &
done
wait
rm -f "$queue_file" "$queue_file.lock"
