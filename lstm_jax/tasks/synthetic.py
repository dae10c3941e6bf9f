"""Synthetic long-dependency memory tasks: adding, copy memory, variable copy, selective copy.

All data is generated on the fly from a seed by `lstm_jax.data.synthetic`: `train_batch(step)`
draws from `np.random.default_rng([seed, 0, step])`, so a batch is a pure function of (seed,
step). The
validation and test sets are fixed arrays drawn once from `[eval_seed, 1]` and
`[eval_seed, 2]`; they do not depend on the training seed, so runs with different seeds are
scored on the same examples.

Models are `lstm_jax.models.SequenceHead` (the `head` node of the task config): the
recurrent core of the `model` config group followed by a linear head, read out either from
the final hidden state of the top layer (`pooling="last"`: forward direction, or both
directions concatenated when bidirectional) or at every time step (`pooling="none"`); each
task fixes its pooling (it follows from where its targets are).

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

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lstm_jax.data.synthetic import adding_problem, copy_memory, selective_copy, variable_copy
from lstm_jax.tasks.base import _SPLIT_STREAM, TRAIN, ArrayTask, Batch

# --------------------------------------------------------------------------------------


def one_hot(tokens: np.ndarray | jax.Array, depth: int) -> jax.Array:
    return jax.nn.one_hot(tokens, depth, dtype=jnp.float32)


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
        head: Callable[..., nnx.Module] | None = None,
    ):
        super().__init__(
            batch_size=batch_size,
            seed=seed,
            data_dir=data_dir,
            eval_batch_size=eval_batch_size,
            head=head,
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
    pooling = "last"
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

    pooling = "none"
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
