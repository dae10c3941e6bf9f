"""Loggers beside the trainer: metrics.jsonl (always), W&B (offline unless logged in) and
TensorBoard (`logger=tensorboard`, or both with `logger=wandb_tensorboard`).

loggers = make_loggers(cfg, run_dir, resume=..., resume_step=..., monitor=task.monitor,
                       monitor_mode=task.monitor_mode, is_main_process=...)
loggers.log({"train/loss": 0.3, ...}, step)
loggers.log_summary({...}); loggers.finish()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lstm_jax.loggers.jsonl import JsonlLogger, read_metrics
from lstm_jax.loggers.tensorboard_logger import TensorBoardLogger
from lstm_jax.loggers.wandb_logger import WandbLogger, resolve_mode
from lstm_jax.loggers.wandb_reader import find_wandb_files, read_wandb_run

__all__ = [
    "JsonlLogger",
    "MultiLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "find_wandb_files",
    "make_loggers",
    "read_metrics",
    "read_wandb_run",
    "resolve_mode",
]


class MultiLogger:
    """Sends every call to each of its loggers (none on non-main processes)."""

    def __init__(self, loggers: list[Any]):
        self.loggers = list(loggers)
        self._finished = False

    def __iter__(self):
        return iter(self.loggers)

    def get(self, cls: type) -> Any | None:
        """The first logger of type `cls`, or None."""
        return next((lg for lg in self.loggers if isinstance(lg, cls)), None)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if metrics:
            for logger in self.loggers:
                logger.log(metrics, step)

    def log_summary(self, summary: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_summary(summary)

    def truncate_after(self, step: int) -> None:
        """On resume from the checkpoint of `step`: drops metrics.jsonl lines after it."""
        for logger in self.loggers:
            if hasattr(logger, "truncate_after"):
                logger.truncate_after(step)

    def finish(self, exit_code: int | None = None) -> None:
        """Closes every logger; W&B records `exit_code` (non-zero: a failed or
        interrupted run)."""
        if self._finished:
            return
        self._finished = True
        errors = []
        for logger in self.loggers:
            try:
                if isinstance(logger, WandbLogger):
                    logger.finish(exit_code=exit_code)
                else:
                    logger.finish()
            except Exception as e:  # noqa: BLE001 - finish every logger, then re-raise
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def make_loggers(
    cfg: Any,
    run_dir: str | os.PathLike,
    *,
    resume: bool,
    is_main_process: bool = True,
    resume_step: int | None = None,
    monitor: str | None = None,
    monitor_mode: str | None = None,
) -> MultiLogger:
    """The loggers of one run: metrics.jsonl always, W&B when `logger.wandb.enabled` and
    its mode (see `resolve_mode`) is not "disabled", TensorBoard when
    `logger.tensorboard.enabled`. Only the main process logs.

    `resume_step`: the step of the checkpoint a resumed run restarts from; metrics.jsonl
    lines after it are dropped (or call `truncate_after(step)` once it is known).
    `monitor`/`monitor_mode`: the task's monitored metric (e.g. "val/acc", "max") so W&B
    reports its best in the summary.
    """
    if not is_main_process:
        return MultiLogger([])
    run_dir = Path(run_dir)
    loggers: list[Any] = [JsonlLogger(run_dir, resume=resume, resume_step=resume_step)]
    lcfg = cfg.get("logger", {}) if hasattr(cfg, "get") else {}
    wcfg, tcfg = lcfg.get("wandb"), lcfg.get("tensorboard")
    try:
        if (
            wcfg is not None
            and wcfg.get("enabled", False)
            and resolve_mode(wcfg.get("mode")) != "disabled"
        ):
            loggers.append(
                WandbLogger(cfg, run_dir, resume=resume, monitor=monitor, monitor_mode=monitor_mode)
            )
        if tcfg is not None and tcfg.get("enabled", False):
            loggers.append(TensorBoardLogger(cfg, run_dir, resume_step=resume_step))
    except BaseException:
        MultiLogger(loggers).finish()
        raise
    return MultiLogger(loggers)
