"""The diagnostics step: gradient norms and gate statistics, in a separate jitted function
so that the train step pays nothing for them.

    diag = make_diagnostics_step(task, graphdef)          # once
    out = diag(params, rest, batch, carry)                 # every logger.diagnostics_every steps
    loggers.log(to_host(out), step)

One forward and one backward pass of `task.loss(model, batch, carry, return_gates=True,
hidden_perturbation=p)` with `p = 0` gives both the parameter gradients and dL/dh_t of the
top recurrent layer (the gradient with respect to `p`); every statistic is reduced on
device, so only small arrays come back to the host. Names (docs/DESIGN.md contract 4):

- `grad_norm/global`, `grad_norm/<param path>` (e.g. `grad_norm/core/layer_0/w_hh`), and
  `grad_norm/<prefix>` for each top-level module and each layer (a path part that is a
  number or ends in `_<number>`, e.g. `grad_norm/core/layer_0`);
- `grad_norm/dh_t` (T,): ||dL/dh_t|| over batch and hidden units, padded positions zero;
- `gates/<layer>/<gate>`: histogram {"counts" (n,) int32, "edges" (n+1,), "min", "max" (the
  true extremes)} over [0, 1] for sigmoid gates and [-1, 1] for tanh ones, as each layer
  declares its gates
  (`GATE_ACTIVATIONS`, read with lstm_jax.nn.gate_activations; a gate no layer declares is
  an error, never a guess);
- `gates/<layer>/<gate>_saturation`: fraction of values < 0.05 or > 0.95 (sigmoid), or
  with |v| > 0.95 (tanh);
- for the gate that sets the fraction f of the state kept each step (the layer's `RETAIN`,
  a lstm_jax.nn.Retention: f is the gate itself for the LSTM's `forget` and PyTorch's GRU
  `update`, 1 - gate or |gate| for cells that declare so; the tanh-RNN has none):
  `gates/<layer>/<gate>_mean_per_t` (T,) (the gate's mean; NaN where every sequence is
  padded), the memory time constants tau = -1/ln(f) as a histogram over log-spaced bins
  `gates/<layer>/<gate>_tau`, and `gates/<layer>/<gate>_tau_median`.

Padded positions (t >= seq_lengths[b]; from `aux["seq_lengths"]` when the task reports
the core's lengths there, else `batch["seq_lengths"]`) are left out of every gate statistic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lstm_jax.nn import Retention, gate_activations, retentions

# Bounds of the histogram of each activation.
ACTIVATION_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
SATURATION = 0.95  # sigmoid: v < 1 - SATURATION or v > SATURATION; tanh: |v| > SATURATION

_LAYER_PART = re.compile(r"^(\d+|.*_\d+)$")


def _path_part(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def param_paths(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    """(path parts, leaf) for every array of a parameter pytree (an nnx.State or a dict);
    the trailing `.value` of an nnx Variable is dropped."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = tuple(_path_part(p) for p in path)
        if (
            len(parts) > 1
            and parts[-1] == "value"
            and isinstance(path[-1], jax.tree_util.GetAttrKey)
        ):
            parts = parts[:-1]
        out.append((parts, leaf))
    return out


def grad_norms(grads: Any) -> dict[str, jax.Array]:
    """grad_norm/global, per parameter, per top-level module and per layer."""
    leaves = param_paths(grads)
    sq = {parts: jnp.sum(jnp.square(g.astype(jnp.float32))) for parts, g in leaves}
    out = {"grad_norm/global": optax.global_norm(grads)}
    groups: dict[tuple[str, ...], list[jax.Array]] = {}
    for parts, s in sq.items():
        out["grad_norm/" + "/".join(parts)] = jnp.sqrt(s)
        for i in range(len(parts) - 1):
            if i == 0 or _LAYER_PART.match(parts[i]):
                groups.setdefault(parts[: i + 1], []).append(s)
    for prefix, squares in groups.items():
        out["grad_norm/" + "/".join(prefix)] = jnp.sqrt(sum(squares))
    return out


def valid_mask(lengths: Any, batch: int, time: int) -> jax.Array:
    """(B, T) float32: 1 where t < lengths[b] (all ones without lengths)."""
    if lengths is None:
        return jnp.ones((batch, time), jnp.float32)
    lengths = jnp.asarray(lengths).reshape(batch)
    return (jnp.arange(time)[None, :] < lengths[:, None]).astype(jnp.float32)


