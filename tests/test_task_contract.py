"""The contract between a task and the trainer (lstm_jax/tasks/base.py), checked over every
task config in configs/task/ on tiny generated data: a new domain's config is picked up
here without a line of its own.

- `train_batch` is a pure function of (seed, step): a fresh task (a resumed run) replays
  the same batches, in any order of calls;
- the monitored metric comes out of `evaluate`, and the tie-break metric when one is named;
- the gates the diagnostics read have the shape (B, T, H * directions) of the top core;
- the loss is a finite scalar and the carry keeps its structure from batch to batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import jax
import numpy as np
import pytest
from fake_datasets import write_fake_datasets
from flax import nnx
from hydra import compose, initialize_config_dir

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR

TASKS = sorted(p.stem for p in (CONFIG_DIR / "task").glob("*.yaml"))
HIDDEN = 8

# Per task, what makes it small (or names its file); everything else is the config's own.
SMALL = {
    "adding": ["task.seq_len=12", "task.val_size=16", "task.test_size=16"],
    "copy": ["task.seq_len=12", "task.val_size=16", "task.test_size=16"],
    "selective_copy": ["task.seq_len=16", "task.val_size=16", "task.test_size=16"],
    "variable_copy": ["task.seq_len=12", "task.val_size=16", "task.test_size=16"],
    "char_lm": ["task.seq_len=16"],
    "word_lm": ["task.seq_len=8"],
    "fsdd_ctc": ["task.num_train=40", "task.num_val=8", "task.num_test=8"],
    "csv_forecast": ["task.path={root}/my.csv", "task.target=load"],
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_fake_datasets(tmp_path_factory.mktemp("data"))


def build_task(name: str, data_root: Path, cache: Path, *extra: str):
    overrides = [
        f"task={name}",
        *extra,
        "debug=fdr",
        f"model.hidden_size={HIDDEN}",
        "trainer.batch_size=4",
        f"paths.data_dir={data_root}",
        *[o.format(root=data_root) for o in SMALL.get(name, [])],
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("train", overrides=overrides)
    if "cache_dir" in cfg.task:
        cfg.task.cache_dir = str(cache)
    return cfg, hydra.utils.instantiate(cfg.task)


def assert_same_batch(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


# One task per domain in the default suite; the second of a domain (CTC, the CSV forecaster,
# the word LM: 30 s together) in .ci/run's slow step.
SECOND_OF_A_DOMAIN = {"fsdd_ctc", "csv_forecast", "word_lm"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(t, marks=pytest.mark.slow) if t in SECOND_OF_A_DOMAIN else t for t in TASKS],
)
def test_task_honours_the_trainer_contract(name, data_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp(f"cache_{name}")
    cfg, task = build_task(name, data_root, cache)

    # Pure in (seed, step): a fresh instance (what a resumed run builds) gives the same
    # batches, asked for in another order.
    first = {step: task.train_batch(step) for step in (0, 1, 5)}
    _, resumed = build_task(name, data_root, cache)
    for step in (5, 0, 1):
        assert_same_batch(resumed.train_batch(step), first[step])
    assert_same_batch(task.train_batch(0), first[0])
    for step in (0, 1, 5):
        assert resumed.reset_carry(step) == task.reset_carry(step)

    model = task.make_model(cfg.model, rngs=nnx.Rngs(params=0, dropout=1))
    model.train()
    carry = task.initial_carry(model)
    loss, aux = task.loss(model, first[0], carry, return_gates=True)
    assert np.shape(loss) == () and math.isfinite(float(loss))
    assert set(aux) >= {"metrics", "carry", "gates"}
    if carry is not None:
        assert jax.tree.structure(aux["carry"]) == jax.tree.structure(carry)

    # The gates of the top core: (B', T, H * directions), B' a multiple of the batch (a
    # channel-independent forecaster runs one sequence per channel), as many steps as the
    # perturbation the diagnostics differentiate against.
    gates = aux["gates"]
    assert gates, f"{name}: loss(return_gates=True) returned no gates"
    for layer, by_gate in gates.items():
        for gate, values in by_gate.items():
            shape = np.shape(values)
            assert len(shape) == 3 and shape[0] % cfg.trainer.batch_size == 0, (layer, gate, shape)
            assert shape[2] % HIDDEN == 0 and shape[2] // HIDDEN in (1, 2), (layer, gate, shape)
    shape = np.shape(next(iter(next(iter(gates.values())).values())))
    perturbation = jax.numpy.zeros(shape)
    _, aux = task.loss(model, first[0], carry, return_gates=True, hidden_perturbation=perturbation)
    assert aux["gates"] is not None

    # The monitored metric (and its tie-break) comes out of evaluate, without the prefix.
    model.eval()
    metrics = task.evaluate(model, "val")
    assert task.monitor.startswith("val/")
    assert task.monitor.removeprefix("val/") in metrics, sorted(metrics)
    # What it declares it reports is what it reports: trainer.stop_when is checked on it.
    assert sorted(metrics) == sorted(task.metric_names)
    if task.monitor_tiebreak is not None:
        assert task.monitor_tiebreak.removeprefix("val/") in metrics
    assert all(math.isfinite(float(v)) or math.isnan(float(v)) for v in metrics.values())
    assert task.monitor_mode in ("min", "max")
