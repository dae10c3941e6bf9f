"""The entry point's half of a run: builds the objects a config names and hands them in.

`lstm-jax` (lstm_jax/cli.py) composes the Hydra config and calls `train(cfg, run_dir)`;
everything the config names is instantiated here, so `Trainer` itself needs no Hydra:

    trainer = build_trainer(cfg, run_dir)     # task, model, optimizer, loggers, mesh
    summary = trainer.fit()
    cfg, task, model = load_run(run_dir)      # a finished (or running) run, eval mode

The order of construction is fixed (task, then the model from `nnx.Rngs(params=seed,
dropout=seed + 1)`), so the same config and seed give the same initial parameters.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import hydra
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from lstm_jax import distributed
from lstm_jax.loggers import MultiLogger, make_loggers
from lstm_jax.schema import validate
from lstm_jax.tasks.base import Task
from lstm_jax.train.checkpoint import CheckpointError
from lstm_jax.train.optim import make_optimizer, make_schedule
from lstm_jax.train.trainer import Trainer, TrainerConfig

log = logging.getLogger(__name__)


def trainer_config(cfg: DictConfig) -> TrainerConfig:
    """The `trainer` group as the loop's typed settings."""
    values = OmegaConf.to_container(cfg.trainer, resolve=True)
    values["resume_allow"] = tuple(values.get("resume_allow") or ())
    return TrainerConfig(**values)


def _loggers(cfg: DictConfig, run_dir: Path, task: Task, resume_step: int) -> MultiLogger:
    return make_loggers(
        cfg,
        run_dir,
        resume=resume_step > 0,
        resume_step=resume_step,
        is_main_process=distributed.is_main_process(),
        monitor=task.monitor,
        monitor_mode=task.monitor_mode,
    )


def build_trainer(cfg: DictConfig, run_dir: str | Path) -> Trainer:
    """The Trainer of `cfg`: its task (`cfg.task`), the task's model for `cfg.model`, the
    optimizer of `cfg.optim`, the loggers of `cfg.logger` (given the whole config, which
    W&B records) and a mesh over every device."""
    validate(cfg)  # the CLI checked it already; a config built in code is checked here
    run_dir = Path(run_dir)
    task: Task = hydra.utils.instantiate(cfg.task)
    model = task.make_model(cfg.model, rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1))
    learning_rate = make_schedule(cfg.optim)
    optimizer = make_optimizer(
        hydra.utils.instantiate(cfg.optim.optimizer), learning_rate, cfg.optim.clip_grad_norm
    )
    return Trainer(
        task,
        model,
        optimizer,
        config=trainer_config(cfg),
        run_dir=run_dir,
        learning_rate=learning_rate,
        loggers=functools.partial(_loggers, cfg, run_dir, task),
        mesh=distributed.make_data_mesh(),
        diagnostics_every=cfg.logger.diagnostics_every,
        name=cfg.experiment_name,
    )


def monitor_value(trainer: Trainer, summary: dict[str, Any]) -> float:
    """The best validation value of the task's monitor in `summary` (NaN if none): what a
    Hydra sweeper optimises."""
    best = summary["best"][trainer.monitor]
    return float("nan") if best is None else float(best)


def train(cfg: DictConfig, run_dir: str | Path) -> float:
    """Trains one run; returns the best validation value of the task's monitor."""
    trainer = build_trainer(cfg, run_dir)
    return monitor_value(trainer, trainer.fit())


def load_run(run_dir: str | Path, which: str = "best") -> tuple[DictConfig, Task, nnx.Module]:
    """(cfg, task, model) of a finished or running run, the model in eval mode with the
    parameters of its `which` ("best" or "last") checkpoint."""
    import lstm_jax.config  # noqa: F401 - registers the resolvers the saved config uses

    run_dir = Path(run_dir)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: {run_dir} is not an lstm-jax run dir (one holds "
            ".hydra/, metrics.jsonl and checkpoints/)."
        )
    cfg = OmegaConf.load(config_file)
    # The freshly built trainer's state is the template the checkpoint is restored into.
    trainer = build_trainer(cfg, run_dir)
    # Reading a run changes nothing in it: a damaged checkpoint is passed over, not moved,
    # and when no best checkpoint is intact the newest intact one is
    # used, saying so (every checkpoint holds a full state: "last" is all of them).
    checkpointer = trainer.checkpointer(read_only=True)
    try:
        try:
            state, meta = checkpointer.restore(which, trainer.state, move_damaged=False)
        except (CheckpointError, FileNotFoundError) as error:
            if which == "last" or checkpointer.latest_step() is None:
                raise
            state, meta = checkpointer.restore("last", trainer.state, move_damaged=False)
            log.warning(
                "No intact best checkpoint (%s); using the newest intact one, of step %d "
                "(nothing in the run dir was changed)",
                str(error).split(": ", 1)[-1].split(". Nothing")[0],
                meta["step"],
            )
    finally:
        checkpointer.close()
    return cfg, trainer.task, trainer.eval_model(state["params"])
