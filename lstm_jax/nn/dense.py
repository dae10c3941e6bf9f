"""The dense recurrent family: cells whose step is gates = act(W_ih x_t + W_hh h_{t-1} + b)
with full (H, G*H) recurrent matrices in PyTorch's layout, that is LSTM, GRU and SimpleRNN
(lstm_jax/nn/lstm.py, gru.py, rnn.py). Here: their parameters and initialisation, the
PyTorch interchange (`from_torch` / `to_torch`) and what their hand-written backward
kernels share.

Parameters of layer k live in ``layer_k``: ``w_ih`` (D, N, G*H), ``w_hh`` (N, H, G*H) and
the biases (N = 1 or 2 directions, G gate blocks in PyTorch order). A cell's biases are its
own (`_init_bias`): LSTM and SimpleRNN keep one bias ``b`` (N, G*H), the sum of PyTorch's
b_ih + b_hh (they only ever appear summed); GRU keeps ``b_i`` and ``b_hn``.

Initialisation (documented choices):
- input weights: uniform in +-1/sqrt(H), PyTorch's default for nn.LSTM / nn.GRU / nn.RNN,
  so a freshly built layer has the same scale as the PyTorch baselines it is compared with;
- recurrent weights: orthogonal, one independent (H, H) orthogonal matrix per gate block, so
  that every gate's recurrent map starts norm-preserving (Saxe et al. 2014);
- biases: zero, unless the cell says otherwise (the LSTM's forget bias and chrono init).

PyTorch names, per layer k and direction (suffix "" or "_reverse"):
    weight_ih_l{k}{sfx} (G*H, D), weight_hh_l{k}{sfx} (G*H, H),
    bias_ih_l{k}{sfx} (G*H,), bias_hh_l{k}{sfx} (G*H,)
lstm_jax keeps the transposes, directions stacked; gate order is PyTorch's in both (LSTM
i, f, g, o; GRU r, z, n), so conversion is transposition. No torch import: a state dict is
given and returned as numpy arrays.

Why the kernels have a hand-written backward (``jax.custom_vjp``): autodiff of ``lax.scan``
computes the W_hh gradient as one small (H, B) x (B, G*H) matmul per step inside the
reverse loop and carries it in the loop state. The cells' reverse loops only propagate the
state gradients and emit the pre-activation gradients dz_t; dW_hh for all steps is then one
(H, T*B) x (T*B, G*H) matmul (`weight_grad`), and the input-projection gradients are left
to the caller's single projection matmul (lstm_jax.nn.scan.input_projection). Each cell
also keeps a plain-autodiff reference scan with the same signature, which the tests check
the kernel against.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.nn import scan
from lstm_jax.nn.stack import F32, DType, LayerParams, RecurrentLayer

TORCH_SUFFIXES = ("", "_reverse")


# --------------------------------------------------------------------------------------------
# Initialisation. Shapes use the layer layout: w_ih (D, N, G*H), w_hh (N, H, G*H).


def input_weights(key, d_in, num_dirs, gates, hidden, dtype=F32):
    """U(-1/sqrt(H), 1/sqrt(H)) of shape (D, N, G*H)."""
    bound = 1.0 / jnp.sqrt(hidden)
    return jax.random.uniform(
        key, (d_in, num_dirs, gates * hidden), dtype, minval=-bound, maxval=bound
    )


def recurrent_weights(key, num_dirs, gates, hidden, dtype=F32):
    """(N, H, G*H): each (H, H) gate block an independent orthogonal matrix."""
    keys = jax.random.split(key, num_dirs * gates)
    ortho = jax.nn.initializers.orthogonal()
    blocks = jax.vmap(lambda k: ortho(k, (hidden, hidden), dtype))(keys)  # one batched QR
    # (N*G, H, H) -> (N, H, G*H): gate blocks side by side on the output axis.
    blocks = blocks.reshape(num_dirs, gates, hidden, hidden)
    return jnp.transpose(blocks, (0, 2, 1, 3)).reshape(num_dirs, hidden, gates * hidden)


# --------------------------------------------------------------------------------------------
# PyTorch state dicts (numpy arrays).


def infer_torch_config(state_dict, gates):
    """Sizes of the PyTorch module that produced ``state_dict``."""
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    if any(k.startswith("weight_hr") for k in sd):
        raise ValueError("LSTM with proj_size (weight_hr_l*) is not supported.")
    layers = {int(m.group(1)) for k in sd if (m := re.fullmatch(r"weight_ih_l(\d+)", k))}
    if not layers or layers != set(range(len(layers))):
        raise ValueError(f"not a PyTorch recurrent state dict: keys {sorted(sd)}")
    w_hh = sd["weight_hh_l0"]
    hidden = w_hh.shape[1]
    if w_hh.shape[0] != gates * hidden:
        raise ValueError(
            f"weight_hh_l0 has shape {w_hh.shape}; expected ({gates}*H, H) for this cell."
        )
    return {
        "in_features": sd["weight_ih_l0"].shape[1],
        "hidden_size": hidden,
        "num_layers": len(layers),
        "bidirectional": "weight_ih_l0_reverse" in sd,
        "use_bias": "bias_ih_l0" in sd,
    }


def layer_from_torch(state_dict, k, num_dirs):
    """Layer k's weights in lstm_jax layout plus the raw (b_ih, b_hh) of each direction."""
    sfx = TORCH_SUFFIXES[:num_dirs]
    w_ih = np.stack([np.asarray(state_dict[f"weight_ih_l{k}{s}"]).T for s in sfx], axis=1)
    w_hh = np.stack([np.asarray(state_dict[f"weight_hh_l{k}{s}"]).T for s in sfx], axis=0)
    biases = [
        (np.asarray(state_dict[f"bias_ih_l{k}{s}"]), np.asarray(state_dict[f"bias_hh_l{k}{s}"]))
        for s in sfx
        if f"bias_ih_l{k}{s}" in state_dict
    ]
    return w_ih.astype(np.float32), w_hh.astype(np.float32), biases


