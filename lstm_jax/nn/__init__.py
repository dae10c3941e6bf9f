"""The recurrent core: Flax NNX LSTM, GRU and SimpleRNN layers (batch-first) over lax.scan
kernels with a hand-written backward. See lstm_jax.nn.layers for the interface."""

from lstm_jax.nn.layers import GRU, LSTM, SimpleRNN

__all__ = ["GRU", "LSTM", "SimpleRNN"]
