"""Gradient checks of the layers against an independent reference: PyTorch's cell equations
stepped over each sequence on its own (one unbatched scan per sequence, layer and direction,
at the sequence's own length), the reverse direction made by reversing its valid steps with
a slice, so none of the layer's projection,
reversal, masking or perturbation helpers is shared with what is checked.

Covers what the kernel-level tests (test_nn_dense_kernels.py) leave out: one direction for
every cell, the training case (variable lengths, no gates), unroll > 1, the reverse direction of
a padded batch, and the bfloat16 backward against the float32 one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax.nn import GRU, LSTM, SimpleRNN

B, T, D, H = 3, 7, 4, 5
LENGTHS = (7, 3, 5)


def _cell(kind, p, d, x_t, state):
    """One step of direction d from the layer's parameters p (dict of arrays)."""
    w_ih, w_hh = p["w_ih"][:, d, :], p["w_hh"][d]
    if kind == "lstm":
        h, c = state
        z = x_t @ w_ih + h @ w_hh + p["b"][d]
        i, f, g, o = jnp.split(z, 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, (h, c)
    if kind == "gru":
        (h,) = state
        xi = x_t @ w_ih + p["b_i"][d]
        hh = h @ w_hh
        r = jax.nn.sigmoid(xi[:H] + hh[:H])
        z = jax.nn.sigmoid(xi[H : 2 * H] + hh[H : 2 * H])
        n = jnp.tanh(xi[2 * H :] + r * (hh[2 * H :] + p["b_hn"][d]))
        h = (1.0 - z) * n + z * h
        return h, (h,)
    (h,) = state
    h = jnp.tanh(x_t @ w_ih + h @ w_hh + p["b"][d])
    return h, (h,)


def _run_direction(kind, p, d, seq):
    """seq (L, D_in) -> outputs (L, H) and the final state: one unbatched sequence of its
    own length, so there is no mask to get wrong."""
    state = (jnp.zeros(H), jnp.zeros(H)) if kind == "lstm" else (jnp.zeros(H),)

    def step(state, x_t):
        h, state = _cell(kind, p, d, x_t, state)
        return state, h

    state, outs = jax.lax.scan(step, state, seq)
    return outs, state


def reference(kind, layers, x, lengths, bidirectional):
    """y (B, T, N*H) zero-padded, and the final states, one sequence at a time."""
    ys, finals = [], []
    for b, n in enumerate(lengths):
        seq = x[b, :n]
        for p in layers:
            forward, state_f = _run_direction(kind, p, 0, seq)
            parts, states = [forward], [state_f]
            if bidirectional:
                backward, state_b = _run_direction(kind, p, 1, seq[::-1])
                parts.append(backward[::-1])
                states.append(state_b)
            seq = jnp.concatenate(parts, axis=-1)
            finals += [s for state in states for s in state]
        ys.append(jnp.pad(seq, ((0, x.shape[1] - n), (0, 0))))
    return jnp.stack(ys), finals


def _loss_of_outputs(y, finals):
    return jnp.sum(jnp.sin(2.0 * y)) + sum(jnp.sum(jnp.cos(s)) for s in finals)


CELLS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}


def _check(kind, *, bidirectional, num_layers, unroll=1, dtype=None, atol=2e-5):
    cls = CELLS[kind]
    layer = cls(
        D, H, num_layers=num_layers, bidirectional=bidirectional, dtype=dtype, rngs=nnx.Rngs(4)
    )
    layer.unroll = unroll
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    x = jax.random.normal(jax.random.PRNGKey(5), (B, T, D))
    lengths = jnp.array(LENGTHS)

    def layer_loss(params, x):
        y, state = nnx.merge(graphdef, params, rest)(x, lengths)  # the training call: no gates
        n = 2 if bidirectional else 1
        parts = state if isinstance(state, tuple) else (state,)
        # Order the final states as the reference does: per sequence, layer, direction.
        finals = [
            s[k * n + d, b]
            for b in range(B)
            for k in range(num_layers)
            for d in range(n)
            for s in parts
        ]
        return _loss_of_outputs(y.astype(jnp.float32), finals)

    def ref_loss(params, x):
        layers = [
            {name: getattr(v, "value", v) for name, v in params[f"layer_{k}"].items()}
            for k in range(num_layers)
        ]
        return _loss_of_outputs(*reference(kind, layers, x, LENGTHS, bidirectional))

    value, grads = jax.jit(jax.value_and_grad(layer_loss, argnums=(0, 1)))(params, x)
    ref_value, ref_grads = jax.jit(jax.value_and_grad(ref_loss, argnums=(0, 1)))(params, x)
    scale = max(float(jnp.abs(ref_value)), 1.0)
    np.testing.assert_allclose(value, ref_value, atol=atol * scale)
    flat, ref_flat = jax.tree.leaves(grads), jax.tree.leaves(ref_grads)
    assert len(flat) == len(ref_flat)
    for a, b in zip(flat, ref_flat, strict=True):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(a, b, atol=atol * max(1.0, float(np.abs(b).max())))
    return grads


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_one_direction_training_call_matches_the_loop(kind):
    _check(kind, bidirectional=False, num_layers=2)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_reverse_direction_of_a_padded_batch_matches_the_loop(kind):
    _check(kind, bidirectional=True, num_layers=2)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unrolled_scan_matches_the_loop(kind):
    _check(kind, bidirectional=True, num_layers=1, unroll=3)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_bfloat16_backward_is_close_to_the_float32_loop(kind):
    # bfloat16 matmuls carry 8 bits of mantissa: a relative tolerance of a few percent.
    _check(kind, bidirectional=True, num_layers=1, dtype=jnp.bfloat16, atol=3e-2)
