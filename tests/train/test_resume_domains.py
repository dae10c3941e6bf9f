"""Stopping a run and resuming it gives the uninterrupted run, bit for bit, in the domains
whose training state is more than parameters: speech with augmentation drawn from
(seed, step), and a forecaster that stops early (its best value and patience count live in
the checkpoint). The language model with a carried state is in test_trainer_behaviour.py;
a SIGKILLed adding run in test_trainer.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import numpy as np
import pytest
from fake_datasets import write_fake_datasets
from hydra import compose, initialize_config_dir

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR
from lstm_jax.run import build_trainer
from lstm_jax.train.checkpoint import Checkpointer

# Slow (four trainers per test on generated FSDD and ETTh1 data): .ci/run's -m slow step.
pytestmark = pytest.mark.slow

COMMON = [
    "model.hidden_size=8",
    "trainer.batch_size=8",
    "trainer.progress_bar=false",
    "logger=none",
    "logger.diagnostics_every=null",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_fake_datasets(tmp_path_factory.mktemp("data"))


def config(data_root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[*COMMON, *overrides, f"paths.data_dir={data_root}"])


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def curve(run_dir: Path) -> list[tuple]:
    keys = ("train/loss", "val/loss", "val/acc", "val/mse")
    rows = [tuple(r.get(k) for k in keys) for r in records(run_dir)]
    return [(r["step"], *row) for r, row in zip(records(run_dir), rows, strict=True) if any(row)]


def stop_and_resume(tmp_path, caplog, data_root, overrides, *, stop_at: int, max_steps: int):
    """Runs `overrides` uninterrupted, and again stopped at `stop_at` then resumed; returns
    both run dirs after asserting that the second really resumed from `stop_at`."""
    full = [*overrides, f"trainer.max_steps={max_steps}"]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    build_trainer(config(data_root, *full), reference).fit()
    build_trainer(config(data_root, *overrides, f"trainer.max_steps={stop_at}"), resumed).fit()
    with caplog.at_level(logging.INFO, logger="lstm_jax.train.trainer"):
        build_trainer(config(data_root, *full, "trainer.resume=true"), resumed).fit()
    assert f"Resuming from step {stop_at}" in caplog.text
    template = build_trainer(config(data_root, *full), tmp_path / "template").state
    state_a = Checkpointer(reference / "checkpoints", keep=2).restore("last", template)[0]
    state_b = Checkpointer(resumed / "checkpoints", keep=2).restore("last", template)[0]
    for key in ("params", "opt_state"):
        for a, b in zip(jax.tree.leaves(state_a[key]), jax.tree.leaves(state_b[key]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=key)
    return reference, resumed


def test_speech_with_augmentation_resumes_to_the_uninterrupted_run(tmp_path, caplog, data_root):
    overrides = [
        "task=fsdd",
        f"task.cache_dir={tmp_path / 'cache'}",
        "task.augment.freq_masks=1",
        "task.augment.time_masks=1",
        "task.augment.speed_range=[0.9,1.1]",
        "task.augment.crop_fraction=0.2",
        "trainer.eval_every=4",
        "trainer.log_every=2",
        "trainer.checkpoint_every=4",
        "trainer.evaluate_test=false",
    ]
    reference, resumed = stop_and_resume(
        tmp_path, caplog, data_root, overrides, stop_at=4, max_steps=10
    )
    # The augmented batches after the resume are those of the uninterrupted run: same
    # losses at every logged step, including the steps after the resume.
    assert curve(resumed) == curve(reference)
    assert [r["step"] for r in records(resumed) if "train/loss" in r][-1] == 10


def test_forecaster_that_stops_early_resumes_to_the_same_stop(tmp_path, caplog, data_root):
    overrides = [
        "task=etth1",
        "task.input_len=48",
        "task.horizon=12",
        "task.forecaster.segment_len=12",
        "trainer.eval_every=2",
        "trainer.log_every=2",
        "trainer.checkpoint_every=2",
        "trainer.early_stopping_patience=2",
        "optim.lr=0.05",
    ]
    reference, resumed = stop_and_resume(
        tmp_path, caplog, data_root, overrides, stop_at=4, max_steps=200
    )
    ref, res = (json.loads((d / "summary.json").read_text()) for d in (reference, resumed))
    # The reference stopped early, after the resume point; the resumed run stopped at the
    # same step with the same best, so the patience count and best value were restored.
    assert ref["stopped_early"] and 4 < ref["steps"] < 200
    assert (res["steps"], res["best"], res["stopped_early"]) == (
        ref["steps"],
        ref["best"],
        True,
    )
    assert res["test"] == ref["test"]
    assert curve(resumed) == curve(reference)
