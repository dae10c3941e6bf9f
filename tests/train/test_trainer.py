"""End-to-end tests of the trainer through the CLI: run dir contents, kill-and-resume
equality, and the clear errors a user meets."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
from cli_runner import run_cli, start_cli

from lstm_jax.loggers import read_wandb_run

# A small adding problem: fast on 2 CPU cores, still a real run.
TINY = (
    "task.seq_len=12",
    "task.val_size=64",
    "task.test_size=64",
    "task.eval_batch_size=64",
    "model.hidden_size=16",
    "trainer.batch_size=16",
    "trainer.progress_bar=false",
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_default_run_writes_the_run_dir_contract(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(
        *TINY,
        "trainer.max_steps=20",
        "trainer.eval_every=10",
        "trainer.log_every=5",
        "trainer.checkpoint_every=10",
        "logger.diagnostics_every=10",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    records = read_jsonl(run_dir / "metrics.jsonl")
    keys = set().union(*records)
    for key in (
        "train/loss",
        "val/loss",
        "val/mse",
        "test/mse",
        "grad_norm/global",
        "grad_norm/dh_t",
        "perf/step_time_s",
        "perf/tokens_per_s",
    ):
        assert key in keys, key
    assert any(k.startswith("gates/layer_0/forget") for k in keys)
    assert [r["step"] for r in records if "train/loss" in r] == [5, 10, 15, 20]
    dh_t = next(r["grad_norm/dh_t"] for r in records if "grad_norm/dh_t" in r)
    assert isinstance(dh_t, list) and len(dh_t) == 12

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 20
    assert summary["monitor"] == "val/mse"
    assert summary["num_params"] > 0
    assert summary["best"]["val/mse"] == min(r["val/mse"] for r in records if "val/mse" in r)
    assert (run_dir / "checkpoints" / "20").is_dir()
    # the best checkpoint carries its monitor value, which orbax ranks it by
    assert list((run_dir / "checkpoints").glob("*/metrics/metrics"))
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))

    # The offline W&B run holds the same metric names (docs/DESIGN.md contract 4).
    wandb_run = read_wandb_run(run_dir)
    logged = set().union(*wandb_run["history"])
    for key in (
        "train/loss",
        "val/mse",
        "grad_norm/global",
        "grad_norm/dh_t",
        "gates/layer_0/forget",
        "gates/layer_0/forget_saturation",
    ):
        assert key in logged, key
    assert wandb_run["config"]["trainer"]["max_steps"] == 20
    assert wandb_run["group"] == "default"


def test_logger_none_runs_without_wandb(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(
        *TINY,
        "trainer.max_steps=4",
        "trainer.eval_every=2",
        "trainer.log_every=2",
        "trainer.checkpoint_every=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert read_jsonl(run_dir / "metrics.jsonl")
    assert not (run_dir / "wandb").exists()


def _params_at(directory: Path, step: int) -> list[np.ndarray]:
    manager = ocp.CheckpointManager(directory)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return [np.asarray(restored.state[k]) for k in sorted(restored.state)]


def _final_params(run_dir: Path, step: int) -> list[np.ndarray]:
    return _params_at(run_dir / "checkpoints", step)


def _curve(run_dir: Path) -> list[tuple]:
    """The run's loss curve: every logged train/val/test value, without timings."""
    out = []
    for record in read_jsonl(run_dir / "metrics.jsonl"):
        out.append(
            tuple(
                sorted(
                    (k, v)
                    for k, v in record.items()
                    if k == "step" or k.split("/")[0] in ("train", "val", "test")
                )
            )
        )
    return out


KILL_COMMON = (
    *TINY,
    "task._target_=fault_tasks.SlowAddingTask",
    "+task.seconds_per_batch=0.03",
    # Dropout between two layers: the resumed run must continue the RNG stream too.
    "model.num_layers=2",
    "model.dropout=0.2",
    "trainer.max_steps=60",
    "trainer.eval_every=10",
    # Checkpoints fall mid-way between log lines: the resumed run must still log the
    # same window means.
    "trainer.log_every=3",
    "trainer.checkpoint_every=10",
    "logger.diagnostics_every=null",
)


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("reference")
    run_cli(*KILL_COMMON, "logger=none", f"hydra.run.dir={work / 'run'}", cwd=work)
    return work / "run"


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.time() + 240
    while not path.is_dir():
        assert process.poll() is None, "the run ended before it could be stopped"
        assert time.time() < deadline
        time.sleep(0.01)


