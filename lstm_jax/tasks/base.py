"""The contract between a domain (a task) and the trainer.

A task pairs a dataset with the model built for it (input encoder -> recurrent core ->
head), its loss and its metrics. The trainer knows nothing else about a domain: adding a
domain is one subclass of `Task`, one config file under `configs/task/`, and tests.

Conventions every task follows:

- Training batches are a pure function of `(seed, step)`: `train_batch(step)` returns the
  same arrays for the same step, so resuming at step k replays exactly the data an
  uninterrupted run would have seen (the "data position" of a checkpoint is its step).
- Batches are dicts of numpy arrays, batch-first (B, ...). Variable-length sequences carry
  `seq_lengths` (B,) int32; padding is zero.
- `loss` is jit-compiled by the trainer; it must be traceable (no Python control flow on
  array values). `evaluate` runs outside jit and may jit its own step.
- Random keys: the trainer hands `loss` the key of each step, `key=step_key(seed, k)` for
  the batch `train_batch(k)`, a pure function of (seed, step) like the batches, so a resumed
  run draws the same dropout masks. A task forwards it to its model where the model takes a
  key (`dropout_key`); `key=None` (diagnostics, tests) leaves the model to its own stream.
- Modes: the trainer owns train and eval mode. `loss` gets a train-mode model, `evaluate`
  and `media` an eval-mode one (`Trainer.eval_model`); a task runs the model in the mode it
  is handed and never switches it.
- Evaluation iterates a split in fixed-size padded batches with a weight mask
  (`lstm_jax.data.batching.padded_batches` and `sum_batches`); a task supplies the per-batch
  sums and the computation that turns their totals into metrics.
- Recurrent state carried across training batches (truncated BPTT) is the `carry`; tasks
  that do not carry state return None from `initial_carry` and pass the carry through.
- Diagnostics call `loss(..., return_gates=True, hidden_perturbation=p)`: the task forwards
  both to the recurrent core that the diagnostics should look at (the top of the stack).
  `aux["gates"]` is then the core's gate dict, `{"layer_0": {"input": (B, T, H*dirs),
  ...}, ...}`, and the gradient with respect to `p` (B, T, H*dirs) is dL/dh_t of the top
  layer.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.data.batching import padded_batches, sum_batches
from lstm_jax.metrics.direction import mode_of
from lstm_jax.models import SequenceHead

Batch = dict[str, np.ndarray]
Metrics = dict[str, float]


def step_key(seed: int | jax.Array, k: int | jax.Array) -> jax.Array:
    """The random key of the update that consumes `train_batch(k)`: fold_in(key(seed), k)."""
    return jax.random.fold_in(jax.random.key(seed), k)


class Task(abc.ABC):
    """A domain: data, model, loss and metrics.

    Subclasses set `monitor` (the validation metric the trainer early-stops on, checkpoints
    the best of, and returns to a sweeper, e.g. "val/acc"); whether it is better smaller or
    larger (`monitor_mode`) follows from its name (lstm_jax/metrics/direction.py). A task
    whose monitor ties often (accuracy on a few hundred examples) names a validation metric
    to minimise among tied evaluations in `monitor_tiebreak`.
    """

    monitor: str = "val/loss"
    monitor_tiebreak: str | None = None
    # The names `evaluate` returns (without the split prefix), so that a run can check
    # `trainer.stop_when` before it trains; () leaves the check to the first evaluation.
    metric_names: tuple[str, ...] = ()

    @property
    def monitor_mode(self) -> str:
        """ "min" or "max": the direction of `monitor`, by the one table of them."""
        return mode_of(self.monitor)

    def __init__(self, *, batch_size: int, seed: int = 0, data_dir: str | None = None):
        self.batch_size = batch_size
        self.seed = seed
        self.data_dir = data_dir

    @abc.abstractmethod
    def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> nnx.Module:
        """Builds the model for this task; `model_config` is the `model` config group
        (configs/model/<cell>.yaml, read by lstm_jax.models.make_core). A task supplies
        only the sizes its data knows (input features, classes, vocabulary, horizon) to a
        model of lstm_jax.models, named by a partial node of its own config (`head`,
        `forecaster`) where it has options."""

    @abc.abstractmethod
    def train_batch(self, step: int) -> Batch:
        """The training batch for `step`; a pure function of (seed, step)."""

    @abc.abstractmethod
    def loss(
        self,
        model: nnx.Module,
        batch: Batch,
        carry: Any = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        """Mean training loss and `aux`; `key` is the step's random key (dropout masks).

        aux = {"metrics": {name: scalar array}  # logged as train/<name>
               "carry": the carry for the next batch (or None),
               "gates": the core's gates when return_gates else None}
        """

    @abc.abstractmethod
    def evaluate(self, model: nnx.Module, split: str) -> Metrics:
        """Metrics over a whole split ("val" or "test"), names without prefix (those of
        `metric_names`):
        {"loss": ..., "acc": ...}. The trainer logs them as val/<name>, test/<name>. The
        model runs in the mode it arrives in (eval mode from the trainer)."""

    def initial_carry(self, model: nnx.Module) -> Any:
        """State carried across training batches (truncated BPTT); None by default."""
        return None

    def reset_carry(self, step: int) -> bool:
        """Whether the carry is reset to `initial_carry` before the batch of `step`."""
        return False

    def media(self, model: nnx.Module, split: str) -> dict[str, Any]:
        """Figures for the run: {name: matplotlib Figure or HxWxC uint8 array}, e.g. a
        spectrogram with its predicted label or a forecast plot. The trainer calls it after
        the final evaluation, saves each as run_dir/media/<name>.png and logs it to W&B."""
        return {}

    def run_info(self) -> dict[str, Any]:
        """What a run should record about its data that the config does not say (the split
        borders a forecasting task chose, say): summary.json's "data". None here: {}."""
        return {}

    def memory_diagnostics(self, model: nnx.Module) -> dict[str, Any]:
        """Diagnostics that tell a model that cannot store a memory task's items from one
        that stores them and does not read them out ({"memory/<name>": float or (T,)
        profile}; lstm_jax.tasks.synthetic), on held-out data fixed for the run. The trainer
        calls it with the eval-mode model at every diagnostics step. None here: {}."""
        return {}

    def tokens_in(self, batch: Batch) -> int:
        """Sequence positions in a batch, for perf/tokens_per_s."""
        first = next(iter(batch.values()))
        if "seq_lengths" in batch:
            return int(np.sum(batch["seq_lengths"]))
        return int(np.prod(first.shape[:2])) if first.ndim >= 2 else int(first.shape[0])


TRAIN, VAL, TEST = 0, 1, 2
_SPLIT_STREAM = {"val": VAL, "test": TEST}


# --------------------------------------------------------------------------------------
# Shared by the array tasks (synthetic memory tasks, sequential images): fixed evaluation
# sets, one jitted padded evaluation. Here, not in a domain, so no domain imports another.
# --------------------------------------------------------------------------------------


class ArrayTask(Task):
    """A task whose splits are (inputs, targets) arrays and whose model is a `SequenceHead`
    (`head`: the config's partial node; its pooling is the task's `pooling`).

    Subclasses provide `in_features`, `out_features`, `pooling`, `_make_split(rng, n)`
    (synthetic tasks) or override `train_batch`/`_split_arrays` (datasets), `_forward_loss`
    (mean loss + per-batch metrics) and `_eval_sums` (weighted sums of the eval metrics)
    with `_finish_eval` turning sums into metrics; the padded loop over a split is
    `lstm_jax.data.batching`'s.
    """

    in_features: int
    out_features: int
    pooling: str = "last"

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        eval_batch_size: int = 500,
        head: Callable[..., nnx.Module] | None = None,
    ):
        super().__init__(batch_size=batch_size, seed=seed, data_dir=data_dir)
        self.head = head or SequenceHead
        self.eval_batch_size = int(eval_batch_size)
        self._eval_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._eval_fn: Callable | None = None

    # ---- model -------------------------------------------------------------------
    def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> nnx.Module:
        return self.head(
            model_config, self.in_features, self.out_features, pooling=self.pooling, rngs=rngs
        )

    def _inputs(self, x: jax.Array) -> jax.Array:
        """Batch inputs -> (B, T, in_features) float32 (one-hot encodes token tasks)."""
        return jnp.asarray(x, jnp.float32)

    # ---- loss --------------------------------------------------------------------
    def loss(
        self,
        model: nnx.Module,
        batch: Batch,
        carry: Any = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        # `key` is unused: SequenceHead takes no dropout key yet, so its core draws any
        # dropout masks from the module's own stream (the model state the trainer carries).
        out, gates = model(
            self._inputs(batch["x"]),
            return_gates=return_gates,
            hidden_perturbation=hidden_perturbation,
        )
        value, metrics = self._forward_loss(out, jnp.asarray(batch["y"]))
        return value, {"metrics": metrics, "carry": carry, "gates": gates}

    def _forward_loss(self, out: jax.Array, y: jax.Array) -> tuple[jax.Array, dict]:
        raise NotImplementedError

    # ---- evaluation ----------------------------------------------------------------
    def _split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._eval_cache:
            if split not in _SPLIT_STREAM:
                raise ValueError(f"unknown split {split!r}; expected 'val' or 'test'.")
            self._eval_cache[split] = self._make_eval_split(split)
        return self._eval_cache[split]

    def _make_eval_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _eval_sums(self, out: jax.Array, y: jax.Array, w: jax.Array) -> dict[str, jax.Array]:
        raise NotImplementedError

    def _finish_eval(self, sums: dict[str, float], n: int) -> Metrics:
        raise NotImplementedError

    def evaluate(self, model: nnx.Module, split: str) -> Metrics:
        x, y = self._split_arrays(split)
        if self._eval_fn is None:

            def sums_fn(model, xb, yb, wb):
                out, _ = model(self._inputs(xb))
                return self._eval_sums(out, yb, wb)

            self._eval_fn = nnx.jit(sums_fn)
        batches = padded_batches(
            x.shape[0], self.eval_batch_size, lambda idx: {"x": x[idx], "y": y[idx]}
        )
        totals = sum_batches(batches, lambda b: self._eval_fn(model, b["x"], b["y"], b["weight"]))
        return self._finish_eval(totals, x.shape[0])
