"""CTC loss against a brute-force sum over alignments, greedy decoding, edit distance and
error rate (lstm_jax.metrics.ctc), each against hand-computed values."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.metrics import ctc


def brute_force_ctc_nll(log_probs: np.ndarray, label: list[int], blank: int = 0) -> float:
    """-log sum over all frame paths that collapse to `label`."""
    t, k = log_probs.shape
    total = -np.inf
    for path in itertools.product(range(k), repeat=t):
        if ctc.ctc_greedy_decode(np.array(path), blank=blank) == label:
            total = np.logaddexp(total, sum(log_probs[s, p] for s, p in enumerate(path)))
    return -float(total)


def test_ctc_loss_matches_brute_force_on_hand_made_cases():
    rng = np.random.default_rng(0)
    cases = [([1], 3), ([1, 2], 4), ([2, 2], 4), ([1, 2, 1], 5)]
    k = 3
    logits = rng.normal(size=(len(cases), 5, k)).astype(np.float32)
    seq_lengths = np.array([t for _, t in cases], np.int32)
    labels = np.zeros((len(cases), 3), np.int32)
    label_lengths = np.array([len(lab) for lab, _ in cases], np.int32)
    for i, (lab, _) in enumerate(cases):
        labels[i, : len(lab)] = lab
    logits[0, 3:] = 99.0  # padding frames must not matter
    got = np.asarray(
        ctc.ctc_loss(jnp.asarray(logits), seq_lengths, jnp.asarray(labels), label_lengths)
    )
    for i, (lab, t) in enumerate(cases):
        log_probs = np.asarray(jax.nn.log_softmax(logits[i, :t], -1))
        np.testing.assert_allclose(got[i], brute_force_ctc_nll(log_probs, lab), rtol=1e-4)


def test_ctc_loss_of_a_confident_correct_path_is_near_zero():
    path = [0, 3, 3, 0, 3, 1, 0]  # decodes to [3, 3, 1]
    logits = np.full((1, 7, 4), -20.0, np.float32)
    logits[0, np.arange(7), path] = 20.0
    loss = ctc.ctc_loss(jnp.asarray(logits), np.array([7]), jnp.asarray([[3, 3, 1]]), np.array([3]))
    assert float(loss[0]) < 1e-3
    wrong = ctc.ctc_loss(
        jnp.asarray(logits), np.array([7]), jnp.asarray([[3, 1, 0]]), np.array([2])
    )
    assert float(wrong[0]) > 10


def test_greedy_decoding():
    assert ctc.ctc_greedy_decode(np.array([0, 1, 1, 0, 1, 2, 2, 0])) == [1, 1, 2]
    assert ctc.ctc_greedy_decode(np.array([3, 3, 3])) == [3]
    assert ctc.ctc_greedy_decode(np.array([0, 0])) == []
    assert ctc.ctc_greedy_decode(np.array([1, 0, 2, 9, 9]), length=3) == [1, 2]


def test_edit_distance_and_error_rate():
    assert ctc.edit_distance([], []) == 0
    assert ctc.edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert ctc.edit_distance([1, 2, 3], [1, 3]) == 1  # deletion
    assert ctc.edit_distance([1, 3], [1, 2, 3]) == 1  # insertion
    assert ctc.edit_distance([1, 2, 3], [1, 4, 3]) == 1  # substitution
    assert ctc.edit_distance("kitten", "sitting") == 3
    assert ctc.edit_distance([], [5, 5]) == 2
    assert ctc.error_rate([[1, 2], [3, 4, 5]], [[1, 2], [3, 5]]) == pytest.approx(1 / 5)
