"""Multi-layer, optionally bidirectional recurrent layers (Flax NNX, batch-first):
LSTM, GRU and SimpleRNN over the scan kernels in ``lstm_jax.nn.scan``.

Per layer: one input-projection matmul for all steps and both directions, (T*B, D) x
(D, N*G*H); both directions then run in ONE scan (the reverse half reversed within each
sequence's length beforehand, so the valid steps of every sequence form a prefix and one mask
serves both directions).

Parameters of layer k live in ``layer_k``: ``w_ih`` (D, N, G*H), ``w_hh`` (N, H, G*H) and the
biases (N = 1 or 2 directions, G gate blocks in PyTorch order). LSTM and SimpleRNN keep one
bias ``b`` (N, G*H), the sum of PyTorch's b_ih + b_hh (they only ever appear summed); GRU keeps
``b_i`` (N, 3H) = (b_ir + b_hr, b_iz + b_hz, b_in) and ``b_hn`` (N, H), which sits inside
r * (W_hn h + b_hn). ``to_torch`` writes the summed biases to bias_ih and zeros to bias_hh.

Why one module over 400 lines: the three cells are thin subclasses of one stacking /
masking / interchange base, and the cuDNN dispatch of the LSTM needs the base's internals;
splitting them would split the one contract (docs/DESIGN.md contract 1) over several files.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.nn import cudnn, init, scan, torch_io

F32 = jnp.float32

# The state a layer returns and accepts: (h, c) for the LSTM, h for the other cells; each
# (num_layers * directions, B, H), PyTorch order.
State = jax.Array | tuple[jax.Array, ...]
# {"layer_k": {gate name: (B, T, H * directions)}}
Gates = dict[str, dict[str, jax.Array]]
DType = Any  # a jnp dtype, its name ("bfloat16"), or None for float32


@jax.custom_vjp
def _gather_time(a, idx):
    """a (T, B, ...) -> a[idx[t, b], b, ...]."""
    return jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=0)


def _gather_time_fwd(a, idx):
    return _gather_time(a, idx), idx


def _gather_time_bwd(idx, g):
    # idx reverses each sequence within its length: a permutation that is its own inverse,
    # so the cotangent is the same gather (autodiff would emit a slow scatter-add).
    return _gather_time(g, idx), np.zeros(idx.shape, jax.dtypes.float0)


_gather_time.defvjp(_gather_time_fwd, _gather_time_bwd)


def _reverser(seq_lengths, t):
    """Function reversing (T, B, ...) arrays in time within each sequence's length."""
    if seq_lengths is None:
        return lambda a: jnp.flip(a, axis=0)
    steps = jnp.arange(t, dtype=jnp.int32)[:, None]
    lens = seq_lengths.astype(jnp.int32)[None, :]
    idx = jnp.where(steps < lens, lens - 1 - steps, steps)  # padded steps stay in place
    return lambda a: _gather_time(a, idx)


def _to_dirs(a, num_dirs, rev):
    """(T, B, N, F) -> (T, N, B, F), the reverse direction reversed within lengths."""
    t, b, _, f = a.shape
    if num_dirs == 1:
        return a.reshape(t, 1, b, f)  # moving a size-1 axis: no copy
    return jnp.stack([a[:, :, 0], rev(a[:, :, 1])], axis=1)


def _from_dirs(y, num_dirs, rev):
    """(T, N, B, F) -> (T, B, N*F), undoing the reversal of the reverse direction."""
    t, _, b, f = y.shape
    if num_dirs == 1:
        return y.reshape(t, b, f)
    return jnp.concatenate([y[:, 0], rev(y[:, 1])], axis=-1)


class _LayerParams(nnx.Module):
    """The parameters of one layer (all its directions)."""

    def __init__(self, params: dict):
        for name, value in params.items():
            setattr(self, name, nnx.Param(value))


