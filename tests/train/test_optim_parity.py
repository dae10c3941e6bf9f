"""The optimisers of the `optim` group against PyTorch's, the reference implementations the
long-dependency presets' setups come from (issue 27): stepped side by side on the same
gradient streams, ordinary ones and the 1e-6 gradients of a plateau, where RMSProp's eps
decides how far a step goes."""

from __future__ import annotations

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR
from lstm_jax.train.optim import make_optimizer, make_schedule

STEPS = 60
SHAPES = {"w_hh": (16, 64), "b": (64,)}
# The plateau's per-element gradients: grad_norm/core/layer_0/w_hh over sqrt(its size) on the
# adding T=400 plateau is about 1e-6 to 5e-5 (issue 27).
STREAM_SCALES = {"ordinary": 1.0, "plateau": 1e-6}


def optim_config(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[*overrides, "paths.data_dir=/tmp"]).optim


def gradient_stream(scale, seed=0):
    """STEPS gradients per parameter; each element's scale differs (log-uniform over two
    decades), so eps matters for some elements before others."""
    rng = np.random.default_rng(seed)
    spread = {k: 10.0 ** rng.uniform(-1, 1, size=s) for k, s in SHAPES.items()}
    return [
        {
            k: (scale * spread[k] * rng.standard_normal(s)).astype(np.float32)
            for k, s in SHAPES.items()
        }
        for _ in range(STEPS)
    ]


def run_ours(cfg, params, grads):
    transform = make_optimizer(
        hydra.utils.instantiate(cfg.optimizer), make_schedule(cfg), cfg.clip_grad_norm
    )
    params = {k: jnp.asarray(v) for k, v in params.items()}
    state = transform.init(params)
    trajectory = []

    @jax.jit
    def step(params, state, g):
        updates, state = transform.update(g, state, params)
        return jax.tree.map(jnp.add, params, updates), state

    for g in grads:
        params, state = step(params, state, {k: jnp.asarray(v) for k, v in g.items()})
        trajectory.append({k: np.asarray(v) for k, v in params.items()})
    return trajectory


def run_torch(cfg, params, grads):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    options = cfg.optimizer
    if options._target_ == "optax.rmsprop":
        opt = torch.optim.RMSprop(
            list(tensors.values()), lr=cfg.lr, alpha=options.decay, eps=options.eps
        )
    else:
        opt = torch.optim.Adam(
            list(tensors.values()), lr=cfg.lr, betas=(options.b1, options.b2), eps=options.eps
        )
    trajectory = []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        if cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(tensors.values()), cfg.clip_grad_norm)
        opt.step()
        trajectory.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return trajectory


def distance_moved(trajectory, start):
    return np.array(
        [np.sqrt(sum(np.sum((p[k] - start[k]) ** 2) for k in start)) for p in trajectory]
    )


def initial_params():
    rng = np.random.default_rng(1)
    return {k: (0.1 * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}


@pytest.mark.parametrize("clip", ["null", "1.0"])
@pytest.mark.parametrize("stream", sorted(STREAM_SCALES))
@pytest.mark.parametrize("optim", ["rmsprop", "adam"])
def test_optimizer_steps_as_pytorch_does(optim, stream, clip):
    cfg = optim_config(f"optim={optim}", "optim.lr=1e-3", f"optim.clip_grad_norm={clip}")
    start, grads = initial_params(), gradient_stream(STREAM_SCALES[stream])
    ours, theirs = run_ours(cfg, start, grads), run_torch(cfg, start, grads)
    moved_ours, moved_theirs = distance_moved(ours, start), distance_moved(theirs, start)
    np.testing.assert_allclose(moved_ours, moved_theirs, rtol=1e-3)
    for k in start:  # not only as far: the same way, element by element
        step = theirs[-1][k] - start[k]
        np.testing.assert_allclose(
            ours[-1][k] - start[k], step, rtol=0, atol=1e-3 * np.abs(step).max()
        )


def test_optax_inside_the_root_form_is_one_key_away_and_stalls_on_a_plateau():
    """optim.optimizer.eps_in_sqrt=true is optax.rmsprop's default form: its denominator
    never falls below sqrt(eps) = 1e-4, so 1e-6 gradients move it about 1 % as far."""
    start, grads = initial_params(), gradient_stream(STREAM_SCALES["plateau"])
    torch_form = optim_config("optim=rmsprop", "optim.clip_grad_norm=null")
    optax_form = optim_config(
        "optim=rmsprop", "optim.clip_grad_norm=null", "optim.optimizer.eps_in_sqrt=true"
    )
    ratio = (
        distance_moved(run_ours(optax_form, start, grads), start)[-1]
        / distance_moved(run_torch(torch_form, start, grads), start)[-1]
    )
    assert ratio < 0.05, ratio
