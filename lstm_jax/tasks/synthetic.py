"""Synthetic long-dependency memory tasks: adding, copy memory, variable copy, selective copy.

All data is generated on the fly from a seed by `lstm_jax.data.synthetic`: `train_batch(step)`
draws from `np.random.default_rng([seed, 0, step])`, so a batch is a pure function of (seed,
step). The
validation and test sets are fixed arrays drawn once from `[eval_seed, 1]` and
`[eval_seed, 2]`; they do not depend on the training seed, so runs with different seeds are
scored on the same examples.

Models are `RecurrentHead`: the recurrent core of the `model` config group
(`lstm_jax.models.core.make_core`) followed by a linear head, read out either from the final
hidden state of the top layer (`readout="last"`: forward direction, or both directions
concatenated when bidirectional) or at every time step (`readout="all"`).

- `AddingTask` (Hochreiter & Schmidhuber 1997; the variant of Arjovsky et al. 2016): inputs
  (B, T, 2), a uniform[0, 1) value channel and a marker channel with exactly two ones, one in
  each half; the target is the sum of the two marked values; MSE. Predicting 1 always gives
  MSE = Var(U1 + U2) = 1/6 = 0.167 (`baseline_mse`).
- `CopyTask` (Arjovsky et al. 2016, "copy memory"): 10 symbols from 8 categories, T-1
  blanks, a delimiter, 10 blanks (length T + 20); the target is blank for T + 10 steps and
  then the 10 symbols. Cross-entropy over all T + 20 outputs; the memoryless baseline
  (blank, then uniform over the 8 categories) scores 10 ln 8 / (T + 20) (`baseline_loss`).
- `VariableCopyTask` (Henaff, Szlam & LeCun 2016, as Tallec & Ollivier 2018 use it): the
  copy task with the delimiter at a random time: the gap before it is drawn from U[1, T] per
  sequence, and the symbols are due in the 10 steps right after it. Same length T + 20 and
  the same memoryless baseline 10 ln 8 / (T + 20); with a gap of T it is the copy task.
- `SelectiveCopyTask` (Gu & Dao 2023, the Mamba paper): N data tokens at random positions in
  T steps of blank (noise) tokens, then N marker tokens; at the markers the model outputs
  the data tokens in order. Cross-entropy on the N output positions; the uniform guess scores
  ln(C) (`baseline_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lstm_jax.data.batching import padded_batches, sum_batches
from lstm_jax.data.synthetic import adding_problem, copy_memory, selective_copy, variable_copy
from lstm_jax.models.core import make_core
from lstm_jax.tasks.base import Batch, Metrics, Task

TRAIN, VAL, TEST = 0, 1, 2
_SPLIT_STREAM = {"val": VAL, "test": TEST}


# --------------------------------------------------------------------------------------
# The model: recurrent core + linear head.
# --------------------------------------------------------------------------------------


class RecurrentHead(nnx.Module):
    """Recurrent core (from the `model` config group) followed by a linear head.

    readout="last": the head reads the final hidden state of the top layer, (B, out)
    (forward direction; both directions concatenated when bidirectional).
    readout="all": the head reads the core output at every step, (B, T, out).
    """

    def __init__(
        self,
        model_config: Any,
        in_features: int,
        out_features: int,
        *,
        readout: str = "last",
        rngs: nnx.Rngs,
    ):
        if readout not in ("last", "all"):
            raise ValueError(f"readout={readout!r}: expected 'last' or 'all'.")
        self.core = make_core(model_config, in_features, rngs=rngs)
        self.directions = 2 if model_config.bidirectional else 1
        self.readout = readout
        width = model_config.hidden_size * self.directions
        self.head = nnx.Linear(width, out_features, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
    ) -> tuple[jax.Array, Any]:
        """Head outputs (float32) and the core's gates (None unless return_gates)."""
        kwargs = {}
        if hidden_perturbation is not None:
            kwargs["hidden_perturbation"] = hidden_perturbation
        if return_gates:
            y, state, gates = self.core(x, return_gates=True, **kwargs)
        else:
            y, state = self.core(x, **kwargs)
            gates = None
        if self.readout == "all":
            feats = y
        else:
            h = state[0] if isinstance(state, (tuple, list)) else state  # (layers*dirs, B, H)
            top = h[-self.directions :]  # PyTorch order: the top layer's directions come last
            feats = jnp.concatenate(list(top), axis=-1)
        return self.head(feats).astype(jnp.float32), gates


