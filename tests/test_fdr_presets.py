"""`debug=fdr` (README: "checks any run end to end") works for every experiment preset, on
tiny generated data in the layout of each real dataset. Slow (one run per preset); .ci/run
runs it after the default suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli
from fake_datasets import write_fake_datasets
from test_presets import EXPERIMENTS


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_fake_datasets(tmp_path_factory.mktemp("data"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_debug_fdr_runs_every_preset(experiment, data_root, tmp_path):
    extra = []
    if experiment == "csv_forecast":
        extra = [f"task.path={data_root / 'my.csv'}", "task.target=load"]
    elif experiment.startswith("fsdd"):
        extra = [f"task.cache_dir={tmp_path / 'cache'}"]
    elif experiment.startswith("memory_horizon"):
        extra = ["hydra.mode=RUN"]  # one job of the sweep
    run_dir = tmp_path / "run"
    run_cli(
        "debug=fdr",
        f"experiment={experiment}",
        *extra,
        "logger=none",
        f"paths.data_dir={data_root}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        timeout=600,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6
