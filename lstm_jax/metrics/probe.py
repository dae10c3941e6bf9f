"""Linear probes: what a hidden state holds, read by a ridge regression fitted on one set of
sequences and scored on another (held out). The memory diagnostics use them to tell a model
that cannot store the items of a memory task from one that stores them and does not read
them out (`lstm_jax.tasks.synthetic`, `memory/probe_acc`, `memory/probe_r2`)."""

from __future__ import annotations

import numpy as np

# Ridge strength relative to the mean feature variance: small enough to leave a probe that
# reads a stored item exactly, large enough to keep the solve well posed when units saturate.
RIDGE = 1e-3


def fit_linear_probe(features: np.ndarray, targets: np.ndarray, ridge: float = RIDGE):
    """Ridge regression `targets ~ features @ w + b`; features (n, d), targets (n, k).
    Returns a function mapping features (m, d) to predictions (m, k)."""
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    xc = x - mean_x
    gram = xc.T @ xc
    strength = ridge * max(np.trace(gram) / max(gram.shape[0], 1), 1e-12)
    w = np.linalg.solve(gram + strength * np.eye(gram.shape[0]), xc.T @ (y - mean_y))
    return lambda f: (np.asarray(f, np.float64) - mean_x) @ w + mean_y


def probe_accuracy(
    fit_features: np.ndarray,
    fit_classes: np.ndarray,
    score_features: np.ndarray,
    score_classes: np.ndarray,
    num_classes: int,
) -> float:
    """Fraction of held-out items whose class a linear probe reads right. Classes (n, K) in
    [0, num_classes): the probe regresses the K one-hot codes and takes each one's argmax."""
    n, k = fit_classes.shape
    one_hot = np.eye(num_classes)[fit_classes].reshape(n, k * num_classes)
    predict = fit_linear_probe(fit_features, one_hot)
    scores = predict(score_features).reshape(len(score_features), k, num_classes)
    return float(np.mean(np.argmax(scores, axis=-1) == score_classes))


def probe_r2(
    fit_features: np.ndarray,
    fit_values: np.ndarray,
    score_features: np.ndarray,
    score_values: np.ndarray,
) -> float:
    """Coefficient of determination of a linear probe on held-out values (n, K), averaged
    over the K columns: 1 reads them exactly, 0 is no better than their mean."""
    predict = fit_linear_probe(fit_features, fit_values)
    residual = np.sum((predict(score_features) - score_values) ** 2, axis=0)
    total = np.sum((score_values - score_values.mean(axis=0)) ** 2, axis=0)
    return float(np.mean(1.0 - residual / np.maximum(total, 1e-12)))