def layer_to_torch(k, w_ih, w_hh, biases):
    """Inverse of layer_from_torch: w_ih (D, N, GH), w_hh (N, H, GH), biases per direction."""
    out = {}
    for d in range(w_hh.shape[0]):
        s = TORCH_SUFFIXES[d]
        out[f"weight_ih_l{k}{s}"] = np.ascontiguousarray(np.asarray(w_ih)[:, d, :].T)
        out[f"weight_hh_l{k}{s}"] = np.ascontiguousarray(np.asarray(w_hh)[d].T)
        if biases:
            out[f"bias_ih_l{k}{s}"], out[f"bias_hh_l{k}{s}"] = biases[d]
    return out


# --------------------------------------------------------------------------------------------
# What the dense cells' kernels share.


def matmul(a, w, cdt):
    """([N,] B, K) x ([N,] K, M) -> ([N,] B, M) in the compute dtype, accumulated in float32."""
    return jnp.matmul(a.astype(cdt), w, preferred_element_type=F32)


def weight_grad(h_prev, dz, cdt, dtype):
    """sum_t h_{t-1}^T dz_t for all steps as one matmul: (T,[N,]B,H),(T,[N,]B,M) -> ([N,]H,M)."""
    h_prev, dz = h_prev.astype(cdt), dz.astype(cdt)
    if h_prev.ndim == 3:
        return scan.contract_time_and_batch(h_prev, dz).astype(dtype)
    return jnp.einsum("tnbh,tnbm->nhm", h_prev, dz, preferred_element_type=F32).astype(dtype)


def gate_activations(z, num_blocks, tanh_block=None):
    """sigmoid on every one of the `num_blocks` H-wide gate blocks of z (..., G*H) but
    `tanh_block`, tanh on that one, as ONE tanh over the whole vector: sigmoid(x) =
    0.5 tanh(x / 2) + 0.5, so act = s * tanh(s * z) + (1 - s) with s = 0.5 (sigmoid block)
    or 1 (tanh block). XLA-CPU runs one vectorised pass for it; four activations on slices
    of z took 4x as long inside the scan (S2: 29 ms vs 7 ms of a 128-step forward,
    experiments/README.md)."""
    block = jnp.arange(z.shape[-1]) // (z.shape[-1] // num_blocks)
    s = jnp.where(block == tanh_block, 1.0, 0.5).astype(z.dtype)
    return s * jnp.tanh(s * z) + (1.0 - s)


def gate_derivatives(act, num_blocks, tanh_block=None):
    """d act / d z of `gate_activations`, from its output: a (1 - a) on the sigmoid blocks,
    1 - a^2 = (1 - a)(1 + a) on the tanh block, as ONE pass (1 - a)(a + c) with c = 0 or 1
    per block (both forms keep a (1 - a)'s precision near a = 0 and 1)."""
    block = jnp.arange(act.shape[-1]) // (act.shape[-1] // num_blocks)
    return (1.0 - act) * (act + (block == tanh_block).astype(act.dtype))


def bias_operand(input_bias, xw):
    """The kernels' bias operand: (N, 1, G*H), zeros when there is no bias. Added to
    each step's projection inside the loop, where it fuses with the gate activations; added
    to the whole (T, N, B, G*H) projection it was one more pass over it (S2's forward: 15 ms,
    experiments/README.md)."""
    n, gh = xw.shape[1], xw.shape[-1]
    b = jnp.zeros((n, gh), F32) if input_bias is None else input_bias.astype(F32)
    return b[:, None, :]


def bias_grad(d_pre, b):
    """d loss / d bias from the pre-activation gradients (T, [N,] B, G*H) of every step."""
    return jnp.sum(d_pre, axis=(0, d_pre.ndim - 2)).reshape(b.shape)


