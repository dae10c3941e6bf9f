"""The Elman RNN cell with tanh, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b) (PyTorch nn.RNN):
its step, the reference scan, the kernel with the hand-written backward and the layer
`SimpleRNN`. Shapes and masking follow lstm_jax.nn.scan; parameters and the PyTorch
interchange are the dense family's (lstm_jax.nn.dense)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.nn import dense, scan
from lstm_jax.nn.stack import F32

Array = jax.Array


def _rnn_step(xw_t, h, w, cdt):
    a = jnp.tanh(xw_t + dense.matmul(h, w, cdt))
    return a, a


def rnn_scan_reference(
    xw,
    w_hh,
    h0,
    mask=None,
    pert=None,
    *,
    input_bias=None,
    return_gates=False,
    compute_dtype=None,
    unroll=1,
):
    cdt, b, w, mb = dense.reference_operands(xw, w_hh, mask, input_bias, compute_dtype)

    def step(h, inp):
        xw_t, m, p_t = inp
        h_new, act = _rnn_step(xw_t + b, h, w, cdt)
        h_new = scan.add_perturbation(h_new, p_t)
        out = (scan.zero_pad(m, h_new), scan.zero_pad(m, act) if return_gates else None)
        return scan.freeze(m, h_new, h), out

    hT, (y, gates) = jax.lax.scan(step, h0.astype(F32), (xw, mb, pert), unroll=unroll)
    return y, hT, gates


@functools.cache
def _rnn_kernel(return_gates, has_pert, cdt, unroll):
    def fwd(xw, b, w_hh, h0, mask, pert):
        w = w_hh.astype(cdt)
        mb, _ = scan.masks(mask, xw.ndim)

        def step(h, inp):
            xw_t, m, p_t = inp
            a, _ = _rnn_step(xw_t + b, h, w, cdt)
            h_new = scan.add_perturbation(a, p_t)
            gates = scan.zero_pad(m, a) if (return_gates and m is not None) else None
            return scan.freeze(m, h_new, h), (scan.zero_pad(m, h_new), a, gates)

        hT, (y, act, gates) = jax.lax.scan(step, h0.astype(F32), (xw, mb, pert), unroll=unroll)
        if return_gates and mask is None:
            gates = act
        out = (y, hT, gates if return_gates else None)
        return out, (act, y, h0, b, w_hh, mask)

    def bwd(res, cts):
        act, y, h0, b, w_hh, mask = res
        dy, dhT, dgates = cts
        w_t = jnp.swapaxes(w_hh, -1, -2).astype(cdt)
        mf = scan.masks(mask, act.ndim)[1]

        def step(dh, inp):
            dy_t, a, m, dg_t = inp
            dhn = dy_t + dh if m is None else (dy_t + dh) * m
            da = dhn
            if dg_t is not None:
                da = da + (dg_t if m is None else dg_t * m)
            da = da * (1.0 - a * a)
            dh_prev = dense.matmul(da, w_t, cdt)
            if m is not None:
                dh_prev = dh_prev + dh * (1.0 - m)
            return dh_prev, (da, dhn if has_pert else None)

        dh0, (da, dpert) = jax.lax.scan(
            step, dhT.astype(F32), (dy, act, mf, dgates), reverse=True, unroll=unroll
        )
        dw = dense.weight_grad(scan.shift(h0, y), da, cdt, w_hh.dtype)
        return (
            da,
            dense.bias_grad(da, b),
            dw,
            dh0.astype(h0.dtype),
            dense.zeros_or_none(mask),
            dpert,
        )

    return dense.with_backward(fwd, bwd)


def rnn_scan(
    xw: Array,
    w_hh: Array,
    h0: Array,
    mask: Array | None = None,
    pert: Array | None = None,
    *,
    input_bias: Array | None = None,
    return_gates: bool = False,
    compute_dtype: Any = None,
    unroll: int = 1,
) -> tuple[Array, Array, Array | None]:
    """tanh RNN over time with the hand-written backward: xw (T, N, B, H), w_hh (N, H, H),
    h0 (N, B, H). Returns y (T, N, B, H), hT (N, B, H) and h_t as its "gate" or None."""
    k = _rnn_kernel(
        bool(return_gates), pert is not None, scan.matmul_dtype(compute_dtype), int(unroll)
    )
    return dense.call_kernel(k, xw, input_bias, (w_hh, h0), mask, pert)


class SimpleRNN(dense.DenseRecurrent):
    """Elman RNN with tanh, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b) (PyTorch nn.RNN)."""

    CELL = "rnn"
    # the kernel's "gate" is h_t itself, tanh of the pre-activation
    GATE_ACTIVATIONS = {"hidden": "tanh"}
    GATES = tuple(GATE_ACTIVATIONS)

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        fn = rnn_scan if self.scan_impl == "custom" else rnn_scan_reference
        y, h_t, gates = fn(
            xw, p.w_hh[...], carry0[0], mask, pert, **self._scan_kwargs(p, return_gates)
        )
        return y, (h_t,), gates
