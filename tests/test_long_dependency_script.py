"""experiments/long_dependency.sh: a finished run's record is kept where it is committed, and
a recorded or transcribed run is not run again on a fresh machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "experiments" / "long_dependency.sh"

# Stands in for lstm-jax: writes the files of a finished run into hydra.run.dir.
FAKE_LSTM_JAX = """#!/usr/bin/env bash
for arg in "$@"; do case $arg in hydra.run.dir=*) dir=${arg#hydra.run.dir=};; esac; done
mkdir -p "$dir/.hydra" "$dir/checkpoints/500"
echo '{"step": 500, "val/loss": 0.1}' > "$dir/metrics.jsonl"
echo '{"test": {}}' > "$dir/summary.json"
echo "$*" > "$dir/cli.log"
echo "seed: 0" > "$dir/.hydra/config.yaml"
echo "- $1" > "$dir/.hydra/overrides.yaml"
echo "$*" >> "$FAKE_CALLS"
"""


def _run(tmp_path: Path, out: str, *prefixes: str) -> str:
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
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), "--lanes", "1", *prefixes],
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
    assert "model.chrono_max_steps=400 seed=0" in (record / "cli.log").read_text()
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


def test_a_transcribed_run_is_not_run_again(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "transcribed_outcomes.csv").write_text(
        "job,seed,commit,solved_at,final_val_over_baseline\nadding_T200_lstm,0,77d68b7,,0.4086\n"
    )
    stdout = _run(tmp_path, "machine1", "adding_T200_lstm", "adding_T200_chrono")
    assert "transcribed adding_T200_lstm seed 0" in stdout
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 1 and "model.chrono_max_steps=200 seed=0" in calls[0]
