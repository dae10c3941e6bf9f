"""The selective diagonal state-space model of Mamba (Gu & Dao 2023, "Mamba: Linear-Time
Sequence Modeling with Selective State Spaces"), the S6 recurrence: per channel h of the
SSM's input u_t, N state dimensions,

    Delta_t = softplus(W_dt (W_x u_t)[:R] + dt_bias)        (H,)    the input-dependent step
    B_t = (W_x u_t)[R:R+N],  C_t = (W_x u_t)[R+N:]          (N,)    shared by all channels
    A = -exp(A_log)                                          (H, N)  diagonal, negative
    h_t = exp(Delta_t A) * h_{t-1} + (Delta_t u_t) B_t       (H, N)
    y_t = h_t C_t + D * u_t                                  (H,)

with A's S4D-real initialisation A_n = -(n + 1), D = 1, and the step's bias set by the
inverse softplus of steps drawn log-uniformly in [dt_min, dt_max] (Mamba's init), all as in
`mamba_simple.py`. Abar_t = exp(Delta_t A) is the zero-order hold of A and Bbar_t = Delta_t
B_t its simplified (Euler) form, as the Mamba code computes them. The recurrence runs on
lstm_jax.nn.scan.linear_recurrence by `lax.associative_scan` or `lax.scan` (`scan_method`).

What of the Mamba block is here: the selective SSM core (`selective_scan_fn` with its
x_proj, dt_proj, A_log and D, `delta_softplus=True`), and one bias-free input projection
u_t = W_in x_t (Mamba's `in_proj`, x half), because the layer interface maps in_features to
hidden_size and the SSM maps its H channels to themselves. What is not: the depthwise causal
conv1d and the SiLU after it, the z branch and its gating y * silu(z), the out_proj, the
RMSNorm and the residual connection. Those make the Mamba *block*, a feed-forward wrapper
around the recurrence; this cell is the recurrence, so that its memory is measured by the
same protocol as the LSTM's, and stacking, directions and dropout come from
lstm_jax.nn.stack as for every cell.

Layer k holds (N_d directions, width H, state size N, step rank R): ``in_proj`` (D_in, N_d,
H), ``x_proj`` (N_d, H, R + 2N), ``dt_proj`` (N_d, R, H), ``dt_bias`` (N_d, H), ``A_log``
(N_d, H, N), ``D`` (N_d, H).

The state is (y_T, h_T[..., 0], ..., h_T[..., N-1]): 1 + d_state parts, each (num_layers *
N_d, B, H), so the stack's layout (every part (layers * directions, B, H)) holds without
flattening (B, H, N) into (B, H * N). The last output at each sequence's true length comes
first, as h does for the other cells (`hidden_of`, pooling "last"). `hidden_perturbation`
(width H) is added to every one of a channel's N state dimensions inside the recurrence, so
its gradient is the sum over them of dL/dh_t, through all later steps.

Declared retention: the fraction of state dimension n kept at step t is exp(Delta_t A_n);
the gate `decay` is that of each channel's slowest dimension, exp(Delta_t max_n A_n). A
channel carries information as long as its slowest mode does, so its time constant -1 /
ln(decay) = 1 / (Delta_t min_n |A_n|) is the channel's memory horizon; a mean over n of
exp(Delta_t A_n) would be the time constant of no mode.

Memory: both scan methods hold every h_t, (T, N_d, B, H, N) float32 (the fused CUDA kernel
of Mamba avoids this; XLA has no such fusion), so B=50, H=128, N=16 at T=1,000 is 400 MB per
array.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp

from lstm_jax.nn import scan
from lstm_jax.nn.stack import RecurrentLayer, Retention

# Mamba's floor on an initial step (`dt_init_floor`), so the inverse softplus stays finite.
DT_INIT_FLOOR = 1e-4
DEFAULT_D_STATE = 16


def step_rank(dt_rank: int | Literal["auto"], hidden_size: int) -> int:
    """The rank R of Delta's projection: Mamba's "auto" is ceil(d_model / 16); with no
    expanding block around this cell, d_model is read as the SSM's width H."""
    return math.ceil(hidden_size / 16) if dt_rank == "auto" else dt_rank


def inverse_softplus(y: jax.Array) -> jax.Array:
    """x with softplus(x) = y, y > 0 (Mamba's `dt + log(-expm1(-dt))`)."""
    return y + jnp.log(-jnp.expm1(-y))


def step_bias_init(key, shape, dt_min, dt_max):
    """dt_bias such that softplus(dt_bias) is log-uniform in [dt_min, dt_max] (floored at
    DT_INIT_FLOOR): Mamba's initial step, one per channel."""
    u = jax.random.uniform(key, shape)
    dt = jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    return inverse_softplus(jnp.maximum(dt, DT_INIT_FLOOR))


