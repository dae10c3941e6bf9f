"""cuDNN against the scan kernel against PyTorch's cuDNN LSTM, on a CUDA GPU: outputs, final
states and every gradient, for a stacked bidirectional LSTM on a padded batch (a zero length
included, jax#17966). Prints the largest absolute differences and exits 1 past tolerance.

    python experiments/gpu_parity.py          # part of experiments/gpu_check.sh
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.nn import LSTM, cudnn

B, T, D, H, LAYERS = 16, 50, 24, 64, 2
TOLERANCE = 2e-4  # float32 with TF32 off on both sides


def main() -> int:
    if not cudnn.on_cuda():
        print(f"gpu_parity: no CUDA GPU (JAX backend {jax.default_backend()!r}); nothing to check")
        return 1
    jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 in the scan kernel
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int32)
    lengths[3] = 0
    results = {}
    for backend in ("scan", "cudnn"):
        layer = LSTM(D, H, num_layers=LAYERS, bidirectional=True, backend=backend, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(layer, nnx.Param)

        def loss(p, x, graphdef=graphdef):
            y, (h, c) = nnx.merge(graphdef, p)(x, jnp.asarray(lengths))
            return jnp.sum(jnp.sin(y)) + jnp.sum(h**2) + jnp.sum(c), (y, h, c)

        (_, outs), grads = jax.jit(jax.value_and_grad(loss, has_aux=True, argnums=(0, 1)))(
            params, jnp.asarray(x)
        )
        results[backend] = (outs, grads)
        state_dict = layer.to_torch()

    worst = 0.0

    def report(name, a, b):
        nonlocal worst
        diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        worst = max(worst, diff)
        print(f"  {name:<28} max |diff| {diff:.2e}")

    print("cuDNN vs scan:")
    (y_s, h_s, c_s), g_s = results["scan"]
    (y_c, h_c, c_c), g_c = results["cudnn"]
    for name, a, b in (("y", y_c, y_s), ("h_n", h_c, h_s), ("c_n", c_c, c_s)):
        report(name, a, b)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(g_c)[0], jax.tree.leaves(g_s), strict=True
    ):
        report("grad " + jax.tree_util.keystr(path), a, b)

    try:
        import torch
    except ImportError:
        print("PyTorch not installed: the PyTorch comparison is skipped")
        return int(worst > TOLERANCE)
    torch.backends.cudnn.allow_tf32 = False
    model = torch.nn.LSTM(D, H, num_layers=LAYERS, bidirectional=True, batch_first=True).cuda()
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state_dict.items()})
    xt = torch.as_tensor(x, device="cuda", requires_grad=True)
    keep = lengths > 0  # PyTorch packing refuses zero lengths; compare the other rows
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt[torch.as_tensor(keep)],
        torch.as_tensor(lengths[keep]),
        batch_first=True,
        enforce_sorted=False,
    )
    out, (h_t, c_t) = model(packed)
    y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    print("PyTorch cuDNN vs lstm_jax cuDNN (rows of nonzero length; outputs):")
    report("y", y_t.detach().cpu().numpy(), np.asarray(y_c)[keep])
    report("h_n", h_t.detach().cpu().numpy(), np.asarray(h_c)[:, keep])
    report("c_n", c_t.detach().cpu().numpy(), np.asarray(c_c)[:, keep])
    loss = torch.sin(y_t).sum() + (h_t**2).sum() + c_t.sum()
    loss.backward()
    grad_x = np.asarray(g_c[1])[keep]
    report("grad x", xt.grad.cpu().numpy()[keep], grad_x)
    print(f"worst difference {worst:.2e} (tolerance {TOLERANCE:.0e})")
    return int(worst > TOLERANCE)


if __name__ == "__main__":
    sys.exit(main())
