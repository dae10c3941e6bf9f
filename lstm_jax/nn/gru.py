"""The GRU cell with PyTorch's equations (gate order r, z, n; b_hn inside r * (W_hn h +
b_hn)): its step, the reference scan, the kernel with the hand-written backward and the
layer `GRU`. The update gate z is the fraction of the state kept: h_t = (1 - z) n +
z h_{t-1}. Shapes and masking follow lstm_jax.nn.scan; weights and the PyTorch interchange
are the dense family's (lstm_jax.nn.dense).

Biases: ``b_i`` (N, 3H) = (b_ir + b_hr, b_iz + b_hz, b_in), added to the input projection,
and ``b_hn`` (N, H), which sits inside r * (W_hn h + b_hn); ``to_torch`` writes the summed
biases to bias_ih and b_hn to the n block of bias_hh.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.nn import dense, scan
from lstm_jax.nn.stack import F32, Retention

Array = jax.Array


def _gru_step(xw_t, h, w, b_hn, cdt):
    """PyTorch GRU: r, z, n with b_hn inside r * (W_hn h + b_hn); xw_t holds b_ir+b_hr,
    b_iz+b_hz, b_in. Returns h_new, the activated gates (N,B,3H) and W_hn h + b_hn."""
    hs = h.shape[-1]
    hw = dense.matmul(h, w, cdt)
    hw_n = hw[..., 2 * hs :] + b_hn[..., None, :]
    # r and z only: n needs r first
    rz = dense.gate_activations(xw_t[..., : 2 * hs] + hw[..., : 2 * hs], 2)
    r, z = rz[..., :hs], rz[..., hs:]
    n = jnp.tanh(xw_t[..., 2 * hs :] + r * hw_n)
    h_new = n + z * (h - n)
    return h_new, jnp.concatenate([r, z, n], axis=-1), hw_n


def gru_scan_reference(
    xw,
    w_hh,
    b_hn,
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
        h_new, act, _ = _gru_step(xw_t + b, h, w, b_hn, cdt)
        h_new = scan.add_perturbation(h_new, p_t)
        out = (scan.zero_pad(m, h_new), scan.zero_pad(m, act) if return_gates else None)
        return scan.freeze(m, h_new, h), out

    hT, (y, gates) = jax.lax.scan(step, h0.astype(F32), (xw, mb, pert), unroll=unroll)
    return y, hT, gates


@functools.cache
def _gru_kernel(return_gates, has_pert, cdt, unroll):
    def fwd(xw, b, w_hh, b_hn, h0, mask, pert):
        w = w_hh.astype(cdt)
        mb, _ = scan.masks(mask, xw.ndim)

        def step(h, inp):
            xw_t, m, p_t = inp
            h_new, act, hw_n = _gru_step(xw_t + b, h, w, b_hn, cdt)
            h_new = scan.add_perturbation(h_new, p_t)
            gates = scan.zero_pad(m, act) if (return_gates and m is not None) else None
            return scan.freeze(m, h_new, h), (scan.zero_pad(m, h_new), act, hw_n, gates)

        hT, (y, act, hw_n, gates) = jax.lax.scan(
            step, h0.astype(F32), (xw, mb, pert), unroll=unroll
        )
        if return_gates and mask is None:
            gates = act
        out = (y, hT, gates if return_gates else None)
        return out, (act, hw_n, y, h0, b, w_hh, b_hn, mask)

    def bwd(res, cts):
        act, hw_n, y, h0, b, w_hh, b_hn, mask = res
        dy, dhT, dgates = cts
        hs = h0.shape[-1]
        w_t = jnp.swapaxes(w_hh, -1, -2).astype(cdt)
        mf = scan.masks(mask, act.ndim)[1]
        h_prev = scan.shift(h0, y)

        def step(dh, inp):
            dy_t, a, hwn, hp, m, dg_t = inp
            r, z, n = (a[..., k * hs : (k + 1) * hs] for k in range(3))
            dhn = dy_t + dh if m is None else (dy_t + dh) * m
            dn, dzg, dh_direct = dhn * (1.0 - z), dhn * (hp - n), dhn * z
            dr = None
            if dg_t is not None:
                if m is not None:
                    dg_t = dg_t * m
                dr = dg_t[..., :hs]
                dzg = dzg + dg_t[..., hs : 2 * hs]
                dn = dn + dg_t[..., 2 * hs :]
            dn_pre = dn * (1.0 - n * n)
            dr = dn_pre * hwn if dr is None else dr + dn_pre * hwn
            # (dr r(1-r), dz z(1-z), dn_pre r) as whole-vector products, as in the LSTM
            rzr = jnp.concatenate([a[..., : 2 * hs], r], axis=-1)
            keep = (jnp.arange(3 * hs) < 2 * hs).astype(a.dtype)
            dhw = jnp.concatenate([dr, dzg, dn_pre], axis=-1) * rzr * (1.0 - rzr * keep)
            dh_prev = dense.matmul(dhw, w_t, cdt) + dh_direct
            if m is not None:
                dh_prev = dh_prev + dh * (1.0 - m)
            return dh_prev, (dhw, dn_pre, dhn if has_pert else None)

        dh0, (dhw, dn_pre, dpert) = jax.lax.scan(
            step,
            dhT.astype(F32),
            (dy, act, hw_n, h_prev, mf, dgates),
            reverse=True,
            unroll=unroll,
        )
        dw = dense.weight_grad(h_prev, dhw, cdt, w_hh.dtype)
        db_hn = dense.bias_grad(dhw[..., 2 * hs :], b_hn).astype(b_hn.dtype)
        dxw = jnp.concatenate([dhw[..., : 2 * hs], dn_pre], axis=-1)
        db = dense.bias_grad(dxw, b)
        return (dxw, db, dw, db_hn, dh0.astype(h0.dtype), dense.zeros_or_none(mask), dpert)

    return dense.with_backward(fwd, bwd)


def gru_scan(
    xw: Array,
    w_hh: Array,
    b_hn: Array,
    h0: Array,
    mask: Array | None = None,
    pert: Array | None = None,
    *,
    input_bias: Array | None = None,
    return_gates: bool = False,
    compute_dtype: Any = None,
    unroll: int = 1,
) -> tuple[Array, Array, Array | None]:
    """GRU over time with the hand-written backward: xw (T, N, B, 3H), w_hh (N, H, 3H),
    b_hn (N, H), h0 (N, B, H). Returns y (T, N, B, H), hT (N, B, H) and the gates
    (T, N, B, 3H) or None."""
    k = _gru_kernel(
        bool(return_gates), pert is not None, scan.matmul_dtype(compute_dtype), int(unroll)
    )
    return dense.call_kernel(k, xw, input_bias, (w_hh, b_hn, h0), mask, pert)


class GRU(dense.DenseRecurrent):
    """GRU with PyTorch's equations (gate order r, z, n; b_hn inside r * (W_hn h + b_hn))."""

    CELL = "gru"
    GATE_ACTIVATIONS = {"reset": "sigmoid", "update": "sigmoid", "candidate": "tanh"}
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("update", kept="gate")  # h_t = (1 - z) * n + z * h_{t-1}

    def _init_bias(self, key):
        n, h = self.num_directions, self.hidden_size
        return {
            "b_i": jnp.zeros((n, 3 * h), self.param_dtype),
            "b_hn": jnp.zeros((n, h), self.param_dtype),
        }

    def _input_bias(self, p):
        return p.b_i[...] if self.use_bias else None

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        fn = gru_scan if self.scan_impl == "custom" else gru_scan_reference
        b_hn = (
            p.b_hn[...]
            if self.use_bias
            else jnp.zeros((self.num_directions, self.hidden_size), F32)
        )
        y, h_t, gates = fn(
            xw,
            p.w_hh[...],
            b_hn.astype(F32),
            carry0[0],
            mask,
            pert,
            **self._scan_kwargs(p, return_gates),
        )
        return y, (h_t,), gates

    @staticmethod
    def _bias_from_torch(b_ih, b_hh, hidden):
        b_i = b_ih.copy()
        b_i[: 2 * hidden] += b_hh[: 2 * hidden]
        return {"b_i": b_i, "b_hn": b_hh[2 * hidden :]}

    def _bias_to_torch(self, p, d):
        b_i = np.asarray(p.b_i[...])[d]
        b_hh = np.zeros_like(b_i)
        b_hh[2 * self.hidden_size :] = np.asarray(p.b_hn[...])[d]
        return b_i, b_hh