def histogram(values: jax.Array, weights: jax.Array, lo: float, hi: float, bins: int) -> dict:
    """On-device histogram of `values` with integer `weights` (0 drops a value) over
    `bins` equal bins of [lo, hi]; values outside fall into the end bins. "min" and "max"
    are the kept values' true extremes (the bins only bound them; +-inf when none is kept)."""
    idx = jnp.floor((values - lo) / (hi - lo) * bins).astype(jnp.int32)
    idx = jnp.clip(idx, 0, bins - 1)
    counts = jnp.bincount(idx.ravel(), weights=weights.ravel(), length=bins)
    kept = weights > 0
    return {
        "counts": counts.astype(jnp.int32),
        "edges": jnp.linspace(lo, hi, bins + 1),
        "min": jnp.min(jnp.where(kept, values, jnp.inf)),
        "max": jnp.max(jnp.where(kept, values, -jnp.inf)),
    }


def _kth_smallest_bits(bits: jax.Array, w: jax.Array, k: jax.Array) -> jax.Array:
    """The k-th smallest (0-based) of non-negative int32 `bits` with weight 1: a radix
    select over 11 + 10 + 10 bits, three counting passes over the data."""
    prefix = jnp.int32(0)
    remaining = k
    for shift, width in ((20, 11), (10, 10), (0, 10)):
        digit = (bits >> shift) & ((1 << width) - 1)
        sel = w if shift == 20 else jnp.where((bits >> (shift + width)) == prefix, w, 0)
        counts = jnp.bincount(digit, weights=sel, length=1 << width)
        cum = jnp.cumsum(counts)
        d = jnp.clip(jnp.searchsorted(cum, remaining, side="right"), 0, (1 << width) - 1)
        remaining = remaining - (cum[d] - counts[d])
        prefix = (prefix << width) | d.astype(jnp.int32)
    return prefix


