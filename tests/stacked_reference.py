"""A per-step reference of a whole recurrent layer (stacked, bidirectional, variable
lengths) built from one that runs a single layer and direction over one unpadded sequence:
the layout lstm_jax.nn.stack gives every cell. Each sequence is cut at its length, the
reverse direction runs on the reversed sequence and its outputs are reversed back, layer
k + 1 reads layer k's outputs of both directions, and the final states are stacked in
PyTorch's order (layer-major, forward direction first). The cells' reference and parity
tests (tests/nn/test_nn_mingru.py, test_nn_cell_parity.py, and through tests/cell_reference.py
test_nn_lru.py and test_nn_selective_ssm.py) use it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

# (layer k, direction d, one sequence (t, D_in) in the direction's time order, its batch
# index b) -> (outputs (t, H), the direction's final state parts, a tuple of (H,) arrays)
RunDirection = Callable[[int, int, Any, int], tuple[Any, tuple[Any, ...]]]


def stacked_reference(
    run_direction: RunDirection, x: Any, lengths: Any, num_layers: int, num_directions: int
) -> tuple[jnp.ndarray, tuple[jnp.ndarray, ...]]:
    """y (B, T, N*H), zero past each length, and each state part (num_layers * N, B, H)."""
    ys, finals = [], []
    for b in range(x.shape[0]):
        length = int(lengths[b])
        u = jnp.asarray(x[b, :length])
        states = []
        for k in range(num_layers):
            outs = []
            for d in range(num_directions):
                y_d, state = run_direction(k, d, u if d == 0 else u[::-1], b)
                outs.append(jnp.asarray(y_d) if d == 0 else jnp.asarray(y_d)[::-1])
                states.append(state)
            u = jnp.concatenate(outs, axis=-1)
        ys.append(jnp.pad(u, ((0, x.shape[1] - length), (0, 0))))
        finals.append(states)
    parts = tuple(
        jnp.stack(
            [jnp.stack([jnp.asarray(f[j][i]) for f in finals]) for j in range(len(finals[0]))]
        )
        for i in range(len(finals[0][0]))
    )
    return jnp.stack(ys), parts
