"""What the cells' per-step reference tests share beside tests/stacked_reference.py: a
layer's parameters as plain arrays; for the cells on the linear recurrence (test_nn_lru.py,
test_nn_selective_ssm.py) a reference with gates and the comparison of both linear-scan
methods' gradients with the reference's; for the nonlinear single-state cells
(test_nn_indrnn.py, test_nn_exprnn.py) a step loop and gradient checks against the reference
and by finite differences."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.test_util import check_grads
from stacked_reference import stacked_reference

from lstm_jax.nn.scan import LINEAR_SCAN_METHODS


def layer_params(layer) -> dict[str, dict[str, jax.Array]]:
    """{"layer_k": {name: array}} of a RecurrentLayer's parameters."""
    return {
        f"layer_{k}": {
            name: v[...]
            for name, v in vars(getattr(layer, f"layer_{k}")).items()
            if isinstance(v, nnx.Param)
        }
        for k in range(layer.num_layers)
    }


def reference_stack(direction, params, x, lengths, num_layers, bidirectional):
    """A stacked, possibly bidirectional layer over a batch, each sequence on its own valid
    steps (tests/stacked_reference.py): `direction(p, d, seq)` runs direction d of layer
    parameters p over seq (t, D_in) and returns (y (t, H), the final state's parts after
    y_T, each (H,), the gate (t, H)).

    Returns y (B, T, N*H) zero past each length, the state (y_T, *parts) each (num_layers *
    N, B, H) (y_T zero for an empty sequence) and the top layer's gate (B, T, N*H)."""
    n = 2 if bidirectional else 1
    top_gates = {}  # (b, d) -> the top layer's gate in time order

    def run_direction(k, d, seq, b):
        y_d, parts, gate_d = direction(params[f"layer_{k}"], d, seq)
        if k == num_layers - 1:
            top_gates[b, d] = gate_d if d == 0 else gate_d[::-1]
        y_last = y_d[-1] if len(seq) else jnp.zeros(y_d.shape[1])
        return y_d, (y_last, *parts)

    y, state = stacked_reference(run_direction, x, lengths, num_layers, n)
    gates = [
        jnp.pad(
            jnp.concatenate([top_gates[b, d] for d in range(n)], axis=-1),
            ((0, x.shape[1] - int(lengths[b])), (0, 0)),
        )
        for b in range(x.shape[0])
    ]
    return y, state, jnp.stack(gates)


def output_and_state_loss(w: jax.Array) -> Callable:
    """A loss of (y, state) whose gradient reaches every output and state part: w weighs
    each output entry differently (draw it nonzero everywhere)."""

    def loss(y, state):
        return jnp.sum(w * jnp.sin(y)) + sum(jnp.sum(part**2) for part in jax.tree.leaves(state))

    return loss


def layer_loss(layer, loss, lengths) -> Callable:
    """(params state, x) -> loss(*layer(x, lengths)), for jax.grad over an nnx layer."""
    graphdef, _, rest = nnx.split(layer, nnx.Param, ...)

    def of_params(params, x):
        return loss(*nnx.merge(graphdef, params, rest)(x, lengths))

    return of_params


def layer_gradients(layer, loss, x, lengths):
    """d loss / d (parameters, x) of an nnx layer: ({"layer_k": {name: array}}, dx)."""
    g_state, g_x = jax.jit(jax.grad(layer_loss(layer, loss, lengths), argnums=(0, 1)))(
        nnx.state(layer, nnx.Param), x
    )
    return {k: {name: v[...] for name, v in names.items()} for k, names in g_state.items()}, g_x


def reference_gradients(reference, params, loss, x):
    """d loss / d (params, x) of `reference(params, x) -> (y, state)`, the same layout."""
    return jax.grad(lambda p, x: loss(*reference(p, x)), argnums=(0, 1))(params, x)


def assert_gradients_close(got, want, *, atol=5e-5, skip=(), label=""):
    """Every gradient of `want` ((params, dx), as layer_gradients gives) nonzero, so each
    is checked, and matched by `got`'s, but the parameters named in `skip`."""
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=atol, err_msg=f"{label} dx")
    for k, names in want[0].items():
        for name, g in names.items():
            if name in skip:
                continue
            assert np.any(np.asarray(g) != 0), f"{k}.{name}"
            np.testing.assert_allclose(
                got[0][k][name], g, rtol=1e-5, atol=atol, err_msg=f"{label} {k}.{name}"
            )


def assert_gradients_match_the_reference(make_layer, reference, x, w, lengths, atol=5e-5):
    """The gradients (parameters and input) of `make_layer(scan_method)` by each linear-scan
    method equal those of `reference(params, x) -> (y, state)` on the same parameters
    (assert_gradients_close); the methods agree with each other to 1e-5 (relative or
    absolute)."""
    loss = output_and_state_loss(w)
    got = {method: make_layer(method) for method in LINEAR_SCAN_METHODS}
    first = next(iter(got.values()))
    want = reference_gradients(reference, layer_params(first), loss, x)
    for method, layer in got.items():
        got[method] = layer_gradients(layer, loss, x, lengths)
        assert_gradients_close(got[method], want, atol=atol, label=method)
    by_method = [jax.tree.leaves(g) for g in got.values()]
    for one, other in zip(*by_method, strict=True):
        np.testing.assert_allclose(one, other, rtol=1e-5, atol=1e-5)


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


def check_layer_grads(layer, x, w, lengths):
    """The layer's reverse-mode gradient of output_and_state_loss(w) against finite
    differences (float32: loose)."""
    check_grads(
        layer_loss(layer, output_and_state_loss(w), lengths),
        (nnx.state(layer, nnx.Param), x),
        order=1,
        modes=["rev"],
        atol=2e-2,
        rtol=2e-2,
        eps=1e-3,
    )
