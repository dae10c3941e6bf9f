"""The dense cells' hand-written backward (the custom_vjp kernels of lstm_jax/nn/lstm.py,
gru.py and rnn.py) against autodiff of their plain reference scans, at kernel level (every
optional input) and through whole layers (bidirectional, variable lengths, stacked)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax.nn import GRU, LSTM, SimpleRNN, dense, gru, lstm, rnn

T, N, B, H = 6, 2, 3, 4
LENGTHS = jnp.array([6, 2, 4])


def _kernel_loss(cell, impl, return_gates):
    """A loss touching every output of a kernel, as a function of every float input."""

    def loss(xw, w_hh, h0, c0, b_hn, mask, pert):
        if cell == "lstm":
            fn = lstm.lstm_scan if impl == "custom" else lstm.lstm_scan_reference
            y, h_t, c_t, g = fn(xw, w_hh, h0, c0, mask, pert, return_gates=return_gates)
            extra = jnp.sum(jnp.cos(c_t))
        elif cell == "gru":
            fn = gru.gru_scan if impl == "custom" else gru.gru_scan_reference
            y, h_t, g = fn(xw, w_hh, b_hn, h0, mask, pert, return_gates=return_gates)
            extra = 0.0
        else:
            fn = rnn.rnn_scan if impl == "custom" else rnn.rnn_scan_reference
            y, h_t, g = fn(xw, w_hh, h0, mask, pert, return_gates=return_gates)
            extra = 0.0
        out = jnp.sum(jnp.sin(3.0 * y)) + jnp.sum(h_t**2) + extra
        if return_gates:
            out = out + jnp.sum(jnp.cos(2.0 * g))
        return out

    return loss


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_custom_backward_matches_reference_autodiff(cell, gates):
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    xw = jax.random.normal(keys[0], (T, N, B, gates * H))
    w_hh = 0.5 * jax.random.normal(keys[1], (N, H, gates * H))
    h0 = jax.random.normal(keys[2], (N, B, H))
    c0 = jax.random.normal(keys[3], (N, B, H))
    b_hn = jax.random.normal(keys[4], (N, H))
    pert = 0.3 * jax.random.normal(keys[5], (T, N, B, H))
    mask = (jnp.arange(T)[:, None] < LENGTHS[None, :]).astype(jnp.float32)
    args = (xw, w_hh, h0, c0, b_hn)
    # The optional inputs/outputs each switch code in the backward: none of them, and all.
    for m, p, rg in ((None, None, False), (mask, pert, True)):
        grads = {}
        for impl in ("custom", "reference"):
            loss = _kernel_loss(cell, impl, rg)
            f = jax.jit(
                jax.value_and_grad(
                    lambda *a, loss=loss, m=m: loss(*a[:5], m, a[5]),
                    argnums=tuple(range(6 if p is not None else 5)),
                )
            )
            grads[impl] = f(*args, p)
        (v_c, g_c), (v_r, g_r) = grads["custom"], grads["reference"]
        np.testing.assert_allclose(v_c, v_r, rtol=1e-6)
        for a, b in zip(g_c, g_r, strict=True):
            np.testing.assert_allclose(
                np.asarray(a),
                np.asarray(b),
                atol=2e-5,
                err_msg=f"{cell} mask={m is not None} pert={p is not None} gates={rg}",
            )


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_layer_custom_backward_matches_reference(cls):
    """Whole stacked bidirectional layer with variable lengths, gates and perturbation."""
    layer = cls(3, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (B, T, 3))
    pert = 0.1 * jax.random.normal(jax.random.PRNGKey(3), (B, T, 2 * H))
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params, x, pert, impl):
        m = nnx.merge(graphdef, params, rest)
        m.scan_impl = impl
        y, state, gates = m(x, LENGTHS, return_gates=True, hidden_perturbation=pert)
        g = sum(jnp.sum(v**2) for v in jax.tree.leaves(gates))
        return jnp.sum(jnp.sin(y)) + sum(jnp.sum(s**2) for s in jax.tree.leaves(state)) + g

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    g_c, g_r = grad(params, x, pert, "custom"), grad(params, x, pert, "reference")
    for a, b in zip(jax.tree.leaves(g_c), jax.tree.leaves(g_r), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)


@pytest.mark.parametrize(
    "num_blocks,tanh_block", [(4, 2), (2, None)], ids=["lstm i,f,g,o", "gru r,z"]
)
def test_gate_activations_are_sigmoid_and_tanh_block_by_block(num_blocks, tanh_block):
    """The one-pass activation (one tanh over the whole gate vector) equals jax.nn.sigmoid
    on every sigmoid block and tanh on the tanh block, tails included."""
    hs = 5
    z = jnp.linspace(-30.0, 30.0, 3 * num_blocks * hs).reshape(3, num_blocks * hs)
    got = np.asarray(dense.gate_activations(z, num_blocks, tanh_block))
    for k in range(num_blocks):
        block = z[:, k * hs : (k + 1) * hs]
        want = jnp.tanh(block) if k == tanh_block else jax.nn.sigmoid(block)
        np.testing.assert_allclose(got[:, k * hs : (k + 1) * hs], want, rtol=1e-6, atol=1e-7)
