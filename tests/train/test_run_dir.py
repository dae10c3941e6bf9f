"""One run per run dir (docs/DESIGN.md contract 3): a second start into a dir holding a run, and
a resume whose config changed, are refused before anything in the dir changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import run_cli, tree_hashes
from omegaconf import OmegaConf

TINY = (
    "task.seq_len=12",
    "task.val_size=64",
    "task.test_size=64",
    "task.eval_batch_size=64",
    "model.hidden_size=16",
    "trainer.batch_size=16",
    "trainer.progress_bar=false",
    "logger=none",
    "logger.diagnostics_every=null",
    "trainer.max_steps=10",
    "trainer.eval_every=5",
    "trainer.log_every=5",
    "trainer.checkpoint_every=5",
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("finished")
    run_dir = work / "run"
    run_cli(*TINY, f"hydra.run.dir={run_dir}", cwd=work)
    return run_dir


def test_second_run_into_a_finished_dir_is_refused_and_changes_nothing(finished_run, tmp_path):
    before = tree_hashes(finished_run)
    assert "metrics.jsonl" in before and ".hydra/config.yaml" in before
    result = run_cli(
        *TINY, "model.hidden_size=8", f"hydra.run.dir={finished_run}", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    expected = (
        f"lstm-jax: error: the run dir {finished_run} already holds a run. Start this one in "
        "a new dir (hydra.run.dir=PATH, or leave hydra.run.dir unset for a fresh time-stamped "
        f"one), or continue that run with trainer.resume=true hydra.run.dir={finished_run}."
    )
    assert lines == [expected]
    assert tree_hashes(finished_run) == before


def test_resume_with_changed_keys_is_refused_with_the_list_and_changes_nothing(
    finished_run, tmp_path
):
    before = tree_hashes(finished_run)
    result = run_cli(
        *TINY,
        "trainer.resume=true",
        "model.hidden_size=64",
        "optim.lr=0.01",
        f"hydra.run.dir={finished_run}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert "model.hidden_size: 16 -> 64" in message
    assert "optim.lr: 0.003 -> 0.01" in message
    # model.hidden_size changes the parameters' shapes: offering to allow it would lead
    # to a resume whose checkpoints cannot be restored
    assert "trainer.resume_allow=[optim.lr] (model.hidden_size changes the parameters'" in message
    assert tree_hashes(finished_run) == before


def test_resume_with_longer_max_steps_is_refused_only_when_a_schedule_reads_it(
    finished_run, tmp_path
):
    before = tree_hashes(finished_run)
    # The run used a constant schedule: its lr does not depend on max_steps, so the longer
    # run is accepted by the check (it is tried on a copy: it trains on).
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    run_cli(
        *TINY, "trainer.resume=true", "trainer.max_steps=15", f"hydra.run.dir={copy}", cwd=tmp_path
    )
    assert json.loads((copy / "summary.json").read_text())["steps"] == 15

    cosine = tmp_path / "cosine"
    run_cli(*TINY, "optim.schedule.name=cosine", f"hydra.run.dir={cosine}", cwd=tmp_path)
    result = run_cli(
        *TINY,
        "optim.schedule.name=cosine",
        "trainer.resume=true",
        "trainer.max_steps=20",
        f"hydra.run.dir={cosine}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "optim.schedule.decay_steps: 10 -> 20 (from trainer.max_steps)" in result.stderr
    assert "trainer.resume_allow=[trainer.max_steps]" in result.stderr
    assert tree_hashes(finished_run) == before


def test_allowed_change_is_recorded_in_the_run_dir_and_the_log(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    result = run_cli(
        *TINY,
        "trainer.resume=true",
        "optim.lr=0.01",
        "trainer.max_steps=15",
        "trainer.resume_allow=[optim.lr]",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    records = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert [r["allowed_changes"] for r in records] == [{"optim.lr": [0.003, 0.01]}]
    assert "optim.lr changed from 0.003 to 0.01" in result.stdout + result.stderr
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").optim.lr == 0.01


def _largest_array_file(checkpoint: Path) -> Path:
    return max(
        (p for p in (checkpoint / "state").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    newest = run_dir / "checkpoints" / "10"
    victim = _largest_array_file(newest)
    victim.write_bytes(victim.read_bytes()[:100])
    result = run_cli(
        *TINY,
        "trainer.resume=true",
        "trainer.max_steps=15",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert f"Skipped unreadable checkpoint {newest} (" in output
    assert "Resuming from step 5" in output
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 15
    assert (run_dir / "checkpoints" / "corrupt" / "10").is_dir()


def test_no_intact_checkpoint_is_refused_in_one_line(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "checkpoints" / "10" / "meta" / "metadata").unlink()
    victim = _largest_array_file(run_dir / "checkpoints" / "5")
    victim.write_bytes(victim.read_bytes()[:100])
    result = run_cli(
        *TINY, "trainer.resume=true", f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    checkpoints = run_dir / "checkpoints"
    assert message.startswith(
        f"lstm-jax: error: no intact checkpoint in {checkpoints}: "
        f"{checkpoints / '10'} (FileNotFoundError: "
    )
    assert f"{checkpoints / '5'} (" in message


# --- sweeps: Hydra saves each job's .hydra/ before any code of the job runs ---------------


# Sweeps of two jobs cost a minute together: in the slow step of .ci/run.
@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("sweep")
    sweep = work / "sweep"
    run_cli("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=work)
    assert sorted(p.name for p in sweep.iterdir() if (p / "metrics.jsonl").is_file()) == ["0", "1"]
    return sweep


@pytest.mark.slow
def test_a_resumed_sweep_with_a_changed_config_is_refused_and_changes_nothing(
    finished_sweep, tmp_path
):
    before = tree_hashes(finished_sweep)
    result = run_cli(
        "-m",
        *TINY,
        "seed=0,1",
        "model.hidden_size=8",
        "trainer.resume=true",
        f"hydra.sweep.dir={finished_sweep}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("lstm-jax: error")]
    assert len(errors) == 1 and "model.hidden_size: 16 -> 8" in errors[0], result.stderr[-2000:]
    assert f"trainer.resume=true in {finished_sweep / '0'}" in errors[0]
    # Hydra had rewritten job 0's .hydra/ with the new config; the job put the old one back
    assert tree_hashes(finished_sweep) == before


@pytest.mark.slow
def test_a_resumed_sweep_continues_each_job_with_its_config_checked(finished_sweep, tmp_path):
    result = run_cli(
        "-m",
        *TINY,
        "seed=0,1",
        "trainer.max_steps=15",
        "trainer.resume=true",
        f"hydra.sweep.dir={finished_sweep}",
        cwd=tmp_path,
    )
    for job in ("0", "1"):
        steps = [
            json.loads(line)["step"]
            for line in (finished_sweep / job / "metrics.jsonl").read_text().splitlines()
        ]
        # train and val at 5 and 10, then train, val and test at 15: resumed, not restarted,
        # and the test record of the earlier end (10) replaced by the new end's
        assert steps == [5, 5, 10, 10, 15, 15, 15], steps
    assert not (finished_sweep / ".hydra_before_resume").exists(), result.stderr[-2000:]


@pytest.mark.slow
def test_a_bad_value_in_a_sweep_is_refused_in_one_line_before_any_job_trains(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m", *TINY, "model.hidden_size=0,8", f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("lstm-jax: error")]
    assert errors == [
        "lstm-jax: error: model.hidden_size=0: Input should be greater than or equal to 1."
    ], result.stderr[-2000:]
    assert not any(sweep.rglob("metrics.jsonl"))
