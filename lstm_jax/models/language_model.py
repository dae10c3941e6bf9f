"""The language model: token embedding -> dropout -> recurrent core (a stack) -> dropout ->
projection to the vocabulary, optionally tied to the embedding (Press & Wolf 2017 / Inan et
al. 2017). Dropout and the carried state are explained in lstm_jax.tasks.language, the task
that trains it and supplies the vocabulary size.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.models.core import config_dict, make_core


class LanguageModel(nnx.Module):
    """Embedding -> recurrent core (stack) -> projection to the vocabulary.

    `__call__(tokens (B, T) int, state)` returns logits (B, T, V), the final state in the
    core's layout ((h, c) each (num_layers, B, H) for the LSTM; h for GRU / RNN) and the gates
    (or None).
    """

    def __init__(
        self,
        vocab_size: int,
        model_config: Any,
        *,
        embed_size: int | None = None,
        tie_weights: bool = False,
        dropout: float = 0.0,
        variational_dropout: bool = False,
        rngs: nnx.Rngs,
    ):
        cfg = config_dict(model_config)
        if cfg.get("bidirectional"):
            raise ValueError("a language model reads left to right: set model.bidirectional=false")
        hidden = int(cfg["hidden_size"])
        embed_size = hidden if embed_size is None else int(embed_size)
        if tie_weights and embed_size != hidden:
            raise ValueError(
                f"tie_weights needs task.embed_size == model.hidden_size, got {embed_size} and "
                f"{hidden}"
            )
        self.num_layers = int(cfg["num_layers"])
        self.hidden_size = hidden
        self.vocab_size = vocab_size
        self.tie_weights = tie_weights
        self.variational = bool(variational_dropout)
        # N(0, 1) as torch.nn.Embedding (inputs of the scale of one-hot vectors); tied to the
        # output layer, U(-0.1, 0.1) as the PyTorch word-LM example, so that the initial
        # logits h @ E^T stay small.
        self.embed = nnx.Embed(
            vocab_size,
            embed_size,
            embedding_init=nnx.initializers.uniform(0.2)
            if tie_weights
            else nnx.initializers.normal(1.0),
            rngs=rngs,
        )
        if tie_weights:  # uniform(0.2) draws from [0, 0.2)
            self.embed.embedding.value = self.embed.embedding.value - 0.1
        bcast = (1,) if self.variational else ()
        self.drop_in = nnx.Dropout(dropout, broadcast_dims=bcast, rngs=rngs)
        self.drop_out = nnx.Dropout(dropout, broadcast_dims=bcast, rngs=rngs)
        self.stacked = self.variational or float(cfg.get("dropout", 0.0)) > 0.0
        if self.stacked:
            one = dict(cfg, num_layers=1, dropout=0.0)
            self.layers = nnx.List(
                [
                    make_core(one, embed_size if k == 0 else hidden, rngs=rngs)
                    for k in range(self.num_layers)
                ]
            )
            self.drop_mid = nnx.Dropout(
                float(cfg.get("dropout", 0.0)), broadcast_dims=bcast, rngs=rngs
            )
            self.core = None
        else:
            self.core = make_core(cfg, embed_size, rngs=rngs)
            self.layers = None
            self.drop_mid = None
        if tie_weights:
            self.out = None
            self.out_bias = nnx.Param(jnp.zeros((vocab_size,), jnp.float32))
        else:
            self.out = nnx.Linear(hidden, vocab_size, rngs=rngs)
            self.out_bias = None

    # --- state helpers ---------------------------------------------------------------------

    def zero_state(self, batch_size: int):
        """The zero state of the whole stack, in the core's layout ((h, c) for the LSTM)."""
        if self.core is not None:
            return self.core.zero_state(batch_size)
        # the stacked path: one single-layer core per layer, states concatenated on axis 0
        return jax.tree.map(
            lambda *s: jnp.concatenate(s, axis=0),
            *[layer.zero_state(batch_size) for layer in self.layers],
        )

    def _layer_state(self, state, k):
        return None if state is None else jax.tree.map(lambda s: s[k : k + 1], state)

    # --- forward ---------------------------------------------------------------------------

    def project(self, h: jax.Array) -> jax.Array:
        if self.tie_weights:
            return self.embed.attend(h) + self.out_bias.value
        return self.out(h)

    def __call__(
        self,
        tokens: jax.Array,
        state: Any = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ):
        def keys(i):  # the mask key of dropout site i (None: the module's own RNG stream)
            return None if dropout_key is None else jax.random.fold_in(dropout_key, i)

        x = self.drop_in(self.embed(tokens), rngs=keys(0))
        gates = None
        if not self.stacked:
            y, state, gates = self.core.run(
                x,
                None,
                state,
                return_gates=return_gates,
                hidden_perturbation=hidden_perturbation,
            )
        else:
            states, gates = [], {} if return_gates else None
            y = x
            for k, layer in enumerate(self.layers):
                if k > 0:
                    y = self.drop_mid(y, rngs=keys(1 + k))
                top = k == self.num_layers - 1
                y, s, g = layer.run(
                    y,
                    None,
                    self._layer_state(state, k),
                    return_gates=return_gates,
                    hidden_perturbation=hidden_perturbation if top else None,
                )
                if return_gates:
                    gates[f"layer_{k}"] = g["layer_0"]
                states.append(s)
            state = jax.tree.map(lambda *s: jnp.concatenate(s, axis=0), *states)
        logits = self.project(self.drop_out(y, rngs=keys(1 + self.num_layers)))
        return logits, state, gates


def reinit_uniform(model: nnx.Module, scale: float, key: jax.Array) -> None:
    """Every parameter (weights, biases, embeddings) drawn from U(-scale, scale), as Zaremba
    et al. 2014 initialise their LSTMs (0.1 small, 0.05 medium, 0.04 large)."""
    params = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    new = [
        jax.random.uniform(k, leaf.shape, leaf.dtype, -scale, scale)
        for k, leaf in zip(keys, leaves, strict=False)
    ]
    nnx.update(model, jax.tree.unflatten(treedef, new))
