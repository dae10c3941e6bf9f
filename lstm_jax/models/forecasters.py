"""Recurrent forecasters, trained by `lstm_jax.tasks.timeseries`.

A task config names one as a partial node, `task.forecaster: {_target_:
lstm_jax.models.SegmentForecaster, _partial_: true, segment_len: 48, ...}` (the options of
each are its constructor's, listed once: configs/task/forecaster/<variant>.yaml); the task
supplies what only the data knows: `forecaster(model_config, in_channels=, outputs=,
input_len=, horizon=, num_marks=, rngs=)`.

Every forecaster maps an input window x (B, L, C_in) (and optional calendar features
x_mark (B, L, F), y_mark (B, H, F)) to a forecast (B, H, C_out) of the output columns
`outputs` (indices into the C_in input columns), on the scale of the (standardised) data:

- `DirectForecaster` ("direct"): the recurrent core reads the window one time step at a
  time; a linear head maps its last output to all H * C_out values at once.
- `Seq2SeqForecaster` ("seq2seq"): an encoder core reads the window; a decoder core, started
  from the encoder's final state, runs over the H future steps with learned position
  embeddings (plus the known future calendar features) as inputs and emits one step of the
  forecast per position. It feeds no predictions back (non-autoregressive): training and
  inference see the same inputs, so there is no exposure bias.
- `SegmentForecaster` ("segment"): SegRNN (Lin et al. 2023). Channel-independent: each
  column is a univariate series. The window is cut into L / w segments of w steps; each
  segment is embedded (Linear(w, d) + ReLU) and the core steps over segments, not single
  time steps. The decoder predicts the ceil(H / w) horizon segments in parallel: one step of
  the same core per segment, from the encoder's final state, with the input position
  embedding (segment index) ++ channel embedding, then Linear(hidden, w).

`RevIN` (Kim et al. 2022, reversible instance normalisation) standardises each window by its
own per-channel mean and std before the model and undoes it on the forecast; it is what
published forecasters use against the distribution shift between ETT's train and test
periods. `return_gates` / `hidden_perturbation` go to the main core's pass over the input
window (the encoder), so diagnostics see the recurrence that carries the history.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.models.core import config_dict, make_core


class RevIN(nnx.Module):
    """Reversible instance normalisation over the time axis, per window and channel, with a
    learnable per-channel affine map (Kim et al. 2022)."""

    def __init__(self, num_features: int, *, affine: bool = True, eps: float = 1e-5):
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))
            self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def normalize(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """x (B, T, C) -> normalised x and the statistics (mean, std), each (B, 1, C)."""
        mean = jax.lax.stop_gradient(jnp.mean(x, axis=1, keepdims=True))
        std = jax.lax.stop_gradient(jnp.sqrt(jnp.var(x, axis=1, keepdims=True) + self.eps))
        x = (x - mean) / std
        if self.affine:
            x = x * self.weight[...] + self.bias[...]
        return x, (mean, std)

    def denormalize(self, y: jax.Array, stats, columns: list[int]) -> jax.Array:
        """y (B, H, len(columns)) -> the scale of the input columns `columns`."""
        mean, std = stats
        cols = jnp.asarray(columns)
        if self.affine:
            y = (y - self.bias[...][cols]) / (self.weight[...][cols] + self.eps * self.eps)
        return y * std[..., cols] + mean[..., cols]


class Forecaster(nnx.Module):
    """Shared plumbing: RevIN around `forward`, output column selection.

    The sizes come from the data (the task passes them): `in_channels` C_in, the forecast
    columns `outputs`, the window `input_len` L and `horizon` H, and `num_marks` calendar
    features (0: none). The options every variant has are listed here once: `revin`,
    `revin_affine` and `head_dropout` (the rate before the read-out)."""

    def __init__(
        self,
        *,
        in_channels: int,
        outputs: list[int],
        input_len: int,
        horizon: int,
        num_marks: int = 0,
        revin: bool = True,
        revin_affine: bool = True,
        head_dropout: float = 0.0,
    ):
        self.in_channels = in_channels
        self.outputs = tuple(outputs)
        self.input_len = input_len
        self.horizon = horizon
        self.num_marks = num_marks
        self.head_dropout = head_dropout
        self.revin = RevIN(in_channels, affine=revin_affine) if revin else None

    def forward(self, x, x_mark, y_mark, return_gates, hidden_perturbation, dropout_key):
        raise NotImplementedError

    def __call__(
        self,
        x: jax.Array,
        x_mark: jax.Array | None = None,
        y_mark: jax.Array | None = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ) -> tuple[jax.Array, Any]:
        """(forecast (B, H, C_out), gates of the main core or None).

        `dropout_key`: the key of the head dropout masks in training (the task derives it
        from (seed, step), so masks replay on resume); None draws from the module's stream."""
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        y, gates = self.forward(x, x_mark, y_mark, return_gates, hidden_perturbation, dropout_key)
        if stats is not None:
            y = self.revin.denormalize(y, stats, self.outputs)
        return y, gates


