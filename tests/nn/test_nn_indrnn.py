"""The IndRNN cell (lstm_jax/nn/indrnn.py) against a per-step reference written from the
paper's equation (Li et al. 2018), h_t = sigma(W x_t + u * h_{t-1} + b), one sequence,
layer and direction at a time: outputs, final states, the retention gate and gradients
(against the reference and by finite differences), with variable lengths, stacked and
bidirectional; the initialisation and the bound |u| <= U_max across an optimizer step.

PyTorch parity: none. PyPI has no IndRNN package (`pip download` of indrnn,
indrnn-pytorch and torch-indrnn finds no distribution); the authors' code
(Sunnydreamrain/IndRNN_pytorch, IndRNN_Theano_Lasagne) and the other PyTorch ports are
GitHub repositories only, not installable references. The per-step reference below is
written from the paper's equation and the authors' IndRNNCell_onlyrecurrent.forward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from cell_reference import (
    assert_gradients_close,
    check_layer_grads,
    layer_gradients,
    layer_params,
    output_and_state_loss,
    reference_gradients,
    single_state_reference,
    step_loop,
)
from flax import nnx

from lstm_jax.nn import Retention, retentions
from lstm_jax.nn.indrnn import IndRNN

B, T, D, H = 3, 7, 4, 5
LENGTHS = jnp.array([7, 3, 0])
U_MAX = 2.0 ** (1.0 / 1000)  # the defaults: max_gain 2 over gain_steps 1000 (ReLU)


def _layer(num_layers=1, bidirectional=False, activation="relu"):
    # gain_steps 5: U_max = 2^(1/5) = 1.15, so the test's units grow and shrink visibly
    options = {"activation": activation, "gain_steps": 5, "rngs": nnx.Rngs(0)}
    return IndRNN(D, H, num_layers=num_layers, bidirectional=bidirectional, **options)


def _x():
    return jax.random.normal(jax.random.key(1), (B, T, D))


def _reference(layer, params, x, lengths):
    sigma = {"relu": jax.nn.relu, "tanh": jnp.tanh}[layer.activation]

    def direction(p, d, u):
        u_clipped = jnp.clip(p["u"][d], -layer.u_max, layer.u_max)
        return step_loop(
            lambda h, x_t: sigma(x_t @ p["w_in"][:, d] + u_clipped * h + p["bias"][d]), u, H
        )

    return single_state_reference(direction, params, x, lengths, layer)


def _with_u_beyond_the_bound(layer):
    """Half the stored u past +-U_max, as an unbounded optimizer step could leave them."""
    for k in range(layer.num_layers):
        p = getattr(layer, f"layer_{k}")
        u = p.u[...]
        p.u[...] = u.at[..., ::2].set(jnp.sign(u[..., ::2] - 0.5) * 1.5 * layer.u_max)
    return layer


@pytest.mark.slow
@pytest.mark.parametrize(
    ("num_layers", "bidirectional", "activation"), [(1, False, "relu"), (2, True, "tanh")]
)
def test_indrnn_matches_the_per_step_reference(num_layers, bidirectional, activation):
    layer = _with_u_beyond_the_bound(_layer(num_layers, bidirectional, activation))
    params = layer_params(layer)
    x = _x()
    y, state, gates = layer.run(x, LENGTHS, return_gates=True)
    y_ref, state_ref = _reference(layer, params, x, LENGTHS)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(state, state_ref, atol=1e-5)
    if activation == "relu":  # one layer, one direction: y is h
        # retain = dh_t/dh_{t-1} = u sigma'(pre): u where a ReLU unit is on, 0 where it is off
        u = jnp.clip(params["layer_0"]["u"][0], -layer.u_max, layer.u_max)
        valid = (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None]
        np.testing.assert_array_equal(
            gates["layer_0"]["retain"], jnp.where(valid & (y > 0), u, 0.0)
        )


@pytest.mark.slow
def test_indrnn_gradients_match_the_reference_and_finite_differences():
    layer = _with_u_beyond_the_bound(_layer(2, True))
    x = _x()
    w = jax.random.normal(jax.random.key(2), (B, T, 2 * H))
    loss = output_and_state_loss(w)
    got = layer_gradients(layer, loss, x, LENGTHS)
    reference = lambda p, x: _reference(layer, p, x, LENGTHS)  # noqa: E731
    want = reference_gradients(reference, layer_params(layer), loss, x)
    # u: the reference's plain clip has no gradient beyond the bound, where `bounded` keeps
    # the one towards it; within the bound both are the identity's
    assert_gradients_close(got, want, skip=("u",))
    for k, names in want[0].items():
        inside = np.abs(np.asarray(layer_params(layer)[k]["u"])) <= layer.u_max
        assert inside.any() and not inside.all()
        np.testing.assert_allclose(
            np.asarray(got[0][k]["u"])[inside], np.asarray(names["u"])[inside], atol=5e-5
        )
    check_layer_grads(_layer(1, True, "tanh"), x, w, LENGTHS)


def test_u_stays_within_its_bound_after_an_optimizer_step_that_would_break_it():
    layer = IndRNN(D, H, rngs=nnx.Rngs(0))  # the defaults: U_max 2^(1/1000)
    assert layer.u_max == pytest.approx(U_MAX)
    u0 = np.asarray(layer.layer_0.u[...])
    assert u0.min() >= 0.0 and u0.max() <= U_MAX  # the authors' U(0, U_max) for ReLU
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params, sign):  # sign -1: rewards large outputs, so large u
        return sign * jnp.sum(nnx.merge(graphdef, params, rest)(_x() ** 2)[0])

    grad = jax.jit(jax.grad(loss))  # one compile for the three gradients below
    opt = optax.sgd(10.0)
    grads = grad(params, -1.0)
    params = optax.apply_updates(params, opt.update(grads, opt.init(params))[0])
    stored = np.asarray(params["layer_0"]["u"][...])
    assert stored.max() > 2 * U_MAX  # the step carried the stored u far past the bound
    layer = nnx.merge(graphdef, params, rest)
    used = np.asarray(layer.recurrent_weight(layer.layer_0))
    np.testing.assert_array_equal(used, np.clip(stored, -U_MAX, U_MAX))
    # beyond the bound, a gradient towards it reaches u (it can come back), one away does not
    beyond = np.abs(stored) > U_MAX
    towards = np.asarray(grad(params, 1.0)["layer_0"]["u"][...])
    away = np.asarray(grad(params, -1.0)["layer_0"]["u"][...])
    assert np.all(towards[beyond] * stored[beyond] > 0)
    assert np.all(away[beyond] == 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"activation": "sigmoid"}, "IndRNN activation='sigmoid' is unknown"),
        ({"max_gain": 0.0}, "IndRNN needs max_gain > 0"),
        ({"gain_steps": 0}, "IndRNN needs gain_steps >= 1"),
    ],
)
def test_bad_options_are_refused_before_any_work(options, message):
    with pytest.raises(ValueError, match=message):
        IndRNN(D, H, rngs=nnx.Rngs(0), **options)
    assert retentions(IndRNN(D, H, rngs=nnx.Rngs(0))) == {"retain": Retention("retain", "modulus")}
