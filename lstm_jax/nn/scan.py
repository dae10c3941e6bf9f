"""Cell-agnostic pieces of a recurrence over time: the masking every kernel applies, the
input projection of all steps (hoisted out of the loop), and the masked linear recurrence
h_t = a_t * h_{t-1} + b_t that diagonal cells (LRU, minGRU, S6, ...) reduce to, by
`lax.scan` or `lax.associative_scan`.

Conventions shared by every cell's kernel (lstm_jax/nn/<cell>.py), time-major:
    x      (T, N, B, F)   one layer's per-step inputs for N directions (N = 1, or 2 for a
                          bidirectional layer whose reverse half was already reversed within
                          each sequence's length, lstm_jax.nn.stack), so both directions run
                          in one loop
    mask   (T, B) float32 1 where t < seq_length[b]; ``None`` means every step is valid
    pert   (T, N, B, H)   added to h_t inside the recurrence (the diagnostics' dL/dh_t);
                          ``None`` means no perturbation
A masked step leaves the state as it was (`freeze`), so the final state is the one at each
sequence's true length, and its output is zero (`zero_pad`). Valid steps form a prefix of
each sequence, which is what lets the kernels shift an output sequence by one step to get
the previous state (`shift`) and read each sequence's last output (`last_valid`).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp

F32 = jnp.float32
Array = jax.Array

# How `linear_recurrence` runs over time: one step after another (T sequential steps, the
# least memory), or as a parallel prefix over the associative map (a1, b1), (a2, b2) ->
# (a2 a1, a2 b1 + b2) (log2 T sequential levels, O(T) more memory; Blelloch 1990).
LinearScanMethod = Literal["scan", "associative"]
LINEAR_SCAN_METHODS = ("scan", "associative")


def matmul_dtype(dtype: Any) -> jnp.dtype:
    """The matmul compute dtype of a layer's `dtype` option (None: float32)."""
    return jnp.dtype(dtype or F32)


def masks(mask: Array | None, ndim: int) -> tuple[Array | None, Array | None]:
    """(T, B) float mask -> bool and float views broadcastable against (T, [N,] B, H)."""
    if mask is None:
        return None, None
    mf = mask.astype(F32)[:, None, :, None] if ndim == 4 else mask.astype(F32)[:, :, None]
    return mf > 0, mf


def freeze(m: Array | None, new: Array, old: Array) -> Array:
    """Carry update: the new value where the step is valid, else the old one unchanged."""
    return new if m is None else jnp.where(m, new, old)


def zero_pad(m: Array | None, v: Array) -> Array:
    """An output of a step: `v` where the step is valid, zero where it is padding."""
    return v if m is None else jnp.where(m, v, jnp.zeros_like(v))


def add_perturbation(h_new: Array, p_t: Array | None) -> Array:
    return h_new if p_t is None else h_new + p_t


def shift(first: Array, seq: Array) -> Array:
    """[first, seq[0], ..., seq[T-2]]: the value before each step, (T, ...)."""
    return jnp.concatenate([first[None].astype(seq.dtype), seq[:-1]], axis=0)


def last_valid(y: Array, y0: Array, mask: Array | None) -> Array:
    """y (T, N, B, H) at each sequence's last valid step (valid steps are a prefix in both
    directions), the output a diagonal cell carries as its state's first part (what
    `hidden_of` and pooling "last" read); the carried y0 (N, B, H) for an empty sequence."""
    if mask is None:
        return y[-1]
    lengths = jnp.sum(mask, axis=0).astype(jnp.int32)  # (B,)
    idx = jnp.maximum(lengths - 1, 0)[None, None, :, None]
    last = jnp.take_along_axis(y, jnp.broadcast_to(idx, (1, *y.shape[1:])), axis=0)[0]
    return jnp.where((lengths > 0)[None, :, None], last, y0)


def contract_time_and_batch(a: Array, b: Array) -> Array:
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


# --------------------------------------------------------------------------------------------
# The input projection of all steps (outside the loop), with its gradients written out:
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
        dw = contract_time_and_batch(x.astype(cdt), dxw.astype(cdt)).astype(w.dtype)
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
    """x (T, B, D) @ w (D, M) -> (T, B, M) float32, matmuls in the compute dtype. A bias is
    not added here: the dense kernels add it inside their loop, where it fuses."""
    return _projection(matmul_dtype(compute_dtype))(x, w)


# --------------------------------------------------------------------------------------------
# The masked linear recurrence.


def _combine(earlier, later):
    """The associative map of h -> a h + b: applying (a1, b1), then (a2, b2)."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def require_scan_method(method: str, key: str = "scan_method") -> None:
    """Refuses, before any work, a `method` not in LINEAR_SCAN_METHODS, naming the choices
    (`key` is the setting as the user writes it)."""
    if method not in LINEAR_SCAN_METHODS:
        raise ValueError(
            f"{key}={method!r} is unknown; choose one of {', '.join(LINEAR_SCAN_METHODS)}."
        )


def linear_recurrence(
    a: Array,
    b: Array,
    h0: Array,
    mask: Array | None = None,
    *,
    method: LinearScanMethod = "scan",
) -> tuple[Array, Array]:
    """h_t = a_t * h_{t-1} + b_t, elementwise, real or complex, for t = 0 .. T-1.

    b (T, [N,] B, H); a broadcastable to b (a time-invariant diagonal such as LRU's lambda
    is (N, 1, H) or (1, N, 1, H)); h0 broadcastable to b's step shape; mask (T, B) as in
    the module docstring. A masked step is a = 1, b = 0: the state stays at its value at
    the sequence's true length. Returns every h_t (T, [N,] B, H), padded steps included
    (holding that frozen state), and the final state. `method` picks `lax.scan` or
    `lax.associative_scan` (LINEAR_SCAN_METHODS); both give the same values and gradients
    (tests/nn/test_nn_scan.py)."""
    require_scan_method(method, "linear scan method")
    dtype = jnp.result_type(a, b, h0)
    a = jnp.broadcast_to(a, b.shape).astype(dtype)
    b = b.astype(dtype)
    h0 = jnp.broadcast_to(h0, b.shape[1:]).astype(dtype)
    m, _ = masks(mask, b.ndim)
    if m is not None:
        a = jnp.where(m, a, jnp.ones_like(a))
        b = jnp.where(m, b, jnp.zeros_like(b))
    if method == "scan":

        def step(h, ab):
            h = ab[0] * h + ab[1]
            return h, h

        h_last, hs = jax.lax.scan(step, h0, (a, b))
        return hs, h_last
    # The initial state enters as the first step's offset: h_0 = a_0 h0 + b_0.
    b = b.at[0].add(a[0] * h0)
    _, hs = jax.lax.associative_scan(_combine, (a, b), axis=0)
    return hs, hs[-1]