class SelectiveSSM(RecurrentLayer):
    """Mamba's selective SSM (S6) as a recurrent layer, stacked and bidirectional like the
    other cells; the module docstring says which part of the Mamba block it is.

    d_state: N, the state dimensions per channel; dt_min, dt_max: the range of the initial
    step Delta (log-uniform; Mamba's 0.001 and 0.1); dt_rank: the rank of Delta's projection
    from u_t ("auto": ceil(hidden_size / 16)); scan_method: "associative"
    (lax.associative_scan, log T sequential levels) or "scan" (lax.scan), the same values
    and gradients.
    """

    CELL = "selective_ssm"
    # exp(Delta_t max_n A_n), each channel's slowest mode's kept fraction: in (0, 1).
    GATE_ACTIVATIONS = {"decay": "sigmoid"}
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("decay", kept="gate")
    # y_T and the N state dimensions; an instance sets its own 1 + d_state.
    STATE_PARTS: ClassVar[int] = 1 + DEFAULT_D_STATE

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        d_state: int = DEFAULT_D_STATE,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_rank: int | Literal["auto"] = "auto",
        scan_method: Literal["associative", "scan"] = "associative",
        **kwargs: Any,
    ):
        """kwargs: the stacking options every cell takes (num_layers, bidirectional,
        dropout, dtype, param_dtype, rngs; lstm_jax.nn.stack.RecurrentLayer)."""
        if d_state < 1:
            raise ValueError(f"selective_ssm needs d_state >= 1 state dimensions, got {d_state}.")
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(
                f"selective_ssm needs 0 < dt_min <= dt_max (the initial step range), got "
                f"dt_min={dt_min}, dt_max={dt_max}."
            )
        if dt_rank != "auto" and not (isinstance(dt_rank, int) and dt_rank >= 1):
            raise ValueError(f"selective_ssm needs dt_rank >= 1 or 'auto', got {dt_rank!r}.")
        scan.require_scan_method(scan_method)
        # read by _layer_params and the stack, which the base constructor calls
        self.d_state = d_state
        self.STATE_PARTS = 1 + d_state
        self.dt_min, self.dt_max = dt_min, dt_max
        self.dt_rank = step_rank(dt_rank, hidden_size)
        self.scan_method = scan_method
        super().__init__(in_features, hidden_size, **kwargs)

    def _layer_params(self, d_in, key):
        n, h, s, r, dt = (
            self.num_directions,
            self.hidden_size,
            self.d_state,
            self.dt_rank,
            self.param_dtype,
        )
        k_in, k_x, k_dt, k_bias = jax.random.split(key, 4)

        def torch_linear(k, shape, fan_in, bound=None):
            # torch.nn.Linear's default init, which Mamba keeps for in_proj and x_proj
            bound = 1.0 / math.sqrt(fan_in) if bound is None else bound
            return jax.random.uniform(k, shape, dt, -bound, bound)

        a_init = jnp.broadcast_to(jnp.arange(1, s + 1, dtype=dt), (n, h, s))  # S4D-real
        return {
            "in_proj": torch_linear(k_in, (d_in, n, h), d_in),
            "x_proj": torch_linear(k_x, (n, h, r + 2 * s), h),
            "dt_proj": torch_linear(k_dt, (n, r, h), r, bound=r**-0.5),  # Mamba's dt_init_std
            "dt_bias": step_bias_init(k_bias, (n, h), self.dt_min, self.dt_max).astype(dt),
            "A_log": jnp.log(a_init),
            "D": jnp.ones((n, h), dt),
        }

    def _project(self, p, x):
        # u = W_in x of every step and direction: one matmul outside the loop.
        w = p.in_proj[...]
        t, b = x.shape[:2]
        u = scan.input_projection(x, w.reshape(w.shape[0], -1), compute_dtype=self.dtype)
        return u.reshape(t, b, self.num_directions, self.hidden_size)

    def _kernel(self, u, p, carry0, mask, pert, return_gates):
        r, s = self.dt_rank, self.d_state
        # Delta, B, C of every step at once: the selection is outside the recurrence.
        dbc = jnp.einsum("tnbh,nhk->tnbk", u, p.x_proj[...])
        delta = jax.nn.softplus(
            jnp.einsum("tnbr,nrh->tnbh", dbc[..., :r], p.dt_proj[...]) + p.dt_bias[...][:, None]
        )
        b_t, c_t = dbc[..., r : r + s], dbc[..., r + s :]  # (T, N_d, B, N)
        a = -jnp.exp(p.A_log[...])[:, None]  # (N_d, 1, H, N)
        decay = jnp.exp(delta[..., None] * a)  # Abar_t (T, N_d, B, H, N)
        drive = (delta * u)[..., None] * b_t[..., None, :]  # Bbar_t u_t
        if pert is not None:
            drive = drive + pert[..., None]
        # linear_recurrence masks (T, N_d, B, F) arrays: the (H, N) state flattened to H*N.
        y0, *h0 = carry0
        flat = (*drive.shape[:3], -1)
        hs, h_last = scan.linear_recurrence(
            decay.reshape(flat),
            drive.reshape(flat),
            jnp.stack(h0, axis=-1).reshape(flat[1:]),
            mask,
            method=self.scan_method,
        )
        hs = hs.reshape(drive.shape)
        y = jnp.einsum("tnbhs,tnbs->tnbh", hs, c_t) + p.D[...][:, None] * u
        valid = scan.masks(mask, 4)[0]
        y = scan.zero_pad(valid, y)
        y_last = scan.last_valid(y, y0, mask)
        h_last = h_last.reshape(drive.shape[1:])
        gates = None
        if return_gates:
            slowest = jnp.max(a, axis=-1)  # (N_d, 1, H): A_n closest to 0
            gates = scan.zero_pad(valid, jnp.exp(delta * slowest))
        return y, (y_last, *jnp.unstack(h_last, axis=-1)), gates
