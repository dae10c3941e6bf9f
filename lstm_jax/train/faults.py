"""How a run ends other than by finishing: a signal (SIGINT, SIGTERM as SLURM sends before
preemption) saves a checkpoint at the step it arrives and stops; a non-finite loss or
gradient stops the run naming its step and the newest checkpoint that is safe to resume.
"""

from __future__ import annotations

import errno
import logging
import math
import re
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
    and stop; a second signal stops at once.

    Orbax's preemption support does not replace this (issue 30 item 6; orbax 0.12.8,
    jax 0.10.2): `CheckpointManager.reached_preemption(step)` calls
    `jax.experimental.multihost_utils.reached_preemption_sync_point`, which returns False
    whenever `jax.distributed` has no client, i.e. in every single-process run (CPU, one
    GPU, a laptop); a SIGTERM there still kills the process (rc 143) with no save. It
    needs `jax.distributed.initialize()` with the preemption service, handles SIGTERM
    only (not SIGINT, Ctrl-C), and must be polled at every step by every process."""

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
    for dead_end in [s for s in checkpointer.steps() if s >= bad_step - 1]:
        log.warning(
            "Removing %s: its state gives the non-finite loss of step %d",
            checkpointer.directory / str(dead_end),
            bad_step,
        )
        checkpointer.delete(dead_end)
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


# What a full or read-only disk looks like in each layer that may meet it first: Python's
# OSError (metrics.jsonl, summary.json), TensorStore's text inside orbax's ValueError
# (checkpoints: `... No space left on device [os_error_code='28']`).
_DISK_FAULTS = {
    errno.ENOSPC: ("no space left on the device", "No space left on device"),
    errno.EDQUOT: ("the disk quota is exceeded", "Disk quota exceeded"),
    errno.EROFS: ("the file system is read-only", "Read-only file system"),
}
_QUOTED_PATH = re.compile(r'(?:file|Failed writing:) "([^"]+)"')
_NUMPY_OUT_OF_MEMORY = re.compile(
    r"Unable to allocate (\S+ \w+) for an array with shape (\([^)]*\))"
)
_OUT_OF_MEMORY = re.compile(
    r"RESOURCE_EXHAUSTED: Out of memory (?:while trying to )?allocat\w* (\d+) bytes"
)


def _gigabytes(size: float) -> str:
    gb = size / 1e9
    return f"{gb:.3g} GB" if gb < 1000 else f"{gb:,.0f} GB"


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def disk_fault(error: BaseException) -> tuple[str, str | None] | None:
    """(what happened, the path it happened at, if known) when `error`, or one it was
    raised from, is a full or read-only disk; None for any other error. (A file that
    cannot be read for its permissions is a user error with its own message.)"""
    for link in _chain(error):
        for code, (what, text) in _DISK_FAULTS.items():
            if (isinstance(link, OSError) and link.errno == code) or (
                text in str(link) or f"os_error_code='{code}'" in str(link)
            ):
                path = getattr(link, "filename", None)
                if path is None:
                    quoted = _QUOTED_PATH.search(str(link))
                    path = quoted.group(1) if quoted else None
                return what, None if path is None else str(path)
    return None


def out_of_memory(error: BaseException) -> str | None:
    """The allocation the machine could not make ("an allocation of 57.4 GB"), when
    `error`, or one it was raised from, is XLA's or numpy's out-of-memory error."""
    for link in _chain(error):
        if found := _OUT_OF_MEMORY.search(str(link)):
            return f"an allocation of {_gigabytes(int(found.group(1)))}"
        if isinstance(link, MemoryError) and (found := _NUMPY_OUT_OF_MEMORY.search(str(link))):
            return f"an allocation of {found.group(1)} (an array of shape {found.group(2)})"
        if isinstance(link, MemoryError):
            return "an allocation"
    return None


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in run_dir (orbax's step dirs; a save cut off
    leaves a `*.orbax-checkpoint-tmp*` dir, which does not count)."""
    checkpoints = Path(run_dir) / "checkpoints"
    steps = [int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()]
    return checkpoints / str(max(steps)) if steps else None


class DropDiskFaultRecords(logging.Filter):
    """Drops library log records of a disk fault (orbax logs one from each writer thread
    before the save raises it); the CLI reports the fault itself, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for _, text in _DISK_FAULTS.values())


def available_memory() -> tuple[int, str] | None:
    """(bytes, where) the run's arrays can take: the accelerator's memory limit, or the
    host's available memory on CPU; None when unknown."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        limit = (device.memory_stats() or {}).get("bytes_limit")
        return (int(limit), f"{device.device_kind} memory") if limit else None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    return None


def memory_floor(cfg: Any) -> int | None:
    """A lower bound on the bytes one training step keeps for its backward pass: the h and
    c (float32) of every step of every layer and direction of the batch. None when the
    config does not name the shapes (no task.seq_len or model.hidden_size)."""
    seq_len, hidden = cfg.task.get("seq_len"), cfg.model.get("hidden_size")
    if not isinstance(seq_len, int) or not isinstance(hidden, int):
        return None
    layers = int(cfg.model.get("num_layers") or 1) * (2 if cfg.model.get("bidirectional") else 1)
    return int(cfg.trainer.batch_size) * seq_len * hidden * layers * 2 * 4


def check_memory(cfg: Any) -> None:
    """Refuses (MemoryError, one line) before any work a run whose backward pass needs
    more memory than the machine has, by memory_floor's estimate."""
    need, have = memory_floor(cfg), available_memory()
    if need is None or have is None or need <= have[0]:
        return
    raise MemoryError(
        f"task.seq_len={cfg.task.seq_len} with trainer.batch_size={cfg.trainer.batch_size} and "
        f"model.hidden_size={cfg.model.hidden_size} needs at least {_gigabytes(need)} for the "
        f"states a training step keeps for its backward pass; this machine has "
        f"{_gigabytes(have[0])} ({have[1]}). Lower task.seq_len, trainer.batch_size or "
        "model.hidden_size."
    )


class LossGrowthWatch:
    """Warns once when the logged train/loss has grown `factor`-fold over the first one
    this process logged: a run diverging without a NaN (optim.lr=1e6 on the adding task
    ends at a finite 3.5e13), which the non-finite check never sees."""

    def __init__(self, factor: float = 1e4):
        self.factor = factor
        self.first: tuple[int, float] | None = None
        self.warned = False

    def check(self, losses: list[float], step: int) -> None:
        """`losses`: the train/loss of each step up to `step` since the last check."""
        if self.first is None and losses:
            self.first = (step - len(losses) + 1, losses[0])
        if self.first is None or self.warned:
            return
        first_step, first_loss = self.first
        finite = [x for x in losses if math.isfinite(x)]
        if first_loss > 0 and finite and max(finite) >= self.factor * first_loss:
            self.warned = True
            log.warning(
                "train/loss grew from %.4g at step %d to %.4g by step %d (%.2g times): the "
                "run is diverging. Lower optim.lr or set optim.clip_grad_norm",
                first_loss,
                first_step,
                max(finite),
                step,
                max(finite) / first_loss,
            )
