"""A checkpoint with a truncated array file is reported once, in the trainer's own line:
orbax's restore leaves no read running that would print a traceback later."""

from __future__ import annotations

import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.train import checkpoint
from lstm_jax.train.checkpoint import Checkpointer, CheckpointError


def test_a_truncated_array_file_fails_the_restore_without_stray_tracebacks(
    tmp_path, capfd, monkeypatch
):
    # The function the restore swaps must exist in this orbax, or the fix is silently off.
    assert callable(getattr(checkpoint.orbax_asyncio, "_run_sync_via_new_loop", None))
    # tensorstore reports an error in its completion callback as an unraisable exception
    # with no object, which Python's default hook prints as a bare traceback.
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", lambda report: unraisable.append(report))
    # Twelve incompressible arrays: orbax reads them concurrently, so when the truncated
    # one fails, others are still being read on tensorstore's threads.
    rng = np.random.default_rng(0)
    state = {f"w{i:02d}": jnp.asarray(rng.random((64, 256)), jnp.float32) for i in range(12)}
    writer = Checkpointer(tmp_path, keep=1)
    writer.save(1, state, {"step": 1})
    writer.close()
    victim = max(
        (p for p in (tmp_path / "1" / "state").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    victim.write_bytes(victim.read_bytes()[:100])

    reader = Checkpointer(tmp_path, keep=1, read_only=True)
    # Before the fix, ten restores printed tens of "Event loop is closed" tracebacks.
    for _ in range(10):
        with pytest.raises(
            CheckpointError, match=r"^no intact checkpoint in .*Nothing was changed"
        ):
            reader.restore("last", state, move_damaged=False)
    reader.close()
    time.sleep(0.5)  # a read left running would report within this
    assert [str(report.exc_value) for report in unraisable] == []
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Event loop is closed" not in err, err