def lower_upper_median(values: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two middle order statistics s[(n-1)//2], s[n//2] of the non-negative `values`
    with weight 1 (0 drops a value), exactly and without a sort (a radix select on the
    float32 bit patterns, which are ordered like the values). NaN when no value has weight."""
    bits = jax.lax.bitcast_convert_type(values.astype(jnp.float32).ravel(), jnp.int32)
    w = weights.ravel().astype(jnp.int32)
    n = jnp.sum(w)
    lo = _kth_smallest_bits(bits, w, (n - 1) // 2)
    hi = _kth_smallest_bits(bits, w, n // 2)
    out = jax.lax.bitcast_convert_type(jnp.stack([lo, hi]), jnp.float32)
    out = jnp.where(n > 0, out, jnp.nan)
    return out[0], out[1]


def gate_stats(
    gates: dict[str, dict[str, jax.Array]],
    mask: jax.Array,
    *,
    activations: dict[str, str],
    retain: Mapping[str, Retention] | None = None,
    bins: int = 20,
    tau_bins: int = 25,
    tau_range: tuple[float, float] = (0.1, 1e4),
) -> dict[str, Any]:
    """Histograms and saturation of a core's gate dict, and the memory time constants of
    the gates in `retain` (lstm_jax.nn.retentions: gate name -> how it sets the kept
    fraction); `activations` maps each gate name to "sigmoid" or "tanh" (what the cells
    declare)."""
    retain = retain or {}
    out: dict[str, Any] = {}
    for layer, layer_gates in gates.items():
        for name, g in layer_gates.items():
            if activations.get(name) not in ACTIVATION_RANGE:
                raise ValueError(
                    f"gate {name!r} of {layer} has no declared activation (known: "
                    f"{activations}); its cell must list it in GATE_ACTIVATIONS."
                )
            v = g.astype(jnp.float32)
            m = jnp.broadcast_to(mask[:, :, None], v.shape)
            n_valid = jnp.maximum(jnp.sum(m), 1.0)
            key = f"gates/{layer}/{name}"
            lo, hi = ACTIVATION_RANGE[activations[name]]
            if activations[name] == "sigmoid":
                sat = (v < 1.0 - SATURATION) | (v > SATURATION)
            else:
                sat = jnp.abs(v) > SATURATION
            out[key] = histogram(v, m.astype(jnp.int32), lo, hi, bins)
            out[f"{key}_saturation"] = jnp.sum(jnp.where(sat, m, 0.0)) / n_valid
            if name in retain:
                per_t = jnp.sum(m, axis=(0, 2))
                out[f"{key}_mean_per_t"] = jnp.where(
                    per_t > 0, jnp.sum(v * m, axis=(0, 2)) / jnp.maximum(per_t, 1.0), jnp.nan
                )
                tiny = jnp.finfo(jnp.float32).tiny
                kept = retain[name].kept_fraction(v)
                f = jnp.clip(kept, tiny, 1.0 - jnp.finfo(jnp.float32).epsneg)
                log10_tau = -jnp.log10(-jnp.log(f))  # tau = -1 / ln f
                lo_t, hi_t = np.log10(tau_range[0]), np.log10(tau_range[1])
                hist = histogram(log10_tau, m.astype(jnp.int32), lo_t, hi_t, tau_bins)
                out[f"{key}_tau"] = {
                    "counts": hist["counts"],
                    "edges": jnp.logspace(lo_t, hi_t, tau_bins + 1),
                }
                # tau is increasing in f: the middle values of tau are tau(middle values of f).
                f_lo, f_hi = lower_upper_median(f, m)
                out[f"{key}_tau_median"] = -0.5 / jnp.log(f_lo) - 0.5 / jnp.log(f_hi)
    return out


def _top_layer(gates: dict[str, Any]) -> str:
    def index(name: str) -> int:
        digits = re.findall(r"\d+", name)
        return int(digits[-1]) if digits else -1

    return max(gates, key=index)


def make_diagnostics_step(
    task: Any,
    graphdef: Any,
    *,
    bins: int = 20,
    tau_bins: int = 25,
    tau_range: tuple[float, float] = (0.1, 1e4),
) -> Callable[[Any, Any, Any, Any], dict[str, Any]]:
    """A jitted `fn(params, rest, batch, carry) -> {metric name: array or histogram dict}`
    for the model split as `graphdef, params, rest = nnx.split(model, nnx.Param, ...)`."""

    def diagnostics(params, rest, batch, carry):
        # The model is merged outside the differentiated function: NNX lets a module's
        # RNG state (dropout) advance only in the trace that built the module.
        model = nnx.merge(graphdef, params, rest)
        activations, retain = gate_activations(model), retentions(model)

        def loss_fn(model, perturbation):
            return task.loss(
                model, batch, carry, return_gates=True, hidden_perturbation=perturbation
            )

        _, aux_shape = nnx.eval_shape(lambda m: loss_fn(m, None), model)
        gates_shape = aux_shape.get("gates") if isinstance(aux_shape, dict) else None
        if not gates_shape:
            raise ValueError(
                f"{type(task).__name__}.loss(..., return_gates=True) returned no aux['gates']; "
                "the task must forward return_gates and hidden_perturbation to its core."
            )
        top = gates_shape[_top_layer(gates_shape)]
        spec = next(iter(top.values()))
        perturbation = jnp.zeros(spec.shape, spec.dtype)

        (_, aux), (grads, dh) = nnx.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            model, perturbation
        )
        out = grad_norms(grads)
        b, t = spec.shape[:2]
        lengths = aux.get("seq_lengths") if isinstance(aux, dict) else None
        if lengths is None and isinstance(batch, dict):
            lengths = batch.get("seq_lengths")
        mask = valid_mask(lengths, b, t)
        dh = dh.astype(jnp.float32) * mask[:, :, None]
        out["grad_norm/dh_t"] = jnp.sqrt(jnp.sum(jnp.square(dh), axis=(0, 2)))
        out.update(
            gate_stats(
                aux["gates"],
                mask,
                activations=activations,
                retain=retain,
                bins=bins,
                tau_bins=tau_bins,
                tau_range=tau_range,
            )
        )
        return out

    return jax.jit(diagnostics)


def to_host(diag_outputs: dict[str, Any]) -> dict[str, Any]:
    """Device outputs of the diagnostics step as host values for the loggers: scalars as
    floats, profiles as 1-D numpy arrays, histograms as {"counts", "edges"} numpy arrays."""
    host = jax.device_get(diag_outputs)
    out: dict[str, Any] = {}
    for key, value in host.items():
        if isinstance(value, dict):
            out[key] = {k: np.asarray(v) for k, v in value.items()}
        else:
            arr = np.asarray(value)
            out[key] = float(arr) if arr.ndim == 0 else arr
    return out
