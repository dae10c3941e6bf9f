"""The cell-agnostic masked linear recurrence h_t = a_t * h_{t-1} + b_t
(lstm_jax.nn.scan.linear_recurrence): by lax.scan and by lax.associative_scan, real and
complex, against a per-step Python loop, with variable lengths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.nn.scan import LINEAR_SCAN_METHODS, linear_recurrence

T, N, B, H = 7, 2, 3, 4
LENGTHS = np.array([7, 2, 0])


def _inputs(dtype):
    keys = jax.random.split(jax.random.key(0), 6)

    def draw(key, shape):
        if dtype == jnp.complex64:
            k1, k2 = jax.random.split(key)
            return jax.random.normal(k1, shape) + 1j * jax.random.normal(k2, shape)
        return jax.random.normal(key, shape)

    # |a| < 1 as in a stable recurrence; a varies over time, b over everything
    a = 0.9 * jnp.tanh(draw(keys[0], (T, N, B, H)))
    b = draw(keys[1], (T, N, B, H))
    h0 = draw(keys[2], (N, B, H))
    return a.astype(dtype), b.astype(dtype), h0.astype(dtype)


def _loop(a, b, h0, lengths):
    """The recurrence one step at a time, each sequence stopped at its own length."""
    a, b, h = np.asarray(a), np.asarray(b), np.array(h0)
    hs = np.zeros_like(b)
    for t in range(a.shape[0]):
        valid = (t < lengths)[None, :, None]
        h = np.where(valid, a[t] * h + b[t], h)
        hs[t] = h
    return hs, h


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64], ids=["real", "complex"])
@pytest.mark.parametrize("method", LINEAR_SCAN_METHODS)
def test_linear_recurrence_matches_the_step_by_step_loop(method, dtype):
    a, b, h0 = _inputs(dtype)
    mask = (jnp.arange(T)[:, None] < LENGTHS[None, :]).astype(jnp.float32)
    hs, h_last = linear_recurrence(a, b, h0, mask, method=method)
    want_hs, want_last = _loop(a, b, h0, LENGTHS)
    np.testing.assert_allclose(hs, want_hs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_last, want_last, rtol=1e-5, atol=1e-5)
    # Past its length a sequence's state stays at its true-length state (a = 1, b = 0):
    # the length-2 row holds h_1 from t = 1 on, the empty row holds h0 throughout.
    for t in range(1, T):
        np.testing.assert_allclose(hs[t, :, 1], hs[1, :, 1], rtol=1e-6)
        np.testing.assert_allclose(hs[t, :, 2], h0[:, 2], rtol=1e-6)
    # without a mask every step counts
    full, _ = linear_recurrence(a, b, h0, method=method)
    np.testing.assert_allclose(full, _loop(a, b, h0, np.full(B, T))[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64], ids=["real", "complex"])
def test_scan_and_associative_scan_give_the_same_gradients(dtype):
    a, b, h0 = _inputs(dtype)
    mask = (jnp.arange(T)[:, None] < LENGTHS[None, :]).astype(jnp.float32)
    weights = jax.random.normal(jax.random.key(3), (T, N, B, H))

    def loss(a, b, h0, method):
        hs, h_last = linear_recurrence(a, b, h0, mask, method=method)
        return jnp.sum(weights * jnp.abs(hs) ** 2) + jnp.sum(jnp.abs(h_last))

    grads = {
        m: jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)(a, b, h0, m)
        for m in LINEAR_SCAN_METHODS
    }
    for g_scan, g_assoc in zip(grads["scan"], grads["associative"], strict=True):
        assert bool(jnp.any(g_scan != 0))
        np.testing.assert_allclose(g_assoc, g_scan, rtol=1e-4, atol=1e-5)
    # padded steps are a = 1, b = 0 whatever their values: no gradient reaches them
    padded = ~(np.arange(T)[:, None] < LENGTHS[None, :])
    for method in LINEAR_SCAN_METHODS:
        for g in grads[method][:2]:
            assert not np.any(np.where(padded[:, None, :, None], np.asarray(g), 0))


def test_a_time_invariant_diagonal_broadcasts_over_time_and_batch():
    _, b, h0 = _inputs(jnp.complex64)
    lam = 0.8 * jnp.exp(1j * jnp.linspace(0.0, 3.0, N * H)).reshape(N, 1, H)
    for method in LINEAR_SCAN_METHODS:
        hs, _ = linear_recurrence(lam, b, h0, method=method)
        want, _ = _loop(jnp.broadcast_to(lam, b.shape), b, h0, np.full(B, T))
        np.testing.assert_allclose(hs, want, rtol=1e-5, atol=1e-5)


def test_an_unknown_method_is_refused_naming_the_choices():
    a, b, h0 = _inputs(jnp.float32)
    with pytest.raises(ValueError, match="method='parallel' is unknown; choose one of scan, "):
        linear_recurrence(a, b, h0, method="parallel")
