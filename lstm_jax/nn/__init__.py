"""The recurrent core: Flax NNX LSTM, GRU and SimpleRNN layers (batch-first) over lax.scan
kernels with a hand-written backward, and the registry of cells. See lstm_jax.nn.layers for
the interface and lstm_jax.nn.registry for what a cell declares."""

from lstm_jax.nn.layers import GRU, LSTM, SimpleRNN
from lstm_jax.nn.registry import (
    CELLS,
    RecurrentLayer,
    cell_class,
    gate_activations,
    retain_gates,
)
from lstm_jax.nn.scan import gru_scan, input_projection, lstm_scan, rnn_scan

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RecurrentLayer",
    "SimpleRNN",
    "cell_class",
    "gate_activations",
    "retain_gates",
    "gru_scan",
    "input_projection",
    "lstm_scan",
    "rnn_scan",
]
