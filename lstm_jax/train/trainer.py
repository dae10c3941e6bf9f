"""The training loop: one jitted train step, periodic evaluation, diagnostics, checkpoints.

The model is held split into (graphdef, params, rest): `params` are the trained nnx.Param
arrays, `rest` everything else (dropout RNG state, ...). The train step is a pure jitted
function of (params, opt_state, rest, batch, carry), so it runs unchanged on one device
or with the batch sharded over a mesh, and its state saves and restores as arrays.

A step counter `step` counts completed updates: checkpoint k holds the state after k
updates, and the batch of update k+1 is `task.train_batch(k)`, so a resumed run replays
exactly the batches an uninterrupted run would have seen.

`Trainer.fit` is `_restore_or_init` (step 0, or a checkpoint's state), then, in turn,
`_train_until_eval` (train steps with their log lines and diagnostics) and
`_evaluate_and_checkpoint` (validation, the best and last checkpoints, the stop rules),
then `_finish` (test metrics of the best checkpoint, summary.json), all over one
`LoopState`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from pydantic import Field

from lstm_jax import distributed
from lstm_jax.loggers import MultiLogger, make_loggers
from lstm_jax.metrics.direction import improves
from lstm_jax.nn.backend_record import step_backends
from lstm_jax.tasks.base import Task, step_key
from lstm_jax.train import run_files
from lstm_jax.train.checkpoint import Checkpointer, CheckpointError
from lstm_jax.train.diagnostics import make_diagnostics_step, to_host
from lstm_jax.train.faults import (
    LossGrowthWatch,
    RunInterrupted,
    StopSignals,
    raise_if_diverged,
)
from lstm_jax.train.progress import Progress, log_test_table

log = logging.getLogger(__name__)


def _stop_condition_met(val: dict[str, float], metric: str) -> bool:
    """Whether `trainer.stop_when`'s validation metric (e.g. val/solved) holds: nonzero."""
    if metric not in val:
        raise KeyError(
            f"trainer.stop_when={metric!r} is not a validation metric of this task; it "
            f"reports {sorted(val)}."
        )
    return bool(val[metric])


def check_stop_when(task: Task, metric: str | None) -> None:
    """Refuses, before training, a `trainer.stop_when` that is not a validation metric the
    task reports (when it declares them: Task.metric_names), naming the nearest ones."""
    if metric is None or not task.metric_names:
        return
    reported = [f"val/{name}" for name in task.metric_names]
    if metric not in reported:
        near = difflib.get_close_matches(metric, reported, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}? " if near else ""
        raise ValueError(
            f"trainer.stop_when={metric} is not a validation metric of {type(task).__name__}: "
            f"{hint}it reports {', '.join(reported)}."
        )


def _num_params(params: Any) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(params)))


# A count that must be at least 1 (pydantic checks the range where lstm_jax.schema
# validates the `trainer` group against this class).
Positive = Annotated[int, Field(ge=1)]


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """The loop's settings: the `trainer` config group (configs/trainer/default.yaml says
    what each does). lstm_jax.schema checks a config against this class before a run
    starts, so it is the one list of the group's keys, types and ranges."""

    max_steps: Positive = 1000
    batch_size: Positive = 64
    eval_every: Positive = 200
    log_every: Positive = 20
    checkpoint_every: Positive = 200
    keep_checkpoints: Positive = 2
    resume: bool = False
    resume_allow: tuple[str, ...] = ()
    early_stopping_patience: Positive | None = None
    stop_when: str | None = None
    evaluate_test: bool = True
    progress_bar: bool = True