def _assert_same_run(resumed: Path, reference: Path) -> None:
    assert _curve(resumed) == _curve(reference)
    for a, b in zip(_final_params(resumed, 60), _final_params(reference, 60), strict=True):
        np.testing.assert_array_equal(a, b)


def test_killed_run_resumes_to_the_same_parameters_and_curve(tmp_path, uninterrupted_run):
    killed = tmp_path / "killed"
    process = start_cli([*KILL_COMMON, "logger=none", f"hydra.run.dir={killed}"], tmp_path)
    _wait_for(killed / "checkpoints" / "20", process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (killed / "summary.json").exists()
    assert not (killed / "checkpoints" / "60").exists()

    result = run_cli(
        *KILL_COMMON, "logger=none", f"hydra.run.dir={killed}", "trainer.resume=true", cwd=tmp_path
    )
    assert "Resuming from step 20" in result.stdout + result.stderr
    _assert_same_run(killed, uninterrupted_run)


def _interrupt(
    command: list[str], cwd: Path, run_dir: Path, after_checkpoint: int, signum: int
) -> tuple[int, list[str]]:
    """Runs `command`, sends `signum` once checkpoint `after_checkpoint` is written; returns
    (the step it stopped at, the printed resume command)."""
    process = start_cli(command, cwd)
    _wait_for(run_dir / "checkpoints" / str(after_checkpoint), process)
    time.sleep(0.2)  # mid-way to the next checkpoint
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    name = signal.Signals(signum).name
    assert last.startswith(f"lstm-jax: {name} at step "), last
    step = int(last.split(" at step ")[1].split(":")[0])
    assert after_checkpoint < step < 60
    # A checkpoint at the step it was on, not only the last periodic one.
    assert (run_dir / "checkpoints" / str(step)).is_dir()
    assert not (run_dir / "summary.json").exists()
    # W&B shows the run as interrupted, not as finished.
    assert read_wandb_run(run_dir)["exit_code"] == 128 + signum
    resume = shlex.split(last.split("Resume with: ")[1])
    assert resume[0] == "lstm-jax"
    assert resume[-2:] == ["trainer.resume=true", f"hydra.run.dir={run_dir}"]
    return step, resume[1:]


def test_sigint_and_sigterm_save_print_the_resume_command_and_resume_exactly(
    tmp_path, uninterrupted_run
):
    run_dir = tmp_path / "run"
    first = [*KILL_COMMON, "logger=wandb", f"hydra.run.dir={run_dir}"]
    step, resume = _interrupt(first, tmp_path, run_dir, 10, signal.SIGINT)
    # The printed command resumes (and a SIGTERM, as SLURM sends, stops it again).
    step2, resume = _interrupt(resume, tmp_path, run_dir, (step // 10 + 1) * 10, signal.SIGTERM)
    assert step2 > step
    result = run_cli(*resume, cwd=tmp_path)
    assert f"Resuming from step {step2}" in result.stdout + result.stderr
    _assert_same_run(run_dir, uninterrupted_run)


def test_tied_monitor_keeps_the_checkpoint_with_the_better_tiebreak(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(
        *TINY,
        "task._target_=fault_tasks.TiedAccuracyAddingTask",
        "optim.lr=1e-2",
        "trainer.max_steps=60",
        "trainer.eval_every=10",
        "trainer.log_every=10",
        "trainer.checkpoint_every=10",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "val/mse" in r]
    best = min(evals, key=lambda r: r["val/mse"])
    assert best["step"] != evals[0]["step"]  # else a strict '>' would pass this test too
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best"] == {"val/acc": 0.5, "step": best["step"], "val/mse": best["val/mse"]}
    # only improvements carry metrics: the newest of them is the best
    saved_bests = [int(p.parent.name) for p in (run_dir / "checkpoints").glob("*/metrics")]
    assert max(saved_bests) == best["step"]


def test_stop_when_ends_the_run_at_the_first_solved_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(
        *TINY,
        "task._target_=fault_tasks.SolvedFromEvaluationTask",
        "+task.solved_from=3",
        "trainer.max_steps=100",
        "trainer.eval_every=5",
        "trainer.log_every=5",
        "trainer.checkpoint_every=50",
        "trainer.stop_when=val/solved",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "val/solved" in r]
    assert [(r["step"], r["val/solved"]) for r in evals] == [(5, 0.0), (10, 0.0), (15, 1.0)]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 15 and summary["stopped_early"]
    assert summary["stopped_when"] == "val/solved"
    # The stop leaves a checkpoint at the step it stopped, so the run can be continued.
    kept = sorted(int(p) for p in os.listdir(run_dir / "checkpoints"))
    assert kept[-1] == 15 and len(kept) == 2  # trainer.keep_checkpoints, the best among them
    assert max(int(p.parent.name) for p in (run_dir / "checkpoints").glob("*/metrics")) == 15


def test_stop_when_names_a_metric_the_task_reports(tmp_path):
    result = run_cli(
        *TINY,
        "trainer.max_steps=10",
        "trainer.eval_every=5",
        "trainer.stop_when=val/solvd",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "trainer.stop_when=val/solvd is not a validation metric" in result.stderr
    assert "did you mean val/solved?" in result.stderr
    # Refused before training, not at the first evaluation.
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert not metrics.exists() or "train/loss" not in metrics.read_text()


def test_unknown_config_key_is_an_error_naming_it(tmp_path):
    result = run_cli("trainer.max_step=10", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "trainer.max_step is not a key of the config: did you mean trainer.max_steps?" in (
        result.stderr
    )


def test_nan_loss_stops_with_the_step_and_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        *TINY,
        "task._target_=fault_tasks.NanFromStepTask",
        "+task.nan_from_step=7",
        "trainer.max_steps=20",
        "trainer.eval_every=4",
        "trainer.log_every=2",
        "trainer.checkpoint_every=4",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "train/loss became nan at step 8" in result.stderr
    assert str(run_dir / "checkpoints" / "4") in result.stderr
    # Nothing after the divergence was saved as if it were good.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["4"]


def test_divergence_between_log_steps_names_its_step_and_resumes_with_a_lower_lr(tmp_path):
    run_dir = tmp_path / "run"
    diverging = (
        *TINY,
        "optim=sgd",
        "optim.optimizer.momentum=null",
        "optim.clip_grad_norm=null",
        "trainer.max_steps=20",
        "trainer.log_every=10",
        "trainer.eval_every=10",
        "trainer.checkpoint_every=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    result = run_cli(*diverging, "optim.lr=30", cwd=tmp_path, check=False)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    match = re.search(
        r"train/loss became (inf|nan) at step (\d+) .*checkpoint before it is "
        r"(\S+)/(\d+)\.",
        message,
    )
    assert match, message
    bad_step, good_step = int(match[2]), int(match[4])
    assert bad_step % 10 != 0  # not a log step: caught at the step it appeared
    # The newest checkpoint whose state still gives a finite loss; none saved after it.
    assert good_step < bad_step - 1
    steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir())
    assert steps[-1] == good_step
    for step in steps:
        for leaf in _params_at(run_dir / "checkpoints", step):
            assert np.isfinite(leaf).all(), step

    resumed = run_cli(
        *diverging,
        "optim.lr=1e-3",
        "trainer.resume=true",
        "trainer.resume_allow=[optim.lr]",
        cwd=tmp_path,
    )
    assert f"Resuming from step {good_step}" in resumed.stdout + resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 20
    losses = [r["train/loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert losses and all(loss is not None and np.isfinite(loss) for loss in losses)


def test_missing_data_file_names_the_file_the_source_and_the_setting(tmp_path):
    empty_root = tmp_path / "data"
    empty_root.mkdir()
    result = run_cli(
        "task=seq_fashion_mnist",
        f"paths.data_dir={empty_root}",
        "logger=none",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    message = result.stderr
    assert "lstm-jax: error:" in message
    assert "fashion-mnist/train-images-idx3-ubyte.gz" in message
    assert "paths.data_dir" in message and "LSTM_JAX_DATA" in message
    assert "Traceback" not in message


def test_unwritable_output_dir_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    target = "/proc/lstm-jax-run" if os.geteuid() == 0 else str(locked / "run")
    result = run_cli(
        *TINY, "trainer.max_steps=2", f"hydra.run.dir={target}", cwd=tmp_path, check=False
    )
    assert result.returncode != 0
    assert "lstm-jax-run" in result.stderr or str(locked) in result.stderr
    assert "hydra.run.dir" in result.stderr


@pytest.mark.parametrize(
    "override", ["optim.optimizer._target_=optax.adagradd", "model.cell=lstmm"]
)
def test_bad_values_name_the_setting(tmp_path, override):
    result = run_cli(
        *TINY, "trainer.max_steps=2", "logger=none", override, cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert override.split("=")[0] in result.stderr
