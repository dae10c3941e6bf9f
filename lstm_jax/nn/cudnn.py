"""The cuDNN backend of `lstm_jax.nn.LSTM`: `jax.experimental.rnn.lstm` on CUDA GPUs.

cuDNN takes one flat float32 weight vector per stack (jax.experimental.rnn's module docstring
gives the layout): for every pseudo-layer p = 2k + d (layer k, direction d) W_ih^p (4H, D_p)
and W_hh^p (4H, H) in PyTorch gate order i, f, g, o, all linear weights first, then b_ih^p
and b_hh^p (4H,) for every p. lstm_jax keeps the transposes (w_ih (D, N, 4H), w_hh
(N, H, 4H)) and one summed bias, so the conversion is transposes and a concatenation: cheap,
differentiable, done inside the jitted step, and the parameters stay in lstm_jax's layout (a
checkpoint does not depend on the backend).

What cuDNN cannot do, and the scan kernel then does (`backend="auto"` picks it; an explicit
`backend="cudnn"` falls back with a warning): return the gates or take a hidden
perturbation (the diagnostics), a compute dtype other than float32, active dropout between
layers (cuDNN draws its own masks), a layer without biases. A zero length (jax#17966) is
handled here: cuDNN runs those rows with length 1, and their outputs and final state are
then replaced by zeros and the initial state, as the scan kernel gives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BACKENDS = ("auto", "scan", "cudnn")


def on_cuda() -> bool:
    """Whether JAX's default backend is a CUDA GPU (the one jax.experimental.rnn needs)."""
    try:
        return jax.default_backend() == "gpu" and any(
            "cuda" in d.client.platform_version.lower() for d in jax.devices()
        )
    except (RuntimeError, AttributeError):
        return False


def check_backend(backend: str) -> None:
    """Refuses an unknown backend, and `cudnn` where there is no CUDA GPU, before any work."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {', '.join(BACKENDS)}.")
    if backend == "cudnn" and not on_cuda():
        raise ValueError(
            f"backend='cudnn' needs a CUDA GPU, but JAX's default backend here is "
            f"{jax.default_backend()!r}; use backend='auto' (cuDNN where it can, the scan "
            "kernel elsewhere) or backend='scan'."
        )


def flat_weights(layers: list, num_directions: int) -> jax.Array:
    """cuDNN's flat weight vector from lstm_jax's per-layer parameters.

    layers[k] has w_ih (D_k, N, 4H), w_hh (N, H, 4H) and b (N, 4H) (the sum b_ih + b_hh:
    it goes to b_ih, and b_hh is zero)."""
    linear, biases = [], []
    for p in layers:
        w_ih, w_hh, b = p.w_ih[...], p.w_hh[...], p.b[...]
        for d in range(num_directions):
            linear += [w_ih[:, d, :].T.reshape(-1), w_hh[d].T.reshape(-1)]
            biases += [b[d].reshape(-1), jnp.zeros_like(b[d]).reshape(-1)]
    return jnp.concatenate(linear + biases).astype(jnp.float32)


def lstm(x, seq_lengths, h0, c0, weights, *, input_size, hidden_size, num_layers, bidirectional):
    """y (B, T, N*H) (zero past each length), h_n, c_n (L*N, B, H) from cuDNN; rows of length
    zero give zeros and the initial state."""
    from jax.experimental import rnn

    batch, time = x.shape[:2]
    if seq_lengths is None:
        seq_lengths = jnp.full((batch,), time, jnp.int32)
    seq_lengths = jnp.asarray(seq_lengths, jnp.int32)
    empty = seq_lengths == 0
    y, h_n, c_n = rnn.lstm(
        x.astype(jnp.float32),
        h0,
        c0,
        weights,
        jnp.maximum(seq_lengths, 1),
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=0.0,
        bidirectional=bidirectional,
    )
    valid = jnp.arange(time)[None, :] < seq_lengths[:, None]  # (B, T); false for empty rows
    y = jnp.where(valid[..., None], y, 0.0)
    h_n = jnp.where(empty[None, :, None], h0, h_n)
    c_n = jnp.where(empty[None, :, None], c0, c_n)
    return y, h_n, c_n
