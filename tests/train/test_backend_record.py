"""A run records which kernel (cuDNN or the scan kernel) each of its step kinds used, in
summary.json and the W&B summary, and warns once when backend="auto" trains without cuDNN
on a GPU: a tiny run on a CUDA machine stood in for on CPU (tests/fake_cuda.py)."""

from __future__ import annotations

import json

import pytest
from fake_cuda import install
from hydra import compose, initialize_config_dir

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR
from lstm_jax.loggers import read_wandb_run
from lstm_jax.run import build_trainer

DROPOUT_WHY = "dropout between layers is active (cuDNN draws its own masks)"


@pytest.mark.slow  # a 2-layer run on the stand-in GPU; .ci/run's -m slow step
def test_a_run_records_each_step_kinds_kernel_and_warns_once_about_auto(tmp_path, monkeypatch):
    cudnn_calls = install(monkeypatch)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(
            "train",
            overrides=[
                "task.seq_len=8",
                "task.val_size=16",
                "task.test_size=16",
                "task.eval_batch_size=16",
                "model.hidden_size=8",
                "model.num_layers=2",
                "model.dropout=0.3",  # trains on the scan kernel, evaluates on cuDNN
                "trainer.batch_size=8",
                "trainer.max_steps=2",
                "trainer.eval_every=2",
                "trainer.progress_bar=false",
                "logger=wandb",
                "logger.diagnostics_every=2",
                "paths.data_dir=/tmp",
            ],
        )
    with pytest.warns(UserWarning, match="backend='auto' trains on the scan kernel") as caught:
        trainer = build_trainer(cfg, tmp_path)
    assert len([w for w in caught if "backend='auto'" in str(w.message)]) == 1
    trainer.fit()
    assert cudnn_calls  # evaluation did run the cuDNN call

    expected = {
        "train": "scan",
        "eval": "cudnn",
        "diagnostics": "scan",
        "why_scan": {
            "train": DROPOUT_WHY,
            "diagnostics": f"the gates were requested; {DROPOUT_WHY}",
        },
    }
    assert json.loads((tmp_path / "summary.json").read_text())["backends"] == expected
    assert read_wandb_run(tmp_path)["summary"]["backends"] == expected
