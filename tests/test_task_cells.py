"""Every cell added after the dense three (lstm_jax.nn.registry.CELLS) on every task config:
`model=<cell>` builds the task's model, its loss with gates and a hidden perturbation is a
finite scalar whose gradient reaches every parameter, and the gates have the shape the
diagnostics read. (tests/test_task_contract.py checks the rest of the contract with the
default LSTM; the GRU and tanh-RNN share the LSTM's dense layer family.)"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_task_contract import HIDDEN, TASKS, build_task, data_root  # noqa: F401 (fixture)

from lstm_jax.nn import CELLS

NEW_CELLS = sorted(set(CELLS) - {"lstm", "gru", "rnn"})


@pytest.mark.slow  # about 2 CPU-minutes for each cell over the eleven tasks
@pytest.mark.parametrize("cell", NEW_CELLS)
@pytest.mark.parametrize("name", TASKS)
def test_a_new_cell_runs_every_task(name, cell, data_root, tmp_path_factory):  # noqa: F811
    cache = tmp_path_factory.mktemp(f"cache_{name}")
    cfg, task = build_task(name, data_root, cache, f"model={cell}")
    model = task.make_model(cfg.model, rngs=nnx.Rngs(params=0, dropout=1))
    assert any(type(node) is CELLS[cell] for _, node in nnx.iter_graph(model))
    batch = task.train_batch(0)
    carry = task.initial_carry(model)
    _, aux = task.loss(model, batch, carry, return_gates=True)
    shape = np.shape(next(iter(next(iter(aux["gates"].values())).values())))
    assert len(shape) == 3 and shape[2] // HIDDEN in (1, 2), shape

    def loss(model, perturbation):
        value, _ = task.loss(
            model, batch, carry, return_gates=True, hidden_perturbation=perturbation
        )
        return value

    value, (grads, dh) = nnx.value_and_grad(loss, argnums=(0, 1))(model, jnp.zeros(shape))
    assert np.shape(value) == () and math.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert bool(jnp.any(dh != 0))
