"""What a person watching a run sees, wherever it runs.

On a terminal: a tqdm bar (steps, rate, ETA, the latest train loss and monitored metric) with
the run's log lines printed above it. Elsewhere (SLURM, CI, `nohup`: stderr not a terminal):
no bar. Either way every evaluation logs one plain line (step, rate, ETA, train loss, every
validation metric) through the `lstm_jax` logger, so the run dir's log file holds them, and
the run ends with a table of its test metrics.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
import time
from typing import Any

from tabulate import tabulate
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("lstm_jax")


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


class Progress:
    """The bar (where wanted and on a terminal) and the lines of one run's loop."""

    def __init__(self, total: int, initial: int, name: str, *, bar: bool, main_process: bool):
        self.total, self.initial = total, initial
        self.main_process = main_process
        show_bar = bar and main_process and sys.stderr.isatty()
        self.bar = tqdm(
            total=total, initial=initial, disable=not show_bar, dynamic_ncols=True, desc=name
        )
        self.postfix: dict[str, str] = {}
        self.started = time.perf_counter()
        self._redirect = contextlib.ExitStack()
        if show_bar:  # log lines go above the bar instead of through it
            # Hydra's console handler sits on the root logger, which lstm_jax's propagates to.
            self._redirect.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger()]))

    def update(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def train_loss(self, loss: float) -> None:
        self.postfix["loss"] = f"{loss:.4f}"
        self.bar.set_postfix(self.postfix)

    def evaluation(self, step: int, val: dict[str, float], monitor: str) -> None:
        self.postfix[monitor] = _number(val.get(monitor))
        self.bar.set_postfix(self.postfix)
        if not self.main_process:
            return
        elapsed = time.perf_counter() - self.started
        done = step - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = datetime.timedelta(seconds=round((self.total - step) / rate)) if rate else "?"
        metrics = ", ".join(f"{k} {_number(v)}" for k, v in val.items())
        log.info(
            "step %d/%d | %.2f steps/s | ETA %s | train/loss %s | %s",
            step, self.total, rate, eta, self.postfix.get("loss", "-"), metrics,
        )  # fmt: skip

    def close(self) -> None:
        self.bar.close()
        self._redirect.close()


def log_test_table(test: dict[str, float], step: int | None) -> None:
    """The run's last lines: its test metrics (at the best checkpoint) as a table."""
    if not test:
        return
    rows = [(name, _number(value)) for name, value in test.items()]
    where = f"the best checkpoint, step {step}" if step is not None else "the final parameters"
    log.info("test metrics (%s):\n%s", where, tabulate(rows, headers=["metric", "value"]))
