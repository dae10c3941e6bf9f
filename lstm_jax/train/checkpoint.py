"""Checkpoints of a run (orbax): parameters, optimizer state, RNG state, carry, step.

Layout in the run dir: `checkpoints/last/<step>/` (the last `keep` ones) and
`checkpoints/best/<step>/` (the best by the task's monitor). Orbax writes each checkpoint
to a temporary directory and renames it when complete, so a run killed mid-save leaves
the previous checkpoint intact.

What is saved is the training state as a pytree of arrays; it is restored into the
structure of a freshly built state (the template), so the checkpoint holds no pickled
Python objects. PRNG keys are saved as their raw key data.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import LatestN

log = logging.getLogger(__name__)


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


class Checkpointer:
    """The last `keep` checkpoints and the best one of a run dir.

    Two orbax managers, "last" and "best", each pruned by orbax's own preservation policy
    (`LatestN`; `max_to_keep` is deprecated in orbax 0.12). One manager under
    `AnyPreservationPolicy([LatestN(keep), BestN(n=1)])` (issue 30 item 6) cannot keep
    this behaviour, so it is not used:
    - it writes every step to one `checkpoints/<step>/`, not the `last/<step>` and
      `best/<step>` that docs/DESIGN.md, experiments/long_dependency.sh --snapshot and the
      recorded runs under experiments/ rely on; a step both best and periodic is one dir;
    - `LatestN` counts every checkpoint of its manager, so the best saves made at
      evaluations between `checkpoint_every` steps would push periodic resume points out
      of the latest `keep`;
    - `BestN` sorts with `sorted()` and keeps the last n, so of equal values the newest
      wins, where the trainer keeps the first one that improved (and its tiebreak); and it
      keeps every periodic save (no metrics) unless `keep_checkpoints_without_metrics=False`;
    - `CheckpointManager.best_step()` follows `options.best_fn`, not a preservation
      policy, so the best step would have to be recomputed here from saved metrics.
    The "best" manager keeps `LatestN(1)`: the trainer saves to it only on an improvement
    (lstm_jax.metrics.direction.improves), so its newest checkpoint is the best one.
    """

    def __init__(self, directory: Path, *, keep: int, read_only: bool = False):
        # read_only: for commands that only read a run (lstm-jax-sample): no dir is made.
        def options(keep_latest: int) -> ocp.CheckpointManagerOptions:
            return ocp.CheckpointManagerOptions(
                preservation_policy=LatestN(n=keep_latest),
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=False,
            )

        # orbax refuses relative paths; a user's `lstm-jax-sample outputs/run` is one.
        self.directory = Path(directory).absolute()
        self._last = ocp.CheckpointManager(self.directory / "last", options=options(keep))
        self._best = ocp.CheckpointManager(self.directory / "best", options=options(1))

    def _manager(self, which: str) -> ocp.CheckpointManager:
        if which not in ("last", "best"):
            raise ValueError(f"which={which!r}: choose 'last' or 'best'.")
        return self._last if which == "last" else self._best

    def save(self, which: str, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Saves `state` (any pytree of arrays) and JSON `meta` as checkpoint `step`."""
        manager = self._manager(which)
        leaves = {f"{i:05d}": leaf for i, leaf in enumerate(_to_savable(state))}
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        manager.wait_until_finished()

    def steps(self, which: str = "last") -> list[int]:
        return sorted(self._manager(which).all_steps())

    def delete(self, which: str, step: int) -> None:
        self._manager(which).delete(step)

    def latest_step(self, which: str = "last") -> int | None:
        return self._manager(which).latest_step()

    def path(self, which: str) -> Path | None:
        step = self.latest_step(which)
        return None if step is None else self.directory / which / str(step)

    def _check_fits(self, which: str, step: int, abstract: dict[str, Any]) -> None:
        """Raises _ShapeMismatch, before any array is read or any file moved, when the
        checkpoint's recorded shapes differ from the template's: an intact checkpoint
        written with another config. A checkpoint whose record cannot be read is damaged
        (the error propagates to restore's handling of damage)."""
        stored = ocp.StandardCheckpointHandler().metadata(
            self.directory / which / str(step) / "state"
        )
        path = self.directory / which / str(step)
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
        manager = self._manager(which)
        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no '{which}' checkpoint in {self.directory}.")
        abstract = {
            f"{i:05d}": ocp.utils.to_shape_dtype_struct(leaf)
            for i, leaf in enumerate(_to_savable(template))
        }
        skipped: list[str] = []
        rejected: list[str] = []
        for step in steps:
            try:
                self._check_fits(which, step, abstract)
                restored = manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                    ),
                )
                leaves = [restored.state[key] for key in sorted(restored.state)]
                result = _from_saved(leaves, template), dict(restored.meta)
            except _ShapeMismatch:
                raise
            except Exception as error:  # noqa: BLE001 - any unreadable file: try the next one
                reason = (str(error).strip().splitlines() or [""])[0]
                reason = reason.split(" See full TensorStore")[0][:200]
                skipped.append(
                    f"{self.directory / which / str(step)} ({type(error).__name__}: {reason})"
                )
                if move_damaged:
                    self._set_aside(which, step)
                continue
            reason = accept(result[1]) if accept is not None else None
            if reason is not None:
                rejected.append(f"{self.directory / which / str(step)}: {reason}")
                continue
            if rejected:
                log.warning(
                    "Resuming from %s, not from the newer %s",
                    self.directory / which / str(step),
                    "; ".join(rejected),
                )
            if skipped:
                log.warning(
                    "Skipped unreadable checkpoint %s (%s); restored %s",
                    "; ".join(skipped),
                    f"moved to {self.directory / 'corrupt'}" if move_damaged else "left as is",
                    self.directory / which / str(step),
                )
            return result
        if rejected:
            raise CheckpointError(
                f"no '{which}' checkpoint in {self.directory} can be resumed: "
                f"{'; '.join(skipped + rejected)}. Put back an intact copy of the file named, "
                "or start the run again in a new dir."
            )
        where = (
            f"They were moved to {self.directory / 'corrupt'}; start the run again in a new dir."
            if move_damaged
            else "Nothing was changed."
        )
        raise CheckpointError(
            f"no intact '{which}' checkpoint in {self.directory}: {'; '.join(skipped)}. {where}"
        )

    def _set_aside(self, which: str, step: int) -> None:
        """Moves an unreadable checkpoint out of orbax's sight (kept for inspection), so a
        resumed run can save that step again."""
        target = self.directory / "corrupt" / f"{which}-{step}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(self.directory / which / str(step)), target)
        self._manager(which).reload()

    def close(self) -> None:
        self._last.close()
        self._best.close()