def one_hot(tokens: np.ndarray | jax.Array, depth: int) -> jax.Array:
    return jax.nn.one_hot(tokens, depth, dtype=jnp.float32)


# --------------------------------------------------------------------------------------
# Shared task machinery: fixed evaluation sets, chunked jitted evaluation.
# --------------------------------------------------------------------------------------


class ArrayTask(Task):
    """A task whose splits are (inputs, targets) arrays and whose model is `RecurrentHead`.

    Subclasses provide `in_features`, `out_features`, `readout`, `_make_split(rng, n)`
    (synthetic tasks) or override `train_batch`/`_split_arrays` (datasets), `_forward_loss`
    (mean loss + per-batch metrics) and `_eval_sums` (weighted sums of the eval metrics)
    with `_finish_eval` turning sums into metrics; the padded loop over a split is
    `lstm_jax.data.batching`'s.
    """

    in_features: int
    out_features: int
    readout: str = "last"

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        eval_batch_size: int = 500,
    ):
        super().__init__(batch_size=batch_size, seed=seed, data_dir=data_dir)
        self.eval_batch_size = int(eval_batch_size)
        self._eval_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._eval_fn: Callable | None = None

    # ---- model -------------------------------------------------------------------
    def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> nnx.Module:
        return RecurrentHead(
            model_config, self.in_features, self.out_features, readout=self.readout, rngs=rngs
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
        # `key` is unused: RecurrentHead takes no dropout key yet, so its core draws any
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


class _GeneratedTask(ArrayTask):
    """Synthetic data: train batches from (seed, step), eval sets from (eval_seed, split)."""

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        val_size: int = 2000,
        test_size: int = 5000,
        eval_seed: int = 1234,
        eval_batch_size: int = 500,
    ):
        super().__init__(
            batch_size=batch_size, seed=seed, data_dir=data_dir, eval_batch_size=eval_batch_size
        )
        self.val_size = int(val_size)
        self.test_size = int(test_size)
        self.eval_seed = int(eval_seed)

    def _generate(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def train_batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, TRAIN, int(step)])
        x, y = self._generate(rng, self.batch_size)
        return {"x": x, "y": y}

    def _make_eval_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        n = self.val_size if split == "val" else self.test_size
        return self._generate(np.random.default_rng([self.eval_seed, _SPLIT_STREAM[split]]), n)


# --------------------------------------------------------------------------------------
# The tasks.
# --------------------------------------------------------------------------------------


