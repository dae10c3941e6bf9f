"""The LSTM cell (PyTorch equations and gate order i, f, g, o): its bias initialisation
(forget bias, chrono), step, reference scan, the kernel with the hand-written backward, and
the layer `LSTM` with its backend dispatch (the scan kernel or cuDNN, lstm_jax.nn.cudnn).
Shapes and masking follow lstm_jax.nn.scan; weights and the PyTorch interchange are the
dense family's (lstm_jax.nn.dense). The forget gate is the fraction of the cell state kept:
c_t = f c_{t-1} + i g."""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.nn import cudnn, dense, scan
from lstm_jax.nn.stack import F32, DType, Gates, Retention, State

Array = jax.Array


def lstm_bias(key, num_dirs, hidden, forget_bias=1.0, chrono_max_steps=None, dtype=F32):
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


def _lstm_step(xw_t, h, c, w, cdt):
    """PyTorch gate order i, f, g, o; returns h_new, c_new and the activated gates (N,B,4H)."""
    hs = h.shape[-1]
    act = dense.gate_activations(xw_t + dense.matmul(h, w, cdt), 4, tanh_block=2)  # i, f, g, o
    i, f, g, o = (act[..., k * hs : (k + 1) * hs] for k in range(4))
    c_new = f * c + i * g
    h_new = o * jnp.tanh(c_new)
    return h_new, c_new, act


def lstm_scan_reference(
    xw,
    w_hh,
    h0,
    c0,
    mask=None,
    pert=None,
    *,
    input_bias=None,
    return_gates=False,
    compute_dtype=None,
    unroll=1,
):
    cdt, b, w, mb = dense.reference_operands(xw, w_hh, mask, input_bias, compute_dtype)

    def step(carry, inp):
        h, c = carry
        xw_t, m, p_t = inp
        h_new, c_new, act = _lstm_step(xw_t + b, h, c, w, cdt)
        h_new = scan.add_perturbation(h_new, p_t)
        out = (scan.zero_pad(m, h_new), scan.zero_pad(m, act) if return_gates else None)
        return (scan.freeze(m, h_new, h), scan.freeze(m, c_new, c)), out

    (hT, cT), (y, gates) = jax.lax.scan(
        step, (h0.astype(F32), c0.astype(F32)), (xw, mb, pert), unroll=unroll
    )
    return y, hT, cT, gates


