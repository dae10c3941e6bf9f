"""The checkpoints a run keeps (orbax's LatestN preservation policy, in `last/` and
`best/`), and why the trainer keeps its own SIGTERM handler rather than orbax's
preemption support."""

from __future__ import annotations

import os
import signal

import jax.numpy as jnp

from lstm_jax.train.checkpoint import Checkpointer
from lstm_jax.train.faults import StopSignals


def test_last_keeps_the_newest_k_and_best_the_newest_one_in_their_own_dirs(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        checkpointer.save("last", step, {"w": jnp.full((2,), step)}, {"step": step})
    for step in (1, 3):
        checkpointer.save("best", step, {"w": jnp.full((2,), step)}, {"step": step})
    checkpointer.close()
    # a resumed run's Checkpointer prunes what the first one left
    reopened = Checkpointer(tmp_path, keep=2)
    reopened.save("last", 5, {"w": jnp.full((2,), 5)}, {"step": 5})
    assert sorted(int(p.name) for p in (tmp_path / "last").iterdir()) == [4, 5]
    assert sorted(int(p.name) for p in (tmp_path / "best").iterdir()) == [3]
    state, meta = reopened.restore("best", {"w": jnp.zeros((2,))})
    assert meta == {"step": 3} and state["w"].tolist() == [3, 3]
    reopened.close()


def test_orbax_preemption_misses_a_single_process_sigterm_that_stop_signals_catches(tmp_path):
    # Why faults.StopSignals stays (issue 30 item 6): orbax's reached_preemption needs a
    # jax.distributed client. If this starts failing, orbax serves single-process runs
    # and StopSignals could give way to it.
    checkpointer = Checkpointer(tmp_path, keep=1)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        assert not checkpointer._last.reached_preemption(1)
    checkpointer.close()