class AddingTask(_GeneratedTask):
    """The adding problem; MSE, monitored by val/mse (min).

    Metrics: loss = mse; baseline_mse = MSE of always predicting 1 on the same examples
    (about 1/6); acc = fraction of examples with |prediction - target| < 0.04 (Hochreiter &
    Schmidhuber's 1997 success criterion); solved = 1.0 when mse < `solved_mse` (default
    0.01, about 6 % of the baseline).
    """

    monitor = "val/mse"
    monitor_mode = "min"
    in_features = 2
    out_features = 1
    readout = "last"
    tolerance = 0.04

    def __init__(self, *, seq_len: int = 100, solved_mse: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.seq_len = int(seq_len)
        self.solved_mse = float(solved_mse)

    def _generate(self, rng, n):
        return adding_problem(rng, n, self.seq_len)

    def _forward_loss(self, out, y):
        mse = jnp.mean((out[:, 0] - y) ** 2)
        return mse, {"mse": mse}

    def _eval_sums(self, out, y, w):
        err = out[:, 0] - y
        return {
            "se": jnp.sum(w * err**2),
            "base_se": jnp.sum(w * (y - 1.0) ** 2),
            "hit": jnp.sum(w * (jnp.abs(err) < self.tolerance)),
        }

    def _finish_eval(self, sums, n):
        mse = sums["se"] / n
        return {
            "loss": mse,
            "mse": mse,
            "baseline_mse": sums["base_se"] / n,
            "acc": sums["hit"] / n,
            "solved": float(mse < self.solved_mse),
        }


class _RecallTask(_GeneratedTask):
    """Token tasks scored per step: one-hot inputs, a head at every step, recall accuracy
    on the positions that hold the remembered tokens (the last `_num_recalled` steps)."""

    readout = "all"
    solved_threshold = 0.99
    _num_recalled: int

    def __init__(self, *, seq_len: int, num_categories: int, **kwargs):
        super().__init__(**kwargs)
        self.seq_len = int(seq_len)
        self.num_categories = int(num_categories)
        self.in_features = self.num_categories + 2  # blank, C data, delimiter/marker
        self.out_features = self.num_categories + 1  # blank, C data

    def _inputs(self, x):
        return one_hot(x, self.in_features)

    def _recall(self, out, y):
        """Logits and targets of the recalled tokens, (B, K, classes) and (B, K)."""
        k = self._num_recalled
        return out[:, -k:], y[:, -k:]

    def _sequence_ce(self, out, y) -> jax.Array:
        """Per-sequence mean cross-entropy over the scored positions, (B,)."""
        raise NotImplementedError

    def _forward_loss(self, out, y):
        logits, target = self._recall(out, y)
        acc = jnp.mean(jnp.argmax(logits, -1) == target)
        return jnp.mean(self._sequence_ce(out, y)), {"acc": acc}

    def _eval_sums(self, out, y, w):
        logits, target = self._recall(out, y)
        ok = jnp.argmax(logits, -1) == target
        return {
            "ce": jnp.sum(w * self._sequence_ce(out, y)),
            "hit": jnp.sum(w * ok.mean(axis=1)),
            "seq": jnp.sum(w * ok.all(axis=1)),
        }

    def _finish_eval(self, sums, n):
        acc = sums["hit"] / n
        return {
            "loss": sums["ce"] / n,
            "baseline_loss": self.baseline_loss,
            "acc": acc,
            "seq_acc": sums["seq"] / n,
            "solved": float(acc >= self.solved_threshold),
        }


class CopyTask(_RecallTask):
    """Copy memory (Arjovsky et al. 2016); per-step cross-entropy, monitored by val/loss.

    Metrics: loss = mean CE over all T + 20 outputs; baseline_loss = 10 ln 8 / (T + 20)
    (generally num_symbols ln C / (T + 2 num_symbols)); acc = accuracy on the copied symbols;
    seq_acc = fraction of sequences with every symbol right; solved = 1.0 when acc >= 0.99.
    """

    monitor = "val/loss"
    monitor_mode = "min"

    def __init__(
        self, *, seq_len: int = 100, num_symbols: int = 10, num_categories: int = 8, **kwargs
    ):
        super().__init__(seq_len=seq_len, num_categories=num_categories, **kwargs)
        self.num_symbols = self._num_recalled = int(num_symbols)

    @property
    def baseline_loss(self) -> float:
        k = self.num_symbols
        return k * math.log(self.num_categories) / (self.seq_len + 2 * k)

    def _generate(self, rng, n):
        return copy_memory(rng, n, self.seq_len, self.num_symbols, self.num_categories)

    def _sequence_ce(self, out, y):
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(axis=1)


class VariableCopyTask(CopyTask):
    """Variable copy (Henaff et al. 2016): the copy task with the delimiter at a random time.

    Metrics and baseline as `CopyTask` (CE over all T + 20 outputs; acc on the num_symbols
    steps after each sequence's delimiter).
    """

    def _generate(self, rng, n):
        return variable_copy(rng, n, self.seq_len, self.num_symbols, self.num_categories)

    def _recall(self, out, y):
        # The data symbols are never blank (1..C), so the recalled steps are exactly the
        # nonblank targets: k consecutive steps starting at the first one.
        start = jnp.argmax(y != 0, axis=1)
        steps = start[:, None] + jnp.arange(self.num_symbols)
        logits = jnp.take_along_axis(out, steps[:, :, None], axis=1)
        return logits, jnp.take_along_axis(y, steps, axis=1)


class SelectiveCopyTask(_RecallTask):
    """Selective copy (Gu & Dao 2023); CE on the N output positions, monitored by val/loss.

    Metrics: loss; baseline_loss = ln C (uniform guess over the data tokens); acc (per
    token); seq_acc; solved = 1.0 when acc >= 0.99.
    """

    monitor = "val/loss"
    monitor_mode = "min"

    def __init__(
        self, *, seq_len: int = 100, num_tokens: int = 10, num_categories: int = 8, **kwargs
    ):
        super().__init__(seq_len=seq_len, num_categories=num_categories, **kwargs)
        self.num_tokens = self._num_recalled = int(num_tokens)

    @property
    def baseline_loss(self) -> float:
        return math.log(self.num_categories)

    def _generate(self, rng, n):
        return selective_copy(rng, n, self.seq_len, self.num_tokens, self.num_categories)

    def _recall(self, out, y):
        return out[:, -self.num_tokens :], y  # y holds only the N recalled tokens

    def _sequence_ce(self, out, y):
        logits, target = self._recall(out, y)
        return optax.softmax_cross_entropy_with_integer_labels(logits, target).mean(axis=1)
