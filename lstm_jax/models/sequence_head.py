"""The sequence model of the classification and per-step tasks: features (B, T, F) ->
recurrent core (the `model` group) -> read-out (`pooling`) -> dropout -> linear.

It replaces the two copies the tasks had (the synthetic/images RecurrentHead and the
speech SpeechModel). A task builds it from its config node, e.g.

    head: {_target_: lstm_jax.models.SequenceHead, _partial_: true, pooling: mean, dropout: 0.0}

and supplies what only the data knows: `head(model_config, in_features, num_outputs, rngs=...)`.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.models.core import make_core
from lstm_jax.nn.stack import Gates

Pooling = Literal["last", "mean", "none"]
POOLINGS = ("last", "mean", "none")


class SequenceHead(nnx.Module):
    """Core -> read-out -> dropout -> linear over `num_outputs`.

    pooling="last": the top layer's final hidden state at each sequence's true length
      (forward direction; with a bidirectional core the backward direction's final state,
      its output at frame 0, concatenated): (B, num_outputs).
    pooling="mean": the mean of the core output over the valid frames: (B, num_outputs).
    pooling="none": the linear read-out at every frame (per-step targets, CTC):
      (B, T, num_outputs).
    `dropout` is the rate before the linear read-out (no module when 0).
    """

    def __init__(
        self,
        model_config: Any,
        in_features: int,
        num_outputs: int,
        *,
        pooling: Pooling = "last",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}.")
        # Built in this order (core, dropout, linear) so that the params stream draws the
        # same keys as the models this replaces: the same initialisation for a seed.
        self.core = make_core(model_config, in_features, rngs=rngs)
        self.pooling = pooling
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0.0 else None
        self.head = nnx.Linear(self.core.output_width, num_outputs, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        seq_lengths: jax.Array | None = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
    ) -> tuple[jax.Array, Gates | None]:
        """x (B, T, F), seq_lengths (B,) or None (every frame valid) -> outputs (float32;
        shapes in the class docstring) and the core's gates (None unless return_gates)."""
        y, state, gates = self.core.run(
            x, seq_lengths, return_gates=return_gates, hidden_perturbation=hidden_perturbation
        )
        if seq_lengths is not None:
            t = y.shape[1]
            mask = (jnp.arange(t)[None, :] < seq_lengths[:, None]).astype(y.dtype)[..., None]
            y = y * mask  # the core zeroes padding already; this keeps the head exact regardless
        if self.pooling == "none":
            feats = y
        elif self.pooling == "mean":
            if seq_lengths is None:
                feats = jnp.mean(y.astype(jnp.float32), axis=1)
            else:
                denom = jnp.maximum(seq_lengths, 1).astype(jnp.float32)[:, None]
                feats = jnp.sum(y.astype(jnp.float32), axis=1) / denom
        else:
            # The final state is taken at each sequence's true length; PyTorch order puts
            # the top layer's directions last.
            top = self.core.hidden_of(state)[-self.core.num_directions :]
            feats = jnp.concatenate(list(top), axis=-1)
        if self.dropout is not None:
            feats = self.dropout(feats)
        return self.head(feats).astype(jnp.float32), gates