class DirectForecaster(Forecaster):
    """Core over single time steps; a linear head from the last output to all H steps.

    With `channel_independent`, each column is a separate univariate series (batch B * C,
    one input feature, plus the calendar features) and every column is forecast by the same
    weights; otherwise the core reads all C_in columns per step."""

    def __init__(
        self,
        model_config: Any,
        *,
        channel_independent: bool = False,
        rngs: nnx.Rngs,
        **sizes_and_options: Any,
    ):
        super().__init__(**sizes_and_options)
        self.channel_independent = channel_independent
        per_step = (1 if channel_independent else self.in_channels) + self.num_marks
        self.core = make_core(model_config, per_step, rngs=rngs)
        n_out = 1 if channel_independent else len(self.outputs)
        self.dropout = nnx.Dropout(self.head_dropout, rngs=rngs)
        self.head = nnx.Linear(self.core.output_width, self.horizon * n_out, rngs=rngs)

    def forward(self, x, x_mark, y_mark, return_gates, hidden_perturbation, dropout_key):
        b, t, _c = x.shape
        if self.channel_independent:
            x = x[..., list(self.outputs)]  # only the forecast columns are read (all of them in M)
            n = x.shape[-1]
            x = jnp.transpose(x, (0, 2, 1)).reshape(b * n, t, 1)
            if self.num_marks:
                x_mark = jnp.repeat(x_mark, n, axis=0)
        if self.num_marks:
            x = jnp.concatenate([x, x_mark.astype(x.dtype)], axis=-1)
        y, _, gates = self.core.run(
            x, return_gates=return_gates, hidden_perturbation=hidden_perturbation
        )
        out = self.head(self.dropout(y[:, -1], rngs=dropout_key))
        if self.channel_independent:
            out = out.reshape(b, -1, self.horizon).transpose(0, 2, 1)
        else:
            out = out.reshape(b, self.horizon, len(self.outputs))
        return out, gates


class Seq2SeqForecaster(Forecaster):
    """Encoder core over the window; decoder core over the horizon, started from the
    encoder's final state, reading position embeddings (+ future calendar features)."""

    def __init__(
        self,
        model_config: Any,
        *,
        position_dim: int = 16,
        rngs: nnx.Rngs,
        **sizes_and_options: Any,
    ):
        super().__init__(**sizes_and_options)
        marks = self.num_marks
        self.encoder = make_core(model_config, self.in_channels + marks, rngs=rngs)
        self.decoder = make_core(model_config, position_dim + marks, rngs=rngs)
        self.position = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (self.horizon, position_dim), jnp.float32)
        )
        self.dropout = nnx.Dropout(self.head_dropout, rngs=rngs)
        self.head = nnx.Linear(self.encoder.output_width, len(self.outputs), rngs=rngs)

    def forward(self, x, x_mark, y_mark, return_gates, hidden_perturbation, dropout_key):
        b = x.shape[0]
        if self.num_marks:
            x = jnp.concatenate([x, x_mark.astype(x.dtype)], axis=-1)
        _, state, gates = self.encoder.run(
            x, return_gates=return_gates, hidden_perturbation=hidden_perturbation
        )
        dec_in = jnp.broadcast_to(self.position[...], (b,) + self.position.shape)
        if self.num_marks:
            dec_in = jnp.concatenate([dec_in, y_mark.astype(dec_in.dtype)], axis=-1)
        y, _, _ = self.decoder.run(dec_in, initial_state=state)
        return self.head(self.dropout(y, rngs=dropout_key)), gates


class SegmentForecaster(Forecaster):
    """SegRNN: the core steps over segments of the input and decodes horizon segments in
    parallel; channel-independent, one set of weights for every column."""

    def __init__(
        self,
        model_config: Any,
        *,
        segment_len: int = 48,
        embed_dim: int | None = None,
        rngs: nnx.Rngs,
        **sizes_and_options: Any,
    ):
        super().__init__(**sizes_and_options)
        input_len, horizon = self.input_len, self.horizon
        if input_len % segment_len:
            raise ValueError(
                f"segment forecaster: input_len={input_len} must be a multiple of "
                f"segment_len={segment_len}."
            )
        self.segment_len = segment_len
        self.num_in_segments = input_len // segment_len
        self.num_out_segments = math.ceil(horizon / segment_len)
        d = embed_dim or int(config_dict(model_config)["hidden_size"])
        n_series = len(self.outputs)
        self.embed = nnx.Linear(segment_len, d, rngs=rngs)
        self.core = make_core(model_config, d, rngs=rngs)
        key = rngs.params()
        k1, k2 = jax.random.split(key)
        self.position = nnx.Param(jax.random.normal(k1, (self.num_out_segments, d // 2)))
        self.channel = nnx.Param(jax.random.normal(k2, (n_series, d - d // 2)))
        self.dropout = nnx.Dropout(self.head_dropout, rngs=rngs)
        self.head = nnx.Linear(self.core.output_width, segment_len, rngs=rngs)

    def forward(self, x, x_mark, y_mark, return_gates, hidden_perturbation, dropout_key):
        b, _t, _ = x.shape
        x = x[..., list(self.outputs)]  # the series that are forecast (all columns in M)
        c = x.shape[-1]
        w, n, m = self.segment_len, self.num_in_segments, self.num_out_segments
        seg = jnp.transpose(x, (0, 2, 1)).reshape(b * c, n, w)
        emb = jax.nn.relu(self.embed(seg))  # (B*C, n, d)
        _, state, gates = self.core.run(
            emb, return_gates=return_gates, hidden_perturbation=hidden_perturbation
        )
        d = emb.shape[-1]
        pos = jnp.broadcast_to(self.position[...][None], (c, m, self.position.shape[-1]))
        chan = jnp.broadcast_to(self.channel[...][:, None], (c, m, self.channel.shape[-1]))
        dec_in = jnp.concatenate([pos, chan], axis=-1)  # (C, m, d)
        dec_in = jnp.broadcast_to(dec_in[None], (b, c, m, d)).reshape(b * c * m, 1, d)
        dec_state = jax.tree.map(lambda s: jnp.repeat(s, m, axis=1), state)
        y, _, _ = self.core.run(dec_in.astype(emb.dtype), initial_state=dec_state)
        out = self.head(self.dropout(y[:, 0], rngs=dropout_key))  # (B*C*m, w)
        out = out.reshape(b, c, m * w)[:, :, : self.horizon]
        return jnp.transpose(out, (0, 2, 1)), gates
