"""A sweep survives its jobs: a job that diverges is recorded as failed in its run dir, the
other jobs run, and the sweep's exit status and last line say how many failed; with the
Optuna sweeper the failed trial is marked FAIL (not left RUNNING) and the study goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import TINY_RUN, run_cli

# Slow (real lstm-jax runs, several per test): .ci/run's -m slow step runs it, after the
# 10-minute default suite.
pytestmark = pytest.mark.slow

TINY = [*TINY_RUN, "trainer.max_steps=4", "trainer.evaluate_test=false"]


def first_job_diverges(tmp_path: Path) -> list[str]:
    return [
        "task._target_=fault_tasks.FirstRunDivergesTask",
        f"+task.marker={tmp_path / 'first_run_started'}",
    ]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_a_diverged_job_is_recorded_and_the_basic_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *TINY,
        *first_job_diverges(tmp_path),
        "seed=0,1,2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    failed = summary(sweep / "0")
    assert failed["status"] == "failed"
    assert failed["error"].startswith("train/loss became nan at step 1")
    for job in ("1", "2"):
        assert summary(sweep / job)["status"] == "finished"
        assert summary(sweep / job)["steps"] == 4
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lstm-jax: 1 of 3 jobs failed: {sweep / '0'} (train/loss became nan")


def test_a_diverged_optuna_trial_is_marked_failed_and_the_study_goes_on(tmp_path):
    optuna = pytest.importorskip("optuna")
    db = tmp_path / "multirun" / "fails" / "optuna.db"
    sweep = tmp_path / "multirun" / "fails" / "sweep"
    result = run_cli(
        "hparams_search=adding_optuna",
        *TINY,
        *first_job_diverges(tmp_path),
        "experiment_name=fails",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        check=False,
        timeout=400,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    storage = f"sqlite:///{db}"
    (name,) = optuna.get_all_study_names(storage)  # fails-<hash of the search space and config>
    assert name.startswith("fails-")
    study = optuna.load_study(study_name=name, storage=storage)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL] + [optuna.trial.TrialState.COMPLETE] * 2
    assert summary(sweep / "0")["status"] == "failed"
    assert result.stderr.strip().splitlines()[-1].startswith("lstm-jax: 1 of 3 jobs failed")
