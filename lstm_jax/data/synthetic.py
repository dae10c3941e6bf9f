"""Generators of the synthetic long-dependency memory tasks (pure numpy, from a generator):
the adding problem, copy memory, variable copy and selective copy. The tasks, their models,
losses and baselines are in `lstm_jax.tasks.synthetic`."""

from __future__ import annotations

import numpy as np


def adding_problem(rng: np.random.Generator, n: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Adding problem: x (n, T, 2) float32 [values, markers], y (n,) float32 = marked sum."""
    if seq_len < 2:
        raise ValueError(f"adding problem needs seq_len >= 2, got {seq_len}.")
    half = seq_len // 2
    values = rng.random((n, seq_len), dtype=np.float32)
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, seq_len, size=n)
    markers = np.zeros((n, seq_len), np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = (values[rows, first] + values[rows, second]).astype(np.float32)
    return np.stack([values, markers], axis=-1), y


def copy_memory(
    rng: np.random.Generator, n: int, seq_len: int, num_symbols: int = 10, num_categories: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Copy memory (Arjovsky et al. 2016): tokens x, y (n, T + 2 * num_symbols) int32.

    Input vocabulary: 0 blank, 1..C data, C + 1 delimiter. x = symbols, T - 1 blanks,
    delimiter, num_symbols blanks; y = T + num_symbols blanks, then the symbols.
    """
    if seq_len < 1:
        raise ValueError(f"copy task needs seq_len >= 1, got {seq_len}.")
    k = num_symbols
    length = seq_len + 2 * k
    data = rng.integers(1, num_categories + 1, size=(n, k)).astype(np.int32)
    x = np.zeros((n, length), np.int32)
    x[:, :k] = data
    x[:, k + seq_len - 1] = num_categories + 1
    y = np.zeros((n, length), np.int32)
    y[:, -k:] = data
    return x, y


def variable_copy(
    rng: np.random.Generator,
    n: int,
    seq_len: int,
    num_symbols: int = 10,
    num_categories: int = 8,
    gap: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Variable copy (Henaff et al. 2016): tokens x, y (n, T + 2 * num_symbols) int32.

    Vocabulary as in `copy_memory`. Each row draws a gap g from U[1, T]: x = symbols, g - 1
    blanks, the delimiter, blanks to the end; y = blanks except the num_symbols steps right
    after the delimiter, which hold the symbols. g = T gives `copy_memory`'s layout. A given
    `gap` fixes g for every row: a probe of how far back a trained model recalls.
    """
    if seq_len < 1:
        raise ValueError(f"variable copy needs seq_len >= 1, got {seq_len}.")
    if gap is not None and not 1 <= gap <= seq_len:
        raise ValueError(f"variable copy gap must be in [1, seq_len={seq_len}], got {gap}.")
    k = num_symbols
    length = seq_len + 2 * k
    data = rng.integers(1, num_categories + 1, size=(n, k)).astype(np.int32)
    gap = rng.integers(1, seq_len + 1, size=n) if gap is None else np.full(n, gap)
    rows = np.arange(n)
    x = np.zeros((n, length), np.int32)
    x[:, :k] = data
    delimiter = k + gap - 1
    x[rows, delimiter] = num_categories + 1
    y = np.zeros((n, length), np.int32)
    y[rows[:, None], delimiter[:, None] + 1 + np.arange(k)] = data
    return x, y


def selective_copy(
    rng: np.random.Generator, n: int, seq_len: int, num_tokens: int = 10, num_categories: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Selective copy (Gu & Dao 2023): tokens x (n, T + N) and y (n, N) int32.

    Input vocabulary: 0 blank (noise), 1..C data, C + 1 marker. N data tokens sit at random
    (sorted, distinct) positions among the first T steps; the last N steps are markers, and
    y holds the data tokens in order of appearance.
    """
    if num_tokens > seq_len:
        raise ValueError(f"selective copy needs num_tokens <= seq_len ({num_tokens} > {seq_len}).")
    data = rng.integers(1, num_categories + 1, size=(n, num_tokens)).astype(np.int32)
    # distinct sorted positions per row: argsort of random keys, first N, sorted
    pos = np.sort(np.argsort(rng.random((n, seq_len)), axis=1)[:, :num_tokens], axis=1)
    x = np.zeros((n, seq_len + num_tokens), np.int32)
    np.put_along_axis(x, pos, data, axis=1)
    x[:, seq_len:] = num_categories + 1
    return x, data
