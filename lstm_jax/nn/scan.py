"""Scan kernels for the recurrent cells: a hand-written backward (``jax.custom_vjp``) and a
plain autodiff reference with the same signature.

Every kernel runs ONE layer over time for N directions at once (N = 1, or 2 for a
bidirectional layer whose reverse half was already reversed within each sequence's length),
so both directions share one ``lax.scan`` and one batched matmul per step.

Shapes (time-major inside the scan; G = number of gate blocks: LSTM 4, GRU 3, RNN 1):
    xw     (T, N, B, G*H)  input projection of all steps (computed by the caller as one
                           large matmul outside the loop)
    input_bias (N, G*H)    keyword; added to each step's projection inside the loop
    w_hh   (N, H, G*H)     recurrent weights, gate blocks side by side
    h0, c0 (N, B, H)       initial state
    mask   (T, B) float32  1 where t < seq_length[b]; ``None`` means every step is valid
    pert   (T, N, B, H)    added to h_t inside the recurrence; ``None`` means no perturbation
Returns y (T, N, B, H) (zero where mask is 0), the final carry (frozen past each length, so it
is the state at the true length), and, with ``return_gates``, the post-activation gates
(T, N, B, G*H), zero where mask is 0.

Why a custom backward: autodiff of ``lax.scan`` computes the W_hh gradient as one small
(H, B) x (B, G*H) matmul per step inside the reverse loop and carries it in the loop state.
Here the reverse loop only propagates (dh, dc) and emits the pre-activation gradients dz_t;
dW_hh for all steps is then one (H, T*B) x (T*B, G*H) matmul, and the input-projection
gradients are left to autodiff of the caller's single projection matmul (also large).

Why one module over 400 lines: each cell's reference scan, custom-VJP kernel and entry point
are checked against each other (tests/nn/test_nn_gradcheck.py) and share the step helpers;
kept together so that a change to one cell's numerics is read beside the others.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

F32 = jnp.float32
Array = jax.Array


def _mm(a, w, cdt):
    """([N,] B, K) x ([N,] K, M) -> ([N,] B, M) in the compute dtype, accumulated in float32."""
    return jnp.matmul(a.astype(cdt), w, preferred_element_type=F32)


def _shift(first, seq):
    """[first, seq[0], ..., seq[T-2]]: the value before each step, (T, ...)."""
    return jnp.concatenate([first[None].astype(seq.dtype), seq[:-1]], axis=0)


def _contract_time_and_batch(a, b):
    """sum over t, b of a[t, b]^T b[t, b]: (T, B, K), (T, B, M) -> (K, M), float32.

    On one device the (T, B) axes are flattened into one and the product is a plain 2-D
    matmul, which XLA-CPU runs on its fast path. With several devices the batch may be split
    over them, and a flattened (T*B) axis would interleave their rows, so XLA would gather
    the whole batch onto every device (each one then computes every row); contracting the
    two axes as they are keeps the split, for a transpose of each operand."""
    if jax.device_count() == 1:
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        contract = (((0,), (0,)), ((), ()))
    else:
        contract = (((0, 1), (0, 1)), ((), ()))
    return jax.lax.dot_general(a, b, contract, preferred_element_type=F32)


def _weight_grad(h_prev, dz, cdt, dtype):
    """sum_t h_{t-1}^T dz_t for all steps as one matmul: (T,[N,]B,H),(T,[N,]B,M) -> ([N,]H,M)."""
    h_prev, dz = h_prev.astype(cdt), dz.astype(cdt)
    if h_prev.ndim == 3:
        return _contract_time_and_batch(h_prev, dz).astype(dtype)
    return jnp.einsum("tnbh,tnbm->nhm", h_prev, dz, preferred_element_type=F32).astype(dtype)


def _masks(mask, ndim):
    """(T, B) float mask -> bool and float views broadcastable against (T, [N,] B, H)."""
    if mask is None:
        return None, None
    mf = mask.astype(F32)[:, None, :, None] if ndim == 4 else mask.astype(F32)[:, :, None]
    return mf > 0, mf


def _freeze(m, new, old):
    """Carry update: the new value where the step is valid, else the old one unchanged."""
    return new if m is None else jnp.where(m, new, old)


def _zero_pad(m, v):
    return v if m is None else jnp.where(m, v, jnp.zeros_like(v))


# --------------------------------------------------------------------------------------------
# Cell equations, shared by the reference scan and the custom forward.


def _gate_activations(z, num_blocks, tanh_block=None):
    """sigmoid on every one of the `num_blocks` H-wide gate blocks of z (..., G*H) but
    `tanh_block`, tanh on that one, as ONE tanh over the whole vector: sigmoid(x) =
    0.5 tanh(x / 2) + 0.5, so act = s * tanh(s * z) + (1 - s) with s = 0.5 (sigmoid block)
    or 1 (tanh block). XLA-CPU runs one vectorised pass for it; four activations on slices
    of z took 4x as long inside the scan (S2: 29 ms vs 7 ms of a 128-step forward,
    experiments/README.md)."""
    block = jnp.arange(z.shape[-1]) // (z.shape[-1] // num_blocks)
    s = jnp.where(block == tanh_block, 1.0, 0.5).astype(z.dtype)
    return s * jnp.tanh(s * z) + (1.0 - s)


def _gate_derivatives(act, num_blocks, tanh_block=None):
    """d act / d z of `_gate_activations`, from its output: a (1 - a) on the sigmoid blocks,
    1 - a^2 = (1 - a)(1 + a) on the tanh block, as ONE pass (1 - a)(a + c) with c = 0 or 1
    per block (both forms keep a (1 - a)'s precision near a = 0 and 1)."""
    block = jnp.arange(act.shape[-1]) // (act.shape[-1] // num_blocks)
    return (1.0 - act) * (act + (block == tanh_block).astype(act.dtype))


def _lstm_step(xw_t, h, c, w, cdt):
    """PyTorch gate order i, f, g, o; returns h_new, c_new and the activated gates (N,B,4H)."""
    hs = h.shape[-1]
    act = _gate_activations(xw_t + _mm(h, w, cdt), 4, tanh_block=2)  # i, f, g, o
    i, f, g, o = (act[..., k * hs : (k + 1) * hs] for k in range(4))
    c_new = f * c + i * g
    h_new = o * jnp.tanh(c_new)
    return h_new, c_new, act


def _gru_step(xw_t, h, w, b_hn, cdt):
    """PyTorch GRU: r, z, n with b_hn inside r * (W_hn h + b_hn); xw_t holds b_ir+b_hr,
    b_iz+b_hz, b_in. Returns h_new, the activated gates (N,B,3H) and W_hn h + b_hn."""
    hs = h.shape[-1]
    hw = _mm(h, w, cdt)
    hw_n = hw[..., 2 * hs :] + b_hn[..., None, :]
    # r and z only: n needs r first
    rz = _gate_activations(xw_t[..., : 2 * hs] + hw[..., : 2 * hs], 2)
    r, z = rz[..., :hs], rz[..., hs:]
    n = jnp.tanh(xw_t[..., 2 * hs :] + r * hw_n)
    h_new = n + z * (h - n)
    return h_new, jnp.concatenate([r, z, n], axis=-1), hw_n


def _rnn_step(xw_t, h, w, cdt):
    a = jnp.tanh(xw_t + _mm(h, w, cdt))
    return a, a


def _bias_operand(input_bias, xw):
    """The scans' bias operand: (N, 1, G*H), zeros when there is no bias. Added to
    each step's projection inside the loop, where it fuses with the gate activations; added
    to the whole (T, N, B, G*H) projection it was one more pass over it (S2's forward: 15 ms,
    experiments/README.md)."""
    n, gh = xw.shape[1], xw.shape[-1]
    b = jnp.zeros((n, gh), F32) if input_bias is None else input_bias.astype(F32)
    return b[:, None, :]


def _bias_grad(d_pre, b):
    """d loss / d bias from the pre-activation gradients (T, [N,] B, G*H) of every step."""
    return jnp.sum(d_pre, axis=(0, d_pre.ndim - 2)).reshape(b.shape)


def _pert_add(h_new, p_t):
    return h_new if p_t is None else h_new + p_t


# --------------------------------------------------------------------------------------------
# Reference scans: plain lax.scan, differentiated by JAX. Simple and obviously correct; the
# tests check the custom backward against them.


def _reference_operands(xw, w_hh, mask, input_bias, compute_dtype):
    """What every reference scan's step reads: the compute dtype, the bias operand, the
    recurrent weights in that dtype and the boolean mask view."""
    cdt = compute_dtype or F32
    mb, _ = _masks(mask, xw.ndim)
    return cdt, _bias_operand(input_bias, xw), w_hh.astype(cdt), mb


def lstm_scan_reference(
    xw,
    w_hh,
    h0,
    c0,
    mask=None,
    pert=None,
    *,
    input_bias=None,
    return_gates=False,
    compute_dtype=None,
    unroll=1,
):
    cdt, b, w, mb = _reference_operands(xw, w_hh, mask, input_bias, compute_dtype)

    def step(carry, inp):
        h, c = carry
        xw_t, m, p_t = inp
        h_new, c_new, act = _lstm_step(xw_t + b, h, c, w, cdt)
        h_new = _pert_add(h_new, p_t)
        out = (_zero_pad(m, h_new), _zero_pad(m, act) if return_gates else None)
        return (_freeze(m, h_new, h), _freeze(m, c_new, c)), out

    (hT, cT), (y, gates) = jax.lax.scan(
        step, (h0.astype(F32), c0.astype(F32)), (xw, mb, pert), unroll=unroll
    )
    return y, hT, cT, gates


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
    cdt, b, w, mb = _reference_operands(xw, w_hh, mask, input_bias, compute_dtype)

    def step(h, inp):
        xw_t, m, p_t = inp
        h_new, act, _ = _gru_step(xw_t + b, h, w, b_hn, cdt)
        h_new = _pert_add(h_new, p_t)
        out = (_zero_pad(m, h_new), _zero_pad(m, act) if return_gates else None)
        return _freeze(m, h_new, h), out

    hT, (y, gates) = jax.lax.scan(step, h0.astype(F32), (xw, mb, pert), unroll=unroll)
    return y, hT, gates


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
    cdt, b, w, mb = _reference_operands(xw, w_hh, mask, input_bias, compute_dtype)

    def step(h, inp):
        xw_t, m, p_t = inp
        h_new, act = _rnn_step(xw_t + b, h, w, cdt)
        h_new = _pert_add(h_new, p_t)
        out = (_zero_pad(m, h_new), _zero_pad(m, act) if return_gates else None)
        return _freeze(m, h_new, h), out

    hT, (y, gates) = jax.lax.scan(step, h0.astype(F32), (xw, mb, pert), unroll=unroll)
    return y, hT, gates


# --------------------------------------------------------------------------------------------
# Custom-VJP kernels. Built per static configuration (gates requested, compute dtype, unroll),
# so that a flag that is off costs nothing: no extra scan outputs, no extra backward inputs.


def _zeros_or_none(x):
    return None if x is None else jnp.zeros_like(x)


def _bwd_masks(mask, ndim):
    return _masks(mask, ndim)[1]


@functools.cache
def _lstm_kernel(return_gates, has_pert, cdt, unroll):
    def fwd(xw, b, w_hh, h0, c0, mask, pert):
        w = w_hh.astype(cdt)
        mb, _ = _masks(mask, xw.ndim)

        def step(carry, inp):
            h, c = carry
            xw_t, m, p_t = inp
            h_new, c_new, act = _lstm_step(xw_t + b, h, c, w, cdt)
            h_new = _pert_add(h_new, p_t)
            gates = _zero_pad(m, act) if (return_gates and m is not None) else None
            # Residuals: the activated gates and the carried c_t. c_t is a fresh value each
            # step (c_{t-1} would be the carry itself, which XLA copied every step); the
            # backward reads c_{t-1} as the sequence shifted by one, and tanh(c_t) directly.
            c_carry = _freeze(m, c_new, c)
            return (_freeze(m, h_new, h), c_carry), (_zero_pad(m, h_new), act, c_carry, gates)

        (hT, cT), (y, act, c_seq, gates) = jax.lax.scan(
            step, (h0.astype(F32), c0.astype(F32)), (xw, mb, pert), unroll=unroll
        )
        if return_gates and mask is None:
            gates = act
        out = (y, hT, cT, gates if return_gates else None)
        return out, (act, c_seq, y, h0, c0, b, w_hh, mask)

    def bwd(res, cts):
        act, c_seq, y, h0, c0, b, w_hh, mask = res
        dy, dhT, dcT, dgates = cts
        hs = h0.shape[-1]
        w_t = jnp.swapaxes(w_hh, -1, -2).astype(cdt)  # (N, 4H, H), transposed once
        mf = _bwd_masks(mask, act.ndim)

        def step(carry, inp):
            dh, dc = carry
            dy_t, a, cp, ct, m, dg_t = inp
            i, f, g, o = (a[..., k * hs : (k + 1) * hs] for k in range(4))
            dhn = dy_t + dh if m is None else (dy_t + dh) * m
            tc = jnp.tanh(ct)
            dcn = dhn * o * (1.0 - tc * tc) + (dc if m is None else dc * m)
            # d loss / d activated gates (i, f, g, o) = (dcn g, dcn c_{t-1}, dcn i, dhn tanh c_t),
            # then through the activations on the whole 4H vector at once. Per-block products
            # and a concatenation of them compiled to five loop kernels per step, each
            # re-reading its gate slices (a bare backward scan at S2: 68 -> 41 ms this way).
            d_act = jnp.concatenate([dcn, dcn, dcn, dhn], axis=-1) * jnp.concatenate(
                [g, cp, i, tc], axis=-1
            )
            if dg_t is not None:
                d_act = d_act + (dg_t if m is None else dg_t * m)
            dz = d_act * _gate_derivatives(a, 4, tanh_block=2)
            dh_prev = _mm(dz, w_t, cdt)
            dc_prev = dcn * f
            if m is not None:
                dh_prev = dh_prev + dh * (1.0 - m)
                dc_prev = dc_prev + dc * (1.0 - m)
            return (dh_prev, dc_prev), (dz, dhn if has_pert else None)

        (dh0, dc0), (dz, dpert) = jax.lax.scan(
            step,
            (dhT.astype(F32), dcT.astype(F32)),
            (dy, act, _shift(c0, c_seq), c_seq, mf, dgates),
            reverse=True,
            unroll=unroll,
        )
        # For every valid step t the carry h_{t-1} equals y_{t-1} (valid steps are a prefix);
        # dz is zero at padded steps, so shifting y gives h_{t-1} wherever it matters.
        dw = _weight_grad(_shift(h0, y), dz, cdt, w_hh.dtype)
        db = _bias_grad(dz, b)
        return (dz, db, dw, dh0.astype(h0.dtype), dc0, _zeros_or_none(mask), dpert)

    @jax.custom_vjp
    def kernel(xw, b, w_hh, h0, c0, mask, pert):
        return fwd(xw, b, w_hh, h0, c0, mask, pert)[0]

    kernel.defvjp(fwd, bwd)
    return kernel


@functools.cache
def _gru_kernel(return_gates, has_pert, cdt, unroll):
    def fwd(xw, b, w_hh, b_hn, h0, mask, pert):
        w = w_hh.astype(cdt)
        mb, _ = _masks(mask, xw.ndim)

        def step(h, inp):
            xw_t, m, p_t = inp
            h_new, act, hw_n = _gru_step(xw_t + b, h, w, b_hn, cdt)
            h_new = _pert_add(h_new, p_t)
            gates = _zero_pad(m, act) if (return_gates and m is not None) else None
            return _freeze(m, h_new, h), (_zero_pad(m, h_new), act, hw_n, gates)

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
        mf = _bwd_masks(mask, act.ndim)
        h_prev = _shift(h0, y)

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
            dh_prev = _mm(dhw, w_t, cdt) + dh_direct
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
        dw = _weight_grad(h_prev, dhw, cdt, w_hh.dtype)
        db_hn = _bias_grad(dhw[..., 2 * hs :], b_hn).astype(b_hn.dtype)
        dxw = jnp.concatenate([dhw[..., : 2 * hs], dn_pre], axis=-1)
        db = _bias_grad(dxw, b)
        return (dxw, db, dw, db_hn, dh0.astype(h0.dtype), _zeros_or_none(mask), dpert)

    @jax.custom_vjp
    def kernel(xw, b, w_hh, b_hn, h0, mask, pert):
        return fwd(xw, b, w_hh, b_hn, h0, mask, pert)[0]

    kernel.defvjp(fwd, bwd)
    return kernel


@functools.cache
def _rnn_kernel(return_gates, has_pert, cdt, unroll):
    def fwd(xw, b, w_hh, h0, mask, pert):
        w = w_hh.astype(cdt)
        mb, _ = _masks(mask, xw.ndim)

        def step(h, inp):
            xw_t, m, p_t = inp
            a, _ = _rnn_step(xw_t + b, h, w, cdt)
            h_new = _pert_add(a, p_t)
            gates = _zero_pad(m, a) if (return_gates and m is not None) else None
            return _freeze(m, h_new, h), (_zero_pad(m, h_new), a, gates)

        hT, (y, act, gates) = jax.lax.scan(step, h0.astype(F32), (xw, mb, pert), unroll=unroll)
        if return_gates and mask is None:
            gates = act
        out = (y, hT, gates if return_gates else None)
        return out, (act, y, h0, b, w_hh, mask)

    def bwd(res, cts):
        act, y, h0, b, w_hh, mask = res
        dy, dhT, dgates = cts
        w_t = jnp.swapaxes(w_hh, -1, -2).astype(cdt)
        mf = _bwd_masks(mask, act.ndim)

        def step(dh, inp):
            dy_t, a, m, dg_t = inp
            dhn = dy_t + dh if m is None else (dy_t + dh) * m
            da = dhn
            if dg_t is not None:
                da = da + (dg_t if m is None else dg_t * m)
            da = da * (1.0 - a * a)
            dh_prev = _mm(da, w_t, cdt)
            if m is not None:
                dh_prev = dh_prev + dh * (1.0 - m)
            return dh_prev, (da, dhn if has_pert else None)

        dh0, (da, dpert) = jax.lax.scan(
            step, dhT.astype(F32), (dy, act, mf, dgates), reverse=True, unroll=unroll
        )
        dw = _weight_grad(_shift(h0, y), da, cdt, w_hh.dtype)
        return (da, _bias_grad(da, b), dw, dh0.astype(h0.dtype), _zeros_or_none(mask), dpert)

    @jax.custom_vjp
    def kernel(xw, b, w_hh, h0, mask, pert):
        return fwd(xw, b, w_hh, h0, mask, pert)[0]

    kernel.defvjp(fwd, bwd)
    return kernel


def _squeeze(*arrays):
    """Drop the size-1 direction axis (axis 1 of (T, N, ...) arrays, axis 0 of the others):
    the one-direction kernels then run plain 2-D matmuls, and XLA-CPU no longer copies the
    (T, 1, B, G*H) input into a canonical layout (measured)."""
    return [None if a is None else a[:, 0] if a.ndim == 4 else a[0] for a in arrays]


def _unsqueeze(outputs):
    return tuple(None if a is None else a[:, None] if a.ndim == 3 else a[None] for a in outputs)


def _cdt(compute_dtype):
    return jnp.dtype(compute_dtype or F32)


def lstm_scan(
    xw: Array,
    w_hh: Array,
    h0: Array,
    c0: Array,
    mask: Array | None = None,
    pert: Array | None = None,
    *,
    input_bias: Array | None = None,
    return_gates: bool = False,
    compute_dtype: Any = None,
    unroll: int = 1,
) -> tuple[Array, Array, Array, Array | None]:
    """LSTM over time with the hand-written backward: xw (T, N, B, 4H), w_hh (N, H, 4H),
    h0 and c0 (N, B, H), mask (T, B). Returns y (T, N, B, H), hT, cT (N, B, H) and the
    gates (T, N, B, 4H) or None (shapes in the module docstring)."""
    k = _lstm_kernel(bool(return_gates), pert is not None, _cdt(compute_dtype), int(unroll))
    b = _bias_operand(input_bias, xw)
    if xw.shape[1] == 1:
        return _unsqueeze(k(*_squeeze(xw, b, w_hh, h0, c0), mask, _squeeze(pert)[0]))
    return k(xw, b, w_hh, h0, c0, mask, pert)


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
    k = _gru_kernel(bool(return_gates), pert is not None, _cdt(compute_dtype), int(unroll))
    b = _bias_operand(input_bias, xw)
    if xw.shape[1] == 1:
        return _unsqueeze(k(*_squeeze(xw, b, w_hh, b_hn, h0), mask, _squeeze(pert)[0]))
    return k(xw, b, w_hh, b_hn, h0, mask, pert)


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
    k = _rnn_kernel(bool(return_gates), pert is not None, _cdt(compute_dtype), int(unroll))
    b = _bias_operand(input_bias, xw)
    if xw.shape[1] == 1:
        return _unsqueeze(k(*_squeeze(xw, b, w_hh, h0), mask, _squeeze(pert)[0]))
    return k(xw, b, w_hh, h0, mask, pert)


# --------------------------------------------------------------------------------------------
# The input projection of all steps (outside the scan), with its gradients written out:
# autodiff of the einsum made XLA-CPU transpose dz into an odd layout and run dW_ih as a
# doubly transposed dot off its fast matmul path.


@functools.cache
def _projection(cdt):
    def fwd(x, w):
        xw = jax.lax.dot_general(
            x.astype(cdt), w.astype(cdt), (((2,), (0,)), ((), ())), preferred_element_type=F32
        )
        return xw, (x, w)

    def bwd(res, dxw):
        x, w = res
        dw = _contract_time_and_batch(x.astype(cdt), dxw.astype(cdt)).astype(w.dtype)
        dx = jax.lax.dot_general(
            dxw.astype(cdt), w.astype(cdt), (((2,), (1,)), ((), ())), preferred_element_type=F32
        )
        return dx.astype(x.dtype), dw

    @jax.custom_vjp
    def project(x, w):
        return fwd(x, w)[0]

    project.defvjp(fwd, bwd)
    return project


def input_projection(x: Array, w: Array, *, compute_dtype: Any = None) -> Array:
    """x (T, B, D) @ w (D, M) -> (T, B, M) float32, matmuls in the compute dtype. The input
    bias is not added here: the scans add it inside their loop (`input_bias=`)."""
    return _projection(_cdt(compute_dtype))(x, w)
