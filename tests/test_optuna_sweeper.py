"""The project's Optuna sweeper (hydra_plugins/lstm_jax_optuna_sweeper): Hydra's sweep syntax
as Optuna distributions, what a job's return makes of its trial, and a search whose trials
diverge: each is marked FAIL with its reason, none is left RUNNING, and the search goes on."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from cli_runner import run_cli, tiny_adding
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.lstm_jax_optuna_sweeper.optuna_sweeper import (
    distribution,
    trial_failure,
)


def _parse(text: str):
    (override,) = OverridesParser.create().parse_overrides([text])
    return override


@pytest.mark.parametrize(
    "text, expected",
    [
        ("optim.lr=tag(log, interval(1e-4, 3e-2))", FloatDistribution(1e-4, 3e-2, log=True)),
        ("optim.clip_grad_norm=interval(0.5, 5)", FloatDistribution(0.5, 5.0)),
        ("model.num_layers=int(interval(1, 4))", IntDistribution(1, 4)),
        ("model.hidden_size=tag(log, int(interval(8, 64)))", IntDistribution(8, 64, log=True)),
        ("model.hidden_size=choice(32, 64)", CategoricalDistribution([32, 64])),
        ("seed=range(0, 3)", CategoricalDistribution([0, 1, 2])),  # range excludes its stop
        ("model=choice(lstm, gru)", CategoricalDistribution(["lstm", "gru"])),
    ],
)
def test_hydra_sweep_syntax_becomes_optuna_distributions(text, expected):
    assert distribution(_parse(text)) == expected


class _Failed:
    """What a failed job may return instead of a number (its error as str())."""

    def __str__(self) -> str:
        return "train/loss became nan at step 3"


def _returned(value=None, status=JobStatus.COMPLETED) -> JobReturn:
    ret = JobReturn(status=status)
    ret._return_value = value
    return ret


def test_what_a_job_returns_makes_its_trial_complete_or_failed():
    assert trial_failure(_returned(0.25)) == (0.25, None)
    assert trial_failure(_returned(float("nan")))[1] == "the job's value is nan (a diverged run)"
    assert trial_failure(_returned(_Failed()))[1] == "train/loss became nan at step 3"
    error = RuntimeError("out of memory")
    assert trial_failure(_returned(error, JobStatus.FAILED))[1] == "RuntimeError: out of memory"


def test_diverged_trials_are_marked_failed_and_the_search_goes_on(tmp_path: Path):
    sweep = tmp_path / "multirun" / "diverge" / "sweep"
    run_cli(
        "hparams_search=adding_optuna",
        "optim.lr=choice(1e30)",  # every trial diverges at its first steps
        *tiny_adding(4),
        "logger=none",
        "experiment_name=diverge",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        check=False,  # whether a sweep with failed jobs exits 0 is the launcher's affair
        timeout=300,
    )
    storage = f"sqlite:///{sweep.parent / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    for trial in trials:
        assert trial.params["optim.lr"] == 1e30
        assert trial.user_attrs["fail_reason"]
