"""cuDNN against the scan kernel against PyTorch's cuDNN LSTM, on a CUDA GPU: outputs, final
states and every gradient, for a stacked bidirectional LSTM on a padded batch (a zero length
included, jax#17966), at two matmul precisions: "highest" (float32 throughout: TF32 off in
XLA, cuDNN and PyTorch) and the default (JAX's precision unset, PyTorch's cuDNN TF32 switch at
its default: TF32 where the GPU has it, as a user's run gets). Each array's difference is
reported relative to that array's scale, per precision; exits 1 if one is past its
tolerance, or at once where JAX sees no CUDA GPU.

    python experiments/gpu_parity.py          # part of experiments/gpu_check.sh
"""

from __future__ import annotations

import contextlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.nn import LSTM, cudnn
from lstm_jax.train.diagnostics import param_paths

B, T, D, H, LAYERS = 16, 50, 24, 64, 2

# Tolerances relative to each array's scale: |a - b| <= rtol * max|b|, per array. An absolute
# tolerance cannot serve arrays of different scales: one float32 rounding step of a bias
# gradient of about 1e3 is 2**-23 * 1e3 = 1.2e-4 (the project's two CPU scans already
# differ by 1.22e-4 there), while outputs are below 1. "highest": float32 on both sides;
# 1e-5 is about 80 rounding steps (2**-23 = 1.2e-7) of the array's largest value, room for
# cuDNN's other summation order over 50 steps and 16 rows. "default": TF32 multiplies with
# a 10-bit mantissa (one step 2**-10 = 9.8e-4 relative); 1e-2 is about 10 of its steps.
RTOL = {"highest": 1e-5, "default": 1e-2}


def relative_error(a, b) -> float:
    """max |a - b| over the array, in units of max |b| (the reference's scale); 0 for two
    zero arrays, inf where only the reference is zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff, scale = float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def precision_scope(precision: str):
    """JAX's matmul precision for one pass: "highest", or "default" (left unset)."""
    if precision == "default":
        return contextlib.nullcontext()
    return jax.default_matmul_precision(precision)


def lstm_jax_results(x, lengths, precision):
    """{backend: ((y, h_n, c_n), (parameter gradients, input gradient))} and the PyTorch
    state dict of the (same) weights."""
    results = {}
    for backend in ("scan", "cudnn"):
        layer = LSTM(D, H, num_layers=LAYERS, bidirectional=True, backend=backend, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(layer, nnx.Param)

        def loss(p, x, graphdef=graphdef):
            y, (h, c) = nnx.merge(graphdef, p)(x, jnp.asarray(lengths))
            return jnp.sum(jnp.sin(y)) + jnp.sum(h**2) + jnp.sum(c), (y, h, c)

        with precision_scope(precision):
            (_, outs), grads = jax.jit(jax.value_and_grad(loss, has_aux=True, argnums=(0, 1)))(
                params, jnp.asarray(x)
            )
        results[backend] = (outs, grads)
        state_dict = layer.to_torch()
    return results, state_dict


def pytorch_results(x, lengths, state_dict, precision):
    """PyTorch's cuDNN LSTM on the rows of nonzero length (its packing refuses zero):
    (y, h_n, c_n, input gradient), or None where PyTorch or its CUDA is missing."""
    try:
        import torch
    except ImportError:
        print("  PyTorch is not installed: the PyTorch comparison is skipped")
        return None
    if not torch.cuda.is_available():
        print(f"  PyTorch {torch.__version__} has no CUDA here: the PyTorch comparison is skipped")
        return None
    torch.backends.cudnn.allow_tf32 = precision == "default"  # its default is True
    model = torch.nn.LSTM(D, H, num_layers=LAYERS, bidirectional=True, batch_first=True).cuda()
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state_dict.items()})
    keep = lengths > 0
    xt = torch.as_tensor(x[keep], device="cuda").requires_grad_(True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.as_tensor(lengths[keep]), batch_first=True, enforce_sorted=False
    )
    out, (h_t, c_t) = model(packed)
    y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    (torch.sin(y_t).sum() + (h_t**2).sum() + c_t.sum()).backward()
    return tuple(t.detach().cpu().numpy() for t in (y_t, h_t, c_t, xt.grad))


def compare(precision: str, x, lengths) -> bool:
    """Prints each array's relative difference at `precision`; whether all are within."""
    rtol, worst = RTOL[precision], 0.0

    def report(name, a, b):
        nonlocal worst
        err = relative_error(a, b)
        worst = max(worst, err)
        print(f"  {name:<32} {err:.2e} of its scale (max |ref| {np.max(np.abs(b)):.2e})")

    results, state_dict = lstm_jax_results(x, lengths, precision)
    (y_s, h_s, c_s), g_s = results["scan"]
    (y_c, h_c, c_c), g_c = results["cudnn"]
    print(f"precision {precision}: cuDNN vs the scan kernel")
    for name, a, b in (("y", y_c, y_s), ("h_n", h_c, h_s), ("c_n", c_c, c_s)):
        report(name, a, b)
    for (parts, a), (_, b) in zip(param_paths(g_c[0]), param_paths(g_s[0]), strict=True):
        report("grad " + "/".join(parts), a, b)
    report("grad x", g_c[1], g_s[1])

    torch_out = pytorch_results(x, lengths, state_dict, precision)
    if torch_out is not None:
        keep = lengths > 0
        print(f"precision {precision}: PyTorch cuDNN vs lstm_jax cuDNN (rows of nonzero length)")
        y_t, h_t, c_t, gx_t = torch_out
        report("y", y_t, np.asarray(y_c)[keep])
        report("h_n", h_t, np.asarray(h_c)[:, keep])
        report("c_n", c_t, np.asarray(c_c)[:, keep])
        report("grad x", gx_t, np.asarray(g_c[1])[keep])
    ok = worst <= rtol
    print(
        f"precision {precision}: worst {worst:.2e} of the scale, tolerance {rtol:.0e}: "
        f"{'ok' if ok else 'FAILED'}"
    )
    return ok


def main() -> int:
    if not cudnn.on_cuda():
        print(f"gpu_parity: no CUDA GPU (JAX's default backend is {jax.default_backend()!r})")
        return 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int32)
    lengths[3] = 0
    verdicts = {precision: compare(precision, x, lengths) for precision in RTOL}
    print("parity: " + ", ".join(f"{p} {'ok' if v else 'FAILED'}" for p, v in verdicts.items()))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
