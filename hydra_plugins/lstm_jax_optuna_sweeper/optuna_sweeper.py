"""A Hydra sweeper on Optuna's ask-and-tell API (current Optuna, SQLAlchemy 2).

Hydra's own hydra-optuna-sweeper stops at optuna<3 (see pyproject.toml); this one asks the
study for a trial, launches the job with the trial's values as overrides through Hydra's
launcher (local, or SLURM with hydra/launcher=slurm), and tells the study what the job
returned. Configured by configs/hydra/sweeper/optuna.yaml (`hparams_search=...` presets):

    hydra.sweeper.params:    the search space, in Hydra's sweep syntax:
                             `tag(log, interval(1e-4, 3e-2))` (a float, log-uniform),
                             `int(interval(1, 8))` (an int), `choice(32, 64)`,
                             `range(1, 5)`, `glob(*)` (options of a config group);
                             a sweep given on the command line joins the space, a fixed
                             value given there takes the key out of it
    direction (left out: the task monitor's), n_trials, n_jobs (trials launched at once),
    storage, sampler (an Optuna sampler, `_target_` + its settings: seed,
    n_startup_trials ...), study_name

The study's name is `study_name` plus a hash of the search space, the direction and the
config the trials share (the composed config without the searched keys, `hydra`, `logger`,
`paths` and the trainer's resume and progress-bar switches): the same command continues its
study, and a changed task, model or space starts a study of its own; one line says which.

A trial whose job failed (an exception, `lstm-jax`'s one-line error exit with status 1, or
a value that is not a finite number: a diverged run, or a failed job's returned record) is
told as FAIL with the reason in its `fail_reason` user attribute, and the search goes on.
An interrupted job (Ctrl-C, SIGTERM: exit status 128 + signal) is told FAIL and ends the
search, as it ends any sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
# Keys of the composed config that do not change what a trial measures.
NOT_IN_STUDY_KEY = (
    "hydra",
    "logger",
    "paths",
    "trainer.progress_bar",
    "trainer.resume",
    "trainer.resume_allow",
)
# lstm-jax's exit status for a job's own error (a diverged run, a bad value): the trial
# failed, the search goes on. Any other exit (an interrupt) ends the search.
JOB_ERROR_EXIT = 1


class SearchSpaceError(ValueError):
    """A search-space entry Optuna cannot sample; the message names the key and the fix."""


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override (choice, range, interval)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    key = override.get_key_element()
    if override.is_choice_sweep() or override.is_range_sweep():
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_interval_sweep():
        sweep = override.value()
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise SearchSpaceError(
        f"{override.input_line}: {key} is not a sweep Optuna can sample; use "
        "choice(a, b, ...), range(start, stop[, step]) or [tag(log, )][int(]interval(low, high)."
    )


def _drop(cfg: DictConfig, dotted: str) -> None:
    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig) and leaf in node:
        with open_dict(node):
            del node[leaf]


def _key(override: Override) -> str:
    return override.get_key_element().lstrip("+~")


def trial_failure(ret: JobReturn) -> tuple[float | None, str | None]:
    """(value, None) for a job that returned a finite number, else (None, why it failed)."""
    if ret.status == JobStatus.FAILED:
        error = ret._return_value  # the job's exception (return_value would raise it)
        return None, f"{type(error).__name__}: {error}"
    value = ret.return_value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, str(value) or f"the job returned {value!r}, not a number"
    if not math.isfinite(number):
        return None, f"the job's value is {number} (a diverged run)"
    return number, None


def study_direction(task_target: str | None, given: str | None) -> str:
    """The direction of the task's monitor (lstm_jax.metrics.direction, the rule the
    trainer's best checkpoint and early stop use); a `given` direction that contradicts it
    is refused before any trial runs. Without a known task (one picked per trial), the
    given direction."""
    from hydra.utils import get_class

    from lstm_jax.metrics.direction import OPTUNA_DIRECTIONS, mode_of

    monitor = getattr(get_class(task_target), "monitor", None) if task_target else None
    if not isinstance(monitor, str):
        if given is None:
            raise ValueError(
                "hydra.sweeper.direction is not given and the task's monitor is not known "
                "before the trials run: give minimize or maximize."
            )
        return given
    wanted = OPTUNA_DIRECTIONS[mode_of(monitor)]
    if given not in (None, wanted):
        raise ValueError(
            f"hydra.sweeper.direction={given} but the task's monitor {monitor} is better "
            f"{'smaller' if wanted == 'minimize' else 'larger'}: use {wanted}, or leave "
            "direction out."
        )
    return wanted


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: str | None,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
    ) -> None:
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(
                f"hydra.sweeper.direction={direction}: use minimize or maximize, or leave it "
                "out to follow the task's monitor (maximize for val/acc)."
            )
        for name, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"hydra.sweeper.{name}={value}: give a whole number >= 1.")
        self.sampler = sampler
        self.direction = direction
        self.study_name = str(study_name)
        if storage and storage.startswith("sqlite:///"):  # the preset's <sweep dir>/../optuna.db
            storage = "sqlite:///" + os.path.normpath(storage.removeprefix("sqlite:///"))
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = params or {}
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- the search space and the study ----------------------------------------------------
    def search_space(self, arguments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """({key: distribution}, fixed overrides) of `hydra.sweeper.params` and the command
        line (the command line last: it wins for a key given twice)."""
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        by_key: dict[str, Override] = {}
        for override in parser.parse_overrides(given):
            by_key.pop(_key(override), None)  # the later one, in its place in the order
            by_key[_key(override)] = override
        space = {
            override.get_key_element(): distribution(override)
            for override in by_key.values()
            if override.is_sweep_override()
        }
        fixed = [o.input_line for o in by_key.values() if not o.is_sweep_override()]
        return space, fixed

    def monitor_direction(self, fixed: list[str]) -> str:
        """The study's direction for the task the trials share (study_direction)."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))
        return study_direction(OmegaConf.select(cfg, "task._target_"), self.direction)

    def study_key(self, space: dict[str, Any], fixed: list[str]) -> str:
        """A hash of the search space, the direction and the config the trials share."""
        from optuna.distributions import distribution_to_json

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))
        for key in (*NOT_IN_STUDY_KEY, *(k.lstrip("+~") for k in space)):
            _drop(cfg, key)
        try:
            shared = OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # noqa: BLE001 - an interpolation that needs a running job
            shared = OmegaConf.to_container(cfg, resolve=False)
        blob = json.dumps(
            {
                "space": {k: distribution_to_json(d) for k, d in sorted(space.items())},
                "direction": self.direction,
                "config": shared,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def open_study(self, name: str, space: dict[str, Any]) -> Any:
        import optuna

        others = [
            n for n in (optuna.get_all_study_names(self.storage) if self.storage else []) if n
        ]
        study = optuna.create_study(
            study_name=name,
            storage=self.storage,
            sampler=self.sampler,
            direction=self.direction,
            load_if_exists=True,
        )
        where = self.storage or "memory (hydra.sweeper.storage=null: nothing is kept)"
        searched = ", ".join(space)
        if name in others:
            done = [t for t in study.trials if t.state.is_finished()]
            best = study.best_value if any(t.value is not None for t in done) else None
            log.info(
                "Optuna study %s continues in %s: %d trials so far (best %s), %d more over %s "
                "(the same search space and config)",
                name,
                where,
                len(done),
                best,
                self.n_trials,
                searched,
            )
        else:
            kin = [n for n in others if n.rsplit("-", 1)[0] == self.study_name]
            log.info(
                "Optuna study %s is new in %s: %d trials over %s%s",
                name,
                where,
                self.n_trials,
                searched,
                f" (not continuing {', '.join(kin)}: another search space or config)"
                if kin
                else "",
            )
        return study

    # -- the search --------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:

        space, fixed = self.search_space(arguments)
        if not space:
            raise SearchSpaceError(
                "the Optuna sweeper has nothing to search: give hydra.sweeper.params (an "
                "hparams_search preset) or a sweep such as optim.lr='interval(1e-4, 1e-2)'."
            )
        try:
            self.direction = self.monitor_direction(fixed)
        except ValueError as error:  # bad input: one line, as lstm-jax reports its own
            print(f"lstm-jax: error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        name = f"{self.study_name}-{self.study_key(space, fixed)}"
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = self.open_study(name, space)

        left = self.n_trials
        while left > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, left))]
            batch = [[*fixed, *(f"{k}={v}" for k, v in trial.params.items())] for trial in trials]
            self.validate_batch_is_legal(batch)
            returns = self._launch(study, trials, batch)
            for trial, ret in zip(trials, returns, strict=bool(returns)):
                value, reason = trial_failure(ret)
                run_dir = OmegaConf.select(ret.hydra_cfg or {}, "hydra.runtime.output_dir")
                trial.set_user_attr("run_dir", str(run_dir or ""))
                if reason is None:
                    study.tell(trial, value)
                else:
                    self._fail(study, trial, reason)
            self.job_idx += len(trials)
            left -= len(trials)
        self._report(study, sweep_dir)

    def _launch(self, study: Any, trials: list, batch: list[list[str]]) -> Sequence[JobReturn]:
        """The launcher's returns for `batch`; none when a job ended the batch with
        lstm-jax's error exit (its trials are then told FAIL here)."""
        try:
            return self.launcher.launch(batch, initial_job_idx=self.job_idx)
        except SystemExit as stop:
            # lstm-jax ends a failed job with a one-line error and exit status 1: the
            # launcher returns nothing for the batch, whose other jobs are not known.
            for trial in trials:
                self._fail(study, trial, f"the job exited with status {stop.code} (see above)")
            if stop.code != JOB_ERROR_EXIT:
                raise
            return []
        except BaseException:
            for trial in trials:
                self._fail(study, trial, "the search was interrupted")
            raise

    @staticmethod
    def _fail(study: Any, trial: Any, reason: str) -> None:
        import optuna

        log.warning("Optuna trial %d failed: %s", trial.number, reason)
        trial.set_user_attr("fail_reason", reason[:1000])
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)

    def _report(self, study: Any, sweep_dir: Path) -> None:
        import optuna

        states = [t.state for t in study.trials]
        complete = states.count(optuna.trial.TrialState.COMPLETE)
        failed = states.count(optuna.trial.TrialState.FAIL)
        if not complete:
            log.warning(
                "Optuna study %s: no trial has completed (%d failed)", study.study_name, failed
            )
            return
        best = study.best_trial
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": self.storage,
            "direction": self.direction,
            "best_params": best.params,
            "best_value": best.value,
            "best_trial": best.number,
            "trials": {"complete": complete, "failed": failed},
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        log.info(
            "Optuna study %s: best value %s (trial %d) of %d complete, %d failed trials; "
            "browse it with: optuna-dashboard %s",
            study.study_name,
            best.value,
            best.number,
            complete,
            failed,
            self.storage,
        )
