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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lstm_jax.data.batching import padded_batches
from lstm_jax.data.synthetic import adding_problem, copy_memory, selective_copy, variable_copy
from lstm_jax.metrics.probe import probe_accuracy, probe_r2
from lstm_jax.tasks.base import _SPLIT_STREAM, TRAIN, ArrayTask, Batch, Metrics

# The random streams of the memory diagnostics' two held-out sets (train 0, val 1, test 2).
PROBE_FIT, PROBE_SCORE = 3, 4

# --------------------------------------------------------------------------------------


def one_hot(tokens: np.ndarray | jax.Array, depth: int) -> jax.Array:
    return jax.nn.one_hot(tokens, depth, dtype=jnp.float32)


class MemoryLayout(NamedTuple):
    """Where a memory task's items sit and when they are recalled, per sequence."""

    stored_steps: np.ndarray  # (n, K) int: the steps that hold the items to remember
    recall_step: np.ndarray  # (n,) int: the step whose state must hold them all (the read-out
    # of adding; the delimiter or the last step before the markers of the copy tasks)
    stored: np.ndarray  # (n, K): the items, classes 0..C-1 (int) or values (float)


class _GeneratedTask(ArrayTask):
    """Synthetic data: train batches from (seed, step), eval sets from (eval_seed, split).

    A memory task (one that defines `_memory_layout` and `_recall_loss`) also reports the
    diagnostics that tell storing from reading out (`memory_diagnostics`): on two held-out
    sets of `probe_size` sequences (fixed for the run, so the curves compare over training),
    - `memory/probe_acc` (token items) or `memory/probe_r2` and `memory/probe_r2_sum`
      (values): a linear probe fitted on one set reads the stored items from the top layer's
      output at the recall step of the other (chance: 1 / C, or 0);
    - `memory/recall_dh_t` (T,): ||dL_recall/dh_t|| of the recall's loss ALONE (copy: the
      recalled outputs, not the blank ones), and `memory/recall_grad_ratio`, its RMS at the
      stored items' steps over its RMS at the recall step: how much of the recall's error
      reaches where the items came in. The training loss's ||dL/dh_t|| (grad_norm/dh_t)
      cannot say this for copy, whose blank outputs have a gradient of their own everywhere.
    "Cannot store" is a probe at chance; "stores but does not read out" a probe well above
    chance beside a recall still on the baseline.
    """

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
        probe_size: int = 500,
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
        self.probe_size = int(probe_size)
        self._probe_sets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._hidden_fn: Callable | None = None
        self._recall_grad_fn: Callable | None = None

    def _generate(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def train_batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, TRAIN, int(step)])
        x, y = self._generate(rng, self.batch_size)
        return {"x": x, "y": y}

    def _make_eval_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        n = self.val_size if split == "val" else self.test_size
        return self._generate(np.random.default_rng([self.eval_seed, _SPLIT_STREAM[split]]), n)

    # ---- memory diagnostics (tasks with a memory layout) ------------------------------
    _memory_layout: Callable[[np.ndarray], MemoryLayout] | None = None
    _recall_loss: Callable[[jax.Array, jax.Array], jax.Array]
    _item_classes: int | None = None  # token items: their number of classes; values: None

    def _probe_set(self, stream: int) -> tuple[np.ndarray, np.ndarray]:
        if stream not in self._probe_sets:
            rng = np.random.default_rng([self.eval_seed, stream])
            self._probe_sets[stream] = self._generate(rng, self.probe_size)
        return self._probe_sets[stream]

    def _hidden_at_recall(self, model: nnx.Module, x: np.ndarray, recall: np.ndarray):
        """The core's top-layer output at each sequence's recall step, (n, H * directions)."""
        if self._hidden_fn is None:

            def hidden(model, xb, steps):
                y, _, _ = model.core.run(self._inputs(xb))
                return jnp.take_along_axis(y, steps[:, None, None], axis=1)[:, 0]

            self._hidden_fn = nnx.jit(hidden)
        batches = padded_batches(
            len(x), self.eval_batch_size, lambda idx: {"x": x[idx], "steps": recall[idx]}
        )
        rows = [
            np.asarray(self._hidden_fn(model, b["x"], b["steps"]))[b["weight"] > 0] for b in batches
        ]
        return np.concatenate(rows)

    def _recall_gradient(self, model: nnx.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """||dL_recall/dh_t|| per sequence and step, (n, T): the recall's loss alone,
        differentiated with respect to a perturbation of the top layer's h_t."""
        if self._recall_grad_fn is None:

            def norms(model, xb, yb):
                inputs = self._inputs(xb)
                shape = (*inputs.shape[:2], model.core.output_width)

                def recall_loss(perturbation):
                    out, _ = model(inputs, hidden_perturbation=perturbation)
                    return self._recall_loss(out, jnp.asarray(yb))

                dh = jax.grad(recall_loss)(jnp.zeros(shape, jnp.float32))
                return jnp.sqrt(jnp.sum(jnp.square(dh.astype(jnp.float32)), axis=-1))

            self._recall_grad_fn = nnx.jit(norms)
        return np.asarray(self._recall_grad_fn(model, x, y))

    def memory_diagnostics(self, model: nnx.Module) -> Metrics:
        if self._memory_layout is None:
            return {}
        fit_x, _ = self._probe_set(PROBE_FIT)
        score_x, score_y = self._probe_set(PROBE_SCORE)
        fit, score = self._memory_layout(fit_x), self._memory_layout(score_x)
        fit_h = self._hidden_at_recall(model, fit_x, fit.recall_step)
        score_h = self._hidden_at_recall(model, score_x, score.recall_step)
        out: Metrics = {}
        if self._item_classes is not None:
            out["memory/probe_acc"] = probe_accuracy(
                fit_h, fit.stored, score_h, score.stored, self._item_classes
            )
        else:
            out["memory/probe_r2"] = probe_r2(fit_h, fit.stored, score_h, score.stored)
            out["memory/probe_r2_sum"] = probe_r2(
                fit_h, fit.stored.sum(1, keepdims=True), score_h, score.stored.sum(1, keepdims=True)
            )
        # One batch of the scoring set: the gradient is a ratio, stable over a few hundred.
        n = min(self.eval_batch_size, self.probe_size)
        dh = self._recall_gradient(model, score_x[:n], score_y[:n])
        rows = np.arange(n)
        at_items = np.sqrt(np.mean(dh[rows[:, None], score.stored_steps[:n]] ** 2))
        at_recall = np.sqrt(np.mean(dh[rows, score.recall_step[:n]] ** 2))
        out["memory/recall_dh_t"] = np.sqrt(np.sum(dh**2, axis=0))
        out["memory/recall_grad_ratio"] = float(at_items / max(at_recall, 1e-30))
        return out


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
    metric_names = ("loss", "mse", "baseline_mse", "acc", "solved")
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

    def _memory_layout(self, x):
        # The two marked steps, in order (one in each half); the output reads the last step.
        steps = np.argsort(-x[:, :, 1], axis=1, kind="stable")[:, :2]
        values = np.take_along_axis(x[:, :, 0], steps, axis=1)
        return MemoryLayout(steps, np.full(len(x), self.seq_len - 1), values)

    def _forward_loss(self, out, y):
        mse = jnp.mean((out[:, 0] - y) ** 2)
        return mse, {"mse": mse}

    def _recall_loss(self, out, y):
        return self._forward_loss(out, y)[0]  # the one output is the recall

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
    metric_names = ("loss", "baseline_loss", "acc", "seq_acc", "solved")
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

    def _recall_loss(self, out, y):
        """Mean cross-entropy of the recalled tokens alone."""
        logits, target = self._recall(out, y)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, target))

    @property
    def _item_classes(self) -> int:
        return self.num_categories

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

    def _memory_layout(self, x):
        # Symbols at 0..K-1 (tokens 1..C); the state at the delimiter must hold them all.
        k, n = self.num_symbols, len(x)
        delimiter = np.argmax(x == self.num_categories + 1, axis=1)
        return MemoryLayout(np.tile(np.arange(k), (n, 1)), delimiter, x[:, :k] - 1)

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

    def _memory_layout(self, x):
        # The data tokens' steps in order of appearance; the last step before the markers.
        nonblank_first = np.argsort(x[:, : self.seq_len] == 0, axis=1, kind="stable")
        steps = nonblank_first[:, : self.num_tokens]
        tokens = np.take_along_axis(x, steps, axis=1) - 1
        return MemoryLayout(steps, np.full(len(x), self.seq_len - 1), tokens)

    def _recall(self, out, y):
        return out[:, -self.num_tokens :], y  # y holds only the N recalled tokens

    def _sequence_ce(self, out, y):
        logits, target = self._recall(out, y)
        return optax.softmax_cross_entropy_with_integer_labels(logits, target).mean(axis=1)
