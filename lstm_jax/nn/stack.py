"""The cell-agnostic half of every recurrent layer (Flax NNX, batch-first): stacked layers,
one or two directions, reversal within each sequence's length, masking of padded steps,
dropout between layers, and the layout of the state. A cell supplies the rest through three
hooks and a few declarations (`RecurrentLayer`); lstm_jax.nn.dense is the family of cells
with PyTorch-layout dense weights (LSTM, GRU, SimpleRNN), and each cell has its own file.

Per layer: the cell projects every step's input at once (`_project`, one matmul outside
the loop for both directions), then both directions run in ONE loop (`_kernel`): the
reverse half is reversed within each sequence's length beforehand, so the valid steps of
every sequence form a prefix and one mask serves both directions.

The state a layer returns and accepts is a tuple of `STATE_PARTS` arrays (one array when
it is 1), each (num_layers * directions, B, H), PyTorch's order: layer-major, forward
direction first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

F32 = jnp.float32

# The state a layer returns and accepts: (h, c) for the LSTM, h for the other cells; each
# (num_layers * directions, B, H), PyTorch order.
State = jax.Array | tuple[jax.Array, ...]
# {"layer_k": {gate name: (B, T, H * directions)}}
Gates = dict[str, dict[str, jax.Array]]
DType = Any  # a jnp dtype, its name ("bfloat16"), or None for float32


@dataclass(frozen=True)
class Retention:
    """How a cell keeps its state from one step to the next, for the memory time constants
    tau = -1 / ln(kept) the diagnostics report (lstm_jax.train.diagnostics).

    `gate` names one of the cell's returned gates; `kept` says what fraction of the state
    that gate's value v keeps each step: "gate" (v itself: the LSTM's forget gate, c_t =
    f c_{t-1} + ..., and PyTorch's GRU update gate, h_t = (1 - z) n + z h_{t-1}),
    "complement" (1 - v: a cell written h_t = (1 - z) h_{t-1} + z h~, such as minGRU) or
    "modulus" (|v|: a diagonal complex recurrence h_t = lambda h_{t-1} + ..., LRU)."""

    gate: str
    kept: Literal["gate", "complement", "modulus"] = "gate"

    def kept_fraction(self, v: jax.Array) -> jax.Array:
        """The fraction of the state kept each step, from the gate's values."""
        if self.kept == "gate":
            return v
        if self.kept == "complement":
            return 1.0 - v
        return jnp.abs(v)


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


class LayerParams(nnx.Module):
    """The parameters of one layer (all its directions): `layer_k.<name>`."""

    def __init__(self, params: dict):
        for name, value in params.items():
            setattr(self, name, nnx.Param(value))


class RecurrentLayer(nnx.Module):
    """Stacking, directions, masking and the state layout; a subclass is the cell.

    A cell declares `CELL` (its registry name, lstm_jax.nn.registry), `GATE_ACTIVATIONS`
    (gate name -> "sigmoid" | "tanh", in the kernel's gate-block order: the range the
    diagnostics bin each over), `RETAIN` (a `Retention`, if one of its gates sets the
    fraction of state kept each step) and `STATE_PARTS`; and it implements
    `_layer_params(d_in, key)` (layer k's parameters), `_project(p, x)` (every step's
    input, (T, B, D) -> (T, B, N, F)) and `_kernel(...)` (the loop over time).
    """

    CELL: ClassVar[str] = ""
    GATE_ACTIVATIONS: ClassVar[dict[str, Literal["sigmoid", "tanh"]]] = {}
    GATES: ClassVar[tuple[str, ...]] = ()
    RETAIN: ClassVar[Retention | None] = None
    # The name of RETAIN's gate, derived from it for readers that only need the name
    # (experiments/long_dependency_figures.py picks the `<gate>_tau` series by it).
    RETAIN_GATE: ClassVar[str | None] = None
    STATE_PARTS: ClassVar[int] = 1  # LSTM: 2 (h, c)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.RETAIN_GATE = cls.RETAIN.gate if cls.RETAIN else None

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
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
        self.dtype = dtype
        self.param_dtype = param_dtype
        for k in range(num_layers):
            d_in = in_features if k == 0 else self.output_width
            setattr(self, f"layer_{k}", LayerParams(self._layer_params(d_in, rngs.params())))
        if dropout > 0.0 and num_layers == 1:
            warnings.warn(
                "dropout > 0 with num_layers=1 has no effect: like torch.nn.LSTM, dropout is "
                "applied between layers only.",
                stacklevel=3,
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

    # ---- the cell's hooks -----------------------------------------------------------------

    def _layer_params(self, d_in: int, key: jax.Array) -> dict[str, jax.Array]:
        """Initial parameters of one layer (all directions) reading `d_in` features."""
        raise NotImplementedError

    def _project(self, p: LayerParams, x: jax.Array) -> jax.Array:
        """Every step's input to the loop: x (T, B, D) -> (T, B, N, F), float32."""
        raise NotImplementedError

    def _kernel(self, xw, p, carry0, mask, pert, return_gates):
        """One layer over time for both directions at once (lstm_jax.nn.scan's conventions):
        xw (T, N, B, F), carry0 a tuple of STATE_PARTS (N, B, H) arrays. Returns y (T, N,
        B, H) (zero at padded steps), the final carry (the state at each true length) and
        the gates (T, N, B, G*H) in GATES order when `return_gates`, else None."""
        raise NotImplementedError

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

        h = jnp.swapaxes(x, 0, 1)  # (T, B, D): time-major for the loop
        finals, gates_out = [], {}
        for k in range(self.num_layers):
            p = getattr(self, f"layer_{k}")
            xw = _to_dirs(self._project(p, h), n, rev)
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
