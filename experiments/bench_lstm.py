"""Training-step speed of lstm_jax.nn.LSTM against PyTorch nn.LSTM and the JAX peers.

One training step = forward, backward and the gradients of every parameter, with
loss = mean(y ** 2), timed for each installed implementation in one process at the DESIGN
shapes (batch, time, input, hidden, layers). After a warm-up, the implementations run
interleaved (one timed step each per repeat) so that a noisy, shared machine slows all of them
alike; the table reports the median step time.

    python experiments/bench_lstm.py                       # all shapes, default repeats
    python experiments/bench_lstm.py --shapes S1,S2 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = {
    "S1": (20, 35, 200, 200, 2),
    "S2": (32, 128, 256, 256, 1),
    "S3": (64, 256, 512, 512, 1),
    "S4": (16, 1024, 128, 128, 1),
}
JAX_PEERS = ("flax.linen", "haiku", "equinox")


def _block(tree):
    jax.block_until_ready(tree)


def make_lstm_jax(b, t, d, h, layers, x_np):
    from flax import nnx

    from lstm_jax.nn import LSTM

    model = LSTM(d, h, num_layers=layers, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def step(params, x):
        def loss(p):
            y, _ = nnx.merge(graphdef, p)(x)
            return jnp.mean(y**2)

        return jax.value_and_grad(loss)(params)

    x = jnp.asarray(x_np)
    return lambda: _block(step(params, x))


def make_torch(b, t, d, h, layers, x_np):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model = torch.nn.LSTM(d, h, num_layers=layers, batch_first=True)
    x = torch.as_tensor(x_np)

    def step():
        model.zero_grad(set_to_none=True)
        y, _ = model(x)
        loss = y.pow(2).mean()
        loss.backward()

    return step


def make_flax_linen(b, t, d, h, layers, x_np):
    import flax.linen as nn

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(layers):
                x = nn.RNN(nn.OptimizedLSTMCell(h))(x)
            return x

    model = Stack()
    x = jnp.asarray(x_np)
    params = model.init(jax.random.PRNGKey(0), x)

    @jax.jit
    def step(params, x):
        return jax.value_and_grad(lambda p: jnp.mean(model.apply(p, x) ** 2))(params)

    return lambda: _block(step(params, x))


def make_haiku(b, t, d, h, layers, x_np):
    import haiku as hk

    def forward(x):
        core = hk.DeepRNN([hk.LSTM(h) for _ in range(layers)])
        ys, _ = hk.dynamic_unroll(core, jnp.swapaxes(x, 0, 1), core.initial_state(x.shape[0]))
        return ys

    net = hk.without_apply_rng(hk.transform(forward))
    x = jnp.asarray(x_np)
    params = net.init(jax.random.PRNGKey(0), x)

    @jax.jit
    def step(params, x):
        return jax.value_and_grad(lambda p: jnp.mean(net.apply(p, x) ** 2))(params)

    return lambda: _block(step(params, x))


def make_equinox(b, t, d, h, layers, x_np):
    import equinox as eqx

    keys = jax.random.split(jax.random.PRNGKey(0), layers)
    cells = [eqx.nn.LSTMCell(d if k == 0 else h, h, key=keys[k]) for k in range(layers)]

    def forward(cells, x):
        xs = jnp.swapaxes(x, 0, 1)
        for cell in cells:
            zeros = jnp.zeros((x.shape[0], h))

            def body(carry, x_t, cell=cell):
                carry = jax.vmap(cell)(x_t, carry)
                return carry, carry[0]

            _, xs = jax.lax.scan(body, (zeros, zeros), xs)
        return xs

    @eqx.filter_jit
    def step(cells, x):
        return eqx.filter_value_and_grad(lambda c: jnp.mean(forward(c, x) ** 2))(cells)

    x = jnp.asarray(x_np)
    return lambda: _block(step(cells, x))


MAKERS: dict[str, Callable] = {
    "lstm_jax": make_lstm_jax,
    "pytorch": make_torch,
    "flax.linen": make_flax_linen,
    "haiku": make_haiku,
    "equinox": make_equinox,
}


def _available(name):
    module = {"pytorch": "torch", "flax.linen": "flax.linen", "haiku": "haiku",
              "equinox": "equinox"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def bench_shape(shape, repeats, warmup, names):
    b, t, d, h, layers = shape
    x_np = np.random.default_rng(0).standard_normal((b, t, d)).astype(np.float32)
    steps = {name: MAKERS[name](b, t, d, h, layers, x_np) for name in names}
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name, step in steps.items():  # interleaved: noise hits every implementation
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}, times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of S1..S4")
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per implementation")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    ap.add_argument("--impls", default=",".join(MAKERS), help="comma list of implementations")
    ap.add_argument("--json", default=None, help="write the results to this path")
    args = ap.parse_args(argv)

    names = [n for n in args.impls.split(",") if _available(n)]
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"jax {jax.__version__} ({jax.default_backend()}), float32")
    print(f"# implementations: {', '.join(names)}; repeats {args.repeats}, warmup {args.warmup}")
    results = {}
    header = (f"{'shape':<5} {'(B,T,D,H,L)':<22} {'impl':<11} {'median ms':>10} "
              f"{'tokens/s':>10} {'vs torch':>9} {'vs best JAX peer':>17}")
    print(header)
    for key in args.shapes.split(","):
        shape = SHAPES[key]
        medians, raw = bench_shape(shape, args.repeats, args.warmup, names)
        tokens = shape[0] * shape[1]
        peers = [n for n in JAX_PEERS if n in medians]
        best_peer = min(peers, key=medians.get) if peers else None
        rows = {}
        for name, sec in medians.items():
            row = {"median_s": sec, "tokens_per_s": tokens / sec, "times_s": raw[name]}
            if "pytorch" in medians:
                row["speedup_vs_pytorch"] = medians["pytorch"] / sec
            if best_peer:
                row["speedup_vs_best_jax_peer"] = medians[best_peer] / sec
            rows[name] = row
            vs_t = f"{row.get('speedup_vs_pytorch', float('nan')):.2f}x"
            vs_j = f"{row.get('speedup_vs_best_jax_peer', float('nan')):.2f}x"
            print(f"{key:<5} {shape!s:<22} {name:<11} {sec * 1e3:>10.1f} "
                  f"{tokens / sec:>10.0f} {vs_t:>9} {vs_j:>17}", flush=True)
        results[key] = {"shape": shape, "best_jax_peer": best_peer, "results": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {"cpu_count": os.cpu_count(), "processor": platform.processor(),
                                        "jax": jax.__version__}, "shapes": results}, f, indent=2)


if __name__ == "__main__":
    main()
