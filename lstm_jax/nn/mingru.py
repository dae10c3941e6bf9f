"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): the GRU and LSTM with
their gates and candidate computed from x_t alone, so the recurrence is linear in h,

    minGRU:   z_t = sigmoid(W_z x_t + b_z),   h~_t = g(W_h x_t + b_h),
              h_t = (1 - z_t) h_{t-1} + z_t h~_t
    minLSTM:  f_t = sigmoid(W_f x_t + b_f),   i_t = sigmoid(W_i x_t + b_i),
              f'_t = f_t / (f_t + i_t),       i'_t = i_t / (f_t + i_t),
              h_t = f'_t h_{t-1} + i'_t h~_t

with g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise (the paper's appendix B.3: a positive
candidate, so that h stays positive and the recurrence can run in log space). The output
is h_t. One file for both cells: they differ only in how the coefficients a_t, b_t of
h_t = a_t h_{t-1} + b_t come from the projections (`_coefficients`, `_log_coefficients`);
layout, projection, the two forms, masking and gates are shared (`MinimalRNN`).

`mode` picks the form, the same values and gradients (tests/nn/test_nn_mingru.py):
- "parallel": the paper's log-space form: log a_t, log b_t from softplus and log g, and
  log h_t = logaddexp(log a_t + log h_{t-1}, log b_t) by `lax.associative_scan` over
  (log a, log b) pairs (log2 T sequential levels);
- "sequential": a_t, b_t in linear space, `lstm_jax.nn.scan.linear_recurrence` by `lax.scan`.

What differs from the paper's listings and from the PyPI package `minGRU-pytorch` 0.2.1
(lucidrains; tests/nn/test_nn_cell_parity.py matches it on the same weights):
- The log-space scan combines (log a, log b) pairs in an associative scan instead of the
  listings' cumsum + logcumsumexp (Heinsen's form), which subtracts cumsum(log a) of
  size ~T from log b and adds it back: float32 then loses ~T * 1e-7 of log h. The pairs
  never form that sum.
