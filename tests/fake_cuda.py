"""A CUDA machine on CPU, for the backend selection: `install(monkeypatch)` makes
lstm_jax.nn.cudnn see a CUDA GPU and puts in place of cuDNN's kernel one that fails where
the real one fails (a global matmul precision it cannot take, a call under jax.vmap) and
otherwise computes JAX's own reference (`jax.experimental.rnn.lstm_ref`)."""

from __future__ import annotations

import jax
from jax.experimental import rnn

from lstm_jax.nn import cudnn


@jax.custom_batching.custom_vmap
def _identity_without_batching_rule(x):
    return x


@_identity_without_batching_rule.def_vmap
def _refuse_vmap(axis_size, in_batched, x):
    # What JAX raises for the real kernel, whose primitive has no batching rule.
    raise NotImplementedError("Batching rule for 'rnn_fwd' not implemented")


@jax.custom_vjp
def _no_batching_rule(x):
    """The identity, refused under jax.vmap; differentiable (custom_vmap alone is not)."""
    return _identity_without_batching_rule(x)


_no_batching_rule.defvjp(lambda x: (_identity_without_batching_rule(x), None), lambda _, g: (g,))


def reference(
    x, h0, c0, weights, lengths, *, input_size, hidden_size, num_layers, dropout, bidirectional
):
    """jax.experimental.rnn.lstm's signature, computed by JAX's reference implementation
    over its own unpacking of the flat weights."""
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
        weights, input_size, hidden_size, num_layers, bidirectional
    )
    return rnn.lstm_ref(
        x,
        h0,
        c0,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        lengths,
        input_size,
        hidden_size,
        num_layers,
        dropout,
        bidirectional,
    )


def fake_cudnn_lstm(x, *args, precision=None, **kwargs):
    """jax.experimental.rnn.lstm's signature and failures, JAX's reference inside."""
    # The real kernel's first step (jax.experimental.rnn.lstm_fwd): raises
    # NotImplementedError for jax_default_matmul_precision "bfloat16" or "default".
    rnn._lstm_cudnn_allow_tf32(precision)
    return reference(_no_batching_rule(x), *args, **kwargs)


def install(monkeypatch) -> list[tuple]:
    """Makes this a CUDA machine for the test; returns the list that the stand-in kernel
    appends the shape of x to at each call (each trace, under jit)."""
    calls = []

    def recorded(x, *args, **kwargs):
        calls.append(x.shape)
        return fake_cudnn_lstm(x, *args, **kwargs)

    monkeypatch.setattr(cudnn, "on_cuda", lambda: True)
    monkeypatch.setattr(rnn, "lstm", recorded)
    return calls
