"""The cuDNN backend of `lstm_jax.nn.LSTM`: `jax.experimental.rnn.lstm` on CUDA GPUs.

cuDNN takes one flat float32 weight vector per stack (jax.experimental.rnn's module docstring
gives the layout): for every pseudo-layer p = 2k + d (layer k, direction d) W_ih^p (4H, D_p)
and W_hh^p (4H, H) in PyTorch gate order i, f, g, o, all linear weights first, then b_ih^p
and b_hh^p (4H,) for every p. lstm_jax keeps the transposes (w_ih (D, N, 4H), w_hh
(N, H, 4H)) and one summed bias, so the conversion is transposes and a concatenation: cheap,
differentiable, done inside the jitted step, and the parameters stay in lstm_jax's layout (a
checkpoint does not depend on the backend).

What cuDNN cannot do (`blockers` names each for a call): return the gates or take a hidden
perturbation (the diagnostics), a compute dtype other than float32, active dropout between
layers (cuDNN draws its own masks), a layer without biases, a global
`jax_default_matmul_precision` other than unset, "highest"/"float32" or "high"/
"tensorfloat32" (jax.experimental.rnn raises NotImplementedError for "bfloat16" and
"default", and silently runs TF32 for the dot-algorithm names such as "F32_F32_F32"), and
a call under `jax.vmap` (the cuDNN primitive has no batching rule). `backend="auto"` runs
the scan kernel for such a call; an explicit `backend="cudnn"` refuses it in one line (at
construction where the layer's settings already decide it), except the diagnostics' gates
and perturbation, which only the scan kernel can give: those calls fall back with a
warning. One case cannot be seen from here: `jax.vmap` over an already jitted function
whose trace called the layer fails in JAX with "Batching rule for 'rnn_fwd' not
implemented"; use backend="scan" there.

A zero length (jax#17966) is handled here: cuDNN runs those rows with length 1, and their
outputs and final state are then replaced by zeros and the initial state, as the scan kernel
gives.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

try:  # how a call under jax.vmap is told apart: JAX has no public test for it
    from jax._src.interpreters.batching import BatchTracer
except ImportError:  # a JAX that moved it: no vmap check (tests/nn/test_nn_backends.py fails)
    BatchTracer = None

BACKENDS = ("auto", "scan", "cudnn")


def on_cuda() -> bool:
    """Whether JAX's default backend is a CUDA GPU (the one jax.experimental.rnn needs)."""
    try:
        return jax.default_backend() == "gpu" and any(
            "cuda" in d.client.platform_version.lower() for d in jax.devices()
        )
    except (RuntimeError, AttributeError):
        return False


# The diagnostics ask for what only the scan kernel computes: under an explicit
# backend="cudnn" these calls fall back with a warning instead of being refused.
GATES_REQUESTED = "the gates were requested"
PERTURBATION_GIVEN = "a hidden perturbation was given"
DIAGNOSTICS_ONLY = (GATES_REQUESTED, PERTURBATION_GIVEN)

# jax_default_matmul_precision values whose meaning cuDNN's LSTM keeps: unset (TF32 where
# the GPU has it, as XLA's own default), full float32, or TF32. jax.experimental.rnn raises
# NotImplementedError for "bfloat16"/"default" and runs TF32 for every dot-algorithm name,
# "F32_F32_F32" included, so those are blockers too.
CUDNN_PRECISIONS = (None, "highest", "float32", "high", "tensorfloat32")


def precision_blocker() -> str | None:
    """Why the global matmul precision keeps cuDNN's LSTM from running (None: it can)."""
    precision = jax.config.jax_default_matmul_precision
    if precision in CUDNN_PRECISIONS:
        return None
    return (
        f"jax_default_matmul_precision is {precision!r} (cuDNN's LSTM takes only "
        "'highest'/'float32', 'high'/'tensorfloat32' or none)"
    )


def under_vmap(*trees) -> bool:
    """Whether any array of `trees` is being batched by jax.vmap (or nnx.vmap) here."""
    return BatchTracer is not None and any(
        isinstance(leaf, BatchTracer) for leaf in jax.tree.leaves(trees)
    )


def blockers(
    *,
    dtype=None,
    use_bias: bool = True,
    dropout_active: bool = False,
    return_gates: bool = False,
    hidden_perturbation=None,
    arrays=(),
) -> list[str]:
    """Why cuDNN cannot run an LSTM call (empty: it can). `arrays`: the call's inputs and
    parameters, looked at only for jax.vmap."""
    reasons = []
    if return_gates:
        reasons.append(GATES_REQUESTED)
    if hidden_perturbation is not None:
        reasons.append(PERTURBATION_GIVEN)
    if dtype is not None and jnp.dtype(dtype) != jnp.float32:
        reasons.append(f"the compute dtype is {jnp.dtype(dtype).name} (cuDNN's LSTM: float32)")
    if dropout_active:
        reasons.append("dropout between layers is active (cuDNN draws its own masks)")
    if not use_bias:
        reasons.append("the layer has no biases")
    precision = precision_blocker()
    if precision:
        reasons.append(precision)
    if under_vmap(arrays):
        reasons.append("the call runs under jax.vmap (the cuDNN call has no batching rule)")
    return reasons


def why_not(backend: str, reasons: list[str]) -> list[str]:
    """Why a call with these blockers does not run on cuDNN under `backend` (empty: it
    does). Decides only; `select` also enforces an explicit backend="cudnn"."""
    if backend == "scan":
        return ["backend='scan'"]
    if not on_cuda():
        return [f"no CUDA GPU (JAX's default backend is {jax.default_backend()!r})"]
    return reasons


def select(backend: str, reasons: list[str]) -> bool:
    """Whether a call with these blockers runs on cuDNN. backend="cudnn" refuses a blocker
    in one line, and falls back with a warning for the diagnostics' requests only."""
    if backend == "cudnn" and reasons:
        refused = [r for r in reasons if r not in DIAGNOSTICS_ONLY]
        if refused:
            raise ValueError(
                f"backend='cudnn' cannot be used: {'; '.join(refused)}. Use "
                "backend='auto' (the scan kernel where cuDNN cannot) or backend='scan'."
            )
        warnings.warn(
            f"backend='cudnn' falls back to the scan kernel: {', '.join(reasons)}.",
            stacklevel=4,
        )
    return not why_not(backend, reasons)


def check_backend(backend: str, **settings) -> None:
    """Refuses, before any work, an unknown backend, and `cudnn` where there is no CUDA GPU
    or where the layer's settings (`blockers`' keywords) or the global precision already
    rule cuDNN out."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {', '.join(BACKENDS)}.")
    if backend == "cudnn" and not on_cuda():
        raise ValueError(
            f"backend='cudnn' needs a CUDA GPU, but JAX's default backend here is "
            f"{jax.default_backend()!r}; use backend='auto' (cuDNN where it can, the scan "
            "kernel elsewhere) or backend='scan'."
        )
    if backend == "cudnn":
        select(backend, blockers(**settings))


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
