"""What the per-step reference tests of IndRNN and expRNN (tests/nn/test_nn_indrnn.py,
test_nn_exprnn.py) share beside tests/stacked_reference.py: a layer's parameters as plain
arrays, a step loop over one sequence, and the gradient checks against the reference and
by finite differences."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.test_util import check_grads
from stacked_reference import stacked_reference


def layer_params(layer: nnx.Module) -> dict:
    """{"layer_k": {name: array}} of a RecurrentLayer: the parameters a reference reads."""
    return {
        f"layer_{k}": {
            name: v[...]
            for name, v in vars(getattr(layer, f"layer_{k}")).items()
            if isinstance(v, nnx.Param)
        }
        for k in range(layer.num_layers)
    }


def single_state_reference(direction, params, x, lengths, layer):
    """`stacked_reference` of a cell whose state is h alone, from direction(layer k's
    parameters, direction d, one sequence) -> (outputs (t, H), h_t): (y, h (L*N, B, H))."""

    def run_direction(k, d, u, b):
        y_d, h_d = direction(params[f"layer_{k}"], d, u)
        return y_d, (h_d,)

    y, (state,) = stacked_reference(
        run_direction, x, lengths, layer.num_layers, layer.num_directions
    )
    return y, state


def step_loop(step: Callable[[jax.Array, jax.Array], jax.Array], u, hidden: int):
    """h_t = step(h_{t-1}, u_t) from h_0 = 0 over the rows of u: (outputs (t, H), h_t)."""
    h = jnp.zeros(hidden)
    ys = []
    for t in range(u.shape[0]):
        h = step(h, u[t])
        ys.append(h)
    return (jnp.stack(ys) if ys else jnp.zeros((0, hidden))), h


def weighted_loss(y, state):
    """A scalar that weighs every output and state entry differently (zero nowhere)."""
    w = jax.random.normal(jax.random.key(2), y.shape)
    return jnp.sum(w * jnp.sin(y)) + sum(jnp.sum(part**2) for part in jax.tree.leaves(state))


def grads_against_reference(layer, reference, x, lengths):
    """d weighted_loss / d (parameters, x) of `layer` and of `reference(params, x)` (the
    per-step reference of the same parameters, `layer_params` layout): two pairs
    ({"layer_k": {name: array}}, dx)."""
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params, x):
        return weighted_loss(*nnx.merge(graphdef, params, rest)(x, lengths))

    g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    got = {k: {name: v[...] for name, v in names.items()} for k, names in g_params.items()}
    want = jax.grad(lambda p, x: weighted_loss(*reference(p, x)), argnums=(0, 1))(
        layer_params(layer), x
    )
    return (got, g_x), want


def assert_grads_close(got, want, *, skip=()):
    """Every gradient of `want`'s ((params, dx) pair) nonzero and matched by `got`'s,
    but the parameters named in `skip`."""
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=5e-5, err_msg="dx")
    for k, names in want[0].items():
        for name, g in names.items():
            if name in skip:
                continue
            assert np.any(np.asarray(g) != 0), f"{k}.{name}"
            np.testing.assert_allclose(
                got[0][k][name], g, rtol=1e-5, atol=5e-5, err_msg=f"{k}.{name}"
            )


def check_layer_grads(layer, x, lengths):
    """The layer's reverse-mode gradient against finite differences (float32: loose)."""
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    check_grads(
        lambda p, x: weighted_loss(*nnx.merge(graphdef, p, rest)(x, lengths)),
        (params, x),
        order=1,
        modes=["rev"],
        atol=2e-2,
        rtol=2e-2,
        eps=1e-3,
    )
