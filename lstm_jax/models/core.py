"""Builds the recurrent core (lstm_jax.nn) that every task model wraps, from the `model`
config group, so that `model.cell=gru` swaps the cell in any experiment."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from lstm_jax.nn import GRU, LSTM, SimpleRNN

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}


def make_core(model_config: Any, in_features: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """The recurrent core named by `model_config.cell`, reading (B, T, in_features)."""
    cell = model_config.cell
    if cell not in CELLS:
        raise ValueError(f"model.cell={cell!r} is not a known cell; choose one of {sorted(CELLS)}.")
    kwargs = {
        "num_layers": model_config.num_layers,
        "bidirectional": model_config.bidirectional,
        "dropout": model_config.dropout,
        "dtype": None if model_config.dtype in (None, "float32") else jnp.dtype(model_config.dtype),
        "rngs": rngs,
    }
    if cell == "lstm":
        kwargs.update(
            forget_bias=model_config.forget_bias,
            chrono_max_steps=model_config.chrono_max_steps,
            backend=getattr(model_config, "backend", "auto"),
        )
    return CELLS[cell](in_features, model_config.hidden_size, **kwargs)
