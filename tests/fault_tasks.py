"""Tasks that misbehave on purpose, for the trainer's tests (importable by the CLI in a
subprocess through PYTHONPATH=tests)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lstm_jax.tasks.synthetic import AddingTask


class SlowAddingTask(AddingTask):
    """The adding task with a pause per batch, so a test can kill a run mid-way."""

    def __init__(self, *, seconds_per_batch: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.seconds_per_batch = seconds_per_batch

    def train_batch(self, step: int):
        time.sleep(self.seconds_per_batch)
        return super().train_batch(step)


class NanFromStepTask(AddingTask):
    """The adding task whose inputs turn NaN from batch `nan_from_step` on (0-based)."""

    def __init__(self, *, nan_from_step: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.nan_from_step = nan_from_step

    def train_batch(self, step: int):
        batch = super().train_batch(step)
        if step >= self.nan_from_step:
            batch = {
                k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in batch.items()
            }
        return batch


class TiedAccuracyAddingTask(AddingTask):
    """The adding task monitored by a validation "accuracy" that never changes, so every
    evaluation ties and only the tie-break (val/mse) can pick the best checkpoint."""

    monitor = "val/acc"
    monitor_tiebreak = "val/mse"

    def evaluate(self, model, split):
        return {**super().evaluate(model, split), "acc": 0.5}


class BrokenTask(AddingTask):
    """A task whose constructor fails with an error no user could have foreseen."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise ZeroDivisionError("division by zero")


class ScriptedMonitorTask(AddingTask):
    """The adding task monitored by a validation "acc" (max) that follows `script`, one
    value per evaluation, so a test knows which evaluation is the best."""

    monitor = "val/acc"

    def __init__(self, *, script: tuple[float, ...] = (0.1, 0.5, 0.4, 0.3, 0.2), **kwargs):
        super().__init__(**kwargs)
        self.script = tuple(script)
        self.evaluations = 0

    def evaluate(self, model, split):
        metrics = super().evaluate(model, split)
        if split == "val":
            metrics["acc"] = self.script[min(self.evaluations, len(self.script) - 1)]
            self.evaluations += 1
        return metrics


class SolvedFromEvaluationTask(AddingTask):
    """The adding task whose validation reports solved = 1 from its `solved_from`-th
    evaluation on (1-based), for trainer.stop_when."""

    def __init__(self, *, solved_from: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.solved_from = solved_from
        self.val_evaluations = 0

    def evaluate(self, model, split):
        metrics = super().evaluate(model, split)
        if split == "val":
            self.val_evaluations += 1
            metrics["solved"] = float(self.val_evaluations >= self.solved_from)
        return metrics


class FirstRunDivergesTask(NanFromStepTask):
    """The adding task with NaN inputs from the first batch on in the first run that builds
    it (the one that finds no `marker` file; it creates it), so one job of a sweep diverges
    and the others train."""

    def __init__(self, *, marker: str, **kwargs):
        diverges = not Path(marker).exists()
        Path(marker).touch()
        super().__init__(nan_from_step=0 if diverges else 2**31, **kwargs)
