"""Logging tests never reach W&B's server nor the user's home: W&B runs offline, its dirs
and HOME (netrc, settings) point into the test's tmp dir, and no API key is visible."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf


@pytest.fixture(autouse=True)
def _isolated_wandb(monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(var, raising=False)


def make_cfg(**wandb_overrides):
    """A composed-config stand-in with the keys of configs/logger/wandb.yaml."""
    wandb = {
        "enabled": True,
        "project": "lstm-jax-test",
        "entity": None,
        "mode": None,
        "group": "${experiment_name}",
        "job_type": "train",
        "tags": ["test"],
        "name": None,
    }
    wandb.update(wandb_overrides)
    return OmegaConf.create(
        {
            "experiment_name": "unit",
            "seed": 3,
            "model": {"cell": "lstm", "hidden_size": 8},
            "logger": {"wandb": wandb, "diagnostics_every": 10},
        }
    )


@pytest.fixture
def cfg_factory():
    return make_cfg
