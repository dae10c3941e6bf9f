"""A fixed seed gives the same training curve for every cell as it did before nn/ was split
into a cell-agnostic stack, the dense family and one file per cell (issue 31): the
initialisation (the order the parameter keys are drawn in), the dropout masks between layers,
variable lengths, both directions, the final state and the hand-written backward all enter
the losses below. The expected values were computed by this file's `training_losses` on main
at 00bc604, before the split, and again at 31571d6, the split's base, with the same digits
(`python tests/nn/test_nn_fixed_seed.py` prints them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lstm_jax.models.core import make_core, model_config

B, T, D, H = 4, 9, 3, 8
LENGTHS = jnp.array([9, 4, 7, 1])
STEPS = 6

EXPECTED = {
    "lstm": [
        1.2976475954055786,
        1.257392168045044,
        1.2300876379013062,
        1.1986823081970215,
        1.1963460445404053,
        1.1835401058197021,
    ],
    "gru": [
        1.266540288925171,
        1.2046740055084229,
        1.1991112232208252,
        1.1643682718276978,
        1.1181252002716064,
        1.111258864402771,
    ],
    "rnn": [
        1.3872454166412354,
        1.2376011610031128,
        0.9731006622314453,
        0.8628920316696167,
        0.8984942436218262,
        0.7034846544265747,
    ],
}


class _Model(nnx.Module):
    def __init__(self, cell: str, rngs: nnx.Rngs):
        cfg = model_config(cell, hidden_size=H, num_layers=2, bidirectional=True, dropout=0.25)
        self.core = make_core(cfg, D, rngs=rngs)
        self.head = nnx.Linear(2 * H, 1, rngs=rngs)

    def __call__(self, x, lengths):
        y, state = self.core(x, lengths)
        return self.head(y)[..., 0], self.core.hidden_of(state)


def training_losses(cell: str) -> list[float]:
    """The losses of STEPS Adam steps of a 2-layer bidirectional `cell` with dropout, on
    fixed random data with variable lengths (the loss reads the outputs and final state)."""
    model = _Model(cell, nnx.Rngs(params=0, dropout=1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    kx, ky = jax.random.split(jax.random.key(2))
    x = jax.random.normal(kx, (B, T, D))
    target = jax.random.normal(ky, (B, T))
    valid = (jnp.arange(T)[None, :] < LENGTHS[:, None]).astype(jnp.float32)

    def loss_fn(model):
        out, h = model(x, LENGTHS)
        fit = jnp.sum(valid * (out - target) ** 2) / jnp.sum(valid)
        return fit + 0.1 * jnp.mean(h**2)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    return [float(step(model, optimizer)) for _ in range(STEPS)]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_fixed_seed_gives_the_training_curve_it_gave_before_the_split(cell):
    np.testing.assert_allclose(training_losses(cell), EXPECTED[cell], rtol=2e-6)


if __name__ == "__main__":
    for name in ("lstm", "gru", "rnn"):
        print(f'    "{name}": {training_losses(name)!r},')