class _Recurrent(nnx.Module):
    """Shared stacking / bidirectional / masking logic; subclasses define the cell.

    A cell declares `CELL` (its registry name, lstm_jax.nn.registry), `GATE_ACTIVATIONS`
    (gate name -> "sigmoid" | "tanh", in the kernel's gate-block order) and `RETAIN_GATE`
    (the sigmoid gate that is the fraction of its state each step keeps, if it has one);
    diagnostics read them instead of knowing the cells.
    """

    CELL: ClassVar[str] = ""
    GATE_ACTIVATIONS: ClassVar[dict[str, Literal["sigmoid", "tanh"]]] = {}
    RETAIN_GATE: ClassVar[str | None] = None
    GATES: ClassVar[tuple[str, ...]] = ()
    STATE_PARTS: ClassVar[int] = 1  # LSTM: 2 (h, c)

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        use_bias: bool = True,
        dtype: DType = None,
        param_dtype: DType = F32,
        rngs: nnx.Rngs,
    ):
        """in_features D and hidden_size H of every layer; dropout between stacked layers
        (as torch.nn.LSTM); dtype: compute dtype of the matmuls (None: float32)."""
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_features = in_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.use_bias = use_bias
        self.dtype = dtype
        self.param_dtype = param_dtype
        # "custom" = the hand-written backward; "reference" = autodiff of a plain scan (tests).
        self.scan_impl = "custom"
        self.unroll = 1
        n, g, h = self.num_directions, len(self.GATES), hidden_size
        for k in range(num_layers):
            d_in = in_features if k == 0 else n * h
            k_ih, k_hh, k_b = jax.random.split(rngs.params(), 3)
            params = {
                "w_ih": init.input_weights(k_ih, d_in, n, g, h, param_dtype),
                "w_hh": init.recurrent_weights(k_hh, n, g, h, param_dtype),
            }
            if use_bias:
                params.update(self._init_bias(k_b))
            setattr(self, f"layer_{k}", _LayerParams(params))
        if dropout > 0.0 and num_layers == 1:
            warnings.warn(
                "dropout > 0 with num_layers=1 has no effect: like torch.nn.LSTM, dropout is "
                "applied between layers only.",
                stacklevel=2,
            )
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0.0 and num_layers > 1 else None

    # ---- what the rest of the package reads instead of knowing the cell ---------------------

    @property
    def output_width(self) -> int:
        """Features of the output y: hidden_size * directions."""
        return self.hidden_size * self.num_directions

    def zero_state(self, batch_size: int) -> State:
        """The all-zero state for `batch_size` sequences, in the layout `__call__` returns
        (separate buffers per part: the trainer donates a carried state to its step)."""
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        parts = tuple(jnp.zeros(shape, F32) for _ in range(self.STATE_PARTS))
        return parts if self.STATE_PARTS > 1 else parts[0]

    def hidden_of(self, state: State) -> jax.Array:
        """The hidden states h (num_layers * directions, B, H) of a returned state."""
        return state[0] if self.STATE_PARTS > 1 else state

    def run(
        self,
        x: jax.Array,
        seq_lengths: jax.Array | None = None,
        initial_state: State | None = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
    ) -> tuple[jax.Array, State, Gates | None]:
        """`__call__` with one return form for every option: (y, state, gates or None).
        The package calls cores this way; `layer(x)` keeps its public (y, state)."""
        out = self(
            x,
            seq_lengths,
            initial_state,
            return_gates=return_gates,
            hidden_perturbation=hidden_perturbation,
        )
        return out if return_gates else (*out, None)

    # ---- cell hooks ---------------------------------------------------------------------

    def _init_bias(self, key) -> dict:
        n, g, h = self.num_directions, len(self.GATES), self.hidden_size
        return {"b": jnp.zeros((n, g * h), self.param_dtype)}

    def _input_bias(self, p):
        """(N, G*H) bias of the input projection (the kernel adds it inside the loop), or None."""
        return p.b[...] if self.use_bias else None

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        raise NotImplementedError

    @staticmethod
    def _bias_from_torch(b_ih, b_hh, hidden) -> dict:
        return {"b": b_ih + b_hh}

    def _bias_to_torch(self, p, d):
        b = np.asarray(p.b[...])[d]
        return b, np.zeros_like(b)

    # ---- forward ------------------------------------------------------------------------

    def __call__(
        self,
        x: jax.Array,
        seq_lengths: jax.Array | None = None,
        initial_state: State | None = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
    ) -> tuple[jax.Array, State] | tuple[jax.Array, State, Gates]:
        """x (B, T, D); seq_lengths (B,) int or None; initial_state like the returned state.

        Returns y (B, T, N*H), zero at t >= seq_lengths[b], and the final state taken at each
        sequence's true length ((h, c) for LSTM, h otherwise; each (num_layers*N, B, H),
        PyTorch order); with return_gates=True also {"layer_k": {gate: (B, T, N*H)}}.
        hidden_perturbation (B, T, N*H) is added to the top layer's h_t inside the recurrence.
        """
        b, t, d = x.shape
        if d != self.in_features:
            raise ValueError(
                f"expected input features {self.in_features}, got x of shape {x.shape}"
            )
        n, h_size = self.num_directions, self.hidden_size
        cdt = jnp.dtype(self.dtype) if self.dtype is not None else None
        mask = None
        if seq_lengths is not None:
            seq_lengths = jnp.asarray(seq_lengths)
            mask = (jnp.arange(t)[:, None] < seq_lengths[None, :]).astype(F32)  # (T, B)
        rev = _reverser(seq_lengths, t)
        carries0 = self._initial_carries(initial_state, b)

        h = jnp.swapaxes(x, 0, 1)  # (T, B, D): time-major for the scan
        finals, gates_out = [], {}
        for k in range(self.num_layers):
            p = getattr(self, f"layer_{k}")
            w_ih = p.w_ih[...]
            gh = w_ih.shape[-1]
            # The input projection of every step and direction: one matmul outside the loop
            # (its bias is added inside the loop, by the kernel).
            xw = scan.input_projection(h, w_ih.reshape(w_ih.shape[0], n * gh), compute_dtype=cdt)
            xw = _to_dirs(xw.reshape(t, b, n, gh), n, rev)
            pert = None
            if hidden_perturbation is not None and k == self.num_layers - 1:
                pt = jnp.swapaxes(hidden_perturbation, 0, 1).reshape(t, b, n, h_size)
                pert = _to_dirs(pt.astype(F32), n, rev)
            y, carry, gates = self._kernel(xw, p, carries0[k], mask, pert, return_gates)
            finals.append(carry)
            h = _from_dirs(y, n, rev)
            if return_gates:
                gates_out[f"layer_{k}"] = {
                    name: jnp.swapaxes(
                        _from_dirs(gates[..., j * h_size : (j + 1) * h_size], n, rev), 0, 1
                    )
                    for j, name in enumerate(self.GATES)
                }
            if self.dropout is not None and k < self.num_layers - 1:
                h = self.dropout(h)
        y = jnp.swapaxes(h, 0, 1)
        if cdt is not None:
            y = y.astype(cdt)
        state = tuple(
            jnp.concatenate([c[i] for c in finals], axis=0) for i in range(self.STATE_PARTS)
        )
        state = state if self.STATE_PARTS > 1 else state[0]
        return (y, state, gates_out) if return_gates else (y, state)

    def _initial_carries(self, initial_state, batch):
        """Per layer, a tuple of (N, B, H) float32 arrays (STATE_PARTS of them)."""
        n, shape = self.num_directions, (self.num_directions, batch, self.hidden_size)
        parts = initial_state if self.STATE_PARTS > 1 else (initial_state,)
        if initial_state is None:
            return [tuple(jnp.zeros(shape, F32) for _ in range(self.STATE_PARTS))] * self.num_layers
        full = (self.num_layers * n, batch, self.hidden_size)
        for s in parts:
            if s.shape != full:
                raise ValueError(f"initial_state parts must have shape {full}, got {s.shape}")
        return [
            tuple(s[k * n : (k + 1) * n].astype(F32) for s in parts) for k in range(self.num_layers)
        ]

    def _scan_kwargs(self, p, return_gates):
        return {
            "input_bias": self._input_bias(p),
            "return_gates": return_gates,
            "compute_dtype": self.dtype,
            "unroll": self.unroll,
        }

    # ---- PyTorch interchange ------------------------------------------------------------

    @classmethod
    def from_torch(
        cls, state_dict: dict[str, np.ndarray], *, rngs: nnx.Rngs | None = None, **kwargs: Any
    ) -> _Recurrent:
        """A layer holding the weights of a PyTorch module's state dict (numpy arrays);
        sizes, layers, bidirectional and bias are inferred. kwargs: dropout, dtype, ..."""
        cfg = torch_io.infer_config(state_dict, len(cls.GATES))
        layer = cls(
            cfg["in_features"],
            cfg["hidden_size"],
            num_layers=cfg["num_layers"],
            bidirectional=cfg["bidirectional"],
            use_bias=cfg["use_bias"],
            rngs=rngs if rngs is not None else nnx.Rngs(0),
            **kwargs,
        )
        for k in range(layer.num_layers):
            p = getattr(layer, f"layer_{k}")
            w_ih, w_hh, biases = torch_io.layer_from_torch(state_dict, k, layer.num_directions)
            p.w_ih.set_value(jnp.asarray(w_ih, layer.param_dtype))
            p.w_hh.set_value(jnp.asarray(w_hh, layer.param_dtype))
            if biases:
                per_dir = [cls._bias_from_torch(bi, bh, layer.hidden_size) for bi, bh in biases]
                for name in per_dir[0]:
                    stacked = np.stack([pd[name] for pd in per_dir]).astype(np.float32)
                    getattr(p, name).set_value(jnp.asarray(stacked, layer.param_dtype))
        return layer

    def to_torch(self) -> dict[str, np.ndarray]:
        """The PyTorch state dict (numpy float32 arrays) of an equivalent torch module."""
        out = {}
        for k in range(self.num_layers):
            p = getattr(self, f"layer_{k}")
            biases = (
                [self._bias_to_torch(p, d) for d in range(self.num_directions)]
                if self.use_bias
                else []
            )
            out.update(torch_io.layer_to_torch(k, p.w_ih[...], p.w_hh[...], biases))
        return {k: np.array(v, np.float32) for k, v in out.items()}  # writable copies


