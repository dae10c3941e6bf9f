"""minGRU and minLSTM (lstm_jax/nn/mingru.py) against a per-step reference written from the
paper's equations (Feng et al. 2024), one sequence, layer and direction at a time: outputs,
final states and gradients, with variable lengths (an empty sequence included), initial
states of either sign, stacked and bidirectional, in both forms (the log-space parallel scan
and the sequential one); their declared retention; bad options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads
from stacked_reference import stacked_reference

from lstm_jax.nn import Retention, retentions
from lstm_jax.nn.mingru import MinGRU, MinLSTM
from lstm_jax.train.diagnostics import gate_stats

B, T, D, H = 3, 7, 4, 5
LENGTHS = jnp.array([7, 3, 0])
CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}
MODES = ("parallel", "sequential")


def _g(x):
    """The paper's candidate activation (appendix B.3)."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def _reference_step(cell, p, d, h, u_t):
    """One step of the paper's equations for direction d."""

    def linear(name):
        return u_t @ p[f"w_{name}"][:, d] + p[f"b_{name}"][d]

    h_tilde = _g(linear("candidate"))
    if cell == "mingru":
        z = jax.nn.sigmoid(linear("update"))
        return (1 - z) * h + z * h_tilde
    f, i = jax.nn.sigmoid(linear("forget")), jax.nn.sigmoid(linear("input"))
    return f / (f + i) * h + i / (f + i) * h_tilde


def reference(cell, params, x, lengths, num_layers, bidirectional, h0=None):
    """y (B, T, N*H) zero past each length, and the final h (num_layers * N, B, H)."""
    n = 2 if bidirectional else 1

    def run_direction(k, d, seq, b):
        h = jnp.zeros(H) if h0 is None else h0[k * n + d, b]
        hs = []
        for u_t in seq:
            h = _reference_step(cell, params[f"layer_{k}"], d, h, u_t)
            hs.append(h)
        return (jnp.stack(hs) if hs else jnp.zeros((0, H))), (h,)

    y, (state,) = stacked_reference(run_direction, x, lengths, num_layers, n)
    return y, state


def _layer_and_params(cell, num_layers, bidirectional, mode):
    layer = CELLS[cell](
        D, H, num_layers=num_layers, bidirectional=bidirectional, mode=mode, rngs=nnx.Rngs(0)
    )
    params = nnx.to_pure_dict(nnx.state(layer, nnx.Param))
    return layer, params


def _x():
    # scaled so that pre-activations fall on both branches of g and far into the gates
    return 2.0 * jax.random.normal(jax.random.key(1), (B, T, D))


def _h0(num_layers, n):
    # of either sign: the state enters outside the log space
    return jax.random.normal(jax.random.key(4), (num_layers * n, B, H))