- h_0 enters outside the logs: h_t = (log-space scan from h = 0) + prod_s a_s * h_0, linear
  in h_0, so an initial state of any sign works and means the same in both forms (it is
  the state carried across truncated-BPTT batches, like every cell's). The package's
  minGRU takes log(h_0) (h_0 > 0 only); its minLSTM takes log g(h_0) in the parallel form
  (it starts from g(h_0)) but h_0 itself in the sequential one.
- The projections have biases (the paper's Linear); the package's have none. The package
  projects h back to the input width when its `expansion_factor` != 1 (`to_out`); here h is
  the output, H wide, as for every cell (a model's head reads it).
- With a `hidden_perturbation` (the diagnostics' dL/dh_t, added to b_t) the parallel mode
  runs the linear-space recurrence by `lax.associative_scan`: a perturbation of any sign
  has no logarithm.

Layer k holds (N directions, width H, reading D_in features) ``w_<p>`` (D_in, N, H) and
``b_<p>`` (N, H) for each projection p (minGRU: update, candidate; minLSTM: forget, input,
candidate), initialised as PyTorch's Linear (uniform in +-1/sqrt(D_in)). The state is h.
Retention: minGRU keeps 1 - z (`Retention("update", "complement")`), minLSTM the
normalised forget gate f' (`Retention("forget")`); the gates returned are z, resp. f', i'.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp

from lstm_jax.nn import scan
from lstm_jax.nn.stack import RecurrentLayer, Retention

MinimalRNNMode = Literal["parallel", "sequential"]
MODES = ("parallel", "sequential")


def g(x: jax.Array) -> jax.Array:
    """The paper's positive candidate activation: x + 0.5 for x >= 0, sigmoid(x) below."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: jax.Array) -> jax.Array:
    """log g(x), with no log of a non-positive number in either branch (relu keeps the
    unused branch finite, so its gradient is not NaN)."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def _combine_logs(earlier, later):
    """The associative map of h -> a h + b in log space (a, b > 0)."""
    log_a1, log_b1 = earlier
    log_a2, log_b2 = later
    return log_a1 + log_a2, jnp.logaddexp(log_a2 + log_b1, log_b2)


def log_space_recurrence(
    log_a: jax.Array, log_b: jax.Array, h0: jax.Array, mask: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """h_t = a_t h_{t-1} + b_t from log a_t, log b_t (T, N, B, H) and h0 (N, B, H), as
    `scan.linear_recurrence` returns it: every h_t (padded steps hold the state at the true
    length) and the final state. A masked step is a = 1, b = 0 (log b = -inf)."""
    m, _ = scan.masks(mask, log_b.ndim)
    if m is not None:
        log_a = jnp.where(m, log_a, 0.0)
        log_b = jnp.where(m, log_b, -jnp.inf)
    log_prod_a, log_h_from_zero = jax.lax.associative_scan(_combine_logs, (log_a, log_b), axis=0)
    hs = jnp.exp(log_h_from_zero) + jnp.exp(log_prod_a) * h0
    return hs, hs[-1]


class MinimalRNN(RecurrentLayer):
    """What minGRU and minLSTM share: per-projection weights, the input projection of all
    steps, and the loop in either form. A subclass names its `PROJECTIONS` and gives the
    recurrence's coefficients in linear and in log space.

    mode: "parallel" (the paper's log-space form, lax.associative_scan) or "sequential"
    (lax.scan); both give the same values and gradients.
    """

    # The pre-activations the cell projects x_t to, in the order of its weight blocks.
    PROJECTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        mode: MinimalRNNMode = "parallel",
        **kwargs: Any,
    ):
        """kwargs: the stacking options every cell takes (num_layers, bidirectional,
        dropout, dtype, param_dtype, rngs; lstm_jax.nn.stack.RecurrentLayer)."""
        if mode not in MODES:
            raise ValueError(
                f"{type(self).__name__} mode={mode!r} is unknown; choose one of {', '.join(MODES)}."
            )
        self.mode = mode
        super().__init__(in_features, hidden_size, **kwargs)

    def _layer_params(self, d_in, key):
        n, h, dt = self.num_directions, self.hidden_size, self.param_dtype
        bound = 1.0 / math.sqrt(d_in)  # torch.nn.Linear's initialisation
        keys = iter(jax.random.split(key, 2 * len(self.PROJECTIONS)))
        params = {}
        for name in self.PROJECTIONS:
            params[f"w_{name}"] = jax.random.uniform(next(keys), (d_in, n, h), dt, -bound, bound)
            params[f"b_{name}"] = jax.random.uniform(next(keys), (n, h), dt, -bound, bound)
        return params

    def _project(self, p, x):
        # Every projection of every step and direction: one matmul outside the loop.
        w = jnp.concatenate([getattr(p, f"w_{name}")[...] for name in self.PROJECTIONS], -1)
        bias = jnp.concatenate([getattr(p, f"b_{name}")[...] for name in self.PROJECTIONS], -1)
        t, b = x.shape[:2]
        xw = scan.input_projection(x, w.reshape(w.shape[0], -1), compute_dtype=self.dtype)
        return (xw + bias.reshape(-1).astype(xw.dtype)).reshape(t, b, self.num_directions, -1)

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        h = self.hidden_size
        pre = {name: xw[..., j * h : (j + 1) * h] for j, name in enumerate(self.PROJECTIONS)}
        (h0,) = carry0
        if self.mode == "parallel" and pert is None:
            hs, h_last = log_space_recurrence(*self._log_coefficients(pre), h0, mask)
        else:
            a, b = self._coefficients(pre)
            method = "associative" if self.mode == "parallel" else "scan"
            hs, h_last = scan.linear_recurrence(
                a, scan.add_perturbation(b, pert), h0, mask, method=method
            )
        valid, _ = scan.masks(mask, 4)
        gates = None
        if return_gates:
            gates = scan.zero_pad(valid, jnp.concatenate(self._gates(pre), axis=-1))
        return scan.zero_pad(valid, hs), (h_last,), gates

    # ---- the cell's coefficients ---------------------------------------------------------

    def _coefficients(self, pre):
        """(a_t, b_t) of h_t = a_t h_{t-1} + b_t from the pre-activations."""
        raise NotImplementedError

    def _log_coefficients(self, pre):
        """(log a_t, log b_t), computed without forming a_t, b_t."""
        raise NotImplementedError

    def _gates(self, pre):
        """The gates named in GATES, in that order."""
        raise NotImplementedError


class MinGRU(MinimalRNN):
    """minGRU: h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t + b_h), z_t = sigmoid(W_z x_t + b_z)."""

    CELL = "mingru"
    GATE_ACTIVATIONS = {"update": "sigmoid"}
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("update", kept="complement")
    PROJECTIONS = ("update", "candidate")

    def _coefficients(self, pre):
        k = pre["update"]
        # 1 - z as sigmoid(-k): exact where z is near 1
        return jax.nn.sigmoid(-k), jax.nn.sigmoid(k) * g(pre["candidate"])

    def _log_coefficients(self, pre):
        k = pre["update"]
        return -jax.nn.softplus(k), -jax.nn.softplus(-k) + log_g(pre["candidate"])

    def _gates(self, pre):
        return (jax.nn.sigmoid(pre["update"]),)


class MinLSTM(MinimalRNN):
    """minLSTM: h_t = f'_t h_{t-1} + i'_t g(W_h x_t + b_h), with f', i' the forget and input
    gates normalised to sum to 1."""

    CELL = "minlstm"
    GATE_ACTIVATIONS = {"forget": "sigmoid", "input": "sigmoid"}  # normalised: f' + i' = 1
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("forget")
    PROJECTIONS = ("forget", "input", "candidate")

    def _coefficients(self, pre):
        forget, input_ = self._gates(pre)
        return forget, input_ * g(pre["candidate"])

    def _log_coefficients(self, pre):
        # log f' = log f - log(f + i) = -softplus(log i - log f), log i - log f = diff
        diff = jax.nn.softplus(-pre["forget"]) - jax.nn.softplus(-pre["input"])
        return -jax.nn.softplus(diff), -jax.nn.softplus(-diff) + log_g(pre["candidate"])

    def _gates(self, pre):
        f, i = jax.nn.sigmoid(pre["forget"]), jax.nn.sigmoid(pre["input"])
        return f / (f + i), i / (f + i)
