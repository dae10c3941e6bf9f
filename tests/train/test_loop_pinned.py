"""Pins what a tiny fixed-seed run writes to metrics.jsonl and summary.json, so a change to
the training loop's structure (Trainer.fit's methods over its loop state) that changes
what it logs, when, or which checkpoint it keeps, fails here. The expected values were
recorded from the loop as it was before that refactor (commit 32684a6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR
from lstm_jax.run import build_trainer

# log_every does not divide eval_every or checkpoint_every, so a checkpoint carries pending
# train metrics; early stopping is armed.
OVERRIDES = [
    "task.seq_len=8",
    "task.val_size=32",
    "task.test_size=32",
    "task.eval_batch_size=32",
    "model.hidden_size=8",
    "trainer.batch_size=8",
    "trainer.progress_bar=false",
    "trainer.eval_every=4",
    "trainer.log_every=3",
    "trainer.checkpoint_every=5",
    "trainer.early_stopping_patience=2",
    "trainer.max_steps=24",
    "logger=none",
    "logger.diagnostics_every=null",
    "optim.lr=0.01",
    "paths.data_dir=/tmp",
]
# Timings differ from run to run; everything else is a function of the seed.
UNPINNED = ("perf/", "wall_time_s", "diagnostics_time_s", "device_kind", "backends")


def _config(*extra: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[*OVERRIDES, *extra])


def _pinned(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith(UNPINNED)}


def pinned_run(run_dir: Path, stop_at: int | None = None) -> tuple[list[dict], dict]:
    """(metrics.jsonl records, summary) of the pinned run, trained in one go or, with
    `stop_at`, to that step first and then resumed from its older checkpoint."""
    if stop_at is not None:
        build_trainer(_config(f"trainer.max_steps={stop_at}"), run_dir).fit()
        # Its newest checkpoint lost, the resume starts from step 5, whose checkpoint
        # carries the train metrics of steps 4 and 5 (logged at 6), and drops what the
        # first run logged and saved after it.
        shutil.rmtree(run_dir / "checkpoints" / str(stop_at))
        build_trainer(_config("trainer.resume=true"), run_dir).fit()
    else:
        build_trainer(_config(), run_dir).fit()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [_pinned(json.loads(line)) for line in lines]
    summary = _pinned(json.loads((run_dir / "summary.json").read_text()))
    return [r for r in records if set(r) != {"step"}], summary


# What the loop wrote before its refactor, the same whether trained in one go or resumed
# (resumes are exact).
EXPECTED_RECORDS = [
    {
        "step": 3,
        "train/loss": 0.9573723475138346,
        "train/mse": 0.9573723475138346,
        "train/lr": 0.01,
    },
    {
        "step": 4,
        "val/loss": 0.6904566287994385,
        "val/mse": 0.6904566287994385,
        "val/baseline_mse": 0.15738445520401,
        "val/acc": 0.0,
        "val/solved": 0.0,
    },
    {"step": 6, "train/loss": 1.06137220064799, "train/mse": 1.06137220064799, "train/lr": 0.01},
    {
        "step": 8,
        "val/loss": 0.40295282006263733,
        "val/mse": 0.40295282006263733,
        "val/baseline_mse": 0.15738445520401,
        "val/acc": 0.03125,
        "val/solved": 0.0,
    },
    {"step": 9, "train/loss": 0.547654370466868, "train/mse": 0.547654370466868, "train/lr": 0.01},
    {
        "step": 12,
        "train/loss": 0.4283229559659958,
        "train/mse": 0.4283229559659958,
        "train/lr": 0.01,
    },
    {
        "step": 12,
        "val/loss": 0.16647621989250183,
        "val/mse": 0.16647621989250183,
        "val/baseline_mse": 0.15738445520401,
        "val/acc": 0.125,
        "val/solved": 0.0,
    },
    {
        "step": 15,
        "train/loss": 0.18774197747310004,
        "train/mse": 0.18774197747310004,
        "train/lr": 0.01,
    },
    {
        "step": 16,
        "val/loss": 0.28553709387779236,
        "val/mse": 0.28553709387779236,
        "val/baseline_mse": 0.15738445520401,
        "val/acc": 0.03125,
        "val/solved": 0.0,
    },
    {
        "step": 18,
        "train/loss": 0.20294833679993948,
        "train/mse": 0.20294833679993948,
        "train/lr": 0.01,
    },
    {
        "step": 20,
        "val/loss": 0.29317936301231384,
        "val/mse": 0.29317936301231384,
        "val/baseline_mse": 0.15738445520401,
        "val/acc": 0.03125,
        "val/solved": 0.0,
    },
    {
        "step": 20,
        "test/loss": 0.17147739231586456,
        "test/mse": 0.17147739231586456,
        "test/baseline_mse": 0.15725567936897278,
        "test/acc": 0.03125,
        "test/solved": 0.0,
    },
]
EXPECTED_SUMMARY = {
    "status": "finished",
    "monitor": "val/mse",
    "monitor_mode": "min",
    "best": {"val/mse": 0.16647621989250183, "step": 12},
    "test": {
        "test/loss": 0.17147739231586456,
        "test/mse": 0.17147739231586456,
        "test/baseline_mse": 0.15725567936897278,
        "test/acc": 0.03125,
        "test/solved": 0.0,
    },
    "steps": 20,
    "stopped_early": True,
    "num_params": 361,
    "data": {},
    "device_count": 1,
    "stopped_when": None,
}


@pytest.mark.parametrize("stop_at", [None, 7], ids=["one go", "stopped at 7 and resumed"])
def test_a_fixed_seed_run_logs_what_the_loop_logged_before_its_refactor(tmp_path, stop_at):
    records, summary = pinned_run(tmp_path, stop_at)
    _assert_close(records, EXPECTED_RECORDS)
    _assert_close(summary, EXPECTED_SUMMARY)


def _assert_close(actual: Any, expected: Any, where: str = "") -> None:
    """Equal structure and values, floats to 1e-5 (pytest.approx does not nest)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), where
        for key in expected:
            _assert_close(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-5), where
    else:
        assert actual == expected, where
