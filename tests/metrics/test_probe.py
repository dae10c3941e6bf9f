"""The linear probe of the memory diagnostics against cases whose answer is known."""

from __future__ import annotations

import numpy as np

from lstm_jax.metrics.probe import probe_accuracy, probe_r2


def features_of(items: np.ndarray, rng, noise_dims: int = 20) -> np.ndarray:
    """Features that hold the items linearly (one-hot codes or values, mixed by a random
    rotation) beside dims of noise."""
    codes = items.reshape(len(items), -1)
    mixed = np.concatenate([codes, rng.standard_normal((len(items), noise_dims))], axis=1)
    rotation = np.linalg.qr(rng.standard_normal((mixed.shape[1], mixed.shape[1])))[0]
    return mixed @ rotation


def test_a_probe_reads_items_that_the_features_hold_and_only_those():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 8, size=(2000, 3))
    one_hot = np.eye(8)[classes]
    held = features_of(one_hot, rng)
    acc = probe_accuracy(held[:1000], classes[:1000], held[1000:], classes[1000:], 8)
    assert acc == 1.0
    # Features independent of the items: chance (1/8), from held-out data, not the fit set.
    unrelated = rng.standard_normal((2000, 40))
    acc = probe_accuracy(unrelated[:1000], classes[:1000], unrelated[1000:], classes[1000:], 8)
    assert abs(acc - 1 / 8) < 0.04


def test_r2_is_one_for_stored_values_zero_for_unrelated_and_averages_columns():
    rng = np.random.default_rng(1)
    values = rng.random((2000, 2))
    held = features_of(values, rng)
    assert probe_r2(held[:1000], values[:1000], held[1000:], values[1000:]) > 0.999
    unrelated = rng.standard_normal((2000, 30))
    assert abs(probe_r2(unrelated[:1000], values[:1000], unrelated[1000:], values[1000:])) < 0.05
    # One column stored, one not: the mean of 1 and 0.
    half = features_of(values[:, :1], rng)
    r2 = probe_r2(half[:1000], values[:1000], half[1000:], values[1000:])
    assert abs(r2 - 0.5) < 0.03
