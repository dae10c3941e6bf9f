"""The cell registry and the one core interface every cell offers (lstm_jax.nn.registry):
what make_core, the models and diagnostics read instead of knowing the cells."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax.models.core import core_class, make_core, model_config
from lstm_jax.nn import (
    CELLS,
    Retention,
    SimpleRNN,
    gate_activations,
    retain_gates,
    retentions,
)
from lstm_jax.nn.registry import cell_class
from lstm_jax.train.diagnostics import gate_stats

B, T, D, H = 3, 7, 5, 4


# Every cell one direction in the default suite, and the LSTM both; the other cells'
# bidirectional runs (a compile each, 4-12 s on 2 cores) in .ci/run's slow step.
CONTRACT_CASES = [(cell, False) for cell in sorted(CELLS)] + [
    (cell, True) if cell == "lstm" else pytest.param(cell, True, marks=pytest.mark.slow)
    for cell in sorted(CELLS)
]


@pytest.mark.parametrize(("cell", "bidirectional"), CONTRACT_CASES)
def test_every_cell_keeps_the_core_contract(cell, bidirectional):
    core = make_core(
        model_config(cell, hidden_size=H, num_layers=2, bidirectional=bidirectional),
        D,
        rngs=nnx.Rngs(0),
    )
    assert type(core) is CELLS[cell] and core.CELL == cell
    dirs = 2 if bidirectional else 1
    assert core.output_width == H * dirs
    x = jax.random.normal(jax.random.key(1), (B, T, D))
    lengths = jnp.array([7, 3, 5])

    y, state, gates = core.run(x, lengths)
    assert y.shape == (B, T, core.output_width) and gates is None
    zero = core.zero_state(B)
    assert jax.tree.structure(zero) == jax.tree.structure(state)
    for z, s in zip(jax.tree.leaves(zero), jax.tree.leaves(state), strict=True):
        assert z.shape == s.shape == (2 * dirs, B, H) and not np.any(np.asarray(z))
    assert core.hidden_of(state).shape == (2 * dirs, B, H)
    # the public call keeps its (y, state) form, with the same numbers
    y_public, state_public = core(x, lengths)
    np.testing.assert_array_equal(y_public, y)
    # a zero initial state is the default one
    y0, _, _ = core.run(x, lengths, zero)
    np.testing.assert_allclose(y0, y, atol=1e-6)

    y_g, _, gates = core.run(x, lengths, return_gates=True)
    np.testing.assert_allclose(y_g, y, atol=1e-6)
    assert list(gates) == ["layer_0", "layer_1"]
    for layer_gates in gates.values():
        # the gate names returned are the ones the cell declares, in its order
        assert tuple(layer_gates) == core.GATES == tuple(core.GATE_ACTIVATIONS)
        assert all(g.shape == (B, T, core.output_width) for g in layer_gates.values())
    assert set(core.GATE_ACTIVATIONS.values()) <= {"sigmoid", "tanh"}
    assert gate_activations(core) == core.GATE_ACTIVATIONS


def test_the_registry_names_each_layer_once():
    assert set(CELLS) == {
        "lstm",
        "gru",
        "rnn",
        "lru",
        "mingru",
        "minlstm",
        "selective_ssm",
        "indrnn",
        "exprnn",
    }
    assert all(cls.CELL == name for name, cls in CELLS.items())
    assert cell_class("gru") is CELLS["gru"]
    with pytest.raises(ValueError, match="not a known cell"):
        cell_class("lstmm")


def test_a_model_config_names_its_cell_once_and_an_old_one_twice_must_agree():
    cfg = model_config("gru")
    assert "_target_" not in cfg  # the cell's registry name is the one source
    assert core_class(cfg) is CELLS["gru"]
    # A run dir written before issue 31 stored both names; they are still read together.
    old = {"_target_": "lstm_jax.nn.GRU", **cfg}
    assert core_class(old) is CELLS["gru"]
    old["cell"] = "lstm"
    with pytest.raises(ValueError, match="switch the cell with model=lstm"):
        core_class(old)


class SigmoidRNN(SimpleRNN):
    """A stand-in for a new cell: the tanh RNN's kernel, its one gate declared under a new
    name and activation. Nothing outside the registry and this class names it."""

    CELL = "sigmoid_rnn"
    GATE_ACTIVATIONS = {"novel": "sigmoid"}
    GATES = tuple(GATE_ACTIVATIONS)


def test_a_new_cell_is_picked_up_by_diagnostics_from_what_it_declares(monkeypatch):
    monkeypatch.setitem(CELLS, "sigmoid_rnn", SigmoidRNN)
    cfg = {"_target_": f"{__name__}.SigmoidRNN", "cell": "sigmoid_rnn", "hidden_size": H}
    core = make_core(cfg, D, rngs=nnx.Rngs(0))
    assert type(core) is SigmoidRNN
    x = jax.random.normal(jax.random.key(1), (B, T, D))
    _, _, gates = core.run(x, return_gates=True)
    assert list(gates["layer_0"]) == ["novel"]

    class Wrapper(nnx.Module):  # a model holding the core, as the diagnostics see one
        def __init__(self):
            self.core = core

    activations = gate_activations(Wrapper())
    assert activations == {"novel": "sigmoid"}
    assert retain_gates(Wrapper()) == set()  # it declares no RETAIN_GATE: no time constants
    stats = gate_stats(gates, jnp.ones((B, T)), activations=activations, bins=4)
    # binned as the declared sigmoid, over [0, 1], not as a guessed tanh over [-1, 1]
    np.testing.assert_allclose(stats["gates/layer_0/novel"]["edges"], [0, 0.25, 0.5, 0.75, 1])
    # a gate no layer declares is an error, not silently binned as tanh
    with pytest.raises(ValueError, match="no declared activation"):
        gate_stats(gates, jnp.ones((B, T)), activations={}, bins=4)


@pytest.mark.parametrize(
    ("cell", "retain"),
    [
        ("lstm", {"forget"}),
        ("gru", {"update"}),
        ("rnn", set()),
        ("lru", {"decay"}),
        ("mingru", {"update"}),
        ("minlstm", {"forget"}),
        ("selective_ssm", {"decay"}),
    ],
)
def test_each_cell_names_the_gate_that_keeps_its_state(cell, retain):
    core = make_core(model_config(cell, hidden_size=H), D, rngs=nnx.Rngs(0))
    assert retain_gates(core) == retain
    assert retain <= set(gate_activations(core))


class ComplementRNN(SimpleRNN):
    """A stand-in for a cell that keeps 1 - z of its state (as minGRU does): it declares so,
    and nothing else tells the diagnostics."""

    CELL = "complement_rnn"
    GATE_ACTIVATIONS = {"novel": "sigmoid"}
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("novel", kept="complement")


def test_retention_declared_as_a_complement_gives_time_constants_of_one_minus_the_gate():
    core = ComplementRNN(D, H, rngs=nnx.Rngs(0))

    class Wrapper(nnx.Module):
        def __init__(self):
            self.core = core

    assert retentions(Wrapper()) == {"novel": Retention("novel", "complement")}
    assert retain_gates(Wrapper()) == {"novel"}
    z = jax.random.uniform(jax.random.key(4), (B, T, H), minval=0.05, maxval=0.95)
    stats = gate_stats(
        {"layer_0": {"novel": z}},
        jnp.ones((B, T)),
        activations=gate_activations(Wrapper()),
        retain=retentions(Wrapper()),
    )
    kept = 1.0 - np.asarray(z, np.float64)
    np.testing.assert_allclose(
        stats["gates/layer_0/novel_tau_median"], np.median(-1.0 / np.log(kept)), rtol=1e-5
    )


@pytest.mark.parametrize(
    ("kept", "fraction"),
    [("gate", [0.2, 0.9]), ("complement", [0.8, 0.1]), ("modulus", [0.2, 0.9])],
)
def test_each_retention_kind_maps_gate_values_to_the_kept_fraction(kept, fraction):
    # modulus: the sign (a complex phase's real shadow) does not change what is kept
    values = jnp.array([0.2, -0.9]) if kept == "modulus" else jnp.array([0.2, 0.9])
    np.testing.assert_allclose(Retention("g", kept).kept_fraction(values), fraction, rtol=1e-6)