def reference_operands(xw, w_hh, mask, input_bias, compute_dtype):
    """What every reference scan's step reads: the compute dtype, the bias operand, the
    recurrent weights in that dtype and the boolean mask view."""
    cdt = compute_dtype or F32
    mb, _ = scan.masks(mask, xw.ndim)
    return cdt, bias_operand(input_bias, xw), w_hh.astype(cdt), mb


def with_backward(fwd, bwd):
    """The kernel `fwd(*operands)[0]` with the hand-written backward `bwd` (jax.custom_vjp):
    every dense cell's kernel is its forward and backward joined this way."""

    @jax.custom_vjp
    def kernel(*operands):
        return fwd(*operands)[0]

    kernel.defvjp(fwd, bwd)
    return kernel


def call_kernel(kernel, xw, input_bias, operands, mask, pert):
    """kernel(xw, bias, *operands, mask, pert), the operands (T, N, ...) / (N, ...) as the
    public `*_scan` entries take them; one direction runs without its size-1 axis
    (`squeeze_directions`) and its outputs get it back."""
    b = bias_operand(input_bias, xw)
    if xw.shape[1] == 1:
        return unsqueeze_directions(
            kernel(*squeeze_directions(xw, b, *operands), mask, squeeze_directions(pert)[0])
        )
    return kernel(xw, b, *operands, mask, pert)


def zeros_or_none(x):
    return None if x is None else jnp.zeros_like(x)


def squeeze_directions(*arrays):
    """Drop the size-1 direction axis (axis 1 of (T, N, ...) arrays, axis 0 of the others):
    the one-direction kernels then run plain 2-D matmuls, and XLA-CPU no longer copies the
    (T, 1, B, G*H) input into a canonical layout (measured)."""
    return [None if a is None else a[:, 0] if a.ndim == 4 else a[0] for a in arrays]


def unsqueeze_directions(outputs):
    return tuple(None if a is None else a[:, None] if a.ndim == 3 else a[None] for a in outputs)


# --------------------------------------------------------------------------------------------
# The layer family.


class DenseRecurrent(RecurrentLayer):
    """A stacked dense recurrent layer: PyTorch-layout weights, their initialisation and the
    PyTorch interchange. A cell adds its equations (`_kernel`) and, where its biases are not
    one summed `b`, `_init_bias`, `_input_bias` and the `_bias_*_torch` pair."""

    # Gate blocks in the kernel's order (PyTorch's); G = len(GATES).
    GATES: ClassVar[tuple[str, ...]] = ()

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
        self.use_bias = use_bias  # read by _layer_params, which the base constructor calls
        # "custom" = the hand-written backward; "reference" = autodiff of a plain scan (tests).
        self.scan_impl = "custom"
        self.unroll = 1
        super().__init__(
            in_features,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def _layer_params(self, d_in, key):
        n, g, h = self.num_directions, len(self.GATES), self.hidden_size
        k_ih, k_hh, k_b = jax.random.split(key, 3)
        params = {
            "w_ih": input_weights(k_ih, d_in, n, g, h, self.param_dtype),
            "w_hh": recurrent_weights(k_hh, n, g, h, self.param_dtype),
        }
        if self.use_bias:
            params.update(self._init_bias(k_b))
        return params

    def _project(self, p, x):
        # The input projection of every step and direction: one matmul outside the loop
        # (its bias is added inside the loop, by the kernel).
        w_ih = p.w_ih[...]
        t, b = x.shape[:2]
        xw = scan.input_projection(x, w_ih.reshape(w_ih.shape[0], -1), compute_dtype=self.dtype)
        return xw.reshape(t, b, self.num_directions, w_ih.shape[-1])

    # ---- the cell's biases ----------------------------------------------------------------

    def _init_bias(self, key) -> dict:
        n, g, h = self.num_directions, len(self.GATES), self.hidden_size
        return {"b": jnp.zeros((n, g * h), self.param_dtype)}

    def _input_bias(self, p):
        """(N, G*H) bias of the input projection (the kernel adds it inside the loop), or None."""
        return p.b[...] if self.use_bias else None

    @staticmethod
    def _bias_from_torch(b_ih, b_hh, hidden) -> dict:
        return {"b": b_ih + b_hh}

    def _bias_to_torch(self, p, d):
        b = np.asarray(p.b[...])[d]
        return b, np.zeros_like(b)

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
    ) -> DenseRecurrent:
        """A layer holding the weights of a PyTorch module's state dict (numpy arrays);
        sizes, layers, bidirectional and bias are inferred. kwargs: dropout, dtype, ..."""
        cfg = infer_torch_config(state_dict, len(cls.GATES))
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
            w_ih, w_hh, biases = layer_from_torch(state_dict, k, layer.num_directions)
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
            p: LayerParams = getattr(self, f"layer_{k}")
            biases = (
                [self._bias_to_torch(p, d) for d in range(self.num_directions)]
                if self.use_bias
                else []
            )
            out.update(layer_to_torch(k, p.w_ih[...], p.w_hh[...], biases))
        return {k: np.array(v, np.float32) for k, v in out.items()}  # writable copies