@dataclasses.dataclass
class LoopState:
    """What the training loop carries from step to step (the arrays it trains are
    Trainer.state): the step, the best monitor value and the patience count, which a
    checkpoint's meta saves and a resume restores (`meta`, `from_meta`), and this
    process's own bookkeeping: the train metrics since the last log line and its timing,
    the wall time, the stop flags."""

    step: int = 0
    best_value: float | None = None
    best_step: int | None = None
    best_tiebreak: float | None = None
    evals_without_improvement: int = 0
    # Train metrics of the steps since the last log line (their mean is logged); a
    # checkpoint carries them so that a resumed run logs the same means.
    window_metrics: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    elapsed_before: float = 0.0  # wall time of the attempts before a resume
    last_saved: int = 0  # the step of the newest checkpoint this loop knows
    start_time: float = 0.0
    window_start: float = 0.0
    window_tokens: int = 0
    window_steps_timed: int = 0
    first_step_of_run: bool = True
    diagnostics_time: float = 0.0
    stopped_early: bool = False
    stopped_when: bool = False
    loss_growth: LossGrowthWatch = dataclasses.field(default_factory=LossGrowthWatch)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> LoopState:
        return cls(
            step=meta["step"],
            best_value=meta["best_value"],
            best_step=meta["best_step"],
            best_tiebreak=meta.get("best_tiebreak"),
            evals_without_improvement=meta["evals_without_improvement"],
            window_metrics=meta.get("pending_train_metrics", []),
            elapsed_before=meta["wall_time_s"],
            last_saved=meta["step"],
        )

    def meta(self, monitor: str) -> dict[str, Any]:
        """The JSON a checkpoint of this step saves beside the arrays."""
        return {
            "step": self.step,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "best_tiebreak": self.best_tiebreak,
            "evals_without_improvement": self.evals_without_improvement,
            "monitor": monitor,
            "wall_time_s": self.elapsed(),
            "pending_train_metrics": [
                {k: float(v) for k, v in m.items()} for m in jax.device_get(self.window_metrics)
            ],
        }

    def elapsed(self) -> float:
        """Training wall time over every attempt of the run."""
        return self.elapsed_before + time.perf_counter() - self.start_time

    def due(self, every: int, max_steps: int) -> bool:
        """Whether this step is one of every `every` steps, or the last."""
        return self.step % every == 0 or self.step == max_steps


class _Prefetch:
    """The next train batch, made in a thread while the current step runs."""

    def __init__(self, make: Callable[[int], Any], first: int, end: int):
        self._make, self._end = make, end
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._next = self._pool.submit(make, first)

    def get(self, step: int) -> Any:
        """The batch of update step + 1 (`make(step)`); starts making the next one."""
        batch = self._next.result()
        if step + 1 < self._end:
            self._next = self._pool.submit(self._make, step + 1)
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# Loggers are made once the loop knows the step it resumes from (metrics.jsonl drops the
# lines after it; W&B continues the run), so the trainer is handed a factory of them.
LoggerFactory = Callable[[int], MultiLogger]


