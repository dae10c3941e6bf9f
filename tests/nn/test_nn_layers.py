"""Behaviour of the lstm_jax.nn layers that PyTorch parity does not cover: padding and final
state, initial state chaining, dropout modes, initialisation, gates, hidden perturbation,
bfloat16 compute, and the model-config factory."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax.nn import GRU, LSTM, SimpleRNN

B, T, D, H = 3, 8, 4, 6
LENGTHS = jnp.array([8, 3, 5])


def _x(seed=0, shape=(B, T, D)):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


@pytest.mark.parametrize("cls", [LSTM, SimpleRNN])
def test_padding_is_zero_and_state_is_taken_at_true_length(cls):
    layer = cls(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    x = _x()
    y, state = layer(x, LENGTHS)
    for b, n in enumerate(np.asarray(LENGTHS)):
        # Garbage after the length must not matter: run the truncated sequence alone.
        y_b, s_b = layer(x[b : b + 1, :n])
        np.testing.assert_allclose(y[b, :n], y_b[0], atol=1e-5)
        assert np.all(np.asarray(y[b, n:]) == 0.0)
        for full, alone in zip(jax.tree.leaves(state), jax.tree.leaves(s_b), strict=True):
            np.testing.assert_allclose(full[:, b], alone[:, 0], atol=1e-5)


def test_initial_state_chains_two_halves():
    layer = LSTM(D, H, num_layers=2, rngs=nnx.Rngs(1))
    x = _x(1)
    y, state = layer(x)
    y1, s1 = layer(x[:, :4])
    y2, s2 = layer(x[:, 4:], initial_state=s1)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y, atol=1e-5)
    for a, b in zip(s2, state, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError):
        layer(x, initial_state=(s1[0][:1], s1[1][:1]))


def test_dropout_only_in_train_mode_and_between_layers():
    layer = LSTM(D, H, num_layers=2, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    x = _x(2)
    y_train_1, _ = layer(x)
    y_train_2, _ = layer(x)
    assert not np.allclose(y_train_1, y_train_2)  # a fresh mask each call
    layer.eval()
    y_eval_1, _ = layer(x)
    y_eval_2, _ = layer(x)
    np.testing.assert_array_equal(y_eval_1, y_eval_2)
    no_dropout = LSTM(D, H, num_layers=2, rngs=nnx.Rngs(params=0))
    np.testing.assert_allclose(y_eval_1, no_dropout(x)[0], atol=1e-6)  # same params
    layer.train()
    assert not np.allclose(layer(x)[0], y_eval_1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LSTM(D, H, num_layers=1, dropout=0.3, rngs=nnx.Rngs(0))
    assert any("no effect" in str(w.message) for w in caught)


def test_initialisation_forget_bias_chrono_and_orthogonal_blocks():
    layer = LSTM(D, 32, forget_bias=1.0, rngs=nnx.Rngs(0))
    b = np.asarray(layer.layer_0.b[...]).reshape(4, 32)
    assert np.all(b[1] == 1.0) and np.all(b[[0, 2, 3]] == 0.0)
    w_hh = np.asarray(layer.layer_0.w_hh[...])[0]
    for k in range(4):
        block = w_hh[:, k * 32 : (k + 1) * 32]
        np.testing.assert_allclose(block.T @ block, np.eye(32), atol=1e-4)
    assert not np.allclose(w_hh[:, :32], w_hh[:, 32:64])  # independent blocks
    assert np.abs(np.asarray(layer.layer_0.w_ih[...])).max() <= 1 / np.sqrt(32)

    t_max = 1000
    chrono = LSTM(D, 256, chrono_max_steps=t_max, bidirectional=True, rngs=nnx.Rngs(0))
    b = np.asarray(chrono.layer_0.b[...]).reshape(2, 4, 256)
    b_f, b_i = b[:, 1], b[:, 0]
    np.testing.assert_array_equal(b_i, -b_f)
    u = np.exp(b_f)  # should be U[1, T_max - 1]
    assert u.min() >= 1.0 and u.max() <= t_max - 1
    assert abs(u.mean() - t_max / 2) < 0.06 * t_max
    assert np.all(b[:, 2:] == 0.0)


@pytest.mark.slow  # 12 s; every cell's gates and padding: test_nn_registry.py: .ci/run's slow step
def test_gates_are_consistent_with_outputs_and_zero_when_padded():
    layer = LSTM(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(3))
    x = _x(3)
    y, _state, gates = layer(x, LENGTHS, return_gates=True)
    y2, _ = layer(x, LENGTHS)
    np.testing.assert_allclose(y, y2, atol=1e-6)
    assert set(gates) == {"layer_0", "layer_1"}
    g = gates["layer_1"]
    assert set(g) == {"input", "forget", "cell", "output"}
    assert all(v.shape == (B, T, 2 * H) for v in g.values())
    # Rebuild the forward direction of the top layer from its gates: c_t = f c + i g,
    # h_t = o tanh(c_t); it must reproduce y.
    c = jnp.zeros((B, H))
    for t in range(T):
        c_new = g["forget"][:, t, :H] * c + g["input"][:, t, :H] * g["cell"][:, t, :H]
        h = g["output"][:, t, :H] * jnp.tanh(c_new)
        valid = (t < LENGTHS)[:, None]
        np.testing.assert_allclose(jnp.where(valid, h, 0.0), y[:, t, :H], atol=1e-5)
        c = jnp.where(valid, c_new, c)
    pad = np.arange(T)[None, :] >= np.asarray(LENGTHS)[:, None]
    assert np.all(np.asarray(g["forget"])[pad] == 0.0)
    gru_gates = GRU(D, H, rngs=nnx.Rngs(0))(x, return_gates=True)[2]["layer_0"]
    assert set(gru_gates) == {"reset", "update", "candidate"}
    rnn_y, _, rnn_gates = SimpleRNN(D, H, rngs=nnx.Rngs(0))(x, return_gates=True)
    np.testing.assert_allclose(rnn_gates["layer_0"]["hidden"], rnn_y, atol=1e-6)


def _python_loop_lstm(sd, x, pert):
    """Independent one-layer LSTM written step by step from PyTorch-layout weights."""
    w_ih, w_hh = sd["weight_ih_l0"], sd["weight_hh_l0"]
    bias = sd["bias_ih_l0"] + sd["bias_hh_l0"]
    h = c = jnp.zeros((x.shape[0], w_hh.shape[1]))
    ys = []
    for t in range(x.shape[1]):
        i, f, g, o = jnp.split(x[:, t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c) + pert[:, t]
        ys.append(h)
    return jnp.stack(ys, 1)


def test_hidden_perturbation_gradient_is_dl_dh_t():
    layer = LSTM(D, H, rngs=nnx.Rngs(4))
    x = _x(4)
    target = _x(5, (B, T, H))
    zero = jnp.zeros((B, T, H))

    def loss(p):
        y, _ = layer(x, hidden_perturbation=p)
        return jnp.mean((y[:, -1] - target[:, -1]) ** 2)  # loss at the last step only

    def ref_loss(p):
        y = _python_loop_lstm(layer.to_torch(), x, p)
        return jnp.mean((y[:, -1] - target[:, -1]) ** 2)

    g = jax.grad(loss)(zero)
    np.testing.assert_allclose(g, jax.grad(ref_loss)(zero), atol=1e-6)
    # dL/dh_t reaches back through the recurrence (not just the last step), and a zero
    # perturbation leaves the outputs unchanged.
    assert float(jnp.abs(g[:, 0]).sum()) > 0
    np.testing.assert_allclose(layer(x, hidden_perturbation=zero)[0], layer(x)[0], atol=0)


@pytest.mark.slow  # 16 s; the one-direction case stays: .ci/run's slow step
def test_hidden_perturbation_bidirectional_variable_length_matches_reference():
    layer = GRU(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(6))
    x = _x(6)
    zero = jnp.zeros((B, T, 2 * H))

    def loss(p):
        y, _ = layer(x, LENGTHS, hidden_perturbation=p)
        return jnp.sum(jnp.sin(y))

    g = jax.grad(loss)(zero)
    layer.scan_impl = "reference"
    np.testing.assert_allclose(g, jax.grad(loss)(zero), atol=1e-5)
    pad = np.arange(T)[None, :] >= np.asarray(LENGTHS)[:, None]
    assert np.all(np.asarray(g)[pad] == 0.0)


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_bfloat16_compute_keeps_float32_params(cls):
    layer32 = cls(D, H, num_layers=2, rngs=nnx.Rngs(7))
    layer16 = cls(D, H, num_layers=2, dtype=jnp.bfloat16, rngs=nnx.Rngs(7))
    x = _x(7)
    y16, state = layer16(x, LENGTHS)
    assert y16.dtype == jnp.bfloat16
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(state))
    np.testing.assert_allclose(y16.astype(jnp.float32), layer32(x, LENGTHS)[0], atol=5e-2)
    graphdef, params, rest = nnx.split(layer16, nnx.Param, ...)

    def loss(params):
        y, _ = nnx.merge(graphdef, params, rest)(x, LENGTHS)
        return jnp.mean(y.astype(jnp.float32) ** 2)

    grads = jax.grad(loss)(params)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert all(
        g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)
    )


def test_model_core_factory_builds_every_cell():
    from lstm_jax.models.core import make_core, model_config

    lstm_only = {"forget_bias": 1.0, "chrono_max_steps": 50}
    for cell, own in (("lstm", lstm_only), ("gru", {}), ("rnn", {})):
        cfg = model_config(
            cell, num_layers=2, bidirectional=True, dropout=0.1, hidden_size=H, **own
        )
        core = make_core(cfg, D, rngs=nnx.Rngs(0))
        y, _ = core(_x(8), LENGTHS)
        assert y.shape == (B, T, 2 * H)
