"""The orthogonal RNN of expRNN (Lezcano-Casado & Martinez-Rubio 2019, "Cheap Orthogonal
Constraints in Neural Networks: A Simple Parametrization of the Orthogonal and Unitary
Group"): a tanh-RNN-like recurrence whose recurrent matrix is orthogonal by construction,

    h_t = sigma(W x_t + h_{t-1} B),    B = expm(S),  S = triu(A, 1) - triu(A, 1)^T,

for an unconstrained parameter A: S is skew-symmetric, so B = exp(S) is in SO(H) whatever
an optimizer does to A. As in the authors' code (github.com/Lezcano/expRNN: orthogonal.py,
`Orthogonal.retraction` and `OrthogonalRNN`), A's strict upper triangle is S's free part,
the hidden state multiplies B from the left (h B), W has no bias, and sigma is modReLU,
sigma(z) = sign(z) relu(|z| + b) with a learned b (N, H), initialised U(-0.01, 0.01); W is
He-normal (the code's kaiming_normal_, nonlinearity="relu"). `activation="tanh"` uses
tanh(z + b) with the same b as an additive bias. B is computed once per forward, outside
the loop (jax.scipy.linalg.expm, differentiated by JAX).

Initialisation of A (`init`), as the authors' `initialization.py`: block-diagonal S with
2x2 blocks [[0, s_k], [-s_k, 0]] on units (2k, 2k+1), so B is block-diagonal with rotations
by s_k (eigenvalues exp(+-i s_k)); "henaff": s_k ~ U[-pi, pi] (Henaff et al. 2016);
"cayley": s_k = -tan(v_k / 2), v_k ~ U[0, pi/2] (Helfrich et al. 2018's Cayley
initialisation, |s_k| <= 1). With H odd the last unit has no block (eigenvalue 1).

Retention: none is declared. B is orthogonal, so the recurrence preserves the norm of the
state exactly: there is no per-unit fraction kept to turn into a time constant (what decays
is set by the nonlinearity and the input, not by B). The layer returns h_t as its one gate
("hidden", binned over [-1, 1] like the tanh-RNN's, its true min and max reported).

Layer k holds (N directions, width H): ``w_in`` (D_in, N, H), ``A`` (N, H, H) (only its
strict upper triangle is used), ``bias`` (N, H).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from lstm_jax.nn import dense, scan
from lstm_jax.nn.stack import F32, RecurrentLayer

INITS = ("henaff", "cayley")


def modrelu(z: jax.Array, bias: jax.Array) -> jax.Array:
    """sign(z) relu(|z| + b): modReLU (Arjovsky et al. 2016) on real numbers."""
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + bias)


ACTIVATIONS = {"modrelu": modrelu, "tanh": lambda z, bias: jnp.tanh(z + bias)}


def skew(a: jax.Array) -> jax.Array:
    """S = triu(A, 1) - triu(A, 1)^T over the last two axes: skew-symmetric."""
    upper = jnp.triu(a, 1)
    return upper - jnp.swapaxes(upper, -1, -2)


def orthogonal_matrix(a: jax.Array) -> jax.Array:
    """B = expm(skew(A)), (..., H, H), in SO(H)."""
    return expm(skew(a.astype(F32)))


def block_angles(key, shape, init: str) -> jax.Array:
    """The s_k of the module docstring: (*shape, H // 2) rotation angles of the blocks."""
    if init == "henaff":
        return jax.random.uniform(key, shape, F32, -math.pi, math.pi)
    return -jnp.tan(jax.random.uniform(key, shape, F32, 0.0, math.pi / 2) / 2.0)


def block_diagonal_a(angles: jax.Array, hidden: int) -> jax.Array:
    """A (..., H, H) with A[2k, 2k+1] = s_k and zeros elsewhere."""
    k = jnp.arange(angles.shape[-1])
    a = jnp.zeros((*angles.shape[:-1], hidden, hidden), angles.dtype)
    return a.at[..., 2 * k, 2 * k + 1].set(angles)


class ExpRNN(RecurrentLayer):
    """expRNN's orthogonal RNN, stacked and bidirectional like the other cells.

    init: "henaff" | "cayley", the initial rotations of B (module docstring); activation:
    "modrelu" (the paper's) | "tanh".
    """

    CELL = "exprnn"
    GATE_ACTIVATIONS = {"hidden": "tanh"}  # h_t itself, as the tanh-RNN returns it
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = None  # B orthogonal: the state's norm is kept exactly, no fraction to declare

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        init: Literal["henaff", "cayley"] = "henaff",
        activation: Literal["modrelu", "tanh"] = "modrelu",
        **kwargs: Any,
    ):
        """kwargs: the stacking options every cell takes (num_layers, bidirectional,
        dropout, dtype, param_dtype, rngs; lstm_jax.nn.stack.RecurrentLayer)."""
        if init not in INITS:
            raise ValueError(f"ExpRNN init={init!r} is unknown; choose one of {', '.join(INITS)}.")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"ExpRNN activation={activation!r} is unknown; choose one of "
                f"{', '.join(ACTIVATIONS)}."
            )
        # read by _layer_params, which the base constructor calls once per layer
        self.init, self.activation = init, activation
        super().__init__(in_features, hidden_size, **kwargs)

    def _layer_params(self, d_in, key):
        n, h, dt = self.num_directions, self.hidden_size, self.param_dtype
        k_w, k_a, k_b = jax.random.split(key, 3)
        angles = block_angles(k_a, (n, h // 2), self.init)
        return {
            "w_in": jax.random.normal(k_w, (d_in, n, h), dt) * math.sqrt(2.0 / d_in),
            "A": block_diagonal_a(angles, h).astype(dt),
            "bias": jax.random.uniform(k_b, (n, h), dt, -0.01, 0.01),
        }

    def recurrent_matrix(self, p) -> jax.Array:
        """B (N, H, H), orthogonal: h_{t-1} B enters step t."""
        return orthogonal_matrix(p.A[...])

    def _project(self, p, x):
        w = p.w_in[...]
        xw = scan.input_projection(x, w.reshape(w.shape[0], -1), compute_dtype=self.dtype)
        return xw.reshape(*x.shape[:2], self.num_directions, self.hidden_size)

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        sigma = ACTIVATIONS[self.activation]
        cdt = scan.matmul_dtype(self.dtype)
        b_mat = self.recurrent_matrix(p).astype(cdt)  # once per forward, outside the loop
        bias = p.bias[...].astype(F32)[:, None, :]
        m4, _ = scan.masks(mask, 4)

        def step(h, inp):
            xw_t, m, p_t = inp
            a = sigma(xw_t + dense.matmul(h, b_mat, cdt), bias)
            h_new = scan.add_perturbation(a, p_t)
            hidden = scan.zero_pad(m, a) if return_gates else None
            return scan.freeze(m, h_new, h), (scan.zero_pad(m, h_new), hidden)

        h_last, (y, gates) = jax.lax.scan(step, carry0[0], (xw, m4, pert))
        return y, (h_last,), gates
