"""The recurrent core: Flax NNX recurrent layers (batch-first) and the registry of cells.
lstm_jax.nn.stack is what every cell shares (stacking, directions, masking, state layout,
`Retention`), lstm_jax.nn.scan the cell-agnostic loop pieces (masking, the input projection,
the linear recurrence by lax.scan or lax.associative_scan), lstm_jax.nn.dense the family of
PyTorch-layout dense cells, and each cell has its own file (lstm.py, gru.py, rnn.py);
lstm_jax.nn.registry says what a cell declares."""

from lstm_jax.nn.gru import GRU, gru_scan
from lstm_jax.nn.lstm import LSTM, lstm_scan
from lstm_jax.nn.registry import (
    CELLS,
    cell_class,
    gate_activations,
    retain_gates,
    retentions,
)
from lstm_jax.nn.rnn import SimpleRNN, rnn_scan
from lstm_jax.nn.scan import input_projection, linear_recurrence
from lstm_jax.nn.stack import Gates, RecurrentLayer, Retention, State

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "Gates",
    "RecurrentLayer",
    "Retention",
    "SimpleRNN",
    "State",
    "cell_class",
    "gate_activations",
    "gru_scan",
    "input_projection",
    "linear_recurrence",
    "lstm_scan",
    "retain_gates",
    "retentions",
    "rnn_scan",
]
