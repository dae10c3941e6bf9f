"""Sweeps: a real `lstm-jax` multirun with Hydra's basic sweeper (the memory-horizon preset,
shrunk) compared by lstm-jax-compare, the Optuna preset with its SQLite study (the project's
own sweeper, hydra_plugins/lstm_jax_optuna_sweeper), and the SLURM launcher config composed
and turned into an sbatch script (no cluster here)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from cli_runner import REPO, run_cli
from hydra import compose, initialize_config_dir
from PIL import Image

from lstm_jax.compare import main as compare_main

CONFIGS = str(REPO / "configs")
# The smallest real training: a few steps of a tiny model on short sequences.
TINY = [
    "trainer.max_steps=4",
    "trainer.log_every=2",
    "trainer.eval_every=2",
    "trainer.checkpoint_every=4",
    "trainer.batch_size=8",
    "model.hidden_size=8",
    "task.val_size=16",
    "task.test_size=16",
    "task.eval_batch_size=16",
    "logger.diagnostics_every=null",
    "trainer.progress_bar=false",
]


def _png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


# ----------------------------------------------------------------- basic sweeper, 4 jobs


@pytest.fixture(scope="module")
def horizon_sweep(tmp_path_factory) -> Path:
    """`lstm-jax experiment=memory_horizon` (MULTIRUN by itself) over 2 cells x 2 T, in
    one process, with W&B offline: 4 jobs."""
    work = tmp_path_factory.mktemp("horizon")
    sweep = work / "sweep"
    run_cli(
        "experiment=memory_horizon",
        "model=rnn,lstm",
        "task.seq_len=5,8",
        *TINY,
        "logger=wandb",
        f"hydra.sweep.dir={sweep}",
        cwd=work,
        timeout=540,
    )
    return sweep


def test_multirun_writes_one_run_dir_per_job(horizon_sweep: Path):
    jobs = sorted(p.name for p in horizon_sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    assert (horizon_sweep / "multirun.yaml").is_file()
    seen = set()
    for job in jobs:
        run_dir = horizon_sweep / job
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        cell = next(o.split("=")[1] for o in overrides if o.startswith("model="))
        seq_len = next(o.split("=")[1] for o in overrides if o.startswith("task.seq_len="))
        seen.add((cell, int(seq_len)))
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["steps"] == 4 and summary["monitor"] == "val/mse"
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        assert any("val/mse" in json.loads(line) for line in lines)
    assert seen == {("rnn", 5), ("rnn", 8), ("lstm", 5), ("lstm", 8)}


def test_multirun_makes_one_wandb_run_per_job_in_one_group(horizon_sweep: Path):
    from lstm_jax.loggers.wandb_reader import read_wandb_run

    runs = [read_wandb_run(horizon_sweep / str(job)) for job in range(4)]
    assert len({r["run_id"] for r in runs}) == 4
    groups = {r["group"] for r in runs}
    # One group per sweep: the experiment and the sweep dir's name.
    assert groups == {f"memory_horizon/{horizon_sweep.name}"}
    names = [r["name"] for r in runs]
    assert "model=rnn" in names[0] and "task.seq_len=5" in names[0]
    assert "model=lstm" in names[3] and "task.seq_len=8" in names[3]
    for run in runs:
        assert run["config"]["model"]["cell"] in ("rnn", "lstm")
        assert any("val/mse" in row for row in run["history"])


def _leet_screen(wandb_dir: Path, expect: str, timeout: float = 60) -> str:
    """Opens W&B's offline dashboard, `wandb leet DIR`, in a detached tmux session (its own
    server socket) and returns the screen (capture-pane) once `expect` is on it."""
    import shutil
    import subprocess
    import time

    from lstm_jax.loggers.wandb_reader import wandb_command

    tmux = shutil.which("tmux")
    assert tmux, "tmux is needed to drive the W&B dashboard (apt-get install tmux)"
    base = [tmux, "-L", f"lstm-jax-test-{os.getpid()}"]
    leet = " ".join([*wandb_command(), "leet", str(wandb_dir)])
    subprocess.run(
        [*base, "new-session", "-d", "-s", "leet", "-x", "240", "-y", "48", leet], check=True
    )
    screen = ""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*base, "capture-pane", "-p", "-t", "leet"],
                check=False,
                capture_output=True,
                text=True,
            ).stdout
            if expect in screen:
                break
            time.sleep(0.5)
    finally:
        subprocess.run([*base, "kill-server"], check=False, capture_output=True)
    return screen


def test_offline_dashboard_lists_every_run_of_the_sweep(horizon_sweep: Path):
    """`wandb leet <sweep dir>/wandb` (W&B's terminal dashboard) lists the 4 jobs' runs by
    the overrides that differ between them: each job links its offline run into the sweep's
    wandb/ dir as offline-run-<overrides>-<run id>."""
    from lstm_jax.loggers.wandb_reader import read_wandb_run

    links = sorted((horizon_sweep / "wandb").iterdir())
    assert len(links) == 4 and all(p.is_symlink() and p.is_dir() for p in links)
    run_ids = {read_wandb_run(horizon_sweep / str(job))["run_id"] for job in range(4)}
    assert {p.name.rsplit("-", 1)[-1] for p in links} == run_ids
    assert {p.name.removeprefix("offline-run-").rsplit("-", 1)[0] for p in links} == {
        f"model={cell},task.seq_len={t}" for cell in ("rnn", "lstm") for t in (5, 8)
    }
    screen = _leet_screen(horizon_sweep / "wandb", "Runs [4 items]")
    assert "Runs [4 items]" in screen, screen
    for cell in ("rnn", "lstm"):
        assert f"offline-run-model={cell},task.seq_len=" in screen, screen


def test_compare_on_the_real_sweep(horizon_sweep: Path, capsys):
    out_dir = horizon_sweep.parent / "compare"
    code = compare_main(
        [
            str(horizon_sweep),
            "--solved",
            "test/mse<0.01",
            "--format",
            "markdown",
            "--out-dir",
            str(out_dir),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "4 runs (4 done)" in out
    rows = list(csv.DictReader((out_dir / "table.csv").open()))
    assert [(r["model.cell"], r["task.seq_len"]) for r in rows] == [
        ("rnn", "5"),
        ("rnn", "8"),
        ("lstm", "5"),
        ("lstm", "8"),
    ]
    for row, job in zip(rows, range(4), strict=True):
        summary = json.loads((horizon_sweep / str(job) / "summary.json").read_text())
        assert float(row["best val/mse"]) == pytest.approx(summary["best"]["val/mse"])
        assert float(row["test/mse"]) == pytest.approx(summary["test"]["test/mse"])
        assert row["solved"] == str(float(float(row["test/mse"]) < 0.01))
        assert row["status"] == "done" and row["steps"] == "4"
    assert _png(out_dir / "learning_curves.png")[0] > 300
    assert _png(out_dir / "solved_vs_task.seq_len_by_model.cell.png")[0] > 300


# ----------------------------------------------------------------- Optuna


def optuna_study_names(db: Path) -> list[str]:
    import optuna

    return optuna.get_all_study_names(f"sqlite:///{db}")


@pytest.mark.slow  # three Optuna sweeps of real runs; .ci/run's -m slow step
def test_optuna_preset_runs_trials_into_a_sqlite_study_that_continues(tmp_path: Path):
    import optuna

    # (model.hidden_size is searched: a fixed override would take it out of the space)
    tiny = [o for o in TINY if not o.startswith("model.hidden_size=")]
    common = [
        "hparams_search=adding_optuna",
        "task.seq_len=5",
        *tiny,
        "trainer.evaluate_test=false",
        "logger=none",
        "experiment_name=optuna_test",
        "hydra.sweeper.sampler.n_startup_trials=2",
    ]
    first = tmp_path / "multirun" / "optuna_test" / "first"
    out = run_cli(
        *common, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={first}", cwd=tmp_path, timeout=400
    )
    db = tmp_path / "multirun" / "optuna_test" / "optuna.db"
    (name,) = optuna_study_names(db)
    # the experiment and a hash of the search space and the config the trials share
    assert name.startswith("optuna_test-") and len(name) == len("optuna_test-") + 8
    assert f"Optuna study {name} is new in sqlite:///{db}: 3 trials over optim.lr" in out.stdout
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    # each trial's value is what the train function returned: the best val/mse of its run
    returned = sorted(
        json.loads((first / str(i) / "summary.json").read_text())["best"]["val/mse"]
        for i in range(3)
    )
    assert sorted(t.value for t in complete) == pytest.approx(returned)
    for trial in complete:
        # each trial names its run dir (optuna-dashboard shows it)
        assert trial.user_attrs["run_dir"] == str(first / str(trial.number))
        assert 1e-4 <= trial.params["optim.lr"] <= 3e-2
        assert trial.params["model.hidden_size"] in (32, 64, 128, 256)
    results = yaml.safe_load((first / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(returned))
    assert results["study_name"] == name

    # The same command again continues the study (a new sweep dir, the same optuna.db), and
    # says so; the number of trials is not part of what the study measures.
    second = tmp_path / "multirun" / "optuna_test" / "second"
    out = run_cli(
        *common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={second}", cwd=tmp_path, timeout=300
    )
    assert f"Optuna study {name} continues" in out.stdout and "3 trials so far" in out.stdout
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    assert len(study.trials) == 4 and study.trials[-1].number == 3

    # Another task (T=6) does not join it: a study of its own, and a line that says why.
    third = tmp_path / "multirun" / "optuna_test" / "third"
    out = run_cli(
        *common,
        "task.seq_len=6",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweep.dir={third}",
        cwd=tmp_path,
        timeout=300,
    )
    (other,) = set(optuna_study_names(db)) - {name}
    assert f"Optuna study {other} is new" in out.stdout
    assert f"not continuing {name}: another search space or config" in out.stdout
    assert len(optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials) == 4


# ----------------------------------------------------------------- presets and SLURM


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3", job_name="lstm_jax"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_memory_horizon_presets_compose_as_sweeps():
    cfg = _compose(["experiment=memory_horizon"])
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.task._target_.endswith("AddingTask") and cfg.experiment_name == "memory_horizon"
    assert cfg.hydra.sweeper.params["model"] == "rnn,gru,lstm"
    assert len(str(cfg.hydra.sweeper.params["task.seq_len"]).split(",")) >= 4
    cfg = _compose(["experiment=memory_horizon_copy"])
    assert cfg.task._target_.endswith("CopyTask")
    assert cfg.hydra.sweeper.params["model"] == "rnn,gru,lstm"


def test_optuna_preset_composes():
    cfg = _compose(["hparams_search=adding_optuna"])
    sweeper = cfg.hydra.sweeper
    # the project's own sweeper (hydra_plugins/lstm_jax_optuna_sweeper), on current Optuna
    assert sweeper._target_ == (
        "hydra_plugins.lstm_jax_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    )
    # no direction: the sweeper takes the task monitor's (lstm_jax.metrics.direction)
    assert sweeper.direction is None and sweeper.n_trials == 20
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed == cfg.seed
    assert sweeper.storage.startswith("sqlite:///") and sweeper.storage.endswith("/../optuna.db")
    assert set(sweeper.params) == {"optim.lr", "model.hidden_size", "optim.clip_grad_norm"}


def test_slurm_launcher_composes_into_an_sbatch_script(tmp_path: Path, monkeypatch):
    import hydra_plugins.hydra_submitit_launcher  # noqa: F401  (the dev extra installs it)
    import submitit
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    cfg = _compose(
        [
            "hydra/launcher=slurm",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.nodes=2",
            "experiment=memory_horizon",
        ]
    )
    HydraConfig.instance().set_config(cfg)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    params = launcher.params
    assert params["tasks_per_node"] == 4  # one JAX process per GPU
    assert params["submitit_folder"].startswith("multirun/memory_horizon/")

    # What the launcher hands to submitit, as its launch() does; submitit refuses to build
    # a SLURM executor without `srun` on PATH, so a stub stands in for it.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(
        folder=tmp_path / "submitit",
        cluster="slurm",
        slurm_max_num_timeout=params["max_num_timeout"],
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            k if k in base else f"slurm_{k}": v
            for k, v in params.items()
            if k not in ("submitit_folder", "max_num_timeout")
        }
    )
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit", "0")
    for line in (
        "--partition=gpu",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--nodes=2",
        "--time=240",
        "--cpus-per-task=8",
        "--mem=64GB",
    ):
        assert f"#SBATCH {line}" in script, script
    assert "srun" in script
