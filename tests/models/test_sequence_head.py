"""SequenceHead (lstm_jax.models.sequence_head): the one model of the classification and
per-step tasks, its three read-outs, and padding that never changes an output."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax.models import SequenceHead, model_config

B, T, F, H, OUT = 3, 6, 4, 5, 7
LENGTHS = jnp.array([6, 2, 4])


def head(pooling, bidirectional=False, cell="lstm", dropout=0.0):
    cfg = model_config(cell, hidden_size=H, bidirectional=bidirectional)
    return SequenceHead(cfg, F, OUT, pooling=pooling, dropout=dropout, rngs=nnx.Rngs(0))


def _x():
    return jax.random.normal(jax.random.key(1), (B, T, F))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_pooling_modes_read_the_core_as_documented(bidirectional):
    x = _x()
    models = {p: head(p, bidirectional) for p in ("last", "mean", "none")}
    y, state, _ = models["last"].core.run(x, LENGTHS)  # same seed: same core in all three
    dirs = 2 if bidirectional else 1
    w, b = models["last"].head.kernel[...], models["last"].head.bias[...]

    out_none, _ = models["none"](x, LENGTHS)
    assert out_none.shape == (B, T, OUT) and out_none.dtype == jnp.float32
    np.testing.assert_allclose(out_none, y @ w + b, atol=1e-5)

    out_mean, _ = models["mean"](x, LENGTHS)
    mean = jnp.sum(y, axis=1) / LENGTHS[:, None]
    np.testing.assert_allclose(out_mean, mean @ w + b, atol=1e-5)

    out_last, gates = models["last"](x, LENGTHS)
    assert out_last.shape == (B, OUT) and gates is None
    rows = jnp.arange(B)
    forward = y[rows, LENGTHS - 1, :H]  # the forward state at each true length
    feats = forward if dirs == 1 else jnp.concatenate([forward, y[:, 0, H:]], axis=-1)
    np.testing.assert_allclose(out_last, feats @ w + b, atol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_never_changes_a_pooled_output(pooling):
    model = head(pooling, bidirectional=True, cell="gru")
    x = _x()
    full, _ = model(x, LENGTHS)
    for i, n in enumerate(np.asarray(LENGTHS)):
        alone, _ = model(x[i : i + 1, :n], LENGTHS[i : i + 1])
        np.testing.assert_allclose(alone[0], full[i], atol=1e-5)


def test_gates_and_perturbation_reach_the_core():
    model = head("none", cell="rnn")
    pert = jnp.zeros((B, T, H))
    out, gates = model(_x(), return_gates=True, hidden_perturbation=pert)
    assert list(gates["layer_0"]) == ["hidden"] and out.shape == (B, T, OUT)


def test_dropout_is_a_module_only_when_asked_and_off_in_eval():
    assert head("last").dropout is None
    model = head("mean", dropout=0.5)
    assert model.dropout is not None
    model.eval()
    a, _ = model(_x())
    b, _ = model(_x())
    np.testing.assert_array_equal(a, b)


def test_an_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling='max'"):
        head("max")
