"""The diagonal cells against the PyPI PyTorch implementations they follow, on the same
weights (the dev extra pins the packages):

- MinGRU, MinLSTM against `minGRU-pytorch` 0.2.1 (lucidrains) `minGRU`, `minLSTM`;
- LRU against `LRU-pytorch` 0.1.3 (Gothos) `LRU`.

Each PyTorch module is one layer and one direction over unpadded sequences, so a stacked,
bidirectional layer with variable lengths is compared with the modules composed: one per
layer and direction, each sequence cut at its length, the reverse direction on the reversed
sequence. What does not map, and how it is tested instead:
- the packages' minGRU/minLSTM projections have no bias: ours are set to zero;
- their `expansion_factor` (hidden width / input width) with `proj_out=False` gives our
  layer's shape (no output projection back to the input width);
- their minLSTM's parallel form starts from g(h_0) (log g of the state it is given) and its
  sequential form from h_0: our state is h_0 in both, so the parallel comparison hands ours
  g(h_0);
- their LRU returns no final state (it resets it after the sequence) and applies a given
  state to the first sequence of a batch only: states are compared through the outputs,
  one sequence at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from LRU_pytorch import LRU as TorchLRU
from minGRU_pytorch.minGRU import g as torch_g
from minGRU_pytorch.minGRU import minGRU as TorchMinGRU
from minGRU_pytorch.minLSTM import minLSTM as TorchMinLSTM
from stacked_reference import stacked_reference

from lstm_jax.nn.lru import LRU
from lstm_jax.nn.mingru import MinGRU, MinLSTM

# Slow: PyTorch modules stepped one sequence at a time in Python; .ci/run's -m slow step.
pytestmark = pytest.mark.slow

torch.set_default_dtype(torch.float32)
B, T, D, H = 4, 9, 4, 6
LENGTHS = np.array([9, 2, 5, 1])
# The packages' weight blocks, in their order: one (hidden width * blocks, D_in) Linear.
TORCH_MIN = {
    MinGRU: (TorchMinGRU, "to_hidden_and_gate", ("candidate", "update")),
    MinLSTM: (TorchMinLSTM, "to_hidden_and_f_i_gate", ("candidate", "forget", "input")),
}


def _x(seed=1):
    return 2.0 * jax.random.normal(jax.random.key(seed), (B, T, D))


def _params(layer, k):
    return getattr(layer, f"layer_{k}")


def _torch_min_modules(layer):
    """One package module per layer and direction, holding our layer's weights (our biases
    set to zero, as the package has none)."""
    torch_cls, linear, blocks = TORCH_MIN[type(layer)]
    modules = []
    for k in range(layer.num_layers):
        p = _params(layer, k)
        d_in = p.w_candidate[...].shape[0]
        for name in blocks:
            bias = getattr(p, f"b_{name}")
            bias[...] = jnp.zeros_like(bias[...])
        per_direction = []
        for d in range(layer.num_directions):
            torch.manual_seed(0)
            m = torch_cls(d_in, expansion_factor=H / d_in, proj_out=False)
            w = np.concatenate([np.asarray(getattr(p, f"w_{n}")[...])[:, d].T for n in blocks])
            target = getattr(m, linear).weight
            assert target.shape == w.shape, (target.shape, w.shape)
            with torch.no_grad():
                target.copy_(torch.from_numpy(w))
            per_direction.append(m)
        modules.append(per_direction)
    return modules


def _torch_lru_modules(layer):
    """One LRU-pytorch module per layer and direction holding our layer's weights."""
    modules = []
    for k in range(layer.num_layers):
        p = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(_params(layer, k), nnx.Param)))
        per_direction = []
        for d in range(layer.num_directions):
            d_in = p["B_re"].shape[0]
            m = TorchLRU(d_in, H, H)
            with torch.no_grad():
                for name in ("nu_log", "theta_log", "gamma_log"):
                    getattr(m, name).copy_(torch.from_numpy(p[name][d]))
                # theirs: B (state, in), C (out, state), D (out, in); ours: x @ B, x @ C, u @ D
                m.B.copy_(
                    torch.complex(*(torch.from_numpy(p[n][:, d].T) for n in ("B_re", "B_im")))
                )
                m.C.copy_(torch.complex(*(torch.from_numpy(p[n][d].T) for n in ("C_re", "C_im"))))
                m.D.copy_(torch.from_numpy(p["D"][:, d].T))
            per_direction.append(m)
        modules.append(per_direction)
    return modules


