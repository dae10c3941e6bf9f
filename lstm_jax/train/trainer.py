"""The training loop: one jitted train step, periodic evaluation, diagnostics, checkpoints.

The model is held split into (graphdef, params, rest): `params` are the trained nnx.Param
arrays, `rest` everything else (dropout RNG state, ...). The train step is a pure jitted
function of (params, opt_state, rest, batch, carry), so it runs unchanged on one device
or with the batch sharded over a mesh, and its state saves and restores as arrays.

A step counter `step` counts completed updates: checkpoint k holds the state after k
updates, and the batch of update k+1 is `task.train_batch(k)`, so a resumed run replays
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from omegaconf import DictConfig
from tqdm import tqdm

from lstm_jax import distributed
from lstm_jax.loggers import make_loggers
from lstm_jax.schema import validate
from lstm_jax.tasks.base import Task, step_key
from lstm_jax.train.checkpoint import Checkpointer, CheckpointError
from lstm_jax.train.diagnostics import make_diagnostics_step, to_host
from lstm_jax.train.optim import make_optimizer, make_schedule

log = logging.getLogger(__name__)


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


class _StopSignals:
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


def _better(
    value: float,
    best: float | None,
    mode: str,
    tiebreak: float | None = None,
    best_tiebreak: float | None = None,
) -> bool:
    """Whether `value` improves on `best`; on a tie, whether `tiebreak` (lower is better)
    improves on `best_tiebreak`."""
    if best is None:
        return math.isfinite(value)
    if value == best and tiebreak is not None and best_tiebreak is not None:
        return tiebreak < best_tiebreak
    return value < best if mode == "min" else value > best


def _stop_condition_met(val: dict[str, float], metric: str) -> bool:
    """Whether `trainer.stop_when`'s validation metric (e.g. val/solved) holds: nonzero."""
    if metric not in val:
        raise KeyError(
            f"trainer.stop_when={metric!r} is not a validation metric of this task; it "
            f"reports {sorted(val)}."
        )
    return bool(val[metric])


def _num_params(params: Any) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(params)))


