"""Test-wide settings: W&B never reaches a server, and nothing writes to the user's home."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "wandb-config"))
    # Tests put small fake files where real datasets live; tests/data/test_files.py turns
    # the checksum check back on where it is the subject.
    monkeypatch.setenv("LSTM_JAX_VERIFY_CHECKSUMS", "0")