def _run_min(m, seq):
    """A package minGRU/minLSTM over one sequence (t, D_in) from h = 0: outputs (t, H)."""
    with torch.no_grad():
        return m(seq[None])[0]


def _run_lru(m, seq):
    with torch.no_grad():
        return m(seq)


def composed(modules, run, x, lengths):
    """Our stacked, bidirectional layer's output (B, T, N*H), zero past each length, from
    one package module per layer and direction, each sequence cut at its length."""

    def run_direction(k, d, seq, b):
        return run(modules[k][d], torch.from_numpy(np.array(seq))).numpy(), ()

    y, _ = stacked_reference(run_direction, x, lengths, len(modules), len(modules[0]))
    return y


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_min_cells_match_the_package_on_the_same_weights(cls, mode, num_layers, bidirectional):
    layer = cls(
        D, H, num_layers=num_layers, bidirectional=bidirectional, mode=mode, rngs=nnx.Rngs(0)
    )
    modules = _torch_min_modules(layer)
    x = _x()
    y, state = layer(x, LENGTHS)
    np.testing.assert_allclose(y, composed(modules, _run_min, x, LENGTHS), atol=1e-5, rtol=1e-5)
    # the state at each length is the package's last output there (its next prev_hidden)
    top = state[-layer.num_directions]
    np.testing.assert_allclose(top, y[np.arange(B), LENGTHS - 1, :H], atol=1e-6)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_min_cells_carry_a_state_as_the_package_does(cls):
    """A given state, in the package's parallel form (a whole sequence) and its sequential
    form (one step per call, the state handed from call to call)."""
    layer = cls(D, H, mode="parallel", rngs=nnx.Rngs(0))
    (m,) = _torch_min_modules(layer)[0]
    x = _x()
    h0 = jax.random.uniform(jax.random.key(3), (1, B, H), minval=0.1, maxval=2.0)
    prev = torch.from_numpy(np.array(h0[0]))[:, None]  # (B, 1, H), the package's layout
    with torch.no_grad():
        parallel = m(torch.from_numpy(np.array(x)), prev_hidden=prev).numpy()
        stepped, h = [], prev
        for t in range(T):
            out, h = m(torch.from_numpy(np.array(x[:, t : t + 1])), h, True)
            stepped.append(out[:, 0].numpy())
    # the package's minLSTM starts its parallel form from g(h_0) (log g of the state), its
    # minGRU from h_0 (log of it); both sequential forms from h_0
    parallel_start = torch_g(prev).numpy()[:, 0][None] if cls is MinLSTM else h0
    y_parallel, _ = layer(x, initial_state=jnp.asarray(parallel_start))
    np.testing.assert_allclose(y_parallel, parallel, atol=1e-5, rtol=1e-5)
    y, state = layer(x, initial_state=h0)
    np.testing.assert_allclose(y, np.stack(stepped, axis=1), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(state[0], h.numpy()[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_lru_matches_lru_pytorch_on_the_same_weights(num_layers, bidirectional):
    layer = LRU(
        D, H, num_layers=num_layers, bidirectional=bidirectional, r_min=0.5, rngs=nnx.Rngs(0)
    )
    modules = _torch_lru_modules(layer)
    x = _x()
    y, (y_last, _, _) = layer(x, LENGTHS)
    np.testing.assert_allclose(y, composed(modules, _run_lru, x, LENGTHS), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(y_last[-layer.num_directions], y[np.arange(B), LENGTHS - 1, :H])


def test_lru_starts_from_a_given_state_as_lru_pytorch_does():
    layer = LRU(D, H, r_min=0.5, rngs=nnx.Rngs(0))
    ((m,),) = _torch_lru_modules(layer)
    x = _x()
    keys = jax.random.split(jax.random.key(5), 2)
    x0_re, x0_im = (jax.random.normal(key, (1, B, H)) for key in keys)
    y, _ = layer(x, initial_state=(jnp.zeros((1, B, H)), x0_re, x0_im))
    for b in range(B):
        # one sequence per call: the package applies a given state to the first one only
        state = torch.complex(*(torch.from_numpy(np.array(s[0, b])) for s in (x0_re, x0_im)))
        with torch.no_grad():
            want = m(torch.from_numpy(np.array(x[b])), state).numpy()
        np.testing.assert_allclose(y[b], want, atol=1e-5, rtol=1e-5, err_msg=f"sequence {b}")
