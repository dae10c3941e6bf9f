"""Every experiment preset composes, and every key it sets is one the code reads.

Hydra merges config files without struct checks, so a misspelt key in an experiment file
(`crop_fractoin: 0.3`) would otherwise surface only when that preset is run, or never, for
model and trainer keys nobody reads."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR
from lstm_jax.nn.registry import CELLS
from lstm_jax.schema import constructor_parameters

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def compose_train(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[*overrides, "paths.data_dir=/tmp"])


def test_every_preset_is_found():
    assert len(EXPERIMENTS) >= 20 and "default" in EXPERIMENTS and "fsdd_bilstm" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_preset_keys_are_read_by_the_code(experiment):
    cfg = compose_train(f"experiment={experiment}")
    module, _, name = cfg.task._target_.rpartition(".")
    task_cls = getattr(importlib.import_module(module), name)
    unknown = set(cfg.task) - {"_target_"} - set(constructor_parameters(task_cls))
    assert not unknown, f"experiment={experiment}: {task_cls.__name__} takes no {sorted(unknown)}"
    base = compose_train()  # the default experiment: every model and trainer key there is
    for group in ("model", "trainer"):
        extra = set(cfg[group]) - set(base[group])
        assert not extra, f"experiment={experiment}: {group} has no keys {sorted(extra)}"


# The dense three in the default suite; the cells after them (every preset composed again,
# 145 cases) in .ci/run's slow step, beside tests/test_task_cells.py, which trains them.
CELLS_ON_PRESETS = [
    cell if cell in ("lstm", "gru", "rnn") else pytest.param(cell, marks=pytest.mark.slow)
    for cell in sorted(CELLS)
]


@pytest.mark.parametrize("cell", CELLS_ON_PRESETS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_cell_runs_on_every_experiment(experiment, cell):
    """`model=<cell>` composes and validates on every preset (issue 30): the LSTM's
    initialisation is the top-level lstm_init, which the other cells' configs do not read,
    so no experiment names a key that only one cell takes."""
    from lstm_jax.models.core import core_class
    from lstm_jax.schema import validate

    required = ["task.path=/data/any.csv", "task.target=OT"] if experiment == "csv_forecast" else []
    cfg = compose_train(f"experiment={experiment}", f"model={cell}", *required)
    validate(cfg)
    assert core_class(cfg.model).CELL == cell
