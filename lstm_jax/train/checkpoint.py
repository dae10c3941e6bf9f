"""Checkpoints of a run (orbax): parameters, optimizer state, RNG state, carry, step.

Layout in the run dir: `checkpoints/<step>/`, one orbax CheckpointManager whose
preservation policy keeps the newest `keep` checkpoints and the best one by the task's
monitor (`LatestN` or `BestN`). The best checkpoint's `metrics/` holds its monitor value;
the trainer saves metrics only with a checkpoint that improved on every earlier one.
Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed mid-save leaves the previous checkpoint intact.

What is saved is the training state as a pytree of arrays; it is restored into the
structure of a freshly built state (the template), so the checkpoint holds no pickled
Python objects. PRNG keys are saved as their raw key data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, BestN, LatestN

from lstm_jax.metrics.direction import mode_of

log = logging.getLogger(__name__)

try:  # private: where orbax runs its synchronous calls (see _pending_reads_finish_on_failure)
    from orbax.checkpoint._src import asyncio_utils as orbax_asyncio
except ImportError:  # pragma: no cover - another orbax layout: restores run as orbax has them
    orbax_asyncio = None


class CheckpointError(ValueError):
    """No intact checkpoint to restore."""


class _ShapeMismatch(ValueError):
    """The checkpoint is intact but was written with another config."""


def _is_prng_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_savable(tree: Any) -> list[Any]:
    """The leaves of `tree`, PRNG keys as key data (orbax saves plain arrays).

    In a run of several processes, an array replicated on every device is saved as a host
    (numpy) copy, which orbax writes from process 0 alone; its jax.Array would have each
    process write its own shard files (the run dir is process 0's; docs/DESIGN.md contract 3).
    """
    leaves = [jax.random.key_data(x) if _is_prng_key(x) else x for x in jax.tree.leaves(tree)]
    if jax.process_count() > 1:
        leaves = [
            np.asarray(x.addressable_data(0))
            if isinstance(x, jax.Array) and x.is_fully_replicated
            else x
            for x in leaves
        ]
    return leaves


def _from_saved(leaves: list[Any], template: Any) -> Any:
    """Puts saved leaves back into the structure (and key types) of `template`."""
    template_leaves, treedef = jax.tree.flatten(template)
    if len(leaves) != len(template_leaves):
        raise _ShapeMismatch(
            f"the checkpoint holds {len(leaves)} arrays but this run's state has "
            f"{len(template_leaves)}: the checkpoint was written by a different model or "
            "optimizer config. Resume with the config of the run that wrote it."
        )
    restored = []
    for saved, like in zip(leaves, template_leaves, strict=True):
        if _is_prng_key(like):
            saved = jax.random.wrap_key_data(saved, impl=jax.random.key_impl(like))
        elif np.shape(saved) != np.shape(like):
            raise _ShapeMismatch(
                f"checkpoint array of shape {np.shape(saved)} does not fit the run's "
                f"{np.shape(like)}: the checkpoint was written with another config."
            )
        restored.append(saved)
    return jax.tree.unflatten(treedef, restored)


async def _letting_pending_reads_finish(coro):
    """Awaits `coro`; when it fails, first waits for the loop's other tasks to end.

    A restore gathers one read per array. When one read fails (a truncated file), orbax
    closes its loop at once, while tensorstore still reads the other arrays on its own
    threads; each of those reads, as it completes, schedules its result on the closed
    loop, and tensorstore prints that RuntimeError ("Event loop is closed") with its
    traceback straight to stderr, at random moments up to the process's exit. Letting the
    reads finish (they are local reads of the remaining arrays) keeps the one-line report
    of a damaged checkpoint one line."""
    try:
        return await coro
    except BaseException:
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            done, _ = await asyncio.wait(others, timeout=60)
            for task in done:  # retrieved: asyncio would otherwise log each at collection
                if not task.cancelled():
                    task.exception()
        raise


@contextlib.contextmanager
def _pending_reads_finish_on_failure():
    """Within the block, orbax's own `_run_sync_via_new_loop` runs each coroutine wrapped
    in `_letting_pending_reads_finish`. orbax looks the function up as a module global at
    each call; the block is the restore of one checkpoint, in the thread that restores. An
    orbax without that function restores as it is (tests/train/test_checkpoint_damage.py
    then fails, so the change is seen), rather than every restore failing here and its
    checkpoint being taken for damaged."""
    original = getattr(orbax_asyncio, "_run_sync_via_new_loop", None)
    if original is None:
        yield
        return
    orbax_asyncio._run_sync_via_new_loop = lambda coro: original(
        _letting_pending_reads_finish(coro)
    )
    try:
        yield
    finally:
        orbax_asyncio._run_sync_via_new_loop = original


class _DropUnrankedSaveWarning(logging.Filter):
    """Drops orbax's warning that a save carries no metrics: a periodic save has none on
    purpose (only improvements are ranked), and it would print at every checkpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in record.getMessage()


_UNRANKED_SAVE_FILTER = _DropUnrankedSaveWarning()


class Checkpointer:
    """The newest `keep` checkpoints of a run dir and its best one, in one orbax manager.

    `AnyPreservationPolicy([LatestN(keep), BestN(n=1)])` decides what stays. Only a save
    with `best=True` carries metrics (the monitor, and the tiebreak when the task has
    one), and the trainer passes `best=True` only when the evaluation improved on every
    earlier one (lstm_jax.metrics.direction.improves). So `BestN` ranks improvements
    alone: its best is the newest of them, as the trainer's is, ties included (a
    tiebreak improvement ranks above an equal monitor value).

    `which` names what a reader wants: "last" is every checkpoint, newest first; "best"
    is the checkpoints with metrics, best first. A checkpoint is a full training state
    whichever it is, so a run resumes from the newest one, best or periodic.

    A run dir written before one manager (`checkpoints/last/<step>`, `checkpoints/best/
    <step>`) is moved into this layout when a run opens it for writing; a read-only
    reader is told to convert it (`python -m lstm_jax.train.checkpoint RUN_DIR`)."""

    def __init__(
        self,
        directory: Path,
        *,
        keep: int,
        monitor: str | None = None,
        tiebreak: str | None = None,
        read_only: bool = False,
    ):
        # monitor, tiebreak: the task's (Trainer.checkpointer passes them); the monitor's
        # direction is lstm_jax.metrics.direction's, as the task's monitor_mode is. orbax
        # refuses relative paths; a user's `lstm-jax-sample outputs/run` is one.
        self.directory = Path(directory).absolute()
        if _has_two_manager_layout(self.directory):
            # Several processes would race to move the same dirs: they are told to convert.
            if read_only or jax.process_count() > 1:
                raise CheckpointError(
                    f"{self.directory} holds checkpoints in the layout of lstm-jax before one "
                    "checkpoint manager (last/<step>, best/<step>): convert it with "
                    f"`python -m lstm_jax.train.checkpoint {self.directory}` (moves the step "
                    "dirs, deletes nothing) or resume the run once in one process."
                )
            adopt_two_manager_layout(self.directory, tiebreak)
        self.monitor, self.tiebreak = monitor, tiebreak
        logging.getLogger("absl").addFilter(_UNRANKED_SAVE_FILTER)  # once: a set
        policies: list[Any] = [LatestN(n=keep)]
        if monitor is not None:
            policies.append(
                BestN(get_metric_fn=self._rank, n=1, keep_checkpoints_without_metrics=False)
            )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=AnyPreservationPolicy(policies),
                # best_fn makes orbax write a save's metrics (and best_step() rank them).
                best_fn=self._rank if monitor is not None else None,
                best_mode="max",
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=False,
            ),
        )

    def _rank(self, metrics: dict[str, float]) -> tuple[float, float]:
        """Higher is better: the monitor in its direction, then the tiebreak (lower is
        better), as direction.improves orders them."""
        assert self.monitor is not None
        value = float(metrics[self.monitor])
        sign = 1.0 if mode_of(self.monitor) == "max" else -1.0
        tiebreak = metrics.get(self.tiebreak) if self.tiebreak else None
        # Without a tiebreak (a task without one, or a best adopted from two managers)
        # an equal value ranks below one with it: the later save was the improvement.
        return sign * value, -float(tiebreak) if tiebreak is not None else -math.inf

    def save(self, step: int, state: Any, meta: dict[str, Any], *, best: bool = False) -> None:
        """Saves `state` (any pytree of arrays) and JSON `meta` as checkpoint `step`; with
        `best`, the monitor value of `meta` (and its tiebreak) as the step's metrics."""
        metrics = None
        if best:
            if self.monitor is None:
                raise ValueError("save(best=True) needs a Checkpointer made with a monitor.")
            metrics = {self.monitor: meta["best_value"]}
            if self.tiebreak is not None and meta.get("best_tiebreak") is not None:
                metrics[self.tiebreak] = meta["best_tiebreak"]
        leaves = {f"{i:05d}": leaf for i, leaf in enumerate(_to_savable(state))}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves), meta=ocp.args.JsonSave(meta)
            ),
            metrics=metrics,
            force=True,
        )
        self._manager.wait_until_finished()

    def steps(self, which: str = "last") -> list[int]:
        """ "last": every step, oldest first; "best": the steps with metrics, best first."""
        if which == "last":
            return sorted(self._manager.all_steps())
        if which != "best":
            raise ValueError(f"which={which!r}: choose 'last' or 'best'.")
        if self.monitor is None:
            return []
        ranked = []
        for step in self._manager.all_steps():
            metrics = self._manager.metrics(step)
            if metrics is not None and self.monitor in metrics:
                ranked.append((self._rank(metrics), step))
        # equal ranks: the newer step first, as BestN keeps it
        return [step for _, step in sorted(ranked, reverse=True)]

    def delete(self, step: int) -> None:
        self._manager.delete(step)

    def latest_step(self, which: str = "last") -> int | None:
        if which == "last":
            return self._manager.latest_step()
        ranked = self.steps(which)
        return ranked[0] if ranked else None

    def path(self, which: str) -> Path | None:
        step = self.latest_step(which)
        return None if step is None else self.directory / str(step)

    def _check_fits(self, step: int, abstract: dict[str, Any]) -> None:
        """Raises _ShapeMismatch, before any array is read or any file moved, when the
        checkpoint's recorded shapes differ from the template's: an intact checkpoint
        written with another config. A checkpoint whose record cannot be read is damaged
        (the error propagates to restore's handling of damage)."""
        path = self.directory / str(step)
        stored = ocp.StandardCheckpointHandler().metadata(path / "state")
        if sorted(stored) != sorted(abstract):
            raise _ShapeMismatch(
                f"the checkpoint {path} holds {len(stored)} arrays but this run's state has "
                f"{len(abstract)}: it was written by a different model or optimizer config. "
                "Resume with the config of the run that wrote it, or start a new run in "
                "another dir (nothing was changed)."
            )
        for key in sorted(abstract):
            if tuple(stored[key].shape) != tuple(abstract[key].shape):
                raise _ShapeMismatch(
                    f"the checkpoint {path} holds an array of shape {tuple(stored[key].shape)} "
                    f"where this run's state has {tuple(abstract[key].shape)}: it was "
                    "written with another model config. Resume with the config of the run "
                    "that wrote it, or start a new run in another dir (nothing was changed)."
                )

    def restore(
        self,
        which: str,
        template: Any,
        *,
        move_damaged: bool = True,
        accept: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """The newest intact `which` checkpoint as (state shaped like `template`, meta).

        A checkpoint that fits the template's shapes but cannot be read (a truncated or
        missing file) is moved to `checkpoints/corrupt/` (left in place with
        `move_damaged=False`, for read-only callers) with a warning naming it, and the
        next older one is tried; CheckpointError when none is intact. An intact checkpoint
        of other shapes (another config) raises _ShapeMismatch and nothing moves.
        `accept(meta)` may turn down an intact checkpoint with a reason (the run's other
        files cannot follow it): it stays where it is and the next older one is tried."""
        steps = self.steps(which)[::-1] if which == "last" else self.steps(which)
        kind = "" if which == "last" else "best "
        if not steps:
            raise FileNotFoundError(f"no {kind}checkpoint in {self.directory}.")
        abstract = {
            f"{i:05d}": ocp.utils.to_shape_dtype_struct(leaf)
            for i, leaf in enumerate(_to_savable(template))
        }
        skipped: list[str] = []
        rejected: list[str] = []
        for step in steps:
            try:
                self._check_fits(step, abstract)
                with _pending_reads_finish_on_failure():
                    restored = self._manager.restore(
                        step,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(abstract),
                            meta=ocp.args.JsonRestore(),
                        ),
                    )
                leaves = [restored.state[key] for key in sorted(restored.state)]
                result = _from_saved(leaves, template), dict(restored.meta)
            except _ShapeMismatch:
                raise
            except Exception as error:  # noqa: BLE001 - any unreadable file: try the next one
                reason = (str(error).strip().splitlines() or [""])[0]
                reason = reason.split(" See full TensorStore")[0][:200]
                skipped.append(f"{self.directory / str(step)} ({type(error).__name__}: {reason})")
                if move_damaged:
                    self._set_aside(step)
                continue
            reason = accept(result[1]) if accept is not None else None
            if reason is not None:
                rejected.append(f"{self.directory / str(step)}: {reason}")
                continue
            if rejected:
                log.warning(
                    "Resuming from %s, not from the newer %s",
                    self.directory / str(step),
                    "; ".join(rejected),
                )
            if skipped:
                log.warning(
                    "Skipped unreadable checkpoint %s (%s); restored %s",
                    "; ".join(skipped),
                    f"moved to {self.directory / 'corrupt'}" if move_damaged else "left as is",
                    self.directory / str(step),
                )
            return result
        if rejected:
            raise CheckpointError(
                f"no {kind}checkpoint in {self.directory} can be resumed: "
                f"{'; '.join(skipped + rejected)}. Put back an intact copy of the file named, "
                "or start the run again in a new dir."
            )
        where = (
            f"They were moved to {self.directory / 'corrupt'}; start the run again in a new dir."
            if move_damaged
            else "Nothing was changed."
        )
        raise CheckpointError(
            f"no intact {kind}checkpoint in {self.directory}: {'; '.join(skipped)}. {where}"
        )

    def _set_aside(self, step: int) -> None:
        """Moves an unreadable checkpoint out of orbax's sight (kept for inspection), so a
        resumed run can save that step again."""
        target = self.directory / "corrupt" / str(step)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(self.directory / str(step)), target)
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()


