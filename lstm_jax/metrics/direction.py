"""Whether a metric is better smaller or larger: the one rule every part of lstm_jax uses.

A metric's direction follows from the last part of its name (`val/acc` -> "acc"): "min"
for losses and error measures, "max" for accuracies, scores and solved fractions. Tasks
name their monitor and get its mode from here (`Task.monitor_mode`); the trainer's best
checkpoint and early stop (`improves`), the W&B summary, `lstm-jax-compare` (`best_of`)
and the Optuna sweeper's direction (`OPTUNA_DIRECTIONS`) all ask this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

Mode = Literal["min", "max"]

MIN_NAMES = frozenset(
    {
        "loss",
        "nll",
        "ppl",
        "perplexity",
        "bpc",
        "bpd",
        "mse",
        "mae",
        "rmse",
        "mape",
        "der",
        "ser",
        "wer",
        "cer",
        "error",
        "err",
        "ce",
    }
)
MAX_NAMES = frozenset(
    {
        "acc",
        "accuracy",
        "top1",
        "top5",
        "f1",
        "auc",
        "auroc",
        "r2",
        "precision",
        "recall",
        "bleu",
        "correlation",
        "corr",
        "solved",
    }
)
# What an Optuna study is told for each mode.
OPTUNA_DIRECTIONS: dict[str, str] = {"min": "minimize", "max": "maximize"}


def goal(metric: str) -> Mode | None:
    """ "min" or "max" for a metric name judged by its last part (`val/seq_acc` -> max,
    `test/baseline_mse` -> min), None for a name this table does not know."""
    last = metric.rsplit("/", 1)[-1].lower()
    if last in MIN_NAMES or last.endswith(("loss", "_mse", "_mae")):
        return "min"
    if last in MAX_NAMES or last.endswith("acc"):
        return "max"
    return None


def mode_of(metric: str) -> Mode:
    """`goal(metric)`, refusing a name the table does not know (a task's monitor must
    have a direction)."""
    mode = goal(metric)
    if mode is None:
        raise ValueError(
            f"{metric} has no known direction (min or max): name the monitor after what it "
            "measures (loss, mse, acc, ...) or add its name to MIN_NAMES or MAX_NAMES in "
            "lstm_jax/metrics/direction.py."
        )
    return mode


def improves(
    value: float,
    best: float | None,
    mode: str,
    tiebreak: float | None = None,
    best_tiebreak: float | None = None,
) -> bool:
    """Whether `value` improves on `best` (the first finite value always does); on a tie,
    whether `tiebreak` (lower is better) improves on `best_tiebreak`."""
    if best is None:
        return math.isfinite(value)
    if value == best and tiebreak is not None and best_tiebreak is not None:
        return tiebreak < best_tiebreak
    return value < best if mode == "min" else value > best


def best_of(values: Iterable[tuple[int, float]], mode: str) -> tuple[int, float] | None:
    """The (step, value) whose finite value is best by `mode`, the earliest of equal ones
    (as `improves` keeps the first); None when none is finite."""
    best = None
    for step, value in values:
        if math.isfinite(value) and (best is None or improves(value, best[1], mode)):
            best = (step, value)
    return best
