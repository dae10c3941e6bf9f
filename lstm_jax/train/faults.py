"""How a run ends other than by finishing: a signal (SIGINT, SIGTERM as SLURM sends before
preemption) saves a checkpoint at the step it arrives and stops; a non-finite loss or
gradient stops the run naming its step and the newest checkpoint that is safe to resume.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from pathlib import Path
from typing import Any

from lstm_jax.train.checkpoint import Checkpointer

log = logging.getLogger("lstm_jax.train.trainer")


class NonFiniteLossError(RuntimeError):
    """The training loss (or its gradient) became NaN or infinite."""

    def __init__(self, message: str, *, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run; `checkpoint` holds its state at `step`."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal.Signals(signum).name} at step {step}")


class StopSignals:
    """While active, SIGINT and SIGTERM (what SLURM sends before preemption) set
    `received` instead of raising, so the loop can save a checkpoint at the step it is on
    and stop; a second signal stops at once."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def raise_if_diverged(
    bad_step: int, window: list[dict[str, Any]], step: int, checkpointer: Checkpointer
) -> None:
    """Raises NonFiniteLossError naming the first step whose loss or gradient was not
    finite and the newest checkpoint saved before it. `window`: the metrics of the
    steps since the last log line (the bad step is among them)."""
    if bad_step == 0:
        return
    index = bad_step - (step - len(window)) - 1
    loss = float(window[index]["train/loss"]) if 0 <= index < len(window) else math.nan
    what = (
        f"train/loss became {loss}"
        if not math.isfinite(loss)
        else f"the gradient became non-finite (train/loss {loss:.4g})"
    )
    # The loss of step k is computed from the state after k - 1 updates: a checkpoint
    # of step bad_step - 1 (or later) would meet the same non-finite loss on resume.
    for dead_end in [s for s in checkpointer.steps("last") if s >= bad_step - 1]:
        log.warning(
            "Removing %s: its state gives the non-finite loss of step %d",
            checkpointer.directory / "last" / str(dead_end),
            bad_step,
        )
        checkpointer.delete("last", dead_end)
    last_good = checkpointer.path("last")
    if last_good is not None:
        where = (
            f"the newest checkpoint before it is {last_good}. Resume from it with a lower "
            "learning rate (trainer.resume=true optim.lr=... trainer.resume_allow=[optim.lr]"
            "), set optim.clip_grad_norm, or check the data for NaNs."
        )
    else:
        where = (
            "no checkpoint was written before it. Lower optim.lr, set "
            "optim.clip_grad_norm, or check the data for NaNs."
        )
    raise NonFiniteLossError(
        f"{what} at step {bad_step} (no update was applied from it on, nothing after it "
        f"was saved); {where}",
        step=bad_step,
        checkpoint=last_good,
    )
