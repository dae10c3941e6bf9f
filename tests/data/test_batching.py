"""The shared batching: the epoch sampler (pure in (seed, step), every example once an
epoch, the same batches as each task's own sampler before it was shared), zero-padding, and
the padded evaluation loop (padding never counts; equal to an unpadded computation)."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_jax.data.batching import (
    EpochSampler,
    epoch_batches,
    pad_sequences,
    padded_batches,
    padded_indices,
    sum_batches,
)


def test_pad_sequences():
    feats = [np.ones((n, 3), np.float32) * (i + 1) for i, n in enumerate((5, 17, 9))]
    x, lengths = pad_sequences(feats, pad_multiple=8)
    assert x.shape == (3, 24, 3) and lengths.tolist() == [5, 17, 9]
    assert np.all(x[0, 5:] == 0) and np.all(x[1, :17] == 2)


def test_epoch_batches_cover_once_and_bucket_by_length():
    rng_len = np.random.default_rng(1)
    lengths = rng_len.integers(10, 200, size=400)
    plain = epoch_batches(400, 16, np.random.default_rng(0), lengths=lengths)
    bucketed = epoch_batches(400, 16, np.random.default_rng(0), lengths=lengths, bucket_batches=5)
    again = epoch_batches(400, 16, np.random.default_rng(0), lengths=lengths, bucket_batches=5)
    for batches in (plain, bucketed):
        idx = np.concatenate(batches)
        assert len(batches) == 25 and len(np.unique(idx)) == 400
    assert all(np.array_equal(a, b) for a, b in zip(bucketed, again, strict=True))

    def padding(batches):
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batches)

    assert padding(bucketed) < 0.3 * padding(plain)


@pytest.mark.parametrize("bucket", [0, 3])
def test_sampler_is_pure_in_seed_and_step(bucket):
    lengths = np.random.default_rng(2).integers(1, 50, size=103)
    kw = {"stream": (0,), "lengths": lengths, "bucket_batches": bucket}
    a, b = EpochSampler(103, 10, seed=7, **kw), EpochSampler(103, 10, seed=7, **kw)
    steps = [0, 1, 25, 3, 9, 10, 0, 31]  # out of order, across epochs, repeated
    for step in steps:  # a fresh sampler (a resumed run) gives the same indices
        np.testing.assert_array_equal(a.indices(step), b.indices(step))
    fresh = EpochSampler(103, 10, seed=7, **kw)
    np.testing.assert_array_equal(fresh.indices(31), a.indices(31))
    other = EpochSampler(103, 10, seed=8, **kw)
    assert not np.array_equal(other.indices(0), a.indices(0))


def test_sampler_visits_each_example_once_per_epoch():
    s = EpochSampler(95, 10, seed=0)
    assert s.steps_per_epoch == 9  # the remainder (5) is dropped
    for epoch in range(3):
        idx = np.concatenate([s.indices(epoch * 9 + k) for k in range(9)])
        assert len(idx) == 90 and len(np.unique(idx)) == 90 and idx.max() < 95
    assert not np.array_equal(s.indices(0), s.indices(9))  # a new order each epoch


def test_sampler_batches_equal_each_tasks_former_sampler():
    """The formulas of images.py, timeseries.py and speech.py before the sampler was
    shared (base 6911054), replayed here: the training batches are bit-identical."""
    n, bs, seed = 57, 8, 3
    images = EpochSampler(n, bs, seed, stream=(0,))
    series = EpochSampler(n, bs, seed)
    for step in range(20):
        epoch, k = divmod(step, n // bs)
        perm = np.random.default_rng([seed, 0, epoch]).permutation(n)
        np.testing.assert_array_equal(images.indices(step), perm[k * bs : (k + 1) * bs])
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        np.testing.assert_array_equal(series.indices(step), perm[k * bs : (k + 1) * bs])
    short = EpochSampler(5, bs, seed, repeat_short=True)  # fewer windows than a batch
    for step in range(3):
        perm = np.random.default_rng([seed, step]).permutation(5)
        np.testing.assert_array_equal(short.indices(step), np.resize(perm, bs))
    lengths = np.random.default_rng(0).integers(5, 90, size=n)
    speech = EpochSampler(n, bs, seed, stream=(0,), lengths=lengths, bucket_batches=2)
    for step in range(14):
        epoch, k = divmod(step, n // bs)
        rng = np.random.default_rng([seed, 0, epoch])
        perm = rng.permutation(n)[: (n // bs) * bs]
        batches = []
        for start in range(0, len(perm), 2 * bs):
            part = perm[start : start + 2 * bs]
            part = part[np.argsort(lengths[part], kind="stable")]
            batches += [part[i : i + bs] for i in range(0, len(part), bs)]
        order = rng.permutation(len(batches))
        np.testing.assert_array_equal(speech.indices(step), batches[order[k]])
    with pytest.raises(ValueError, match="exceeds"):
        EpochSampler(5, bs, seed)


def test_padded_indices_weights_exclude_padding():
    chunks = list(padded_indices(11, 4, order=np.arange(11)[::-1]))
    assert [len(i) for i, _ in chunks] == [4, 4, 4]
    idx, weight = chunks[-1]
    assert idx.tolist() == [2, 1, 0, 0] and weight.tolist() == [1, 1, 1, 0]
    real = np.concatenate([i[w > 0] for i, w in chunks])
    assert sorted(real.tolist()) == list(range(11))
    assert [len(i) for i, _ in padded_indices(3, 10)] == [3]  # capped at the split


def test_sum_batches_equals_an_unpadded_computation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 3)).astype(np.float32)
    batches = padded_batches(23, 5, lambda idx: {"x": x[idx]})

    def sums(batch):
        per = (batch["x"] ** 2).sum(axis=1)  # per example, (B,)
        return {"per": per, "scalar": float(np.sum(batch["weight"] * per)), "n": batch["weight"]}

    totals = sum_batches(batches, sums)
    want = float(np.sum((x.astype(np.float64) ** 2).sum(axis=1)))
    assert totals["n"] == 23
    np.testing.assert_allclose(totals["per"], want, rtol=1e-6)
    np.testing.assert_allclose(totals["scalar"], want, rtol=1e-6)
    # the padding (copies of the last real example) carries weight 0 and never counts
    last = next(b for i, b in enumerate(padded_batches(23, 5, lambda idx: {"x": x[idx]})) if i == 4)
    assert last["weight"].tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="expected"):
        sum_batches(padded_batches(23, 5, lambda idx: {"x": x[idx]}), lambda b: {"x": b["x"]})