def _has_two_manager_layout(directory: Path) -> bool:
    return any((directory / which).is_dir() for which in ("last", "best"))


def adopt_two_manager_layout(directory: Path, tiebreak: str | None = None) -> None:
    """Moves the step dirs of `directory/last` and `directory/best` (lstm-jax before one
    checkpoint manager) to `directory/<step>`, and gives the best one the metrics orbax
    ranks it by (from its own meta: the monitor and its value at that save). A step in
    both holds the same state: one copy is kept. Nothing is deleted but empty dirs and
    that duplicate; an unfinished save (`*.orbax-checkpoint-tmp*`) stays where it was."""
    directory = Path(directory)
    best_steps = []
    for which in ("last", "best"):
        for step_dir in sorted((directory / which).glob("*")):  # none when absent
            if not step_dir.name.isdigit():
                continue
            target = directory / step_dir.name
            if which == "best":
                best_steps.append(int(step_dir.name))
            if target.exists():
                shutil.rmtree(step_dir)  # the same step's state, saved twice
            else:
                shutil.move(str(step_dir), target)
    for step in best_steps:
        meta_file = directory / str(step) / "meta" / "metadata"
        meta = ocp.JsonCheckpointHandler().restore(meta_file.parent) if meta_file.exists() else None
        if not meta or meta.get("best_value") is None:
            continue
        metrics = {meta["monitor"]: meta["best_value"]}
        if tiebreak is not None and meta.get("best_tiebreak") is not None:
            metrics[tiebreak] = meta["best_tiebreak"]
        # where orbax's CheckpointManager writes a save's metrics, and reads them back
        (directory / str(step) / "metrics").mkdir(exist_ok=True)
        ocp.JsonCheckpointHandler(filename="metrics").save(
            directory / str(step) / "metrics", args=ocp.args.JsonSave(metrics)
        )
    for which in ("last", "best"):
        leftover = directory / which
        if leftover.is_dir() and not any(leftover.iterdir()):
            leftover.rmdir()
    log.info("Moved the checkpoints of %s into one manager's layout (<step>/)", directory)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lstm_jax.train.checkpoint",
        description="Moves the checkpoints of run dirs written before one checkpoint manager "
        "(checkpoints/last/<step>, checkpoints/best/<step>) into today's checkpoints/<step>.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run dirs (or their checkpoints/)")
    for run_dir in parser.parse_args(argv).run_dirs:
        checkpoints = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
        if not _has_two_manager_layout(checkpoints):
            parser.error(f"{checkpoints} has no last/ or best/ dir: nothing to move")
        adopt_two_manager_layout(checkpoints)
        print(f"{checkpoints}: steps {sorted(p.name for p in checkpoints.iterdir())}")


if __name__ == "__main__":
    main()
