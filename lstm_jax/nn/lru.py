"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks
for Long Sequences"): a diagonal complex linear recurrence with a nonlinearity-free state,

    x_t = lambda * x_{t-1} + gamma * (B u_t),    y_t = Re(C x_t) + D u_t,

lambda_j = exp(-exp(nu_j) + i exp(theta_j)) (the exponential parametrisation: |lambda| < 1
for any nu), gamma_j = exp(gamma_log_j), initialised to sqrt(1 - |lambda_j|^2) so that a
unit-variance input keeps the state at unit variance (the normalisation), and lambda drawn
uniformly on the ring r_min <= |lambda| <= r_max with phase in [0, max_phase] (the ring
initialisation). The recurrence runs on lstm_jax.nn.scan.linear_recurrence, by
`lax.associative_scan` or `lax.scan` (`scan_method`); B u_t and D u_t of every step are one
matmul outside it. The fraction of state kept each step is |lambda| (declared `RETAIN`).

Layer k holds (N directions, state and output width H): ``nu_log``, ``theta_log``,
``gamma_log`` (N, H); ``B_re``, ``B_im`` (D_in, N, H); ``C_re``, ``C_im`` (N, H, H); ``D``
(D_in, N, H). The paper's D is a diagonal (input and output of one width); stacked and
bidirectional layers here change width (D_in = in_features, then H * directions), so D is
a dense skip matrix, initialised at the paper's per-unit scale.

The state is (y_T, Re x_T, Im x_T), each (num_layers * N, B, H): the last output at each
sequence's true length comes first, as h does for the other cells (`hidden_of`, pooling
"last"), then the complex state. `hidden_perturbation` is added to x_t inside the
recurrence, so its gradient is dL/dx_t through all later steps, as for the other cells.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp

from lstm_jax.nn import scan
from lstm_jax.nn.stack import RecurrentLayer, Retention


def ring_init(key, shape, r_min, r_max, max_phase):
    """(nu_log, theta_log) with |lambda| uniform in area on the ring [r_min, r_max] and its
    phase uniform in [0, max_phase] (the paper's Lemma 3.2 and its appendix code)."""
    k_r, k_phase = jax.random.split(key)
    u1 = jax.random.uniform(k_r, shape)
    u2 = jax.random.uniform(k_phase, shape)
    nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
    theta_log = jnp.log(max_phase * u2)
    return nu_log, theta_log


def lambda_of(nu_log, theta_log):
    """lambda = exp(-exp(nu_log) + i exp(theta_log)), complex64."""
    return jnp.exp(-jnp.exp(nu_log) + 1j * jnp.exp(theta_log)).astype(jnp.complex64)


class LRU(RecurrentLayer):
    """Linear Recurrent Unit, stacked and bidirectional like the other cells.

    r_min, r_max: the ring |lambda| is initialised on (0 <= r_min < r_max <= 1); max_phase:
    the largest initial phase of lambda; scan_method: "associative" (lax.associative_scan,
    log T sequential levels) or "scan" (lax.scan); both give the same values and gradients.
    """

    CELL = "lru"
    # |lambda| of every unit, broadcast over batch and time: in (0, 1), binned as a sigmoid.
    GATE_ACTIVATIONS = {"decay": "sigmoid"}
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("decay", kept="modulus")
    STATE_PARTS = 3  # y_T, Re x_T, Im x_T

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
        scan_method: Literal["associative", "scan"] = "associative",
        **kwargs: Any,
    ):
        """kwargs: the stacking options every cell takes (num_layers, bidirectional,
        dropout, dtype, param_dtype, rngs; lstm_jax.nn.stack.RecurrentLayer)."""
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(
                f"LRU needs 0 <= r_min < r_max <= 1 (the ring |lambda| starts on), got "
                f"r_min={r_min}, r_max={r_max}."
            )
        if max_phase <= 0.0:
            raise ValueError(f"LRU needs max_phase > 0, got {max_phase}.")
        scan.require_scan_method(scan_method)
        # read by _layer_params, which the base constructor calls once per layer
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.scan_method = scan_method
        super().__init__(in_features, hidden_size, **kwargs)

    def _layer_params(self, d_in, key):
        n, h, dt = self.num_directions, self.hidden_size, self.param_dtype
        k_ring, k_b_re, k_b_im, k_c_re, k_c_im, k_d = jax.random.split(key, 6)
        nu_log, theta_log = ring_init(k_ring, (n, h), self.r_min, self.r_max, self.max_phase)
        modulus = jnp.abs(lambda_of(nu_log, theta_log))
        return {
            "nu_log": nu_log.astype(dt),
            "theta_log": theta_log.astype(dt),
            "gamma_log": jnp.log(jnp.sqrt(1.0 - modulus**2)).astype(dt),
            # complex Glorot: variance 1/D_in over the real and imaginary parts together
            "B_re": jax.random.normal(k_b_re, (d_in, n, h), dt) / math.sqrt(2 * d_in),
            "B_im": jax.random.normal(k_b_im, (d_in, n, h), dt) / math.sqrt(2 * d_in),
            "C_re": jax.random.normal(k_c_re, (n, h, h), dt) / math.sqrt(h),
            "C_im": jax.random.normal(k_c_im, (n, h, h), dt) / math.sqrt(h),
            "D": jax.random.normal(k_d, (d_in, n, h), dt) / math.sqrt(d_in),
        }

    def _project(self, p, x):
        # B_re u, B_im u and D u of every step and direction: one matmul outside the loop.
        w = jnp.concatenate([p.B_re[...], p.B_im[...], p.D[...]], axis=-1)  # (D_in, N, 3H)
        t, b = x.shape[:2]
        xw = scan.input_projection(x, w.reshape(w.shape[0], -1), compute_dtype=self.dtype)
        return xw.reshape(t, b, self.num_directions, 3 * self.hidden_size)

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        h = self.hidden_size
        lam = lambda_of(p.nu_log[...], p.theta_log[...])  # (N, H)
        gamma = jnp.exp(p.gamma_log[...])
        drive = gamma[:, None, :] * (xw[..., :h] + 1j * xw[..., h : 2 * h])  # (T, N, B, H)
        if pert is not None:
            drive = drive + pert
        y0, x0_re, x0_im = carry0
        states, x_last = scan.linear_recurrence(
            lam[:, None, :], drive, x0_re + 1j * x0_im, mask, method=self.scan_method
        )
        # Re(C x) = C_re Re x - C_im Im x, per direction
        y = jnp.einsum("tnbk,nkh->tnbh", states.real, p.C_re[...]) - jnp.einsum(
            "tnbk,nkh->tnbh", states.imag, p.C_im[...]
        )
        y = scan.zero_pad(scan.masks(mask, 4)[0], y + xw[..., 2 * h :])
        y_last = scan.last_valid(y, y0, mask)
        gates = None
        if return_gates:
            gates = scan.zero_pad(
                scan.masks(mask, 4)[0], jnp.broadcast_to(jnp.abs(lam)[:, None, :], y.shape)
            )
        return y, (y_last, x_last.real, x_last.imag), gates
