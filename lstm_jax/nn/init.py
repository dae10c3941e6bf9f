"""Parameter initialisers for the recurrent layers.

Defaults (documented choices):
- input weights: uniform in +-1/sqrt(H), PyTorch's default for nn.LSTM / nn.GRU / nn.RNN,
  so a freshly built layer has the same scale as the PyTorch baselines it is compared with;
- recurrent weights: orthogonal, one independent (H, H) orthogonal matrix per gate block, so
  that every gate's recurrent map starts norm-preserving (Saxe et al. 2014);
- biases: zero, except the LSTM forget gate (``forget_bias``, default 1.0; Jozefowicz et al.
  2015) or the chrono initialisation (Tallec & Ollivier 2018).
Shapes use the layer layout: w_ih (D, N, G*H), w_hh (N, H, G*H), biases (N, G*H), where N is
the number of directions and G the number of gate blocks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def input_weights(key, d_in, num_dirs, gates, hidden, dtype=jnp.float32):
    """U(-1/sqrt(H), 1/sqrt(H)) of shape (D, N, G*H)."""
    bound = 1.0 / jnp.sqrt(hidden)
    return jax.random.uniform(
        key, (d_in, num_dirs, gates * hidden), dtype, minval=-bound, maxval=bound
    )


def recurrent_weights(key, num_dirs, gates, hidden, dtype=jnp.float32):
    """(N, H, G*H): each (H, H) gate block an independent orthogonal matrix."""
    keys = jax.random.split(key, num_dirs * gates)
    ortho = jax.nn.initializers.orthogonal()
    blocks = jax.vmap(lambda k: ortho(k, (hidden, hidden), dtype))(keys)  # one batched QR
    # (N*G, H, H) -> (N, H, G*H): gate blocks side by side on the output axis.
    blocks = blocks.reshape(num_dirs, gates, hidden, hidden)
    return jnp.transpose(blocks, (0, 2, 1, 3)).reshape(num_dirs, hidden, gates * hidden)


def lstm_bias(key, num_dirs, hidden, forget_bias=1.0, chrono_max_steps=None, dtype=jnp.float32):
    """(N, 4H) in gate order i, f, g, o.

    Chrono init (Tallec & Ollivier 2018), used when ``chrono_max_steps`` = T_max is given:
    b_f = log(u), u ~ U[1, T_max - 1], and b_i = -b_f, so that the forget gates' characteristic
    times 1/(1 - f) spread over [1, T_max]; it overrides ``forget_bias``.
    """
    b = jnp.zeros((num_dirs, 4, hidden), dtype)
    if chrono_max_steps is not None:
        t_max = float(chrono_max_steps)
        if t_max <= 2.0:
            raise ValueError(f"chrono_max_steps must be > 2, got {chrono_max_steps}")
        u = jax.random.uniform(key, (num_dirs, hidden), dtype, minval=1.0, maxval=t_max - 1.0)
        b_f = jnp.log(u)
        b = b.at[:, 1].set(b_f).at[:, 0].set(-b_f)
    else:
        b = b.at[:, 1].set(forget_bias)
    return b.reshape(num_dirs, 4 * hidden)
