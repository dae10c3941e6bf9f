"""lstm_jax.nn against real PyTorch nn.LSTM / nn.GRU / nn.RNN: outputs, final states and
gradients, with packed variable-length sequences, 1-3 layers, uni- and bidirectional."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from lstm_jax.nn import GRU, LSTM, SimpleRNN

torch.set_default_dtype(torch.float32)
TORCH = {LSTM: torch.nn.LSTM, GRU: torch.nn.GRU, SimpleRNN: torch.nn.RNN}
B, T, D, H = 4, 7, 3, 5
LENGTHS = np.array([7, 2, 5, 1])


def _torch_pair(cls, num_layers, bidirectional, seed=0):
    torch.manual_seed(seed)
    tm = TORCH[cls](D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    return tm, cls.from_torch(sd)


def _torch_run(tm, x, lengths, h0=None):
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out, state = tm(packed, h0)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    return y, state


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def _inputs(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    return x


def _initial_state(cls, num_layers, bidirectional, seed=2):
    rng = np.random.default_rng(seed)
    shape = (num_layers * (2 if bidirectional else 1), B, H)
    parts = [rng.standard_normal(shape).astype(np.float32) for _ in range(2 if cls is LSTM else 1)]
    return tuple(parts) if cls is LSTM else parts[0]


# Every layer count and direction for LSTM; the other cells share the stacking code, so two
# configurations each keep the suite fast.
CONFIGS = [
    (LSTM, 1, False),
    (LSTM, 1, True),
    (LSTM, 2, True),
    (LSTM, 3, False),
    (GRU, 1, True),
    (GRU, 3, False),
    (SimpleRNN, 2, True),
    (SimpleRNN, 1, False),
]


@pytest.mark.parametrize("cls,num_layers,bidirectional", CONFIGS)
def test_forward_matches_torch_packed(cls, num_layers, bidirectional):
    tm, layer = _torch_pair(cls, num_layers, bidirectional)
    x = _inputs()
    h0 = _initial_state(cls, num_layers, bidirectional)
    th0 = tuple(map(torch.as_tensor, h0)) if cls is LSTM else torch.as_tensor(h0)
    with torch.no_grad():
        y_t, s_t = _torch_run(tm, torch.as_tensor(x), LENGTHS, th0)
    y, s = jax.jit(lambda x, n, h: layer(x, n, h))(jnp.asarray(x), jnp.asarray(LENGTHS), h0)
    np.testing.assert_allclose(np.asarray(y), y_t.numpy(), atol=1e-5, rtol=0)
    for a, b in zip(_as_tuple(s), _as_tuple(s_t), strict=True):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-5, rtol=0)
    # Padded positions are exactly zero, not merely small.
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]
    assert np.all(np.asarray(y)[pad] == 0.0)


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_forward_matches_torch_full_length_no_lengths(cls):
    tm, layer = _torch_pair(cls, 2, False, seed=3)
    x = _inputs(4)
    with torch.no_grad():
        y_t, s_t = tm(torch.as_tensor(x))
    y, s = layer(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), y_t.numpy(), atol=1e-5, rtol=0)
    for a, b in zip(_as_tuple(s), _as_tuple(s_t), strict=True):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-5, rtol=0)


def _jax_grads(layer, x, lengths, h0, wy, ws):
    """Gradients of sum(y * wy) + sum_i sum(state_i * ws_i) w.r.t. x, params and h0, with
    the parameter gradients returned as a PyTorch-named dict (via to_torch)."""
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params, x, h0):
        y, s = nnx.merge(graphdef, params, rest)(x, lengths, h0)
        return jnp.sum(y * wy) + sum(jnp.sum(a * w) for a, w in zip(_as_tuple(s), ws, strict=True))

    gp, gx, gh0 = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, x, h0)
    return nnx.merge(graphdef, gp, rest).to_torch(), gx, gh0


@pytest.mark.parametrize(
    "cls,num_layers,bidirectional",
    [(LSTM, 2, True), (LSTM, 1, False), (GRU, 2, True), (SimpleRNN, 2, True)],
)
def test_gradients_match_torch(cls, num_layers, bidirectional):
    tm, layer = _torch_pair(cls, num_layers, bidirectional, seed=5)
    x = _inputs(6)
    h0 = _initial_state(cls, num_layers, bidirectional, seed=7)
    rng = np.random.default_rng(8)
    wy = rng.standard_normal((B, T, H * (2 if bidirectional else 1))).astype(np.float32)
    ws = [rng.standard_normal(a.shape).astype(np.float32) for a in _as_tuple(h0)]

    xt = torch.tensor(x, requires_grad=True)
    h0t = [torch.tensor(a, requires_grad=True) for a in _as_tuple(h0)]
    y_t, s_t = _torch_run(tm, xt, LENGTHS, tuple(h0t) if cls is LSTM else h0t[0])
    loss = (y_t * torch.as_tensor(wy)).sum() + sum(
        (a * torch.as_tensor(w)).sum() for a, w in zip(_as_tuple(s_t), ws, strict=True)
    )
    loss.backward()

    g_params, gx, gh0 = _jax_grads(layer, jnp.asarray(x), jnp.asarray(LENGTHS), h0, wy, ws)
    np.testing.assert_allclose(np.asarray(gx), xt.grad.numpy(), atol=1e-4, rtol=0)
    for a, b in zip(_as_tuple(gh0), h0t, strict=True):
        np.testing.assert_allclose(np.asarray(a), b.grad.numpy(), atol=1e-4, rtol=0)
    torch_grads = {k: v.grad.numpy() for k, v in tm.named_parameters()}
    for name, g in torch_grads.items():
        if name.startswith("weight"):
            np.testing.assert_allclose(g_params[name], g, atol=1e-4, rtol=0, err_msg=name)
        elif name.startswith("bias_ih"):
            # Our single bias is b_ih + b_hh, so its gradient equals torch's bias_ih grad.
            np.testing.assert_allclose(g_params[name], g, atol=1e-4, rtol=0, err_msg=name)
        elif cls is GRU:  # bias_hh: only the n block (b_hn) is a separate parameter
            np.testing.assert_allclose(g_params[name][2 * H :], g[2 * H :], atol=1e-4, rtol=0)


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_from_torch_to_torch_round_trip(cls):
    tm, layer = _torch_pair(cls, 2, True, seed=9)
    sd = layer.to_torch()
    assert set(sd) == set(tm.state_dict())
    # The dict loads into torch and gives the same outputs as the original torch module.
    tm2 = TORCH[cls](D, H, num_layers=2, bidirectional=True, batch_first=True)
    tm2.load_state_dict({k: torch.as_tensor(v) for k, v in sd.items()})
    x = torch.as_tensor(_inputs(10))
    with torch.no_grad():
        np.testing.assert_allclose(tm2(x)[0].numpy(), tm(x)[0].numpy(), atol=1e-6)
    # And back: identical lstm_jax parameters.
    again = cls.from_torch(sd)
    for a, b in zip(
        jax.tree.leaves(nnx.state(layer, nnx.Param)),
        jax.tree.leaves(nnx.state(again, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_from_torch_infers_sizes_and_bias():
    torch.manual_seed(0)
    tm = torch.nn.LSTM(D, H, num_layers=3, bidirectional=True, bias=False)
    layer = LSTM.from_torch({k: v.numpy() for k, v in tm.state_dict().items()})
    assert (layer.in_features, layer.hidden_size, layer.num_layers) == (D, H, 3)
    assert layer.bidirectional and not layer.use_bias
    x = _inputs(11)
    with torch.no_grad():
        y_t, _ = tm(torch.as_tensor(x).transpose(0, 1))
    np.testing.assert_allclose(
        np.asarray(layer(jnp.asarray(x))[0]), y_t.transpose(0, 1).numpy(), atol=1e-5
    )
    with pytest.raises(ValueError):
        GRU.from_torch({k: v.numpy() for k, v in tm.state_dict().items()})
