"""Two levers for a stack of LSTM layers, prototyped as forward passes (no gradient) and
timed against the two-scan schedule lstm_jax uses (each layer one scan, the next layer's
input projection one large matmul between them):

    wavefront              ONE scan over T+1 steps computing layer 1 at step t beside
                           layer 2 at step t-1, whose input projection h1_{t-1} W_ih2 is
                           fused into its recurrent matmul ([h1_{t-1}, h2_{t-2}] [W_ih2; W_hh2])
    wavefront, one matmul  the same with both layers' matmuls as one, [h1, h2] times the
                           block matrix [[W_hh1, W_ih2], [0, W_hh2]]

Outputs are checked equal first. If a forward is not faster, a training step built on it
(its backward is the same schedule reversed) would not be either.

    python experiments/stack_schedules.py --shape 20,35,200,200 --repeats 21
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from interleaved import print_medians, time_interleaved

from lstm_jax.nn.dense import gate_activations as _gate_activations

F32 = jnp.float32


def lstm_cell(z, c, h):
    """One LSTM step from its pre-activations z (B, 4H): (h_new, c_new)."""
    act = _gate_activations(z, 4, tanh_block=2)
    i, f, g, o = (act[:, k * h : (k + 1) * h] for k in range(4))
    c = f * c + i * g
    return o * jnp.tanh(c), c


def schedules(b, t, d, h, seed=0):
    """The three forward schedules of a two-layer stack (jitted) and their input x (T, B, D)."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape) * 0.05, F32)

    x = normal(t, b, d)
    w_ih1, w_hh1, w_ih2, w_hh2 = (
        normal(d, 4 * h),
        normal(h, 4 * h),
        normal(h, 4 * h),
        normal(h, 4 * h),
    )
    zeros = jnp.zeros((b, h))

    def one_layer(xw, w_hh):
        def step(carry, xw_t):
            h_t, c_t = lstm_cell(xw_t + carry[0] @ w_hh, carry[1], h)
            return (h_t, c_t), h_t

        return jax.lax.scan(step, (zeros, zeros), xw)[1]

    def two_scans(x):
        y1 = one_layer((x.reshape(t * b, d) @ w_ih1).reshape(t, b, 4 * h), w_hh1)
        return one_layer((y1.reshape(t * b, h) @ w_ih2).reshape(t, b, 4 * h), w_hh2)

    def wavefront(x, recurrent_matmuls):
        xw1 = (x.reshape(t * b, d) @ w_ih1).reshape(t, b, 4 * h)
        xw1 = jnp.concatenate([xw1, jnp.zeros((1, b, 4 * h))], 0)  # step T: layer 1 is done

        def step(carry, inp):
            (h1, c1, h2, c2), (xw1_t, k) = carry, inp
            z1, z2 = recurrent_matmuls(h1, h2)  # layer 2 at step k-1 reads h1_{k-1}
            h1_new, c1_new = lstm_cell(xw1_t + z1, c1, h)
            h2_new, c2_new = lstm_cell(z2, c2, h)
            idle = k == 0  # layer 2 has no input before layer 1's first step
            h2_new, c2_new = jnp.where(idle, h2, h2_new), jnp.where(idle, c2, c2_new)
            return (h1_new, c1_new, h2_new, c2_new), h2_new

        ys = jax.lax.scan(step, (zeros,) * 4, (xw1, jnp.arange(t + 1)))[1]
        return ys[1:]

    w_layer2 = jnp.concatenate([w_ih2, w_hh2], 0)
    w_block = jnp.block([[w_hh1, w_ih2], [jnp.zeros((h, 4 * h)), w_hh2]])

    def two_matmuls(h1, h2):
        return h1 @ w_hh1, jnp.concatenate([h1, h2], 1) @ w_layer2

    def one_matmul(h1, h2):
        z = jnp.concatenate([h1, h2], 1) @ w_block
        return z[:, : 4 * h], z[:, 4 * h :]

    functions = {
        "two scans": jax.jit(two_scans),
        "wavefront": jax.jit(lambda x: wavefront(x, two_matmuls)),
        "wavefront, one matmul": jax.jit(lambda x: wavefront(x, one_matmul)),
    }
    return functions, x


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="20,35,200,200", help="B,T,D,H of a two-layer stack")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    functions, x = schedules(*map(int, args.shape.split(",")))
    reference = functions["two scans"](x)
    for name, fn in functions.items():
        print(f"# {name}: max |output difference| {float(jnp.max(jnp.abs(fn(x) - reference))):.3g}")
        for _ in range(3):
            jax.block_until_ready(fn(x))
    calls = {name: lambda fn=fn: jax.block_until_ready(fn(x)) for name, fn in functions.items()}
    print_medians(time_interleaved(calls, args.repeats), f"B,T,D,H = {args.shape}")


if __name__ == "__main__":
    main()
