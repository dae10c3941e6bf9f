"""The browser dashboards, opened as a user would: `tensorboard --logdir <sweep dir>` on a
tiny real sweep, and `optuna-dashboard <storage>` on a tiny Optuna search, each served on
localhost and rendered by headless Chromium; the page's data (the servers' own HTTP APIs)
and a screenshot show that the runs are there, named by their overrides, and drawn."""

from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from browser import free_port, get_json, rendered_dom, screenshot, serving
from cli_runner import run_cli
from PIL import Image

# Slow (TensorBoard and optuna-dashboard in headless Chromium, about a minute): .ci/run's
# -m slow step runs it, after the 10-minute default suite.
pytestmark = pytest.mark.slow

TINY = [
    "task.seq_len=6",
    "task.val_size=16",
    "task.test_size=16",
    "task.eval_batch_size=16",
    "trainer.batch_size=8",
    "trainer.max_steps=4",
    "trainer.log_every=2",
    "trainer.eval_every=2",
    "trainer.checkpoint_every=4",
    "trainer.progress_bar=false",
    "trainer.evaluate_test=false",
]


def drawn_fraction(png: Path, header_px: int = 80) -> float:
    """The fraction of the page below its header drawn in saturated colour: the runs'
    charts (the rest of either dashboard is white, grey or black text)."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)[header_px:]
    return float(((rgb.max(-1) - rgb.min(-1)) > 80).mean())


def _command(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="module")
def tensorboard_sweep(tmp_path_factory) -> Path:
    """Two tiny runs of a sweep over the hidden size, logged to TensorBoard with
    diagnostics every 2 steps."""
    work = tmp_path_factory.mktemp("tb")
    run_cli(
        "-m",
        *TINY,
        "model.hidden_size=8,16",
        "logger=tensorboard",
        "logger.diagnostics_every=2",
        f"hydra.sweep.dir={work / 'sweep'}",
        cwd=work,
        timeout=300,
    )
    return work / "sweep"


def test_tensorboard_shows_the_gate_histograms_of_each_run_named_by_its_overrides(
    tensorboard_sweep: Path, tmp_path: Path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [_command("tensorboard"), "--logdir", str(tensorboard_sweep)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--load_fast=false"]
    with serving(command, f"{url}/data/runs", tmp_path / "tensorboard.log"):
        runs = get_json(f"{url}/data/runs")
        assert sorted(runs) == [
            "0/tensorboard/default:model.hidden_size=8",
            "1/tensorboard/default:model.hidden_size=16",
        ]
        tags = get_json(f"{url}/data/plugin/histograms/tags")
        for run in runs:
            assert {
                "gates/layer_0/forget",
                "gates/layer_0/input",
                "gates/layer_0/cell",
                "gates/layer_0/output",
                "gates/layer_0/forget_tau",
                "grad_norm/dh_t",
            } <= set(tags[run])
            query = urllib.parse.urlencode({"run": run, "tag": "gates/layer_0/forget"})
            series = get_json(f"{url}/data/plugin/histograms/histograms?{query}")
            assert [step for _, step, _ in series] == [2, 4]  # one per diagnostics step
            hidden = int(run.rsplit("=", 1)[1])
            for _, _, buckets in series:
                # [left, right, count] buckets of sigmoid values: hidden units x batch 8 x T 6
                assert sum(count for _, _, count in buckets) == hidden * 8 * 6
                assert 0.0 < buckets[0][0] and buckets[-1][1] < 1.0
        scalars = get_json(f"{url}/data/plugin/scalars/tags")
        assert "gates/layer_0/forget_tau_median" in scalars[runs[0]]

        png = screenshot(f"{url}/?darkMode=false#histograms", tmp_path / "histograms.png")
        assert drawn_fraction(png) > 0.03, f"no histogram drawn in {png}"


def test_optuna_dashboard_opens_the_study_of_a_search(tmp_path: Path):
    """`optuna-dashboard <storage>` (current Optuna, SQLAlchemy 2) serves the study the
    hparams_search preset wrote, with its trials, and draws its history."""
    sweep = tmp_path / "multirun" / "dash" / "sweep"
    tiny = [o for o in TINY if not o.startswith("trainer.evaluate_test")]
    run_cli(
        "hparams_search=adding_optuna",
        *tiny,
        "trainer.evaluate_test=false",
        "logger=none",
        "logger.diagnostics_every=null",
        "experiment_name=dash",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=300,
    )
    storage = f"sqlite:///{sweep.parent / 'optuna.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [_command("optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"{url}/api/studies", tmp_path / "optuna-dashboard.log"):
        (study,) = get_json(f"{url}/api/studies")["study_summaries"]
        assert study["study_name"].startswith("dash-") and study["directions"] == ["minimize"]
        trials = get_json(f"{url}/api/studies/{study['study_id']}")["trials"]
        assert [t["state"] for t in trials] == ["Complete", "Complete"]
        assert {p["name"] for p in trials[0]["params"]} == {
            "optim.lr",
            "model.hidden_size",
            "optim.clip_grad_norm",
        }
        page = f"{url}/dashboard/studies/{study['study_id']}"
        dom = rendered_dom(page)
        assert study["study_name"] in dom and "History" in dom
        png = screenshot(page, tmp_path / "optuna.png")
        assert drawn_fraction(png) > 0.01, f"no chart drawn in {png}"
