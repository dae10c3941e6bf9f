"""The checkpoints a run keeps (one orbax manager: LatestN plus BestN), the layout of
two managers moved into it, and why the trainer keeps its own SIGTERM handler rather than orbax's
preemption support."""

from __future__ import annotations

import logging
import os
import signal

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from lstm_jax.train.checkpoint import Checkpointer, CheckpointError
from lstm_jax.train.faults import StopSignals


def step_dirs(directory) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def save(checkpointer, step, *, best_value=None, tiebreak=None):
    meta = {
        "step": step,
        "best_value": best_value,
        "best_tiebreak": tiebreak,
        "monitor": "val/loss",
    }
    checkpointer.save(step, {"w": jnp.full((2,), step)}, meta, best=best_value is not None)


def test_one_manager_keeps_the_newest_k_and_the_best_in_one_dir(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2, monitor="val/loss")
    save(checkpointer, 1, best_value=0.9)
    save(checkpointer, 2)
    save(checkpointer, 3, best_value=0.5)  # an improvement between periodic saves
    save(checkpointer, 4)
    save(checkpointer, 5)
    checkpointer.close()
    # the best (3) outlives the newest two; the older best (1) and 2 are pruned
    assert step_dirs(tmp_path) == [3, 4, 5]
    # a resumed run's Checkpointer prunes what the first one left
    reopened = Checkpointer(tmp_path, keep=2, monitor="val/loss")
    save(reopened, 6)
    assert step_dirs(tmp_path) == [3, 5, 6]
    assert reopened.latest_step() == 6 and reopened.latest_step("best") == 3
    state, meta = reopened.restore("best", {"w": jnp.zeros((2,))})
    assert meta["step"] == 3 and state["w"].tolist() == [3, 3]
    save(reopened, 7, best_value=0.4)  # a new best replaces the old one
    assert step_dirs(tmp_path) == [6, 7] and reopened.latest_step("best") == 7
    reopened.close()


def test_a_periodic_save_without_metrics_logs_no_warning(tmp_path, caplog):
    checkpointer = Checkpointer(tmp_path, keep=2, monitor="val/loss")
    with caplog.at_level(logging.WARNING):
        save(checkpointer, 1)
    assert step_dirs(tmp_path) == [1]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    checkpointer.close()


def test_the_best_is_ranked_in_the_monitors_direction_then_by_its_tiebreak(tmp_path):
    # val/solved: higher is better; its tiebreak (val/loss) lower is better. The trainer
    # saves an equal monitor value with a better tiebreak as an improvement.
    checkpointer = Checkpointer(tmp_path, keep=1, monitor="val/solved", tiebreak="val/loss")
    for step, solved, loss in ((1, 0.0, 2.0), (2, 1.0, 0.5), (3, 1.0, 0.3)):
        meta = {"step": step, "best_value": solved, "best_tiebreak": loss, "monitor": "val/solved"}
        checkpointer.save(step, {"w": jnp.full((2,), step)}, meta, best=True)
    assert checkpointer.steps("best") == [3]
    save(checkpointer, 4)
    assert step_dirs(tmp_path) == [3, 4] and checkpointer.latest_step("best") == 3
    checkpointer.close()


def test_a_run_dir_of_two_managers_is_moved_into_one(tmp_path):
    # The layout before one manager: last/<step> (newest k) and best/<step>, written by
    # orbax as today (state, meta); the best one's meta names its monitor value.
    def old_save(which, step, best_value):
        manager = ocp.CheckpointManager(tmp_path / which)
        meta = {"step": step, "best_value": best_value, "monitor": "val/loss"}
        leaves = {"00000": jnp.full((2,), step)}
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves), meta=ocp.args.JsonSave(meta)
            ),
        )
        manager.wait_until_finished()
        manager.close()

    old_save("last", 4, 0.7)
    old_save("last", 6, 0.7)
    old_save("best", 2, 0.7)
    old_save("best", 6, 0.7)  # a step both periodic and best: one copy stays
    with pytest.raises(CheckpointError, match="python -m lstm_jax.train.checkpoint"):
        Checkpointer(tmp_path, keep=2, monitor="val/loss", read_only=True)
    assert step_dirs(tmp_path / "last") == [4, 6]  # the read-only reader moved nothing
    checkpointer = Checkpointer(tmp_path, keep=2, monitor="val/loss")
    assert step_dirs(tmp_path) == [2, 4, 6]
    assert not (tmp_path / "last").exists() and not (tmp_path / "best").exists()
    assert checkpointer.latest_step() == 6
    state, meta = checkpointer.restore("last", {"w": jnp.zeros((2,))})
    assert meta["step"] == 6 and state["w"].tolist() == [6, 6]
    # both old bests carry value 0.7: the newer one ranks first, as BestN keeps it
    assert checkpointer.steps("best") == [6, 2]
    save(checkpointer, 8)
    assert step_dirs(tmp_path) == [6, 8]
    checkpointer.close()


def test_orbax_preemption_misses_a_single_process_sigterm_that_stop_signals_catches(tmp_path):
    # Why faults.StopSignals stays (issue 30 item 6): orbax's reached_preemption needs a
    # jax.distributed client. If this starts failing, orbax serves single-process runs
    # and StopSignals could give way to it.
    checkpointer = Checkpointer(tmp_path, keep=1)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        assert not checkpointer._manager.reached_preemption(1)
    checkpointer.close()
