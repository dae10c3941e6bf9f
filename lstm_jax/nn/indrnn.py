"""The Independently Recurrent Neural Network (Li et al. 2018, "Independently Recurrent
Neural Network (IndRNN): Building A Longer and Deeper RNN"): each unit sees only its own
past, through an element-wise recurrent weight u,

    h_t = sigma(W x_t + u * h_{t-1} + b),    sigma = relu (the paper's) or tanh.

The bound on u. Unrolled over T steps in the linear region of a ReLU, a unit's state is
scaled by u^T, so the paper bounds |u| <= gamma^(1/T): over T steps no unit grows by more
than gamma. This follows the authors' code (github.com/Sunnydreamrain/IndRNN_Theano_Lasagne,
adding/adding.py, and IndRNN_pytorch): U_max = max_gain^(1/gain_steps) for ReLU (MAG=2
there), (max_gain / 0.9^(gain_steps/10))^(1/gain_steps) for tanh (whose saturation already
shrinks the state); u initialised uniform in [0, U_max] (ReLU) or [-U_max, U_max] (tanh);
input weights as PyTorch's nn.Linear, U(-1/sqrt(D_in), 1/sqrt(D_in)); bias 0. The authors
clamp the stored u into [-U_max, U_max] before every training step; the trainer here is
cell-agnostic (an optax optimizer), so the bound is a parametrisation instead: the forward
uses clip(u, -U_max, U_max) (`bounded`), so no optimizer step can make the recurrence
leave the bound. A plain clip would have a zero gradient beyond the bound, and a stored u
that an optimizer step carried past it would never move again; `bounded`'s gradient passes
wherever it would move u back towards the bound, as the authors' clamp-then-step does.

Retention. IndRNN has no gate; what it keeps of a unit's state each step is its Jacobian
dh_t/dh_{t-1} = u * sigma'(pre_t) (element-wise, since units are independent): u for a ReLU
unit in its linear region, 0 when the unit is cut off (pre_t <= 0), u (1 - h_t^2) for tanh.
The layer returns it as the gate "retain" and declares its modulus the kept fraction
(`Retention("retain", "modulus")`), as the LSTM's forget gate is its dc_t/dc_{t-1}; |u| > 1
(a unit allowed to grow, within the bound) reads as keeping everything.

Layer k holds (N directions, width H): ``w_in`` (D_in, N, H), ``u`` (N, H) (the stored,
unbounded value), ``bias`` (N, H). The loop is `lax.scan` with JAX's own gradient.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp

from lstm_jax.nn import scan
from lstm_jax.nn.stack import F32, RecurrentLayer, Retention

# activation -> (sigma, sigma' as a function of sigma's output)
ACTIVATIONS = {
    "relu": (jax.nn.relu, lambda a: (a > 0).astype(a.dtype)),
    "tanh": (jnp.tanh, lambda a: 1.0 - a * a),
}


def recurrent_bound(activation: str, max_gain: float, gain_steps: int) -> float:
    """U_max of the authors' code: over `gain_steps` steps a unit grows by at most
    `max_gain` (for tanh, allowing for its saturation, 0.9 per 10 steps)."""
    if activation == "tanh":
        return (max_gain / 0.9 ** (gain_steps / 10.0)) ** (1.0 / gain_steps)
    return max_gain ** (1.0 / gain_steps)


@jax.custom_vjp
def bounded(u: jax.Array, u_max: jax.Array) -> jax.Array:
    """clip(u, -u_max, u_max), with the gradient kept where it would move u back inside."""
    return jnp.clip(u, -u_max, u_max)


def _bounded_fwd(u, u_max):
    return bounded(u, u_max), (u, u_max)


def _bounded_bwd(res, g):
    u, u_max = res
    # gradient descent moves u by -g: inside the bound every direction is allowed; beyond
    # it only one towards zero (u g > 0), else u would drift further past the bound unseen.
    keep = (jnp.abs(u) <= u_max) | (u * g > 0)
    return jnp.where(keep, g, jnp.zeros_like(g)), jnp.zeros_like(u_max)


bounded.defvjp(_bounded_fwd, _bounded_bwd)


class IndRNN(RecurrentLayer):
    """IndRNN, stacked and bidirectional like the other cells.

    activation: "relu" (the paper's) or "tanh"; max_gain, gain_steps: the bound on |u|,
    U_max = max_gain^(1/gain_steps) for ReLU (the module docstring), meant for sequences of
    about `gain_steps` steps.
    """

    CELL = "indrnn"
    # dh_t/dh_{t-1} = u sigma'(pre): in [-U_max, U_max], U_max just above 1: binned as tanh.
    GATE_ACTIVATIONS = {"retain": "tanh"}
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("retain", kept="modulus")

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        activation: Literal["relu", "tanh"] = "relu",
        max_gain: float = 2.0,
        gain_steps: int = 1000,
        **kwargs: Any,
    ):
        """kwargs: the stacking options every cell takes (num_layers, bidirectional,
        dropout, dtype, param_dtype, rngs; lstm_jax.nn.stack.RecurrentLayer)."""
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"IndRNN activation={activation!r} is unknown; choose one of "
                f"{', '.join(ACTIVATIONS)}."
            )
        if not max_gain > 0.0:
            raise ValueError(f"IndRNN needs max_gain > 0 (the bound on |u|), got {max_gain}.")
        if not gain_steps >= 1:
            raise ValueError(
                f"IndRNN needs gain_steps >= 1 (the sequence length the bound on |u| is set "
                f"for), got {gain_steps}."
            )
        self.activation = activation
        self.max_gain, self.gain_steps = max_gain, gain_steps
        # read by _layer_params, which the base constructor calls once per layer
        self.u_max = recurrent_bound(activation, max_gain, gain_steps)
        super().__init__(in_features, hidden_size, **kwargs)

    def _layer_params(self, d_in, key):
        n, h, dt = self.num_directions, self.hidden_size, self.param_dtype
        k_w, k_u = jax.random.split(key)
        u_low = 0.0 if self.activation == "relu" else -self.u_max
        limit = 1.0 / math.sqrt(d_in)
        return {
            "w_in": jax.random.uniform(k_w, (d_in, n, h), dt, -limit, limit),
            "u": jax.random.uniform(k_u, (n, h), dt, u_low, self.u_max),
            "bias": jnp.zeros((n, h), dt),
        }

    def recurrent_weight(self, p) -> jax.Array:
        """The u the recurrence uses, (N, H): the stored u within [-U_max, U_max]."""
        return bounded(p.u[...].astype(F32), jnp.asarray(self.u_max, F32))

    def _project(self, p, x):
        w = p.w_in[...]
        xw = scan.input_projection(x, w.reshape(w.shape[0], -1), compute_dtype=self.dtype)
        return xw.reshape(*x.shape[:2], self.num_directions, self.hidden_size)

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        sigma, sigma_prime = ACTIVATIONS[self.activation]
        u = self.recurrent_weight(p)[:, None, :]  # (N, 1, H)
        bias = p.bias[...].astype(F32)[:, None, :]
        m4, _ = scan.masks(mask, 4)

        def step(h, inp):
            xw_t, m, p_t = inp
            a = sigma(xw_t + bias + u * h)
            h_new = scan.add_perturbation(a, p_t)
            retain = scan.zero_pad(m, u * sigma_prime(a)) if return_gates else None
            return scan.freeze(m, h_new, h), (scan.zero_pad(m, h_new), retain)

        h_last, (y, gates) = jax.lax.scan(step, carry0[0], (xw, m4, pert))
        return y, (h_last,), gates
