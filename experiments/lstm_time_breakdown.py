"""Where one lstm_jax training step spends its time, beside PyTorch's, at one shape.

Times, in one process (implementations never run at the same time; an idle gap before each
timing lets the previous one's threads sleep), the median over interleaved repeats of:

    lstm_jax step        forward + backward of lstm_jax.nn.LSTM (loss = mean(y ** 2))
    lstm_jax forward     the same forward, no gradient
    projection           the input projection of all steps alone (one large matmul)
    kernel gradient      the scan kernel's forward + hand-written backward over a
                         precomputed projection (the recurrence's share of the step)
    scan: cell           a bare lax.scan of the LSTM cell over a precomputed projection
    scan: matmul only    the same scan doing only the recurrent matmul (h <- h W_hh + x_t)
    pytorch step         torch.nn.LSTM forward + backward
    pytorch forward      torch.nn.LSTM forward under no_grad

    python experiments/lstm_time_breakdown.py --shape 32,128,256,256 --repeats 15
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from interleaved import print_medians, time_interleaved


def jax_functions(b, t, d, h):
    from flax import nnx

    from lstm_jax.nn import LSTM
    from lstm_jax.nn.lstm import _lstm_step, lstm_scan
    from lstm_jax.nn.scan import input_projection

    model = LSTM(d, h, backend="scan", rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((b, t, d)), jnp.float32)

    def loss(p):
        return jnp.mean(nnx.merge(graphdef, p)(x)[0] ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    forward = jax.jit(loss)
    # Weights drawn like the layer's own (U(-1/sqrt(H), 1/sqrt(H))): constant weights made
    # the matmul-only scan overflow to inf and NaN, which took 25 instead of 17 ms at S2.
    rng = np.random.default_rng(1)
    w_ih, w_hh = (
        jnp.asarray(rng.uniform(-1, 1, (k, 4 * h)) / np.sqrt(h), jnp.float32) for k in (d, h)
    )
    xs = jnp.swapaxes(x, 0, 1)
    projection = jax.jit(lambda xs: input_projection(xs, w_ih))
    xw = projection(xs)

    zeros_state = jnp.zeros((1, b, h))
    kernel_gradient = jax.jit(  # d/d xw and d/d W_hh: the recurrence's whole backward
        jax.grad(
            lambda xw, w: jnp.mean(
                lstm_scan(xw[:, None], w[None], zeros_state, zeros_state)[0] ** 2
            ),
            argnums=(0, 1),
        )
    )

    @jax.jit
    def scan_cell(xw):
        def body(carry, xw_t):
            hh, c, _ = _lstm_step(xw_t, *carry, w_hh, jnp.float32)
            return (hh, c), hh

        zeros = jnp.zeros((b, h))
        return jax.lax.scan(body, (zeros, zeros), xw)[1]

    @jax.jit
    def scan_matmul(xw):
        def body(hh, xw_t):
            hh = (hh @ w_hh + xw_t)[:, :h]
            return hh, hh

        return jax.lax.scan(body, jnp.zeros((b, h)), xw)[1]

    return {
        "lstm_jax step": lambda: jax.block_until_ready(step(params)),
        "lstm_jax forward": lambda: jax.block_until_ready(forward(params)),
        "projection": lambda: jax.block_until_ready(projection(xs)),
        "kernel gradient": lambda: jax.block_until_ready(kernel_gradient(xw, w_hh)),
        "scan: cell": lambda: jax.block_until_ready(scan_cell(xw)),
        "scan: matmul only": lambda: jax.block_until_ready(scan_matmul(xw)),
    }


def torch_functions(b, t, d, h):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model = torch.nn.LSTM(d, h, batch_first=True)
    x = torch.randn(b, t, d)

    def step():
        model.zero_grad(set_to_none=True)
        model(x)[0].pow(2).mean().backward()

    def forward():
        with torch.no_grad():
            model(x)

    return {"pytorch step": step, "pytorch forward": forward}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="32,128,256,256", help="B,T,D,H (one layer)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--gap", type=float, default=0.3)
    args = ap.parse_args(argv)
    b, t, d, h = map(int, args.shape.split(","))
    functions = jax_functions(b, t, d, h)
    try:
        functions.update(torch_functions(b, t, d, h))
    except ImportError:
        pass
    for fn in functions.values():  # compile and warm up
        for _ in range(3):
            fn()
    times = time_interleaved(functions, args.repeats, args.gap)
    print_medians(times, f"B,T,D,H = {b},{t},{d},{h}", width=20)


if __name__ == "__main__":
    main()
