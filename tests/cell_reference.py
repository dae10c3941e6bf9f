"""What the per-step reference tests of the cells on the linear recurrence share
(tests/nn/test_nn_lru.py, tests/nn/test_nn_selective_ssm.py): a layer's parameters as plain
arrays, a reference run over a batch built from one sequence, layer and direction at a time,
and the comparison of both linear-scan methods' gradients with the reference's."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
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
    """A loss of (y, state) whose gradient reaches every output and state part."""

    def loss(y, state):
        return jnp.sum(w * jnp.sin(y)) + sum(jnp.sum(part**2) for part in state)

    return loss


def layer_loss(layer, loss, lengths) -> Callable:
    """(params state, x) -> loss(*layer(x, lengths)), for jax.grad over an nnx layer."""
    graphdef, _, rest = nnx.split(layer, nnx.Param, ...)

    def of_params(params, x):
        return loss(*nnx.merge(graphdef, params, rest)(x, lengths))

    return of_params


def assert_gradients_match_the_reference(make_layer, reference, x, w, lengths, atol=5e-5):
    """The gradients (parameters and input) of `make_layer(scan_method)` by each linear-scan
    method equal those of `reference(params, x) -> (y, state)` on the same parameters, and
    every parameter's reference gradient is nonzero (so each one is checked); the methods
    agree with each other to 1e-5 (relative or absolute)."""
    loss = output_and_state_loss(w)
    grads, params = {}, None
    for method in LINEAR_SCAN_METHODS:
        layer = make_layer(method)
        params = layer_params(layer)
        of_params = layer_loss(layer, loss, lengths)
        grads[method] = jax.jit(jax.grad(of_params, argnums=(0, 1)))(nnx.state(layer, nnx.Param), x)
    g_params, g_x = jax.grad(lambda p, x: loss(*reference(p, x)), argnums=(0, 1))(params, x)
    for method, (g_state, g_x_layer) in grads.items():
        np.testing.assert_allclose(g_x_layer, g_x, atol=atol, err_msg=method)
        for k, layer_grads in g_params.items():
            for name, want in layer_grads.items():
                assert np.any(np.asarray(want) != 0), name
                got = g_state[k][name][...]
                np.testing.assert_allclose(got, want, atol=atol, err_msg=f"{method} {k}.{name}")
    by_method = [jax.tree.leaves(g) for g in grads.values()]
    for first, other in zip(*by_method, strict=True):
        np.testing.assert_allclose(first, other, rtol=1e-5, atol=1e-5)