class Trainer:
    """Trains `task`'s model with the `optim` and `trainer` configs of `cfg`."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.trainer_config = cfg.trainer
        validate(cfg)  # the CLI checked it already; a config built in code is checked here
        self.task: Task = hydra.utils.instantiate(cfg.task)
        self.monitor = self.task.monitor
        self.monitor_mode = self.task.monitor_mode
        self.monitor_tiebreak = self.task.monitor_tiebreak
        self.stop_when = self.trainer_config.get("stop_when")

        rngs = nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1)
        model = self.task.make_model(cfg.model, rngs=rngs)
        model.eval()
        self.eval_graphdef = nnx.split(model, nnx.Param, ...)[0]
        model.train()
        self.train_graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        self.num_params = _num_params(params)

        self.optimizer = make_optimizer(cfg.optim)
        self.learning_rate = make_schedule(cfg.optim)
        self.mesh = distributed.make_data_mesh()
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

    # -- the jitted step -------------------------------------------------------------------

    def _make_train_step(self):
        task, graphdef, optimizer = self.task, self.train_graphdef, self.optimizer
        seed = int(self.cfg.seed)

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

    def fit(self) -> dict[str, Any]:
        cfg, tc = self.cfg, self.trainer_config
        is_main = distributed.is_main_process()
        checkpointer = Checkpointer(self.run_dir / "checkpoints", keep=tc.keep_checkpoints)
        step, best_value, best_step, evals_without_improvement = 0, None, None, 0
        best_tiebreak = None
        elapsed_before = 0.0
        # Train metrics of the steps since the last log line (their mean is logged); a
        # checkpoint carries them so that a resumed run logs the same means.
        window_metrics: list[dict[str, Any]] = []
        if tc.resume and checkpointer.latest_step("last") is not None:
            self.state, meta = checkpointer.restore("last", self.state)
            self.state = distributed.replicate(self.state, self.mesh)
            step = meta["step"]
            best_value, best_step = meta["best_value"], meta["best_step"]
            best_tiebreak = meta.get("best_tiebreak")
            evals_without_improvement = meta["evals_without_improvement"]
            elapsed_before = meta["wall_time_s"]
            window_metrics = meta.get("pending_train_metrics", [])
            # Checkpoints after the resumed step belong to the discarded part of the run
            # (a resume from an older one, when the newest was unreadable or diverged).
            for which in ("last", "best"):
                for newer in [s for s in checkpointer.steps(which) if s > step]:
                    log.warning(
                        "Removing %s: it is newer than the resumed step",
                        checkpointer.directory / which / str(newer),
                    )
                    checkpointer.delete(which, newer)
            log.info("Resuming from step %d (%s)", step, checkpointer.path("last"))
        elif tc.resume:
            log.info(
                "trainer.resume=true but no checkpoint in %s: starting at step 0",
                self.run_dir / "checkpoints",
            )
        loggers = make_loggers(
            cfg,
            self.run_dir,
            resume=step > 0,
            resume_step=step,
            is_main_process=is_main,
            monitor=self.monitor,
            monitor_mode=self.monitor_mode,
        )
        diagnostics_every = cfg.logger.diagnostics_every
        start_time = time.perf_counter()
        diagnostics_time = 0.0
        stopped_early = stopped_when = False

        def checkpoint_meta(at_step: int) -> dict[str, Any]:
            return {
                "step": at_step,
                "best_value": best_value,
                "best_step": best_step,
                "best_tiebreak": best_tiebreak,
                "evals_without_improvement": evals_without_improvement,
                "monitor": self.monitor,
                "wall_time_s": elapsed_before + time.perf_counter() - start_time,
                "pending_train_metrics": [
                    {k: float(v) for k, v in m.items()} for m in jax.device_get(window_metrics)
                ],
            }

        postfix: dict[str, str] = {}
        window_tokens, window_start = 0, time.perf_counter()
        first_step_of_run = True
        progress = tqdm(
            total=tc.max_steps,
            initial=step,
            disable=not (tc.progress_bar and is_main),
            dynamic_ncols=True,
            desc=cfg.experiment_name,
        )
        prefetch = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        next_batch = prefetch.submit(self.task.train_batch, step)
        last_saved = step
        signals = _StopSignals()
        try:
            with signals:
                while step < tc.max_steps:
                    batch = next_batch.result()
                    if step + 1 < tc.max_steps:
                        next_batch = prefetch.submit(self.task.train_batch, step + 1)
                    if self.task.reset_carry(step):
                        self.state["carry"] = distributed.replicate(
                            self.task.initial_carry(self.eval_model()), self.mesh
                        )
                    window_tokens += self.task.tokens_in(batch)
                    device_batch = distributed.shard_batch(batch, self.mesh)
                    self.state, self.bad_step, metrics = self._train_step(
                        self.state, self.bad_step, np.int32(step + 1), device_batch
                    )
                    step += 1
                    window_metrics.append(metrics)
                    if first_step_of_run:
                        # Keep compilation out of the step-time measurement.
                        jax.block_until_ready(metrics)
                        first_step_of_run = False
                        window_start, window_tokens = time.perf_counter(), 0
                        window_steps_timed = 0
                    else:
                        window_steps_timed += 1
                    progress.update(1)

                    is_log = step % tc.log_every == 0 or step == tc.max_steps
                    is_eval = step % tc.eval_every == 0 or step == tc.max_steps
                    is_checkpoint = step % tc.checkpoint_every == 0 or step == tc.max_steps
                    if is_log or is_eval or is_checkpoint or signals.received:
                        # One read of a device scalar, where the loop syncs anyway.
                        self._check_finite(window_metrics, step, checkpointer)

                    if is_log:
                        host = jax.device_get(window_metrics)
                        now = time.perf_counter()
                        record = {k: float(np.mean([float(m[k]) for m in host])) for k in host[0]}
                        record["train/lr"] = float(self.learning_rate(step))
                        if window_steps_timed:
                            step_time = (now - window_start) / window_steps_timed
                            record["perf/step_time_s"] = step_time
                            record["perf/tokens_per_s"] = window_tokens / (now - window_start)
                        loggers.log(record, step)
                        postfix["loss"] = f"{record['train/loss']:.4f}"
                        progress.set_postfix(postfix)
                        window_metrics, window_tokens, window_steps_timed = [], 0, 0
                        window_start = time.perf_counter()

                    if diagnostics_every and step % diagnostics_every == 0:
                        t0 = time.perf_counter()
                        diag = self._diagnostics_step(
                            self.state["params"],
                            self.state["rest"],
                            device_batch,
                            self.state["carry"],
                        )
                        loggers.log(to_host(diag), step)
                        diagnostics_time += time.perf_counter() - t0

                    if is_eval:
                        val = self._evaluate("val")
                        loggers.log(val, step)
                        value = val.get(self.monitor)
                        if value is None:
                            raise KeyError(
                                f"the task's evaluate() returned {sorted(val)} but its monitor "
                                f"is {self.monitor!r}."
                            )
                        tiebreak = val.get(self.monitor_tiebreak) if self.monitor_tiebreak else None
                        if _better(value, best_value, self.monitor_mode, tiebreak, best_tiebreak):
                            best_value, best_step, evals_without_improvement = value, step, 0
                            best_tiebreak = tiebreak
                            checkpointer.save("best", step, self.state, checkpoint_meta(step))
                        else:
                            evals_without_improvement += 1
                        postfix[self.monitor] = f"{value:.4g}"
                        progress.set_postfix(postfix)
                        patience = tc.early_stopping_patience
                        if patience is not None and evals_without_improvement >= patience:
                            log.info(
                                "Early stop at step %d: %s has not improved for %d evaluations",
                                step,
                                self.monitor,
                                patience,
                            )
                            stopped_early = True
                        if self.stop_when is not None and _stop_condition_met(val, self.stop_when):
                            log.info(
                                "Stop at step %d: %s = %s",
                                step,
                                self.stop_when,
                                val[self.stop_when],
                            )
                            stopped_early = stopped_when = True

                    wants_save = is_checkpoint or stopped_early or signals.received
                    if wants_save and step != last_saved:
                        checkpointer.save("last", step, self.state, checkpoint_meta(step))
                        last_saved = step
                    if signals.received:
                        raise RunInterrupted(signals.received, step, checkpointer.path("last"))
                    if stopped_early:
                        break
        except BaseException as error:
            # A failed run still closes its W&B run and metrics.jsonl cleanly, and W&B
            # records it as failed (or interrupted: 128 + the signal, as a shell reports).
            code = 128 + error.signum if isinstance(error, RunInterrupted) else 1
            loggers.finish(exit_code=code)
            raise
        finally:
            progress.close()
            prefetch.shutdown(wait=False, cancel_futures=True)

        train_time = elapsed_before + time.perf_counter() - start_time
        best = {self.monitor: best_value, "step": best_step}
        if self.monitor_tiebreak is not None:
            best[self.monitor_tiebreak] = best_tiebreak
        summary = self._summarize(
            checkpointer, loggers, step, best, train_time, diagnostics_time, stopped_early
        )
        summary["stopped_when"] = self.stop_when if stopped_when else None
        checkpointer.close()
        loggers.log_summary(summary)  # writes summary.json beside metrics.jsonl
        loggers.finish()
        return summary

    def _check_finite(
        self, window: list[dict[str, Any]], step: int, checkpointer: Checkpointer
    ) -> None:
        """Raises NonFiniteLossError naming the first step whose loss or gradient was not
        finite and the newest checkpoint saved before it. `window`: the metrics of the
        steps since the last log line (the bad step is among them)."""
        bad_step = int(self.bad_step)
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

    def _summarize(
        self, checkpointer, loggers, step, best, train_time, diagnostics_time, stopped_early
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
        if self.trainer_config.evaluate_test:
            test = self._evaluate("test", params)
            loggers.log(test, step)
        # Figures go to W&B and, through metrics.jsonl's logger, to run_dir/media/.
        media = self.task.media(self.eval_model(params), "test")
        loggers.log({f"media/{name}": figure for name, figure in media.items()}, step)
        return {
            "monitor": self.monitor,
            "monitor_mode": self.monitor_mode,
            "best": best,
            "test": test,
            "steps": step,
            "stopped_early": stopped_early,
            "wall_time_s": train_time,
            "diagnostics_time_s": diagnostics_time,
            "num_params": self.num_params,
            "device_kind": jax.devices()[0].device_kind,
            "device_count": jax.device_count(),
        }


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Trains one run; returns the best validation value of the task's monitor (what a
    Hydra sweeper optimizes)."""
    trainer = Trainer(cfg, run_dir)
    return monitor_value(trainer, trainer.fit())


def monitor_value(trainer: Trainer, summary: dict[str, Any]) -> float:
    """The best validation value of the task's monitor in `summary` (NaN if none)."""
    best = summary["best"][trainer.monitor]
    return float("nan") if best is None else float(best)
