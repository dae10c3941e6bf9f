"""The cuDNN backend of LSTM, tested on CPU: the flat weight layout against JAX's own
reference (`jax.experimental.rnn.lstm_ref` over `unpack_lstm_weights`), the backend choice
and its refusals, and the whole cuDNN call path with cuDNN's kernel stood in for by that
reference. The GPU itself is checked by experiments/gpu_check.sh."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_cuda import reference
from flax import nnx
from jax.experimental import rnn

from lstm_jax.nn import LSTM, cudnn

B, T, D, H = 3, 7, 5, 4
LENGTHS = jnp.array([7, 2, 5], jnp.int32)


def _layer(num_layers=2, bidirectional=True, **kw):
    layer = LSTM(
        D,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        backend="scan",
        rngs=nnx.Rngs(3),
        **kw,
    )
    # Nonzero biases, so that a bias put in the wrong place shows.
    for k in range(num_layers):
        p = getattr(layer, f"layer_{k}")
        p.b.set_value(jax.random.normal(jax.random.PRNGKey(k), p.b[...].shape))
    return layer


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_flat_weights_follow_the_layout_of_jax_experimental_rnn(num_layers, bidirectional):
    layer = _layer(num_layers, bidirectional)
    n = 2 if bidirectional else 1
    weights = cudnn.flat_weights([getattr(layer, f"layer_{k}") for k in range(num_layers)], n)
    assert weights.shape == (rnn.get_num_params_in_lstm(D, H, num_layers, bidirectional),)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, T, D))
    zeros = jnp.zeros((num_layers * n, B, H))
    y_ref, h_ref, c_ref = reference(
        x,
        zeros,
        zeros,
        weights,
        LENGTHS,
        input_size=D,
        hidden_size=H,
        num_layers=num_layers,
        dropout=0.0,
        bidirectional=bidirectional,
    )
    y, (h, c) = layer(x, LENGTHS)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)
    np.testing.assert_allclose(c, c_ref, atol=1e-5)


def test_cudnn_is_refused_clearly_without_a_cuda_gpu():
    with pytest.raises(ValueError, match="backend='cudnn' needs a CUDA GPU.*'cpu'"):
        LSTM(D, H, backend="cudnn", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="backend='cuda' is unknown; choose one of auto"):
        LSTM(D, H, backend="cuda", rngs=nnx.Rngs(0))


def test_auto_runs_the_scan_kernel_on_cpu():
    assert not LSTM(D, H, rngs=nnx.Rngs(0)).uses_cudnn()


@pytest.fixture
def fake_cuda(monkeypatch):
    """A CUDA machine whose cuDNN kernel is JAX's reference implementation."""
    monkeypatch.setattr(cudnn, "on_cuda", lambda: True)
    monkeypatch.setattr(rnn, "lstm", reference)


def test_auto_picks_cudnn_only_where_it_can(fake_cuda):
    layer = LSTM(D, H, num_layers=2, dropout=0.3, rngs=nnx.Rngs(0))
    layer.eval()
    assert layer.uses_cudnn()
    assert not layer.uses_cudnn(return_gates=True)
    assert not layer.uses_cudnn(hidden_perturbation=jnp.zeros((B, T, H)))
    layer.train()  # dropout between the layers is now drawn
    assert not layer.uses_cudnn()
    assert not LSTM(D, H, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)).uses_cudnn()
    assert not LSTM(D, H, use_bias=False, rngs=nnx.Rngs(0)).uses_cudnn()
    assert not LSTM(D, H, backend="scan", rngs=nnx.Rngs(0)).uses_cudnn()


def test_explicit_cudnn_falls_back_with_a_warning_naming_why(fake_cuda):
    layer = LSTM(D, H, backend="cudnn", rngs=nnx.Rngs(0))
    with pytest.warns(UserWarning, match="falls back to the scan kernel: the gates were"):
        assert not layer.uses_cudnn(return_gates=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layer.uses_cudnn()


@pytest.mark.slow  # 29 s; the stand-in kernel's paths: test_nn_backends.py. .ci/run's slow step
def test_cudnn_path_matches_the_scan_kernel_with_zero_lengths_and_gradients(fake_cuda):
    scan_layer = _layer()
    cudnn_layer = _layer()
    cudnn_layer.backend = "auto"  # on the fake CUDA machine: the cuDNN path
    assert cudnn_layer.uses_cudnn() and not scan_layer.uses_cudnn()
    x = jax.random.normal(jax.random.PRNGKey(1), (B, T, D))
    lengths = jnp.array([7, 0, 4], jnp.int32)  # a zero length: jax#17966 on real cuDNN
    h0 = jax.random.normal(jax.random.PRNGKey(2), (4, B, H))
    c0 = jax.random.normal(jax.random.PRNGKey(3), (4, B, H))

    def loss(layer):
        y, (h, c) = layer(x, lengths, (h0, c0))
        return jnp.sum(y * jnp.cos(y)) + jnp.sum(h**2) + jnp.sum(c), (y, h, c)

    (value_s, (y_s, h_s, c_s)), grads_s = nnx.value_and_grad(loss, has_aux=True)(scan_layer)
    (value_c, (y_c, h_c, c_c)), grads_c = nnx.value_and_grad(loss, has_aux=True)(cudnn_layer)
    assert np.all(np.asarray(y_c[1]) == 0.0) and np.all(np.asarray(y_c[2, 4:]) == 0.0)
    np.testing.assert_allclose(h_c[:, 1], h0[:, 1], atol=1e-6)  # empty row keeps its state
    for a, b in ((y_c, y_s), (h_c, h_s), (c_c, c_s), (value_c, value_s)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(jax.tree.leaves(grads_c), jax.tree.leaves(grads_s), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
