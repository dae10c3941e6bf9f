"""The LRU cell (lstm_jax/nn/lru.py) against a per-step reference written from the paper's
equations (Orvieto et al. 2023), one sequence, layer and direction at a time: outputs,
final states and gradients, with variable lengths, stacked and bidirectional, by both
linear-scan methods; its ring initialisation and its declared retention."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_reference import assert_gradients_match_the_reference, layer_params, reference_stack
from flax import nnx

from lstm_jax.nn import Retention, retentions
from lstm_jax.nn.lru import LRU
from lstm_jax.train.diagnostics import gate_stats

# Slow (the LRU against its per-step reference, gradients by both scan methods): .ci/run's
# -m slow step runs it, after the 10-minute default suite.
pytestmark = pytest.mark.slow

B, T, D, H = 3, 7, 4, 5
LENGTHS = jnp.array([7, 3, 1])


def _reference_direction(p, d, u):
    """One direction d of one layer over one sequence u (t, D_in), step by step:
    x_t = lambda x_{t-1} + gamma B u_t, y_t = Re(C x_t) + D u_t. Returns y (t, H), the final
    state's parts after y_T (Re x_T, Im x_T) and the decay gate |lambda| (t, H)."""
    lam = jnp.exp(-jnp.exp(p["nu_log"][d]) + 1j * jnp.exp(p["theta_log"][d]))
    gamma = jnp.exp(p["gamma_log"][d])
    b_mat = p["B_re"][:, d] + 1j * p["B_im"][:, d]  # (D_in, H)
    c_mat = p["C_re"][d] + 1j * p["C_im"][d]  # (H, H): x @ C
    x = jnp.zeros(H, jnp.complex64)
    ys = []
    for t in range(u.shape[0]):
        x = lam * x + gamma * (u[t] @ b_mat)
        ys.append(jnp.real(x @ c_mat) + u[t] @ p["D"][:, d])
    y = jnp.stack(ys) if ys else jnp.zeros((0, H))
    return y, (x.real, x.imag), jnp.broadcast_to(jnp.abs(lam), y.shape)


def reference(params, x, lengths, num_layers, bidirectional):
    """y (B, T, N*H) zero past each length and the state (y_T, Re x_T, Im x_T) each
    (num_layers * N, B, H), from `_reference_direction` on each sequence's valid steps."""
    y, state, _ = reference_stack(
        _reference_direction, params, x, lengths, num_layers, bidirectional
    )
    return y, state


def _layer_and_params(num_layers, bidirectional, scan_method="associative"):
    layer = LRU(
        D,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        scan_method=scan_method,
        r_min=0.5,
        max_phase=3.0,
        rngs=nnx.Rngs(0),
    )
    params = layer_params(layer)
    return layer, params


def _x():
    return jax.random.normal(jax.random.key(1), (B, T, D))


@pytest.mark.parametrize("scan_method", ["associative", "scan"])
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_lru_matches_the_per_step_reference(num_layers, bidirectional, scan_method):
    layer, params = _layer_and_params(num_layers, bidirectional, scan_method)
    x = _x()
    y, state = layer(x, LENGTHS)
    y_ref, state_ref = reference(params, x, LENGTHS, num_layers, bidirectional)
    np.testing.assert_allclose(y, y_ref, atol=2e-5)
    for part, (got, want) in enumerate(zip(state, state_ref, strict=True)):
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"state part {part}")
    # the last output at each true length is what a "last" pooling head reads
    top_forward = layer.hidden_of(state)[-layer.num_directions]
    np.testing.assert_allclose(top_forward[1], y[1, 2, :H], atol=1e-6)


def test_lru_gradients_match_the_reference_by_both_scan_methods():
    w = jax.random.normal(jax.random.key(2), (B, T, 2 * H))
    assert_gradients_match_the_reference(
        lambda method: _layer_and_params(2, True, method)[0],
        lambda params, x: reference(params, x, LENGTHS, 2, True),
        _x(),
        w,
        LENGTHS,
    )


def test_ring_initialisation_and_gamma_normalisation():
    layer = LRU(D, 4000, r_min=0.4, r_max=0.8, max_phase=0.5, rngs=nnx.Rngs(3))
    p = layer.layer_0
    lam = jnp.exp(-jnp.exp(p.nu_log[...]) + 1j * jnp.exp(p.theta_log[...]))
    modulus, phase = np.asarray(jnp.abs(lam)), np.asarray(jnp.angle(lam))
    assert modulus.min() >= 0.4 - 1e-6 and modulus.max() <= 0.8 + 1e-6
    assert phase.min() >= 0.0 and phase.max() <= 0.5 + 1e-6
    # uniform in area on the ring: half the units inside the radius that halves its area
    np.testing.assert_allclose(np.mean(modulus**2 < (0.4**2 + 0.8**2) / 2), 0.5, atol=0.03)
    np.testing.assert_allclose(np.exp(p.gamma_log[...]), np.sqrt(1 - modulus**2), rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"r_min": 0.9, "r_max": 0.5}, "LRU needs 0 <= r_min < r_max <= 1"),
        ({"scan_method": "parallel"}, "scan_method='parallel' is unknown"),
    ],
)
def test_bad_options_are_refused_before_any_work(options, message):
    with pytest.raises(ValueError, match=message):
        LRU(D, H, rngs=nnx.Rngs(0), **options)


def test_lru_declares_the_modulus_of_lambda_as_its_retention():
    layer = LRU(D, H, bidirectional=True, rngs=nnx.Rngs(0))
    assert retentions(layer) == {"decay": Retention("decay", "modulus")}
    _, _, gates = layer.run(_x(), LENGTHS, return_gates=True)
    mask = (jnp.arange(T)[None, :] < LENGTHS[:, None]).astype(jnp.float32)
    stats = gate_stats(gates, mask, activations=layer.GATE_ACTIVATIONS, retain=retentions(layer))
    p = layer.layer_0
    modulus = np.exp(-np.exp(np.asarray(p.nu_log[...], np.float64))).reshape(-1)
    np.testing.assert_allclose(
        stats["gates/layer_0/decay_tau_median"], np.median(-1.0 / np.log(modulus)), rtol=1e-4
    )
