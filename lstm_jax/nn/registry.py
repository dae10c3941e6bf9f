"""The registry of recurrent cells: the one place that maps a cell's name to its layer.

Everything else reads what a layer declares (`CELL`, `GATE_ACTIVATIONS`, `RETAIN_GATE`,
`output_width`, `zero_state`, `hidden_of`, `run`) instead of testing which cell it is.
Adding a cell: its scan kernel (lstm_jax.nn.scan), its layer (a `_Recurrent` subclass in
lstm_jax.nn.layers), one line in `CELLS`, one `configs/model/<cell>.yaml` and tests.
"""

from __future__ import annotations

from flax import nnx

from lstm_jax.nn.layers import GRU, LSTM, SimpleRNN, _Recurrent

RecurrentLayer = _Recurrent

CELLS: dict[str, type[RecurrentLayer]] = {cls.CELL: cls for cls in (LSTM, GRU, SimpleRNN)}


def cell_class(name: str) -> type[RecurrentLayer]:
    """The layer class registered as `name`; an unknown name is an error listing the cells."""
    if name not in CELLS:
        raise ValueError(f"cell {name!r} is not a known cell; choose one of {sorted(CELLS)}.")
    return CELLS[name]


def _recurrent_layers(module: nnx.Module) -> list[RecurrentLayer]:
    return [node for _, node in nnx.iter_graph(module) if isinstance(node, RecurrentLayer)]


def gate_activations(module: nnx.Module) -> dict[str, str]:
    """Gate name -> activation ("sigmoid" | "tanh") of every recurrent layer in `module`,
    as the layers declare them (diagnostics bin sigmoid gates over [0, 1], tanh over [-1, 1])."""
    return {
        name: activation
        for layer in _recurrent_layers(module)
        for name, activation in layer.GATE_ACTIVATIONS.items()
    }


def retain_gates(module: nnx.Module) -> set[str]:
    """Names of the gates that keep a fraction of the state each step (LSTM forget, GRU
    update) in the recurrent layers of `module`: diagnostics report their time constants."""
    return {layer.RETAIN_GATE for layer in _recurrent_layers(module) if layer.RETAIN_GATE}
