"""What a logged value is, and its compact form for metrics.jsonl.

The trainer logs flat dicts `{name: value}`. A value is one of:

- a scalar (Python number, 0-d numpy / JAX array) -> a float;
- a profile, a 1-D array such as `grad_norm/dh_t` (T,) -> a short list in metrics.jsonl,
  a histogram over t plus a line plot in W&B, a histogram over t in TensorBoard;
- a histogram computed elsewhere (on device by the diagnostics): a dict
  `{"counts": (n,), "edges": (n+1,)}`, optionally with the values' true `"min"` and
  `"max"` -> a summary dict in metrics.jsonl, a `wandb.Histogram` in W&B, a histogram in
  TensorBoard;
- an image: an (H, W[, C]) uint8 array or a matplotlib figure -> a PNG under
  `media/` in the run dir (its path in metrics.jsonl), a `wandb.Image` in W&B;
- raw samples, any other array of 2+ dims -> summary stats / `wandb.Histogram(values)`;
- a string, bool or None, passed through.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCALAR = "scalar"
PROFILE = "profile"
HISTOGRAM = "histogram"
IMAGE = "image"
SAMPLES = "samples"
OTHER = "other"

PERCENTILES = (0.05, 0.5, 0.95)


def is_histogram(value: Any) -> bool:
    return isinstance(value, dict) and "counts" in value and "edges" in value


def is_figure(value: Any) -> bool:
    return hasattr(value, "savefig") and hasattr(value, "canvas")


def kind_of(value: Any) -> str:
    """The kind of a logged value (one of the module constants)."""
    if value is None or isinstance(value, (str, bytes)):
        return OTHER
    if isinstance(value, bool):
        return OTHER
    if is_histogram(value):
        return HISTOGRAM
    if is_figure(value):
        return IMAGE
    if isinstance(value, (int, float, np.number)):
        return SCALAR
    if (hasattr(value, "shape") and hasattr(value, "dtype")) or isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except Exception:  # noqa: BLE001 - not array-like after all
            return OTHER
        if arr.dtype == object:
            return OTHER
        if arr.ndim == 0:
            return SCALAR
        if arr.ndim == 1:
            return PROFILE
        if arr.dtype == np.uint8 and (
            arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4))
        ):
            return IMAGE
        return SAMPLES
    return OTHER


def to_float(value: Any) -> float | None:
    """A finite float, or None for NaN/inf (strict JSON has neither)."""
    x = float(np.asarray(value))
    return x if math.isfinite(x) else None


def downsample(profile: Any, max_points: int = 32) -> np.ndarray:
    """At most `max_points` evenly spaced entries of a 1-D profile, first and last kept."""
    x = np.asarray(profile).ravel()
    if x.size <= max_points:
        return x
    idx = np.unique(np.round(np.linspace(0, x.size - 1, max_points)).astype(np.int64))
    return x[idx]


def block_mean(profile: Any, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D profile averaged over at most `max_points` contiguous blocks of t.

    Returns (values (n,), edges (n+1,)) with edges the block boundaries in t, so the
    profile can be drawn as a histogram over time steps.
    """
    x = np.asarray(profile, dtype=np.float64).ravel()
    x = np.where(np.isfinite(x), x, 0.0)
    if x.size <= max_points:
        return x, np.arange(x.size + 1, dtype=np.float64)
    chunks = np.array_split(np.arange(x.size), max_points)
    values = np.array([x[c].mean() for c in chunks])
    edges = np.array([c[0] for c in chunks] + [x.size], dtype=np.float64)
    return values, edges


def histogram_summary(
    counts: Any, edges: Any, *, lowest: Any = None, highest: Any = None
) -> dict[str, float | None]:
    """mean, std, min, max and percentiles of a binned distribution (values are placed
    uniformly inside each bin). min/max are `lowest`/`highest`, the true extremes where the
    histogram's maker knew them, else the outer edges of the occupied bins."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    edges = np.asarray(edges, dtype=np.float64).ravel()
    if edges.size != counts.size + 1:
        raise ValueError(
            f"histogram with {counts.size} counts needs {counts.size + 1} edges, got {edges.size}"
        )
    n = counts.sum()
    out: dict[str, float | None] = {"n": float(n)}
    if n <= 0:
        return out | {k: None for k in ("mean", "std", "min", "max", "p05", "p50", "p95")}
    centers = 0.5 * (edges[:-1] + edges[1:])
    mean = float((counts * centers).sum() / n)
    std = float(np.sqrt(max((counts * (centers - mean) ** 2).sum() / n, 0.0)))
    occupied = np.nonzero(counts)[0]
    out.update(
        mean=mean,
        std=std,
        min=float(edges[occupied[0]]) if lowest is None else to_float(lowest),
        max=float(edges[occupied[-1] + 1]) if highest is None else to_float(highest),
    )
    cum = np.cumsum(counts)
    for q in PERCENTILES:
        target = q * n
        i = int(min(np.searchsorted(cum, target, side="left"), counts.size - 1))
        before = cum[i] - counts[i]
        frac = (target - before) / counts[i] if counts[i] > 0 else 0.0
        out[f"p{round(q * 100):02d}"] = float(edges[i] + frac * (edges[i + 1] - edges[i]))
    return out


def samples_summary(values: Any) -> dict[str, float | None]:
    """The same summary as `histogram_summary`, exact, for raw samples."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"n": 0.0} | {k: None for k in ("mean", "std", "min", "max", "p05", "p50", "p95")}
    p05, p50, p95 = np.quantile(x, PERCENTILES)
    return {
        "n": float(x.size),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
        "p05": float(p05),
        "p50": float(p50),
        "p95": float(p95),
    }


def clean_json(value: Any) -> Any:
    """Plain JSON: floats finite or None, numpy scalars/arrays as Python numbers/lists."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray) or (hasattr(value, "__array__") and hasattr(value, "shape")):
        return clean_json(np.asarray(value).tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return to_float(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)