class Trainer:
    """Trains `model` on `task` with `optimizer`; no config system needed.

        trainer = Trainer(task, model, optax.adam(1e-3), config=TrainerConfig(max_steps=500),
                          run_dir="runs/x")
        summary = trainer.fit()

    `lstm_jax.run.build_trainer` builds these from a Hydra config (what `lstm-jax`
    does). `model` is the freshly initialised model (its parameters are the run's initial
    state); `learning_rate` is only reported (train/lr); `loggers(resume_step)` returns the
    run's loggers (default: metrics.jsonl only); `mesh` is the data-parallel mesh (default:
    every device); `diagnostics_every` is the period of the gate and gradient diagnostics
    (0: none); `name` labels the progress bar.
    """

    def __init__(
        self,
        task: Task,
        model: nnx.Module,
        optimizer: optax.GradientTransformation,
        *,
        config: TrainerConfig,
        run_dir: str | Path,
        learning_rate: optax.Schedule | None = None,
        loggers: LoggerFactory | None = None,
        mesh: jax.sharding.Mesh | None = None,
        diagnostics_every: int = 0,
        name: str = "run",
    ):
        self.task = task
        self.config = config
        self.run_dir = Path(run_dir)
        self.monitor = task.monitor
        self.monitor_mode = task.monitor_mode
        self.monitor_tiebreak = task.monitor_tiebreak
        self.stop_when = config.stop_when
        check_stop_when(task, config.stop_when)
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.diagnostics_every = diagnostics_every
        self.name = name
        self._make_loggers = loggers or self._metrics_file_only

        model.eval()
        self.eval_graphdef = nnx.split(model, nnx.Param, ...)[0]
        model.train()
        self.train_graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        self.num_params = _num_params(params)
        # The kernel (cuDNN or scan) of each step kind, for summary.json and W&B.
        self.backends = step_backends(
            nnx.merge(self.train_graphdef, params, rest),
            nnx.merge(self.eval_graphdef, params, rest),
            diagnostics=bool(diagnostics_every),  # 0 or None: no diagnostics
        )

        self.mesh = distributed.make_data_mesh() if mesh is None else mesh
        self.state = {
            "params": params,
            "opt_state": self.optimizer.init(params),
            "rest": rest,
            "carry": self.task.initial_carry(model),
        }
        self.state = distributed.replicate(self.state, self.mesh)
        # The first step whose loss or gradient was not finite (0: none yet), kept on the
        # device and read only where the loop syncs anyway (log, eval, checkpoint steps).
        self.bad_step = distributed.replicate(jnp.zeros((), jnp.int32), self.mesh)
        self._train_step = distributed.jit(self._make_train_step(), donate_argnums=(0,))
        self._diagnostics_step = make_diagnostics_step(self.task, self.train_graphdef)

    def _metrics_file_only(self, resume_step: int) -> MultiLogger:
        return make_loggers(
            None,
            self.run_dir,
            resume=resume_step > 0,
            resume_step=resume_step,
            is_main_process=distributed.is_main_process(),
        )

    # -- the jitted step -------------------------------------------------------------------

    def _make_train_step(self):
        task, graphdef, optimizer = self.task, self.train_graphdef, self.optimizer
        seed = int(task.seed)  # the run seed: tasks are built with seed=${seed}

        def train_step(state, bad_step, step, batch):
            # Merged outside the differentiated function: NNX lets a module's RNG state
            # (dropout) advance only in the trace that built the module.
            model = nnx.merge(graphdef, state["params"], state["rest"])
            # Update `step` consumes train_batch(step - 1): its key is a pure function of
            # (seed, step), so a resumed run draws the same masks.
            key = step_key(seed, step - 1)

            def loss_fn(model):
                return task.loss(model, batch, state["carry"], key=key)

            (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
            # The model's non-parameter state (dropout RNG counters) has advanced.
            _, params, rest = nnx.split(model, nnx.Param, ...)
            updates, opt_state = optimizer.update(grads, state["opt_state"], params)
            params = optax.apply_updates(params, updates)
            metrics = {"train/loss": loss}
            metrics.update({f"train/{k}": v for k, v in aux["metrics"].items()})
            new_state = {
                "params": params,
                "opt_state": opt_state,
                "rest": rest,
                # Truncated BPTT: the carried state is data, not a path for gradients.
                "carry": jax.lax.stop_gradient(aux["carry"]),
            }
            # A non-finite loss or gradient leaves the state as it was (no update from it
            # on) and records its step, so no checkpoint ever holds a non-finite value.
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
            finite = finite & (bad_step == 0)
            new_state = jax.lax.cond(finite, lambda: new_state, lambda: state)
            bad_step = jnp.where((bad_step == 0) & ~finite, step, bad_step)
            return new_state, bad_step, metrics

        return train_step

    # -- helpers -------------------------------------------------------------------------

    def eval_model(self, params: Any = None) -> nnx.Module:
        params = self.state["params"] if params is None else params
        return nnx.merge(self.eval_graphdef, params, self.state["rest"])

    def _evaluate(self, split: str, params: Any = None) -> dict[str, float]:
        # The trainer owns the mode: tasks evaluate the eval-mode model they are handed.
        metrics = self.task.evaluate(self.eval_model(params), split)
        return {f"{split}/{k}": float(v) for k, v in metrics.items()}

    # -- the loop ------------------------------------------------------------------------

    def checkpointer(self, read_only: bool = False) -> Checkpointer:
        """The run dir's checkpoints, the best ranked by the task's monitor and tiebreak."""
        return Checkpointer(
            self.run_dir / "checkpoints",
            keep=self.config.keep_checkpoints,
            monitor=self.monitor,
            tiebreak=self.monitor_tiebreak,
            read_only=read_only,
        )

    def fit(self) -> dict[str, Any]:
        """Trains to `max_steps` (or an early stop, `stop_when`, a signal); the summary."""
        checkpointer = self.checkpointer()
        loop, finished = self._restore_or_init(checkpointer)
        if finished is not None:
            checkpointer.close()
            return finished
        loggers = self._make_loggers(loop.step)
        loop.start_time = loop.window_start = time.perf_counter()
        progress = Progress(
            self.config.max_steps,
            loop.step,
            self.name,
            bar=self.config.progress_bar,
            main_process=distributed.is_main_process(),
        )
        batches = _Prefetch(self.task.train_batch, loop.step, self.config.max_steps)
        signals = StopSignals()
        try:
            with signals:
                while loop.step < self.config.max_steps and not loop.stopped_early:
                    self._train_until_eval(loop, batches, checkpointer, loggers, progress, signals)
                    self._evaluate_and_checkpoint(loop, checkpointer, loggers, progress, signals)
        except BaseException as error:
            # A failed run still closes its W&B run and metrics.jsonl cleanly, and W&B
            # records it as failed (or interrupted: 128 + the signal, as a shell reports).
            code = 128 + error.signum if isinstance(error, RunInterrupted) else 1
            loggers.finish(exit_code=code)
            raise
        finally:
            progress.close()
            batches.close()
        return self._finish(loop, checkpointer, loggers)

    def _restore_or_init(self, checkpointer: Checkpointer) -> tuple[LoopState, dict | None]:
        """The loop state to start from: step 0, or with `trainer.resume` the newest
        checkpoint's (restoring self.state); and the summary of a run that already
        finished there (nothing to train), else None."""
        tc = self.config
        loop = LoopState()
        if tc.resume and checkpointer.latest_step("last") is not None:
            # A checkpoint whose records metrics.jsonl lost is passed over (run_files).
            self.state, meta = checkpointer.restore(
                "last",
                self.state,
                accept=functools.partial(run_files.missing_records, self.run_dir),
            )
            self.state = distributed.replicate(self.state, self.mesh)
            loop = LoopState.from_meta(meta)
            # Checkpoints after the resumed step belong to the discarded part of the run
            # (a resume from an older one, when the newest was unreadable or diverged).
            for newer in [s for s in checkpointer.steps() if s > loop.step]:
                log.warning(
                    "Removing %s: it is newer than the resumed step",
                    checkpointer.directory / str(newer),
                )
                checkpointer.delete(newer)
            finished = run_files.finished_summary(self.run_dir, loop.step)
            if loop.step >= tc.max_steps and finished is not None:
                log.warning(
                    "The run in %s finished at step %d: nothing to resume (raise "
                    "trainer.max_steps to train it further)",
                    self.run_dir,
                    loop.step,
                )
                return loop, finished
            if distributed.is_main_process():
                run_files.drop_final_records(self.run_dir)  # its new end writes them again
            log.info("Resuming from step %d (%s)", loop.step, checkpointer.path("last"))
        elif tc.resume:
            log.info(
                "trainer.resume=true but no checkpoint in %s: starting at step 0",
                self.run_dir / "checkpoints",
            )
        return loop, None

    def _train_until_eval(
        self,
        loop: LoopState,
        batches: _Prefetch,
        checkpointer: Checkpointer,
        loggers: MultiLogger,
        progress: Progress,
        signals: StopSignals,
    ) -> None:
        """Train steps, each with its log line and diagnostics when due, up to the next
        step that evaluates or checkpoints (or at which a signal arrived)."""
        tc = self.config
        while True:
            batch = batches.get(loop.step)
            if self.task.reset_carry(loop.step):
                self.state["carry"] = distributed.replicate(
                    self.task.initial_carry(self.eval_model()), self.mesh
                )
            loop.window_tokens += self.task.tokens_in(batch)
            device_batch = distributed.shard_batch(batch, self.mesh)
            self.state, self.bad_step, metrics = self._train_step(
                self.state, self.bad_step, np.int32(loop.step + 1), device_batch
            )
            loop.step += 1
            loop.window_metrics.append(metrics)
            if loop.first_step_of_run:
                # Keep compilation out of the step-time measurement.
                jax.block_until_ready(metrics)
                loop.first_step_of_run = False
                loop.window_start, loop.window_tokens = time.perf_counter(), 0
                loop.window_steps_timed = 0
            else:
                loop.window_steps_timed += 1
            progress.update(1)

            is_log = loop.due(tc.log_every, tc.max_steps)
            stop_here = (
                loop.due(tc.eval_every, tc.max_steps)
                or loop.due(tc.checkpoint_every, tc.max_steps)
                or signals.received
            )
            if is_log or stop_here:
                # One read of a device scalar, where the loop syncs anyway.
                raise_if_diverged(int(self.bad_step), loop.window_metrics, loop.step, checkpointer)
            if is_log:
                self._log_train_window(loop, loggers, progress)
            if self.diagnostics_every and loop.step % self.diagnostics_every == 0:
                self._log_diagnostics(loop, loggers, device_batch)
            if stop_here or signals.received:  # a signal during the log or diagnostics
                return

    def _log_train_window(self, loop: LoopState, loggers: MultiLogger, progress: Progress) -> None:
        """Logs the mean train metrics of the steps since the last log line, the learning
        rate and the step time, and starts a new window."""
        host = jax.device_get(loop.window_metrics)
        now = time.perf_counter()
        record = {k: float(np.mean([float(m[k]) for m in host])) for k in host[0]}
        if self.learning_rate is not None:
            record["train/lr"] = float(self.learning_rate(loop.step))
        if loop.window_steps_timed:
            record["perf/step_time_s"] = (now - loop.window_start) / loop.window_steps_timed
            record["perf/tokens_per_s"] = loop.window_tokens / (now - loop.window_start)
        loggers.log(record, loop.step)
        loop.loss_growth.check([float(m["train/loss"]) for m in host], loop.step)
        progress.train_loss(record["train/loss"])
        loop.window_metrics, loop.window_tokens, loop.window_steps_timed = [], 0, 0
        loop.window_start = time.perf_counter()

    def _log_diagnostics(self, loop: LoopState, loggers: MultiLogger, device_batch: Any) -> None:
        t0 = time.perf_counter()
        diag = self._diagnostics_step(
            self.state["params"], self.state["rest"], device_batch, self.state["carry"]
        )
        loggers.log(to_host(diag), loop.step)
        loggers.log(self.task.memory_diagnostics(self.eval_model()), loop.step)
        loop.diagnostics_time += time.perf_counter() - t0

    def _evaluate_and_checkpoint(
        self,
        loop: LoopState,
        checkpointer: Checkpointer,
        loggers: MultiLogger,
        progress: Progress,
        signals: StopSignals,
    ) -> None:
        """At the step _train_until_eval stopped at: the validation metrics, the best
        checkpoint when they improve, early stop and stop_when, the periodic checkpoint
        (one save when a step is both), and RunInterrupted when a signal arrived."""
        tc = self.config
        if loop.due(tc.eval_every, tc.max_steps):
            val = self._evaluate("val")
            loggers.log(val, loop.step)
            value = val.get(self.monitor)
            if value is None:
                raise KeyError(
                    f"the task's evaluate() returned {sorted(val)} but its monitor "
                    f"is {self.monitor!r}."
                )
            tiebreak = val.get(self.monitor_tiebreak) if self.monitor_tiebreak else None
            if improves(value, loop.best_value, self.monitor_mode, tiebreak, loop.best_tiebreak):
                loop.best_value, loop.best_step, loop.evals_without_improvement = (
                    value,
                    loop.step,
                    0,
                )
                loop.best_tiebreak = tiebreak
                checkpointer.save(loop.step, self.state, loop.meta(self.monitor), best=True)
                loop.last_saved = loop.step
            else:
                loop.evals_without_improvement += 1
            progress.evaluation(loop.step, val, self.monitor)
            patience = tc.early_stopping_patience
            if patience is not None and loop.evals_without_improvement >= patience:
                log.info(
                    "Early stop at step %d: %s has not improved for %d evaluations",
                    loop.step,
                    self.monitor,
                    patience,
                )
                loop.stopped_early = True
            if self.stop_when is not None and _stop_condition_met(val, self.stop_when):
                log.info("Stop at step %d: %s = %s", loop.step, self.stop_when, val[self.stop_when])
                loop.stopped_early = loop.stopped_when = True

        wants_save = (
            loop.due(tc.checkpoint_every, tc.max_steps) or loop.stopped_early or signals.received
        )
        if wants_save and loop.step != loop.last_saved:
            checkpointer.save(loop.step, self.state, loop.meta(self.monitor))
            loop.last_saved = loop.step
        if signals.received:
            raise RunInterrupted(signals.received, loop.step, checkpointer.path("last"))

    def _finish(
        self, loop: LoopState, checkpointer: Checkpointer, loggers: MultiLogger
    ) -> dict[str, Any]:
        """The test metrics of the best checkpoint, the summary (summary.json), and the
        loggers closed."""
        train_time = loop.elapsed()
        best = {self.monitor: loop.best_value, "step": loop.best_step}
        if self.monitor_tiebreak is not None:
            best[self.monitor_tiebreak] = loop.best_tiebreak
        summary = self._summarize(checkpointer, loggers, loop, best, train_time)
        summary["stopped_when"] = self.stop_when if loop.stopped_when else None
        if distributed.is_main_process():
            log_test_table(summary["test"], loop.best_step)
        checkpointer.close()
        loggers.log_summary(summary)  # writes summary.json beside metrics.jsonl
        loggers.finish()
        return summary

    def _summarize(
        self, checkpointer, loggers, loop: LoopState, best, train_time: float
    ) -> dict[str, Any]:
        # The test metrics and figures are those of the best checkpoint, the one a user
        # keeps; without a best (no evaluation improved) the final parameters.
        params = self.state["params"]
        if checkpointer.latest_step("best") is not None:
            try:
                params = checkpointer.restore("best", self.state)[0]["params"]
            except CheckpointError as error:
                log.warning("%s Evaluating the final parameters instead.", error)
        test = {}
        if self.config.evaluate_test:
            test = self._evaluate("test", params)
            loggers.log(test, loop.step)
        # Figures go to W&B and, through metrics.jsonl's logger, to run_dir/media/.
        media = self.task.media(self.eval_model(params), "test")
        loggers.log({f"media/{name}": figure for name, figure in media.items()}, loop.step)
        return {
            "status": "finished",  # replaces "failed" of an earlier, diverged attempt
            "monitor": self.monitor,
            "monitor_mode": self.monitor_mode,
            "best": best,
            "test": test,
            "steps": loop.step,
            "stopped_early": loop.stopped_early,
            "wall_time_s": train_time,
            "diagnostics_time_s": loop.diagnostics_time,
            "num_params": self.num_params,
            "data": self.task.run_info(),
            "device_kind": jax.devices()[0].device_kind,
            "device_count": jax.device_count(),
            "backends": self.backends,
        }
