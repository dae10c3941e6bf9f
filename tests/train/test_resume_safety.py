"""A resume never condemns an intact checkpoint: a config that cannot fit the checkpoints
(a shape-changing key in trainer.resume_allow, a missing or unreadable stored config, an
intact checkpoint of other shapes) is refused in one line, and every checkpoint file is as
it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax.numpy as jnp
import pytest
from cli_runner import TINY_RUN, run_cli, tree_hashes

from lstm_jax.train.checkpoint import Checkpointer

# Slow (real lstm-jax runs, several per test): .ci/run's -m slow step runs it, after the
# 10-minute default suite.
pytestmark = pytest.mark.slow

TINY = (*TINY_RUN, "trainer.max_steps=4")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("finished")
    run_cli(*TINY, f"hydra.run.dir={work / 'run'}", cwd=work)
    return work / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def resume_refused(run_dir: Path, *overrides: str) -> str:
    """Resumes the run in `run_dir` with `overrides`; asserts a one-line refusal that left
    every checkpoint file as it was, and returns the line."""
    before = tree_hashes(run_dir / "checkpoints")
    assert before
    result = run_cli(
        *TINY,
        "trainer.max_steps=6",
        "trainer.resume=true",
        *overrides,
        f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert tree_hashes(run_dir / "checkpoints") == before
    assert not (run_dir / "checkpoints" / "corrupt").exists()
    return lines[0]


def test_resume_allow_on_a_shape_key_is_refused_before_anything_moves(run_copy):
    line = resume_refused(
        run_copy, "model.hidden_size=16", "trainer.resume_allow=[model.hidden_size]"
    )
    assert line == (
        "lstm-jax: error: trainer.resume_allow cannot accept model.hidden_size "
        "(model.hidden_size: 8 -> 16): it changes the shapes of the parameters the "
        f"checkpoints in {run_copy} hold. Resume with the run's values, or start a new run in "
        "another dir."
    )


def test_a_missing_stored_config_stops_the_resume(run_copy):
    stored = run_copy / ".hydra" / "config.yaml"
    stored.unlink()
    line = resume_refused(run_copy, "model.hidden_size=16")
    assert f"the run's config {stored} is needed" in line and "it is missing" in line


def test_an_unreadable_stored_config_stops_the_resume(run_copy):
    stored = run_copy / ".hydra" / "config.yaml"
    stored.write_text("model: [unclosed\n")
    line = resume_refused(run_copy)
    assert f"the run's config {stored} is needed" in line and "it cannot be read" in line


def test_an_intact_checkpoint_of_other_shapes_is_told_apart_from_damage(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=2)
    for step in (2, 4):
        checkpointer.save(step, {"w": jnp.ones((3, 4))}, {"step": step})
    before = tree_hashes(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match=r"holds an array of shape \(3, 4\) where this run's"):
        checkpointer.restore("last", {"w": jnp.ones((5, 4))})
    with pytest.raises(ValueError, match="holds 1 arrays but this run's state has 2"):
        checkpointer.restore("last", {"w": jnp.ones((3, 4)), "b": jnp.ones(4)})
    assert tree_hashes(tmp_path / "checkpoints") == before
    assert checkpointer.steps("last") == [2, 4]
    state, meta = checkpointer.restore("last", {"w": jnp.zeros((3, 4))})
    assert meta["step"] == 4 and float(state["w"].sum()) == 12.0
    checkpointer.close()