@functools.cache
def _lstm_kernel(return_gates, has_pert, cdt, unroll):
    def fwd(xw, b, w_hh, h0, c0, mask, pert):
        w = w_hh.astype(cdt)
        mb, _ = scan.masks(mask, xw.ndim)

        def step(carry, inp):
            h, c = carry
            xw_t, m, p_t = inp
            h_new, c_new, act = _lstm_step(xw_t + b, h, c, w, cdt)
            h_new = scan.add_perturbation(h_new, p_t)
            gates = scan.zero_pad(m, act) if (return_gates and m is not None) else None
            # Residuals: the activated gates and the carried c_t. c_t is a fresh value each
            # step (c_{t-1} would be the carry itself, which XLA copied every step); the
            # backward reads c_{t-1} as the sequence shifted by one, and tanh(c_t) directly.
            c_carry = scan.freeze(m, c_new, c)
            return (scan.freeze(m, h_new, h), c_carry), (
                scan.zero_pad(m, h_new),
                act,
                c_carry,
                gates,
            )

        (hT, cT), (y, act, c_seq, gates) = jax.lax.scan(
            step, (h0.astype(F32), c0.astype(F32)), (xw, mb, pert), unroll=unroll
        )
        if return_gates and mask is None:
            gates = act
        out = (y, hT, cT, gates if return_gates else None)
        return out, (act, c_seq, y, h0, c0, b, w_hh, mask)

    def bwd(res, cts):
        act, c_seq, y, h0, c0, b, w_hh, mask = res
        dy, dhT, dcT, dgates = cts
        hs = h0.shape[-1]
        w_t = jnp.swapaxes(w_hh, -1, -2).astype(cdt)  # (N, 4H, H), transposed once
        mf = scan.masks(mask, act.ndim)[1]

        def step(carry, inp):
            dh, dc = carry
            dy_t, a, cp, ct, m, dg_t = inp
            i, f, g, o = (a[..., k * hs : (k + 1) * hs] for k in range(4))
            dhn = dy_t + dh if m is None else (dy_t + dh) * m
            tc = jnp.tanh(ct)
            dcn = dhn * o * (1.0 - tc * tc) + (dc if m is None else dc * m)
            # d loss / d activated gates (i, f, g, o) = (dcn g, dcn c_{t-1}, dcn i, dhn tanh c_t),
            # then through the activations on the whole 4H vector at once. Per-block products
            # and a concatenation of them compiled to five loop kernels per step, each
            # re-reading its gate slices (a bare backward scan at S2: 68 -> 41 ms this way).
            d_act = jnp.concatenate([dcn, dcn, dcn, dhn], axis=-1) * jnp.concatenate(
                [g, cp, i, tc], axis=-1
            )
            if dg_t is not None:
                d_act = d_act + (dg_t if m is None else dg_t * m)
            dz = d_act * dense.gate_derivatives(a, 4, tanh_block=2)
            dh_prev = dense.matmul(dz, w_t, cdt)
            dc_prev = dcn * f
            if m is not None:
                dh_prev = dh_prev + dh * (1.0 - m)
                dc_prev = dc_prev + dc * (1.0 - m)
            return (dh_prev, dc_prev), (dz, dhn if has_pert else None)

        (dh0, dc0), (dz, dpert) = jax.lax.scan(
            step,
            (dhT.astype(F32), dcT.astype(F32)),
            (dy, act, scan.shift(c0, c_seq), c_seq, mf, dgates),
            reverse=True,
            unroll=unroll,
        )
        # For every valid step t the carry h_{t-1} equals y_{t-1} (valid steps are a prefix);
        # dz is zero at padded steps, so shifting y gives h_{t-1} wherever it matters.
        dw = dense.weight_grad(scan.shift(h0, y), dz, cdt, w_hh.dtype)
        db = dense.bias_grad(dz, b)
        return (dz, db, dw, dh0.astype(h0.dtype), dc0, dense.zeros_or_none(mask), dpert)

    return dense.with_backward(fwd, bwd)


def lstm_scan(
    xw: Array,
    w_hh: Array,
    h0: Array,
    c0: Array,
    mask: Array | None = None,
    pert: Array | None = None,
    *,
    input_bias: Array | None = None,
    return_gates: bool = False,
    compute_dtype: Any = None,
    unroll: int = 1,
) -> tuple[Array, Array, Array, Array | None]:
    """LSTM over time with the hand-written backward: xw (T, N, B, 4H), w_hh (N, H, 4H),
    h0 and c0 (N, B, H), mask (T, B). Returns y (T, N, B, H), hT, cT (N, B, H) and the
    gates (T, N, B, 4H) or None (shapes in the module docstring)."""
    k = _lstm_kernel(
        bool(return_gates), pert is not None, scan.matmul_dtype(compute_dtype), int(unroll)
    )
    return dense.call_kernel(k, xw, input_bias, (w_hh, h0, c0), mask, pert)