@pytest.mark.slow  # the slow reference tests check both forms too: .ci/run's slow step
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_the_parallel_and_sequential_forms_agree(cell):
    """Cheap default check of the two forms on one layer (the slow tests below check both
    against the reference, stacked and bidirectional, with gradients)."""
    x, lengths = _x(), jnp.array([7, 4, 1])
    h0 = _h0(1, 1)
    outputs = {mode: _layer_and_params(cell, 1, False, mode)[0](x, lengths, h0) for mode in MODES}
    (y_par, h_par), (y_seq, h_seq) = outputs["parallel"], outputs["sequential"]
    np.testing.assert_allclose(y_par, y_seq, atol=2e-6)
    np.testing.assert_allclose(h_par, h_seq, atol=2e-6)
    np.testing.assert_allclose(h_par[0, 1], y_par[1, 3], atol=1e-6)  # state at the length
    assert not np.any(np.asarray(y_par[1, 4:]))


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_matches_the_per_step_reference(cell, mode, num_layers, bidirectional):
    layer, params = _layer_and_params(cell, num_layers, bidirectional, mode)
    x, n = _x(), layer.num_directions
    for h0 in (None, _h0(num_layers, n)):
        y, state = layer(x, LENGTHS, h0)
        y_ref, state_ref = reference(cell, params, x, LENGTHS, num_layers, bidirectional, h0)
        np.testing.assert_allclose(y, y_ref, atol=2e-5)
        np.testing.assert_allclose(state, state_ref, atol=2e-5)
    # the empty sequence keeps its initial state, in every layer and direction
    np.testing.assert_allclose(state[:, 2], h0[:, 2], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_gradients_match_the_reference_in_both_forms(cell):
    x, h0 = _x(), _h0(2, 2)
    w = jax.random.normal(jax.random.key(2), (B, T, 2 * H))
    grads = {}
    for mode in MODES:
        layer, params = _layer_and_params(cell, 2, True, mode)
        graphdef, _, rest = nnx.split(layer, nnx.Param, ...)
        state = nnx.state(layer, nnx.Param)

        def loss(state, x, h0, pert, graphdef=graphdef, rest=rest):
            y, s, _ = nnx.merge(graphdef, state, rest).run(x, LENGTHS, h0, hidden_perturbation=pert)
            return jnp.sum(w * jnp.sin(y)) + jnp.sum(s**2)

        # without a perturbation: the parallel mode runs the log-space scan
        grads[mode] = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(state, x, h0, None)
        # with one (the diagnostics' dL/dh_t): the linear-space recurrence
        g_pert = jax.jit(jax.grad(loss, argnums=3))(state, x, h0, jnp.zeros((B, T, 2 * H)))
        grads[mode] += (g_pert,)

    def ref_loss(params, x, h0):
        y, s = reference(cell, params, x, LENGTHS, 2, True, h0)
        return jnp.sum(w * jnp.sin(y)) + jnp.sum(s**2)

    g_params, g_x, g_h0 = jax.grad(ref_loss, argnums=(0, 1, 2))(params, x, h0)
    for mode, (g_state, g_x_layer, g_h0_layer, g_pert) in grads.items():
        np.testing.assert_allclose(g_x_layer, g_x, atol=5e-5, err_msg=mode)
        np.testing.assert_allclose(g_h0_layer, g_h0, atol=5e-5, err_msg=mode)
        for k, layer_grads in g_params.items():
            for name, want in layer_grads.items():
                assert np.any(np.asarray(want) != 0), name
                np.testing.assert_allclose(
                    g_state[k][name][...], want, atol=5e-5, err_msg=f"{mode} {k}.{name}"
                )
        # dL/dh_t of the top layer: finite, zero past each length, the same in both forms
        assert np.all(np.isfinite(g_pert)) and not np.any(np.asarray(g_pert[1, 3:]))
    np.testing.assert_allclose(grads["parallel"][3], grads["sequential"][3], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_the_log_space_form_passes_a_finite_difference_gradient_check(cell):
    layer, _ = _layer_and_params(cell, 1, True, "parallel")
    lengths = jnp.array([7, 5, 2])

    def f(x, h0):
        y, s = layer(x, lengths, h0)
        return jnp.sum(jnp.sin(y)) + jnp.sum(s)

    # float32 central differences: eps and tolerances at what its rounding allows
    check_grads(f, (_x(), _h0(1, 2)), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cell", "retain"),
    [("mingru", Retention("update", "complement")), ("minlstm", Retention("forget", "gate"))],
)
def test_the_declared_retention_is_the_fraction_of_state_kept(cell, retain):
    """For both cells h_t = kept_t h_{t-1} + (1 - kept_t) g(h~_t): the gate the layer
    declares, read as it declares it, reproduces the recurrence from the returned gates."""
    layer, params = _layer_and_params(cell, 1, False, "parallel")
    assert retentions(layer) == {retain.gate: retain}
    x = _x()
    y, _, gates = layer.run(x, LENGTHS, return_gates=True)
    kept = retain.kept_fraction(gates["layer_0"][retain.gate])
    p = params["layer_0"]
    h_tilde = _g(x @ p["w_candidate"][:, 0] + p["b_candidate"][0])
    previous = jnp.pad(y, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    recurrence = kept * previous + (1 - kept) * h_tilde
    valid = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    np.testing.assert_allclose(np.asarray(y)[valid], np.asarray(recurrence)[valid], atol=1e-5)
    mask = jnp.asarray(valid, jnp.float32)
    stats = gate_stats(gates, mask, activations=layer.GATE_ACTIVATIONS, retain=retentions(layer))
    want = np.median(-1.0 / np.log(np.asarray(kept, np.float64)[valid]))
    np.testing.assert_allclose(stats[f"gates/layer_0/{retain.gate}_tau_median"], want, rtol=1e-3)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_an_unknown_mode_is_refused_before_any_work(cell):
    with pytest.raises(ValueError, match="mode='associative' is unknown; choose one of parallel"):
        CELLS[cell](D, H, mode="associative", rngs=nnx.Rngs(0))
