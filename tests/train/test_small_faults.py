"""The smaller faults: a run diverging to a finite loss is warned about; a start that
failed before its first step does not claim its dir."""

from __future__ import annotations

import pytest
from cli_runner import TINY_RUN, run_cli

# Slow (real lstm-jax runs, several per test): .ci/run's -m slow step runs it, after the
# 10-minute default suite.
pytestmark = pytest.mark.slow


def test_a_finite_divergence_is_warned(tmp_path):
    result = run_cli(
        *TINY_RUN,
        "trainer.max_steps=4",
        "optim.lr=1e6",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert "train/loss grew from" in output
    assert "the run is diverging. Lower optim.lr or set optim.clip_grad_norm" in output


def test_a_start_that_failed_before_its_first_step_leaves_its_dir_free(tmp_path):
    run_dir = tmp_path / "run"
    failed = run_cli(
        *TINY_RUN,
        "trainer.max_steps=4",
        "task._target_=fault_tasks.NanFromStepTask",
        "+task.nan_from_step=0",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        check=False,
    )
    assert failed.returncode == 1 and "at step 1" in failed.stderr
    assert (run_dir / "metrics.jsonl").read_text() == ""
    # the next start into the same dir is a fresh run, not "already holds a run"
    run_cli(*TINY_RUN, "trainer.max_steps=4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert '"status": "finished"' in (run_dir / "summary.json").read_text()
