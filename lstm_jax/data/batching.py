"""Batching shared by every task: the epoch sampler of training batches, zero-padding of
variable-length sequences, and the padded evaluation loop.

Training (`EpochSampler`): an epoch is a permutation of the n training examples drawn from
`np.random.default_rng([seed, *stream, epoch])`; step k of the run is batch k mod
steps_per_epoch of epoch k // steps_per_epoch, cut in order from that permutation (the
remainder of an epoch is dropped). The indices of a step are a pure function of (seed, step),
so a run resumed at step k replays exactly the batches an uninterrupted run would have seen.
`stream` keeps the random streams of tasks apart (and each task's batches what they were
before the sampler was shared). With `bucket_batches = b > 0` (speech), the epoch's
permutation is cut into chunks of b batches, each chunk sorted by length and cut into
batches, and the batches shuffled with the same generator: little padding, every example
still once an epoch.

Evaluation (`padded_batches`, `sum_batches`): a split of n examples is read in fixed-size
batches (one compiled shape), the last one padded with copies of its last real example;
`weight` (B,) is 1 at real examples and 0 at the padding. A task supplies the per-batch sums
(`batch_sums(batch)`) and turns the totals into metrics; the loop never sees a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

Batch = dict[str, np.ndarray]


def epoch_batches(
    n: int,
    batch_size: int,
    rng: np.random.Generator,
    *,
    lengths: np.ndarray | None = None,
    bucket_batches: int = 0,
    repeat_short: bool = False,
) -> list[np.ndarray]:
    """The batches (index arrays of `batch_size`) of one epoch over n examples.

    bucket_batches=0: a plain shuffle cut in order. bucket_batches=k > 0: chunks of
    k * batch_size shuffled indices, each sorted by `lengths`, cut into batches, and the
    batches shuffled. n < batch_size: an error, or with `repeat_short` one batch that repeats
    the permutation (`np.resize`).
    """
    if n < batch_size:
        if not repeat_short:
            raise ValueError(f"batch_size={batch_size} exceeds the {n} training examples.")
        return [np.resize(rng.permutation(n), batch_size)]
    perm = rng.permutation(n)
    num = n // batch_size
    perm = perm[: num * batch_size]
    if bucket_batches <= 0:
        return [perm[i * batch_size : (i + 1) * batch_size] for i in range(num)]
    if lengths is None:
        raise ValueError("bucket_batches > 0 needs the example lengths.")
    chunk = bucket_batches * batch_size
    batches = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class EpochSampler:
    """Indices of the training batch of each step, a pure function of (seed, step).

    See the module docstring; the last epoch's batches are cached, so consecutive steps cost
    one slice."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        *,
        stream: Sequence[int] = (),
        lengths: np.ndarray | None = None,
        bucket_batches: int = 0,
        repeat_short: bool = False,
    ):
        if n < batch_size and not repeat_short:
            raise ValueError(f"batch_size={batch_size} exceeds the {n} training examples.")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.stream = tuple(int(s) for s in stream)
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.bucket_batches = int(bucket_batches)
        self.repeat_short = bool(repeat_short)
        self.steps_per_epoch = max(1, self.n // self.batch_size)
        self._epoch: tuple[int, list[np.ndarray]] | None = None

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """Every batch of `epoch`, in order."""
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, *self.stream, int(epoch)])
            batches = epoch_batches(
                self.n,
                self.batch_size,
                rng,
                lengths=self.lengths,
                bucket_batches=self.bucket_batches,
                repeat_short=self.repeat_short,
            )
            self._epoch = (int(epoch), batches)
        return self._epoch[1]

    def indices(self, step: int) -> np.ndarray:
        """The example indices of the training batch of `step`."""
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        return self.epoch(epoch)[pos]


def pad_sequences(
    seqs: Sequence[np.ndarray], pad_multiple: int = 1, min_len: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pads (T_i, F) arrays to x (B, T, F) float32 and seq_lengths (B,) int32, with T
    the longest length rounded up to a multiple of `pad_multiple` (so that jit sees few
    distinct shapes)."""
    lengths = np.array([f.shape[0] for f in seqs], np.int32)
    t = max(int(lengths.max()), min_len)
    if pad_multiple > 1:
        t = -(-t // pad_multiple) * pad_multiple
    x = np.zeros((len(seqs), t, seqs[0].shape[1]), np.float32)
    for i, f in enumerate(seqs):
        x[i, : f.shape[0]] = f
    return x, lengths


def padded_indices(
    n: int, size: int, order: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(idx (size,), weight (size,) float32) over the n examples in `order` (default
    0..n-1): consecutive chunks of `size`, the last one padded by repeating its last index
    with weight 0. `size` is capped at n (a split smaller than one batch is one batch)."""
    if n < 1:
        raise ValueError("nothing to evaluate: the split is empty.")
    order = np.arange(n) if order is None else np.asarray(order)
    size = min(int(size), n)
    for start in range(0, n, size):
        idx = order[start : start + size]
        weight = np.ones(size, np.float32)
        weight[len(idx) :] = 0.0
        if len(idx) < size:
            idx = np.concatenate([idx, np.full(size - len(idx), idx[-1])])
        yield idx, weight


def padded_batches(
    n: int,
    size: int,
    make_batch: Callable[[np.ndarray], Batch],
    *,
    order: np.ndarray | None = None,
) -> Iterator[Batch]:
    """`make_batch(idx)` of each chunk of `padded_indices`, with its `weight` and `index`
    (the example indices, padding included)."""
    for idx, weight in padded_indices(n, size, order):
        batch = dict(make_batch(idx))
        batch["weight"] = weight
        batch["index"] = idx
        yield batch


def sum_batches(batches: Iterable[Batch], batch_sums: Callable[[Batch], dict]) -> dict[str, float]:
    """Totals of `batch_sums(batch)` over `batches`, accumulated in float64.

    A scalar is taken as the batch's sum already (the task weighted it with
    batch["weight"]); a (B,) array holds per-example values and is summed with
    batch["weight"], so padding never counts."""
    totals: dict[str, float] = {}
    for batch in batches:
        weight = batch.get("weight")
        for k, v in batch_sums(batch).items():
            v = np.asarray(v, np.float64)
            if v.ndim == 1:
                v = np.sum(v if weight is None else v * weight)
            elif v.ndim:
                raise ValueError(f"batch sum {k!r} has shape {v.shape}: expected () or (B,).")
            totals[k] = totals.get(k, 0.0) + float(v)
    return totals
