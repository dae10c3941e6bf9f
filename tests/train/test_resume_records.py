"""A resume checks the run's own files against its checkpoint: metrics.jsonl that lost the
records up to the checkpoint is resumed from an older checkpoint whose records it holds
(trained past again, step for step) or refused naming the file; a finished run is not
resumed into a second test record, and a longer run replaces the old one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import TINY_RUN, run_cli, tree_hashes

# Slow (real lstm-jax runs, several per test): .ci/run's -m slow step runs it, after the
# 10-minute default suite.
pytestmark = pytest.mark.slow

TINY = TINY_RUN


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """8 steps: checkpoints 6 and 8, a train/loss line every step."""
    work = tmp_path_factory.mktemp("finished")
    run_cli(*TINY, "trainer.max_steps=8", f"hydra.run.dir={work / 'run'}", cwd=work)
    return work / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir: Path) -> dict[int, float]:
    found = [(r["step"], r["train/loss"]) for r in records(run_dir) if "train/loss" in r]
    assert len(found) == len({step for step, _ in found}), "a step logged twice"
    return dict(found)


def resume(run_dir: Path, max_steps: int, check: bool = True):
    return run_cli(
        *TINY,
        f"trainer.max_steps={max_steps}",
        "trainer.resume=true",
        f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent,
        check=check,
    )


def test_a_truncated_metrics_file_resumes_from_the_checkpoint_whose_records_it_holds(
    finished_run, run_copy
):
    metrics = run_copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    through_6 = [line for line in lines if json.loads(line)["step"] <= 6]
    metrics.write_text("".join(through_6) + lines[len(through_6)][:10])  # cut mid-line
    result = resume(run_copy, max_steps=10)
    output = result.stdout + result.stderr
    assert f"Resuming from {run_copy / 'checkpoints' / '6'}, not from the newer" in output
    assert "holds no train/loss record of step 8" in output
    resumed, original = losses(run_copy), losses(finished_run)
    assert sorted(resumed) == list(range(1, 11))
    # steps 7 and 8 trained again from checkpoint 6: the same losses as the first time
    assert [resumed[s] for s in (7, 8)] == pytest.approx([original[s] for s in (7, 8)], rel=1e-6)


def test_a_damaged_line_before_every_checkpoint_refuses_the_resume_naming_it(run_copy):
    metrics = run_copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    lines[1] = "{garbled\n"
    metrics.write_text("".join(lines))
    before = tree_hashes(run_copy / "checkpoints")
    result = resume(run_copy, max_steps=10, check=False)
    assert result.returncode == 1
    message = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(message) == 1, result.stderr[-3000:]
    assert message[0].startswith(
        f"lstm-jax: error: no checkpoint in {run_copy / 'checkpoints'} can be resumed: "
    )
    assert f"{metrics} holds no train/loss record of step 8 (its line 2 is damaged)" in message[0]
    assert tree_hashes(run_copy / "checkpoints") == before


def test_resuming_a_finished_run_changes_nothing(run_copy):
    def run_files():  # Hydra's own .hydra/ and log are written by any start
        return {
            k: v
            for k, v in tree_hashes(run_copy).items()
            if k.startswith(("metrics.jsonl", "summary.json", "checkpoints/", "media/"))
        }

    before = run_files()
    result = resume(run_copy, max_steps=8)
    assert "finished at step 8: nothing to resume" in result.stdout + result.stderr
    assert run_files() == before


def test_a_longer_resume_replaces_the_old_test_record(run_copy):
    resume(run_copy, max_steps=10)
    tested = [r["step"] for r in records(run_copy) if any(k.startswith("test/") for k in r)]
    assert tested == [10]
    assert sorted(losses(run_copy)) == list(range(1, 11))
