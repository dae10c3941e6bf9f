"""The memory-task generators of lstm_jax.data.synthetic: layouts and targets."""

import numpy as np
import pytest

from lstm_jax.data.synthetic import adding_problem, copy_memory, selective_copy, variable_copy


def test_adding_layout_and_target():
    x, y = adding_problem(np.random.default_rng(0), 64, 30)
    assert x.shape == (64, 30, 2) and x.dtype == np.float32
    assert y.shape == (64,) and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert (markers.sum(1) == 2).all() and set(np.unique(markers)) == {0.0, 1.0}
    assert (markers[:, :15].sum(1) == 1).all() and (markers[:, 15:].sum(1) == 1).all()
    np.testing.assert_allclose(y, (values * markers).sum(1), rtol=1e-6)


def test_copy_layout():
    T, k = 7, 10
    x, y = copy_memory(np.random.default_rng(0), 5, T)
    assert x.shape == y.shape == (5, T + 20) and x.dtype == y.dtype == np.int32
    assert ((x[:, :k] >= 1) & (x[:, :k] <= 8)).all()
    assert (x[:, k : k + T - 1] == 0).all()
    assert (x[:, k + T - 1] == 9).all()  # the delimiter
    assert (x[:, k + T :] == 0).all()
    assert (y[:, : T + k] == 0).all()
    np.testing.assert_array_equal(y[:, -k:], x[:, :k])


def test_variable_copy_layout_gap_and_targets():
    T, k, n = 30, 10, 4000
    x, y = variable_copy(np.random.default_rng(0), n, T)
    assert x.shape == y.shape == (n, T + 2 * k) and x.dtype == y.dtype == np.int32
    assert ((x[:, :k] >= 1) & (x[:, :k] <= 8)).all()
    delimiter = np.argmax(x == 9, axis=1)
    assert ((x == 9).sum(1) == 1).all()  # one delimiter per row
    gap = delimiter - k + 1
    # The gap before the delimiter is uniform on [1, T]: every value occurs, none outside.
    assert gap.min() == 1 and gap.max() == T and len(np.unique(gap)) == T
    counts = np.bincount(gap, minlength=T + 1)[1:]
    assert counts.min() > 0.5 * n / T and counts.max() < 1.6 * n / T
    for row_x, row_y, d in zip(x[:50], y[:50], delimiter[:50], strict=False):
        assert (row_x[k:d] == 0).all() and (row_x[d + 1 :] == 0).all()
        np.testing.assert_array_equal(row_y[d + 1 : d + 1 + k], row_x[:k])
        assert (row_y[: d + 1] == 0).all() and (row_y[d + 1 + k :] == 0).all()


def test_variable_copy_with_the_longest_gap_is_the_copy_task():
    x, y = variable_copy(np.random.default_rng(0), 3000, 5)
    full = np.argmax(x == 9, axis=1) == 10 + 5 - 1
    xc, yc = copy_memory(np.random.default_rng(0), int(full.sum()), 5)
    # same layout as copy (symbols differ: different draws)
    np.testing.assert_array_equal(x[full] != 0, xc != 0)
    np.testing.assert_array_equal(y[full] != 0, yc != 0)


def test_variable_copy_with_a_fixed_gap_puts_every_delimiter_there():
    T, k, gap = 30, 10, 7
    x, y = variable_copy(np.random.default_rng(0), 50, T, gap=gap)
    assert (x[:, k + gap - 1] == 9).all() and ((x == 9).sum(1) == 1).all()
    np.testing.assert_array_equal(y[:, k + gap : 2 * k + gap], x[:, :k])
    assert (np.delete(y, np.s_[k + gap : 2 * k + gap], axis=1) == 0).all()
    for bad in (0, T + 1):
        with pytest.raises(ValueError, match=r"gap must be in \[1, seq_len=30\], got"):
            variable_copy(np.random.default_rng(0), 2, T, gap=bad)


def test_selective_copy_layout():
    T, n = 40, 6
    x, y = selective_copy(np.random.default_rng(1), 9, T, n, 8)
    assert x.shape == (9, T + n) and y.shape == (9, n)
    assert (x[:, T:] == 9).all()
    body = x[:, :T]
    assert ((body > 0).sum(1) == n).all()
    for row, target in zip(body, y, strict=False):
        np.testing.assert_array_equal(row[row > 0], target)  # in order of appearance
    assert ((y >= 1) & (y <= 8)).all()
