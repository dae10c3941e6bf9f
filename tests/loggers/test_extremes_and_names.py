"""metrics.jsonl reports a gate histogram's true min and max (the diagnostics compute them
on device beside the bins), and the runs of a sweep are named and tagged by the overrides
that differ between them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from lstm_jax.loggers import JsonlLogger, read_metrics, read_wandb_run
from lstm_jax.loggers.run_names import default_run_name, override_tags
from lstm_jax.loggers.wandb_logger import WandbLogger
from lstm_jax.train.diagnostics import histogram, to_host


def test_gate_min_and_max_in_metrics_jsonl_are_the_true_extremes(tmp_path):
    values = jnp.array([[0.23, 0.5, 0.61], [0.02, 0.44, 0.97]])
    weights = jnp.array([[1, 1, 1], [0, 1, 0]])  # 0.02 and 0.97 sit at padded positions
    hist = to_host({"gates/layer_0/forget": histogram(values, weights, 0.0, 1.0, 10)})
    logger = JsonlLogger(tmp_path)
    logger.log(hist, step=5)
    logger.finish()
    (record,) = read_metrics(tmp_path)
    summary = record["gates/layer_0/forget"]
    assert summary["n"] == 4
    # not the occupied bins' edges (0.2 and 0.7)
    assert (summary["min"], summary["max"]) == pytest.approx((0.23, 0.61))


def _fake_sweep_job(monkeypatch, tmp_path, overrides: list[str], sweep_args: list[str]):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    (tmp_path / "multirun.yaml").write_text(
        OmegaConf.to_yaml({"hydra": {"overrides": {"task": sweep_args}}})
    )
    fake = OmegaConf.create(
        {
            "mode": RunMode.MULTIRUN,
            "sweep": {"dir": str(tmp_path)},
            "sweeper": {"params": {"optim.lr": "interval(1e-4, 1e-2)"}},
            "job": {"config": {"override_dirname": {"exclude_keys": []}}},
            "overrides": {"task": overrides},
        }
    )
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: fake))


def test_a_sweep_job_is_named_by_the_swept_overrides_and_tagged_by_all(monkeypatch, tmp_path):
    job = ["task.seq_len=6", "trainer.max_steps=4", "model.hidden_size=16", "optim.lr=0.003"]
    _fake_sweep_job(
        monkeypatch,
        tmp_path,
        job,
        ["task.seq_len=6", "trainer.max_steps=4", "model.hidden_size=8,16"],
    )
    cfg = OmegaConf.create({"experiment_name": "adding"})
    # the command-line sweep and the sweeper's search space, not the fixed overrides
    assert default_run_name(cfg) == "adding:model.hidden_size=16,optim.lr=0.003"
    assert override_tags() == job


def test_wandb_run_is_tagged_with_the_overrides(monkeypatch, tmp_path, cfg_factory):
    _fake_sweep_job(monkeypatch, tmp_path, ["model.hidden_size=16"], ["model.hidden_size=8,16"])
    logger = WandbLogger(cfg_factory(), tmp_path / "run")
    logger.log({"train/loss": 1.0, "gates/layer_0/forget": _HIST}, step=1)
    logger.finish()
    run = read_wandb_run(tmp_path / "run")
    assert run["name"] == "unit:model.hidden_size=16"
    assert run["tags"] == ["test", "model.hidden_size=16"]


_HIST = {"counts": np.array([1, 2]), "edges": np.array([0.0, 0.5, 1.0])}
