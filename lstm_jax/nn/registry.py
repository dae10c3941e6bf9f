"""The registry of recurrent cells: the one place that maps a cell's name to its layer.

Everything else reads what a layer declares (`CELL`, `GATE_ACTIVATIONS`, `RETAIN`,
`output_width`, `zero_state`, `hidden_of`, `run`) instead of testing which cell it is.
Adding a cell: its file under lstm_jax/nn/ (a `RecurrentLayer` subclass; lstm_jax.nn.stack
says what it declares and implements), its entry in `CELLS` below, and one
`configs/model/<cell>.yaml` naming it as `cell: <name>`.
"""

from __future__ import annotations

from flax import nnx

from lstm_jax.nn.exprnn import ExpRNN
from lstm_jax.nn.gru import GRU
from lstm_jax.nn.indrnn import IndRNN
from lstm_jax.nn.lru import LRU
from lstm_jax.nn.lstm import LSTM
from lstm_jax.nn.mingru import MinGRU, MinLSTM
from lstm_jax.nn.rnn import SimpleRNN
from lstm_jax.nn.selective_ssm import SelectiveSSM
from lstm_jax.nn.stack import RecurrentLayer, Retention

CELLS: dict[str, type[RecurrentLayer]] = {
    cls.CELL: cls
    for cls in (LSTM, GRU, SimpleRNN, LRU, MinGRU, MinLSTM, SelectiveSSM, IndRNN, ExpRNN)
}


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


def retentions(module: nnx.Module) -> dict[str, Retention]:
    """Gate name -> how that gate sets the fraction of state kept each step (`Retention`:
    LSTM forget, GRU update, ...), for the recurrent layers of `module` that declare one:
    diagnostics report their memory time constants."""
    return {layer.RETAIN.gate: layer.RETAIN for layer in _recurrent_layers(module) if layer.RETAIN}


def retain_gates(module: nnx.Module) -> set[str]:
    """The names of the gates `retentions` covers."""
    return set(retentions(module))