class LSTM(dense.DenseRecurrent):
    """LSTM (PyTorch equations and gate order i, f, g, o).

    forget_bias: initial forget-gate bias (default 1.0). chrono_max_steps: if given, chrono
    initialisation (Tallec & Ollivier 2018) b_f ~ log U[1, T_max - 1], b_i = -b_f.
    dtype: compute dtype of the matmuls (e.g. bfloat16); parameters (param_dtype) and the
    cell state stay float32.
    backend: "scan" (the project's kernel, every platform), "cudnn" (jax.experimental.rnn on
    a CUDA GPU; refused elsewhere, and refused in one line for a call cuDNN cannot run) or
    "auto" (cuDNN on CUDA where it can do what a call asks, the scan kernel otherwise).
    lstm_jax.nn.cudnn lists what cuDNN cannot do; lstm_jax.nn.backend_record says which
    kernel each step of a run used.
    """

    CELL = "lstm"
    GATE_ACTIVATIONS = {
        "input": "sigmoid",
        "forget": "sigmoid",
        "cell": "tanh",
        "output": "sigmoid",
    }
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN = Retention("forget", kept="gate")  # c_t = f * c_{t-1} + i * g
    STATE_PARTS = 2

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
        chrono_max_steps: int | None = None,
        use_bias: bool = True,
        dtype: DType = None,
        param_dtype: DType = F32,
        backend: Literal["auto", "scan", "cudnn"] = "auto",
        rngs: nnx.Rngs,
    ):
        cudnn.check_backend(
            backend,
            dtype=dtype,
            use_bias=use_bias,
            dropout_active=dropout > 0.0 and num_layers > 1,  # active whenever it trains
        )
        # read by _init_bias, which the base constructor calls once per layer
        self.forget_bias = forget_bias
        self.chrono_max_steps = chrono_max_steps
        super().__init__(
            in_features,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.backend = backend

    # ---- backend dispatch: the one place that picks cuDNN or the scan kernel --------------
    # (lstm_jax.nn.cudnn holds the cuDNN call, its weight layout and what it cannot run)

    def cudnn_blockers(self, *, return_gates=False, hidden_perturbation=None, arrays=()):
        """Why cuDNN cannot run this call (empty: it can); lstm_jax.nn.cudnn.blockers."""
        return cudnn.blockers(
            dtype=self.dtype,
            use_bias=self.use_bias,
            dropout_active=self.dropout is not None and not self.dropout.deterministic,
            return_gates=return_gates,
            hidden_perturbation=hidden_perturbation,
            arrays=(arrays, self.layer_0.w_hh[...]),  # a vmapped layer has batched weights
        )

    def uses_cudnn(self, *, return_gates=False, hidden_perturbation=None, arrays=()) -> bool:
        """Whether a call with these arguments runs on cuDNN (see `backend`); an explicit
        backend="cudnn" refuses a call cuDNN cannot run (lstm_jax.nn.cudnn.select)."""
        return cudnn.select(
            self.backend,
            self.cudnn_blockers(
                return_gates=return_gates, hidden_perturbation=hidden_perturbation, arrays=arrays
            ),
        )

    def __call__(
        self,
        x: jax.Array,
        seq_lengths: jax.Array | None = None,
        initial_state: State | None = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
    ) -> tuple[jax.Array, State] | tuple[jax.Array, State, Gates]:
        if not self.uses_cudnn(
            return_gates=return_gates,
            hidden_perturbation=hidden_perturbation,
            arrays=(x, seq_lengths, initial_state),
        ):
            return super().__call__(
                x,
                seq_lengths,
                initial_state,
                return_gates=return_gates,
                hidden_perturbation=hidden_perturbation,
            )
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"expected input features {self.in_features}, got x of shape {x.shape}"
            )
        carries = self._initial_carries(initial_state, x.shape[0])
        h0 = jnp.concatenate([c[0] for c in carries], axis=0)
        c0 = jnp.concatenate([c[1] for c in carries], axis=0)
        layers = [getattr(self, f"layer_{k}") for k in range(self.num_layers)]
        y, h_n, c_n = cudnn.lstm(
            x,
            seq_lengths,
            h0,
            c0,
            cudnn.flat_weights(layers, self.num_directions),
            input_size=self.in_features,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
        )
        return y, (h_n, c_n)

    # ---- the cell -------------------------------------------------------------------------

    def _init_bias(self, key):
        return {
            "b": lstm_bias(
                key,
                self.num_directions,
                self.hidden_size,
                self.forget_bias,
                self.chrono_max_steps,
                self.param_dtype,
            )
        }

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        fn = lstm_scan if self.scan_impl == "custom" else lstm_scan_reference
        h0, c0 = carry0
        y, h_t, c_t, gates = fn(
            xw, p.w_hh[...], h0, c0, mask, pert, **self._scan_kwargs(p, return_gates)
        )
        return y, (h_t, c_t), gates
