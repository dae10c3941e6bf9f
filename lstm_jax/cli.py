"""`lstm-jax`: the Hydra app that trains one run (or, with -m, a sweep of runs).

lstm-jax                                   # the default experiment (adding, T=100, LSTM)
lstm-jax experiment=copy_T200_chrono model.hidden_size=256 optim.lr=3e-3
lstm-jax -m model=rnn,gru,lstm task.seq_len=100,200
lstm-jax --help                            # the config groups and the composed config
"""

from __future__ import annotations

import copy
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from lstm_jax.config import CONFIG_DIR, enable_compilation_cache
from lstm_jax.schema import check_model_overrides, check_override_keys

log = logging.getLogger("lstm_jax")


# Errors a user can fix (a missing file, a bad value, a diverged run): printed as one clear
# message rather than a stack trace.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    PermissionError,
    ValueError,
    KeyError,
)


def _fail(message: str) -> None:
    print(f"lstm-jax: error: {message}", file=sys.stderr)
    raise SystemExit(1)


class OutputDirCheck(Callback):
    """Fails early, with the setting to change, when the run (or sweep) dir can't be made.

    Hydra creates the dir itself before the run starts and would report a bare
    PermissionError; this callback runs first (configs/hydra/default.yaml)."""

    @staticmethod
    def _claim(config: DictConfig, key: str) -> Path:
        """Claims the dir config.hydra.<key>.dir for this process (lstm_jax.rundir.claim);
        the time-stamped default, when a start in the same second holds it, is replaced in
        the config by the next free name."""
        from lstm_jax.rundir import RunDirError, claim, claim_free_dir

        directory = Path(config.hydra[key].dir)
        try:
            if any(o.startswith(f"hydra.{key}.dir=") for o in config.hydra.overrides.hydra):
                claim(directory)
                return directory
            claimed = claim_free_dir(directory)
            if claimed != directory:
                with read_write(config.hydra):
                    config.hydra[key].dir = str(claimed)
                    # a sweep's jobs compose their config again from these overrides
                    config.hydra.overrides.hydra.append(f"hydra.{key}.dir={claimed}")
            return claimed
        except RunDirError as error:
            _fail(str(error))
        except OSError as error:
            _fail(
                f"cannot write the output dir {directory} ({error.strerror}). Choose a "
                f"writable place with hydra.{key}.dir=PATH."
            )

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from lstm_jax.rundir import mark_claim

        # Before Hydra writes .hydra/ there: a refused start changes nothing in the dir. The
        # claim is taken first and held for the run's life, so a second start at the same
        # moment cannot also find the dir free.
        run_dir = _check_run_dir(config, lambda: self._claim(config, "run"))
        mark_claim(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from lstm_jax.rundir import holds_run

        # Held for the sweep's life: a second sweep into this dir cannot rewrite the
        # .hydra/ of its jobs (Hydra writes them before any job code runs).
        sweep_dir = self._claim(config, "sweep")
        if not config.trainer.get("resume") and sweep_dir.is_dir():
            taken = sorted(str(p) for p in sweep_dir.iterdir() if p.is_dir() and holds_run(p))
            if taken:
                _fail(
                    f"the sweep dir {sweep_dir} already holds runs ({', '.join(taken[:3])}"
                    f"{', ...' if len(taken) > 3 else ''}). Choose a new one with "
                    "hydra.sweep.dir=PATH (or leave it unset), or continue them with "
                    "trainer.resume=true."
                )
        # (no pid written: a refused job of a resumed sweep leaves the sweep dir as it was)
        if config.trainer.get("resume"):
            from lstm_jax.rundir import snapshot_sweep_configs

            snapshot_sweep_configs(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from lstm_jax.rundir import discard_sweep_snapshot, failed_jobs

        discard_sweep_snapshot(config.hydra.sweep.dir)
        # A failed job did not stop the sweep (_run returns a FailedJob); the sweep's exit
        # status and last line say how many there were and why.
        total, failed = failed_jobs(config.hydra.sweep.dir)
        if failed:
            listed = "; ".join(f"{job} ({error})" for job, error in failed[:5])
            more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
            print(
                f"lstm-jax: {len(failed)} of {total} jobs failed: {listed}{more}. The others "
                "finished; each failed job's summary.json says why.",
                file=sys.stderr,
            )
            raise SystemExit(1)


# The config changes a resume accepted (trainer.resume_allow), logged once the run's log
# is set up.
_accepted_changes: dict = {}


def _check_run_dir(
    config: DictConfig, claim_run_dir: Callable[[], Path], sweep_dir: str | None = None
) -> Path:
    """The config's values (lstm_jax.schema), then the claim of the run dir
    (`claim_run_dir()` returns the claimed dir; a config refused first leaves no file
    anywhere), then one run per run dir (lstm_jax.rundir); for a job of a sweep, against
    the config it had before this sweep. Returns the run dir."""
    from lstm_jax.rundir import RunDirError, check_start, check_sweep_job
    from lstm_jax.schema import ConfigError, validate

    cfg = copy.deepcopy(config)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    try:
        validate(cfg)
        run_dir = claim_run_dir()
        if sweep_dir is None:
            _accepted_changes.update(check_start(cfg, run_dir))
        else:
            _accepted_changes.update(check_sweep_job(cfg, run_dir, sweep_dir))
    except (ConfigError, RunDirError) as error:
        _fail(str(error))
    except Exception as error:  # noqa: BLE001 - Hydra would only warn and start the run
        _fail(
            f"checking the config failed: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        )
    return run_dir


_default_unraisablehook = sys.unraisablehook


def _drop_orbax_coroutine_reports(unraisable) -> None:
    """sys.unraisablehook: silent for an exception left in a collected orbax coroutine,
    Python's default report for anything else."""
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and "orbax" in code.co_filename:
        return
    _default_unraisablehook(unraisable)


def resume_command(run_dir: Path, extra: tuple[str, ...] = ()) -> str:
    """The command line that resumes the run in `run_dir`: this job's overrides (without
    trainer.resume and trainer.resume_allow), `extra`, trainer.resume=true and the dir."""
    overrides = [
        o
        for o in HydraConfig.get().overrides.task
        if not o.lstrip("+~").startswith(("trainer.resume=", "trainer.resume_allow="))
    ]
    words = ["lstm-jax", *overrides, *extra, "trainer.resume=true", f"hydra.run.dir={run_dir}"]
    return shlex.join(words)


class _RunFailed(Exception):
    """A run that ended with an error a user can act on; args[0] is its one-line message.
    `at_once`: the process ends without its usual shutdown (a full or read-only disk,
    where orbax's writer threads, still running, would each print a traceback at exit)."""

    def __init__(self, message: str, *, at_once: bool = False):
        super().__init__(message)
        self.at_once = at_once


class FailedJob:
    """What a failed job of a sweep returns instead of a number: the basic sweeper goes
    on to the next job, and Optuna's sweeper, unable to read a value from it, marks the
    trial FAIL and goes on. str() is the job's error."""

    def __init__(self, message: str):
        self.message = message

    def __str__(self) -> str:
        return self.message


def _run(cfg: DictConfig) -> float | FailedJob:
    from lstm_jax import distributed
    from lstm_jax.rundir import claim, holds_run, mark_claim, record_failure, release
    from lstm_jax.train.faults import NonFiniteLossError

    # A job launched by submitit on a cluster enters here, not through main().
    distributed.maybe_initialize_distributed()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    if in_sweep:
        # A sweep's job: on_run_start did not run for it (Hydra calls it for single runs).
        _accepted_changes.clear()

        def claim_job_dir() -> Path:
            claim(run_dir)
            return run_dir

        _check_run_dir(cfg, claim_job_dir, sweep_dir=HydraConfig.get().sweep.dir)
        mark_claim(run_dir)
    try:
        return _train(cfg, run_dir)
    except Exception as error:
        if isinstance(error, _RunFailed):
            message = error.args[0]
        elif in_sweep and os.environ.get("HYDRA_FULL_ERROR") != "1":
            # one job's unforeseen error ends that job, not the sweep
            message = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        else:
            raise
        # A sweep's job dir says why it failed (the sweep's closing line counts these); a
        # single run's when it diverged after it had written something, not when a start or
        # resume was refused (the dir stays as it was: free for the next start, or holding
        # its intact run).
        diverged = isinstance(error.__cause__, NonFiniteLossError) and holds_run(run_dir)
        if in_sweep or diverged:
            record_failure(run_dir, message)
        if not in_sweep:
            if getattr(error, "at_once", False):
                print(f"lstm-jax: error: {message}", file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(1)
            _fail(message)
        print(f"lstm-jax: error: job {run_dir}: {message}", file=sys.stderr)
        return FailedJob(message)
    finally:
        if in_sweep:
            release(run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> float:
    from lstm_jax.run import build_trainer, monitor_value
    from lstm_jax.train.faults import (
        DropDiskFaultRecords,
        NonFiniteLossError,
        RunInterrupted,
        check_memory,
        disk_fault,
    )

    # Own W&B service per run: one inherited from a parent Python process that uses W&B
    # (WANDB_SERVICE) would keep a SIGKILLed run's id registered, and its resume would then
    # fail with "run ID ... is in use".
    os.environ.pop("WANDB_SERVICE", None)
    enable_compilation_cache(cfg.paths.get("compilation_cache_dir"))

    # Hydra logs INFO to the run's log file; orbax and JAX's backend probing would bury
    # the run's own lines there.
    for noisy in ("absl", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # An unreadable checkpoint fails inside orbax's asyncio tasks, which asyncio may log
    # again with orbax's traceback when they are collected, or Python may print as an
    # "Exception ignored in <coroutine>" when they are garbage collected; the trainer
    # reports the fault itself in one line (train/checkpoint.py), so those second reports
    # are dropped.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = _drop_orbax_coroutine_reports
    for key, (old, new) in _accepted_changes.items():
        log.warning(
            "Resumed with %s changed from %r to %r (trainer.resume_allow; recorded in %s)",
            key,
            old,
            new,
            run_dir / "resumes.jsonl",
        )
    # A full disk fails every write, the run's log file too: logging then stays quiet
    # about its own failures rather than print a traceback for each line.
    logging.raiseExceptions = False
    logging.getLogger("absl").addFilter(DropDiskFaultRecords())
    try:
        check_memory(cfg)
    except MemoryError as error:
        raise _RunFailed(str(error)) from None
    try:
        trainer = build_trainer(cfg, run_dir)
    except Exception as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if message := _resource_fault(error, run_dir):
            raise _RunFailed(message) from error
        cause = error
        if isinstance(error, InstantiationException) and error.__cause__ is not None:
            cause = error.__cause__  # hydra.utils.instantiate wraps the task's own error
        message = cause.args[0] if cause.args and isinstance(cause.args[0], str) else ""
        if not isinstance(cause, _USER_ERRORS) or not message:
            message = (
                f"building the task {cfg.task.get('_target_')} or its model failed: "
                f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                " (HYDRA_FULL_ERROR=1 shows the traceback)"
            )
        raise _RunFailed(message) from error
    try:
        return monitor_value(trainer, trainer.fit())
    except RunInterrupted as stop:
        saved = (
            f"its state at step {stop.step} is in {stop.checkpoint}"
            if stop.checkpoint
            else "no step had completed, nothing was saved"
        )
        print(
            f"lstm-jax: {signal.Signals(stop.signum).name} at step {stop.step}: {saved}. "
            f"Resume with: {resume_command(run_dir)}",
            file=sys.stderr,
        )
        raise SystemExit(128 + stop.signum) from None
    except KeyboardInterrupt:
        # A second signal, before the loop could save.
        print("lstm-jax: interrupted before a checkpoint could be saved.", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    except Exception as error:
        if message := _resource_fault(error, run_dir):
            raise _RunFailed(message, at_once=disk_fault(error) is not None) from error
        if isinstance(error, (NonFiniteLossError, *_USER_ERRORS)):
            raise _RunFailed(error.args[0] if error.args else repr(error)) from error
        raise


def _resource_fault(error: BaseException, run_dir: Path) -> str | None:
    """The one-line report of a full or read-only disk, or of memory the machine cannot
    hold, with the way out; None for any other error."""
    from lstm_jax.train.faults import disk_fault, newest_checkpoint, out_of_memory

    if fault := disk_fault(error):
        what, path = fault
        checkpoint = newest_checkpoint(run_dir)
        after = (
            f"its newest checkpoint, {checkpoint}, is intact: resume with: "
            f"{resume_command(run_dir)}"
            if checkpoint
            else "no checkpoint was saved: start it again"
        )
        return (
            f"{what} at {path or run_dir}. Make room there (or copy the run dir {run_dir} "
            f"to a disk that can take it and use that dir); {after}"
        )
    if allocation := out_of_memory(error):
        return (
            f"{allocation} is more than this machine can hold. Lower task.seq_len, "
            "trainer.batch_size, task.eval_batch_size or model.hidden_size."
        )
    return None


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    return _run(cfg)


def main() -> None:
    from lstm_jax import distributed

    # A SLURM/submitit job that is one of several processes joins the others first.
    distributed.maybe_initialize_distributed()
    try:
        sys.argv += distributed.process_overrides(sys.argv[1:])
        check_model_overrides(sys.argv[1:])
        check_override_keys(sys.argv[1:])
    except ValueError as error:
        _fail(str(error))
    _hydra_main()


if __name__ == "__main__":
    main()
