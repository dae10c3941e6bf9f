"""experiments/long_dependency.sh: a finished run's record is kept where it is committed, a
recorded run is not run again on a fresh machine, and an unfinished run kept by
--snapshot resumes there from its checkpoint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "experiments" / "long_dependency.sh"

# Stands in for lstm-jax: writes the files of a finished run into hydra.run.dir, or with
# FAKE_KILLED set those of a run killed after its step-1000 checkpoint (orbax's layout: a dir
# per step, the best one, 500, with its metrics, an unfinished save in a tmp dir). A start in
# a dir with a checkpoint is logged as a resume from its steps.
FAKE_LSTM_JAX = """#!/usr/bin/env bash
for arg in "$@"; do case $arg in hydra.run.dir=*) dir=${arg#hydra.run.dir=};; esac; done
if [ -d "$dir/checkpoints" ]; then
  echo "resume from $(ls "$dir/checkpoints" | tr '\\n' ' ')" >> "$FAKE_CALLS"
fi
echo "$*" >> "$FAKE_CALLS"
mkdir -p "$dir/.hydra"
echo '{"step": 500, "val/loss": 0.1}' >> "$dir/metrics.jsonl"
echo "$*" > "$dir/cli.log"
echo "seed: 0" > "$dir/.hydra/config.yaml"
echo "- $1" > "$dir/.hydra/overrides.yaml"
echo "run-1" > "$dir/wandb_run_id.txt"
if [ -n "${FAKE_KILLED:-}" ]; then
  for step in 250 500 750 1000; do
    mkdir -p "$dir/checkpoints/$step/state"
    echo "$step" > "$dir/checkpoints/$step/state/d"
  done
  mkdir -p "$dir/checkpoints/250/metrics" "$dir/checkpoints/500/metrics"
  echo '{"val/loss": 0.2}' > "$dir/checkpoints/500/metrics/metrics"
  echo '{"val/loss": 0.3}' > "$dir/checkpoints/250/metrics/metrics"
  mkdir -p "$dir/checkpoints/1500.orbax-checkpoint-tmp-7"
  exit 137
fi
echo '{"test": {}}' > "$dir/summary.json"
"""


def _run(tmp_path: Path, out: str, *args: str, **env_extra: str) -> str:
    fake = tmp_path / "fake-lstm-jax"
    fake.write_text(FAKE_LSTM_JAX)
    fake.chmod(0o755)
    env = {
        **os.environ,
        "LSTM_JAX": str(fake),
        "OUT": str(tmp_path / out),
        "RECORDS": str(tmp_path / "records"),
        "SEEDS": "0",
        "FAKE_CALLS": str(tmp_path / "calls.txt"),
        **env_extra,
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), *args, "--lanes", "1"],  # options may follow the prefixes
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_a_finished_run_is_recorded_and_not_run_again_elsewhere(tmp_path):
    _run(tmp_path, "machine1", "adding_T400")
    record = tmp_path / "records" / "adding_T400_chrono" / "seed0"
    assert sorted(p.name for p in record.iterdir()) == [
        ".hydra",
        "cli.log",
        "commands.log",
        "metrics.jsonl",
        "summary.json",
    ]
    assert (
        "init=chrono optim=rmsprop optim.clip_grad_norm=null seed=0"
        in (record / "cli.log").read_text()
    )
    assert (record / ".hydra" / "overrides.yaml").exists()
    # the start and end lines of this run only
    log = (record / "commands.log").read_text().splitlines()
    assert [line.split()[0] for line in log] == ["start", "end"]
    assert all("adding_T400_chrono/seed0:" in line for line in log)

    # A fresh machine (empty OUT): both recorded runs are skipped, nothing runs.
    calls = tmp_path / "calls.txt"
    calls.unlink()
    stdout = _run(tmp_path, "machine2", "adding_T400")
    assert not calls.exists()
    assert stdout.count("recorded ") == 2


def test_an_unfinished_run_is_kept_by_snapshot_and_resumed_on_a_fresh_machine(tmp_path):
    stdout = _run(tmp_path, "machine1", "adding_T400_lstm", FAKE_KILLED="1")
    assert "FAILED" in stdout
    stdout = _run(tmp_path, "machine1", "--snapshot", "adding_T400_lstm")
    record = tmp_path / "records" / "adding_T400_lstm" / "seed0"
    assert f"snapshot {record} at step 1000" in stdout
    # The newest finished step and the best (the newest with metrics) only: not 250 or 750,
    # not the unfinished save.
    assert sorted(p.name for p in (record / "checkpoints").iterdir()) == ["1000", "500"]
    assert (record / "checkpoints" / "1000" / "state" / "d").read_text() == "1000\n"
    assert (record / "checkpoints" / "500" / "metrics" / "metrics").exists()
    assert (record / "wandb_run_id.txt").exists() and (record / ".hydra" / "config.yaml").exists()
    assert not (record / "summary.json").exists()

    # A fresh machine: the run is restored from the record and resumed, not started again.
    calls = tmp_path / "calls.txt"
    calls.unlink()
    stdout = _run(tmp_path, "machine2", "adding_T400_lstm")
    assert "restore " in stdout
    lines = calls.read_text().splitlines()
    assert lines[0] == "resume from 1000 500 " and "trainer.resume=true" in lines[1]
    run = tmp_path / "machine2" / "adding_T400_lstm" / "seed0"
    # metrics.jsonl continues the snapshot's (the trainer drops rows past the checkpoint)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2

    # The finished record replaces the snapshot, and its log holds both machines' lines.
    assert (record / "summary.json").exists()
    assert not (record / "checkpoints").exists() and not (record / "wandb_run_id.txt").exists()
    log = (record / "commands.log").read_text().splitlines()
    assert [line.split()[0] for line in log] == ["start", "FAILED", "restore", "start", "end"]
    assert str(tmp_path / "machine1") in log[0] and str(tmp_path / "machine2") in log[2]

    # A later snapshot on the first machine leaves the finished record as it is.
    stdout = _run(tmp_path, "machine1", "--snapshot", "adding_T400_lstm")
    assert "no snapshot" in stdout and not (record / "checkpoints").exists()


def test_a_bad_option_is_refused_before_anything_runs(tmp_path):
    fake = tmp_path / "fake-lstm-jax"
    for args, message in [
        (["--lane", "2"], "unknown option --lane (options: --lanes N, --snapshot)"),
        (["--lanes", "two"], "--lanes needs a positive count, got 'two'"),
    ]:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env={**os.environ, "LSTM_JAX": str(fake), "OUT": str(tmp_path / "out")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and message in done.stderr
        assert not (tmp_path / "out").exists()


def test_a_setup_of_the_grid_runs_each_job_with_its_optimiser_and_clipping(tmp_path):
    _run(tmp_path, "machine1", "adding_T400_lstm", SETUP="adam_clip1.0")
    (call,) = (tmp_path / "calls.txt").read_text().splitlines()
    assert call.startswith("experiment=adding_T400 optim=adam optim.clip_grad_norm=1.0 seed=0")
    records = str(tmp_path / "records_rmsprop")  # each setup keeps its own records
    _run(tmp_path, "machine2", "adding_T400_lstm", SETUP="rmsprop_clipNone", RECORDS=records)
    assert (
        "optim=rmsprop optim.clip_grad_norm=null seed=0"
        in (tmp_path / "calls.txt").read_text().splitlines()[-1]
    )


def test_a_setup_outside_the_grid_is_refused_before_anything_runs(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), "adding_T400"],
        env={**os.environ, "SETUP": "sgd_clip5", "OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SETUP=sgd_clip5 is not a setup of the grid" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_snapshot_kept_before_one_checkpoint_manager_is_restored_from_its_last_step(tmp_path):
    # Snapshots committed before one manager hold checkpoints/last/<step> and best/<step>;
    # the trainer moves them into one layout when it resumes (lstm_jax/train/checkpoint.py).
    record = tmp_path / "records" / "adding_T400_lstm" / "seed0"
    for kind, step in (("last", 9150), ("best", 2000)):
        (record / "checkpoints" / kind / str(step) / "state").mkdir(parents=True)
    (record / ".hydra").mkdir()
    for name in ("metrics.jsonl", "cli.log", ".hydra/config.yaml"):
        (record / name).write_text("")
    stdout = _run(tmp_path, "machine2", "adding_T400_lstm")
    assert "(step 9150)" in stdout
    assert (tmp_path / "calls.txt").read_text().splitlines()[0] == "resume from best last "