class LSTM(_Recurrent):
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
    RETAIN_GATE = "forget"  # c_t = f * c_{t-1} + i * g
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

    def _init_bias(self, key):
        return {
            "b": init.lstm_bias(
                key,
                self.num_directions,
                self.hidden_size,
                self.forget_bias,
                self.chrono_max_steps,
                self.param_dtype,
            )
        }

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        fn = scan.lstm_scan if self.scan_impl == "custom" else scan.lstm_scan_reference
        h0, c0 = carry0
        y, h_t, c_t, gates = fn(
            xw, p.w_hh[...], h0, c0, mask, pert, **self._scan_kwargs(p, return_gates)
        )
        return y, (h_t, c_t), gates


class GRU(_Recurrent):
    """GRU with PyTorch's equations (gate order r, z, n; b_hn inside r * (W_hn h + b_hn))."""

    CELL = "gru"
    GATE_ACTIVATIONS = {"reset": "sigmoid", "update": "sigmoid", "candidate": "tanh"}
    GATES = tuple(GATE_ACTIVATIONS)
    RETAIN_GATE = "update"  # h_t = (1 - z) * n + z * h_{t-1}

    def _init_bias(self, key):
        n, h = self.num_directions, self.hidden_size
        return {
            "b_i": jnp.zeros((n, 3 * h), self.param_dtype),
            "b_hn": jnp.zeros((n, h), self.param_dtype),
        }

    def _input_bias(self, p):
        return p.b_i[...] if self.use_bias else None

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        fn = scan.gru_scan if self.scan_impl == "custom" else scan.gru_scan_reference
        b_hn = (
            p.b_hn[...]
            if self.use_bias
            else jnp.zeros((self.num_directions, self.hidden_size), F32)
        )
        y, h_t, gates = fn(
            xw,
            p.w_hh[...],
            b_hn.astype(F32),
            carry0[0],
            mask,
            pert,
            **self._scan_kwargs(p, return_gates),
        )
        return y, (h_t,), gates

    @staticmethod
    def _bias_from_torch(b_ih, b_hh, hidden):
        b_i = b_ih.copy()
        b_i[: 2 * hidden] += b_hh[: 2 * hidden]
        return {"b_i": b_i, "b_hn": b_hh[2 * hidden :]}

    def _bias_to_torch(self, p, d):
        b_i = np.asarray(p.b_i[...])[d]
        b_hh = np.zeros_like(b_i)
        b_hh[2 * self.hidden_size :] = np.asarray(p.b_hn[...])[d]
        return b_i, b_hh


class SimpleRNN(_Recurrent):
    """Elman RNN with tanh, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b) (PyTorch nn.RNN)."""

    CELL = "rnn"
    # the kernel's "gate" is h_t itself, tanh of the pre-activation
    GATE_ACTIVATIONS = {"hidden": "tanh"}
    GATES = tuple(GATE_ACTIVATIONS)

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        fn = scan.rnn_scan if self.scan_impl == "custom" else scan.rnn_scan_reference
        y, h_t, gates = fn(
            xw, p.w_hh[...], carry0[0], mask, pert, **self._scan_kwargs(p, return_gates)
        )
        return y, (h_t,), gates
