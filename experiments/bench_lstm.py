"""Training-step speed of lstm_jax.nn.LSTM against PyTorch nn.LSTM and the JAX peers, on a
machine it names.

One training step = forward, backward and the gradients of every parameter, with
loss = mean(y ** 2), at the DESIGN shapes (batch, time, input, hidden, layers); S5 is the
speech-like one: bidirectional, lengths drawn from [100, 200] (PyTorch packs the batch,
lstm_jax takes seq_lengths; the JAX peers have no bidirectional variable-length layer of the
same kind and sit S5 out).

Each implementation runs in a process of its own, so no two share XLA's or PyTorch's thread
pool, and the processes take turns: in each round every process times one step while the
others wait, so slow phases of a shared machine hit all of them alike. The table gives the
median step, its spread (interquartile range), ms per time step, and the fraction of the
machine's GEMM peak (a 2048x2048 float32 matmul in JAX, measured first) that the step's
matmul FLOPs reach. The header names the CPU model, its vector ISA (AVX2 / AVX-512), the
cores and the library versions.

    python experiments/bench_lstm.py                       # S1-S5, all installed implementations
    python experiments/bench_lstm.py --shapes S1,S5 --repeats 15 --json out.json

Levers are measured as variants of lstm_jax, each one more process taking its turn beside
the others: `--variant NAME=xla:FLAGS` runs lstm_jax with FLAGS appended to XLA_FLAGS,
`--variant NAME=unroll:N` with the scan unrolled N steps; they appear as `lstm_jax[NAME]`.
Where XLA_FLAGS gives lstm_jax several host devices (`--xla_force_host_platform_device_count
=N`), its step runs data parallel over them as the trainer's does: the batch split on the
mesh of lstm_jax.distributed, the parameters replicated.

    python experiments/bench_lstm.py --shapes S2 --impls lstm_jax,pytorch \
        --variant onednn=xla:--xla_cpu_use_onednn=true --variant unroll2=unroll:2
    python experiments/bench_lstm.py --variant dp2=xla:--xla_force_host_platform_device_count=2

Every registered cell (lstm_jax.nn.registry.CELLS, each with its model config's defaults) is
an implementation `cell:<name>`, and `--impls cells` names them all. At the memory-task shape
(batch 50, hidden 128, a 10-wide one-hot input, one layer) and T = 100, 1,000, 4,000 (M100,
M1000, M4000), a second table gives each implementation's step time against T and the
log-log slope of that growth: 1 where the cost is linear in T (a sequential scan, or an
associative one whose work dominates), below 1 where a parallel scan's log T depth and
per-step overheads still matter.

    python experiments/bench_lstm.py --shapes M100,M1000,M4000 --impls cells
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# (batch, time, input, hidden, layers, bidirectional, variable lengths)
SHAPES = {
    "S1": (20, 35, 200, 200, 2, False, False),
    "S2": (32, 128, 256, 256, 1, False, False),
    "S3": (64, 256, 512, 512, 1, False, False),
    "S4": (16, 1024, 128, 128, 1, False, False),
    "S5": (32, 200, 80, 256, 2, True, True),
    # the memory tasks' shape (copy's one-hot input, the presets' hidden size) at three T
    "M100": (50, 100, 10, 128, 1, False, False),
    "M1000": (50, 1000, 10, 128, 1, False, False),
    "M4000": (50, 4000, 10, 128, 1, False, False),
}
JAX_PEERS = ("flax.linen", "haiku", "equinox")
S5_IMPLEMENTATIONS = ("lstm_jax", "lstm_jax.cudnn", "pytorch")


def _block(tree):
    jax.block_until_ready(tree)


def _nnx_step(model, x_np, lengths):
    """One jitted training step of an lstm_jax layer; with several devices the batch is
    split over them and the parameters replicated, as the trainer does."""
    from flax import nnx

    graphdef, params = nnx.split(model, nnx.Param)
    x, lengths = jnp.asarray(x_np), None if lengths is None else jnp.asarray(lengths)
    if jax.device_count() > 1:
        from lstm_jax import distributed

        mesh = distributed.make_data_mesh()
        params = distributed.replicate(params, mesh)
        x, lengths = distributed.shard_batch((x, lengths), mesh)

    @jax.jit
    def step(params, x, lengths):
        def loss(p):
            y, _ = nnx.merge(graphdef, p)(x, lengths)
            return jnp.mean(y**2)

        return jax.value_and_grad(loss)(params)

    return lambda: _block(step(params, x, lengths))


def make_lstm_jax(
    b, t, d, h, layers, x_np, lengths=None, bidirectional=False, backend="scan", unroll=1
):
    from flax import nnx

    from lstm_jax.nn import LSTM

    model = LSTM(
        d, h, num_layers=layers, bidirectional=bidirectional, backend=backend, rngs=nnx.Rngs(0)
    )
    model.unroll = unroll
    return _nnx_step(model, x_np, lengths)


def make_cell(cell, b, t, d, h, layers, x_np, lengths=None, bidirectional=False):
    """A registered cell with its model config's defaults (configs/model/<cell>.yaml): the
    layer the trainer builds for `model=<cell>`."""
    from flax import nnx

    from lstm_jax.models.core import make_core, model_config

    config = model_config(cell, hidden_size=h, num_layers=layers, bidirectional=bidirectional)
    return _nnx_step(make_core(config, d, rngs=nnx.Rngs(0)), x_np, lengths)


def make_lstm_jax_cudnn(*args, **kwargs):
    return make_lstm_jax(*args, **kwargs, backend="cudnn")


def make_torch(b, t, d, h, layers, x_np, lengths=None, bidirectional=False):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    # The platform JAX runs on, never another: PyPI's torch is a CUDA build, and JAX on the
    # CPU timed against PyTorch on a GPU compares machines, not implementations.
    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
    model = torch.nn.LSTM(
        d, h, num_layers=layers, batch_first=True, bidirectional=bidirectional
    ).to(device)
    x = torch.as_tensor(x_np, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        model.zero_grad(set_to_none=True)
        if lengths is None:
            y, _ = model(x)
        else:  # packed, as a speech model would run it
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                x, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False
            )
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(model(packed)[0], batch_first=True)
        y.pow(2).mean().backward()
        sync()

    return step


def make_flax_linen(b, t, d, h, layers, x_np, lengths=None, bidirectional=False):
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


def make_haiku(b, t, d, h, layers, x_np, lengths=None, bidirectional=False):
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


def make_equinox(b, t, d, h, layers, x_np, lengths=None, bidirectional=False):
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
    "lstm_jax.cudnn": make_lstm_jax_cudnn,
    "pytorch": make_torch,
    "flax.linen": make_flax_linen,
    "haiku": make_haiku,
    "equinox": make_equinox,
}
CELL_PREFIX = "cell:"  # cell:<name>, one implementation per registered cell (make_cell)


def maker(name: str) -> Callable:
    if name.startswith(CELL_PREFIX):
        return functools.partial(make_cell, name.removeprefix(CELL_PREFIX))
    return MAKERS[name]


def expand_impls(text: str) -> list[str]:
    """The --impls list, `cells` standing for every registered cell; an unknown name is
    refused in one line."""
    from lstm_jax.nn.registry import CELLS

    names = []
    for name in filter(None, text.split(",")):
        if name == "cells":
            names += [CELL_PREFIX + cell for cell in CELLS]
        elif name in MAKERS or (
            name.startswith(CELL_PREFIX) and name.removeprefix(CELL_PREFIX) in CELLS
        ):
            names.append(name)
        else:
            raise SystemExit(
                f"bench_lstm.py: error: --impls {name!r} is unknown; choose from "
                f"{', '.join(MAKERS)}, cells, or cell:<name> of {', '.join(CELLS)}"
            )
    return names


def _available(name):
    if name == "lstm_jax.cudnn":
        from lstm_jax.nn import cudnn

        return cudnn.on_cuda()
    if name == "pytorch" and jax.default_backend() == "gpu":
        try:
            import torch
        except ImportError:
            return False
        if not torch.cuda.is_available():
            print(f"# pytorch left out: JAX runs on the GPU, torch {torch.__version__} has no CUDA")
        return torch.cuda.is_available()
    module = {
        "pytorch": "torch",
        "flax.linen": "flax.linen",
        "haiku": "haiku",
        "equinox": "equinox",
    }.get(name)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------------------ the machine


def cpu_description() -> dict:
    """CPU model, vector ISA and core count, from /proc/cpuinfo where there is one."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"
    if "amx_tile" in flags:
        isa += " + AMX"
    return {"cpu": model, "isa": isa, "cores": os.cpu_count()}


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "haiku", "equinox"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def gemm_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 n x n matmul rate of JAX's default backend, GFLOP/s."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    best = min(_timed(lambda: mm(a).block_until_ready()) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def step_gflop(shape) -> float:
    """Matmul FLOPs of one training step: forward 2*B*T*4H*(D_in + H) per layer and
    direction, the backward twice that (data and weight gradients)."""
    b, t, d, h, layers, bidirectional, _ = shape
    n = 2 if bidirectional else 1
    total = 0.0
    for k in range(layers):
        d_in = d if k == 0 else n * h
        total += n * 2 * b * t * 4 * h * (d_in + h)
    return 3 * total / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ processes


def parse_variant(text: str) -> tuple[str, str, str]:
    """NAME=xla:FLAGS or NAME=unroll:N -> (name, kind, value), refused in one line."""
    name, _, spec = text.partition("=")
    kind, _, value = spec.partition(":")
    if not name or kind not in ("xla", "unroll") or not value:
        raise SystemExit(
            f"bench_lstm.py: error: --variant {text!r}: write NAME=xla:FLAGS or NAME=unroll:N"
        )
    if kind == "unroll" and not value.isdigit():
        raise SystemExit(f"bench_lstm.py: error: --variant {text!r}: N must be a positive integer")
    return name, kind, value


def worker(name: str, key: str, warmup: int, unroll: int = 1) -> None:
    """Builds one implementation's step, then times one step per line read from stdin."""
    b, t, d, h, layers, bidirectional, ragged = SHAPES[key]
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((b, t, d)).astype(np.float32)
    lengths = rng.integers(t // 2, t + 1, size=b).astype(np.int32) if ragged else None
    kwargs = (
        {"lengths": lengths, "bidirectional": bidirectional} if (ragged or bidirectional) else {}
    )
    if unroll != 1:
        kwargs["unroll"] = unroll
    step = maker(name)(b, t, d, h, layers, x_np, **kwargs)
    for _ in range(warmup):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        print(f"{_timed(step):.9f}", flush=True)


def worker_env(spec: tuple[str, str] | None) -> dict[str, str]:
    """The environment of a worker process: this one's, with an xla variant's flags added,
    and GPU memory taken as needed: on a GPU up to six workers and this process share it,
    and XLA's default (75 % of the memory preallocated by each process) would exhaust it."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    if spec is not None and spec[0] == "xla":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {spec[1]}".strip()
    return env


def bench_shape(
    key: str,
    repeats: int,
    warmup: int,
    names: list[str],
    variants: dict[str, tuple[str, str]],
    gap_s: float = 0.3,
) -> dict[str, list[float]]:
    """Step times of each implementation (and lstm_jax variant), each in its own process,
    taking turns."""
    procs = {}
    runs = [(name, name, None) for name in names] + [
        (f"lstm_jax[{v}]", "lstm_jax", spec) for v, spec in variants.items()
    ]
    for name, worker_name, spec in runs:
        command = [sys.executable, __file__, "--shapes", key, "--warmup", str(warmup)]
        command += ["--worker", worker_name]
        if spec is not None and spec[0] == "unroll":
            command += ["--unroll", spec[1]]
        procs[name] = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=worker_env(spec)
        )
        # Build one at a time: compilation is itself a heavy job.
        if procs[name].stdout.readline().strip() != "ready":
            # e.g. out of memory (the selective SSM keeps every (T, B, H, N) state): say so
            # and time the others, rather than lose the whole run.
            procs.pop(name).wait()
            print(f"# {name} at {key} failed to start (its error is above); left out", flush=True)
    times = {name: [] for name in procs}
    try:
        for _ in range(repeats):
            for name, proc in procs.items():  # one process works at a time
                # The one before may still spin its threads (OpenMP's blocktime is 200 ms
                # by default): wait until they sleep, or they slow this one down.
                time.sleep(gap_s)
                proc.stdin.write("step\n")
                proc.stdin.flush()
                times[name].append(float(proc.stdout.readline()))
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait(timeout=60)
    return times


def growth_with_t(results: dict) -> dict:
    """For shapes that differ only in T (the M shapes), each implementation's median step
    (ms) per T and the least-squares slope of log(step) against log(T)."""
    groups: dict[tuple, dict[str, dict]] = {}
    for entry in results.values():
        b, t, d, h, layers, bidirectional, ragged = entry["shape"]
        if bidirectional or ragged:
            continue
        for name, row in entry["results"].items():
            table = groups.setdefault((b, d, h, layers), {})
            table.setdefault(name, {"median_ms": {}})["median_ms"][t] = row["median_s"] * 1e3
    out = {}
    for same, table in groups.items():
        table = {n: row for n, row in table.items() if len(row["median_ms"]) >= 2}
        for row in table.values():
            log_t = np.log(list(row["median_ms"]))
            log_ms = np.log(list(row["median_ms"].values()))
            row["loglog_slope"] = float(np.polyfit(log_t, log_ms, 1)[0])
        if table:
            out[same] = table
    return out


def print_growth(growth: dict) -> None:
    """The growth_with_t tables: median ms per T and the log-log slope, per implementation."""
    for (b, d, h, layers), table in growth.items():
        ts = sorted({t for row in table.values() for t in row["median_ms"]})
        print(f"\n# step time against T at B={b}, input {d}, H={h}, {layers} layer(s): median ms")
        print(f"{'impl':<20} " + " ".join(f"{'T=' + str(t):>10}" for t in ts) + f" {'slope':>6}")
        for name, row in table.items():
            cols = " ".join(f"{row['median_ms'].get(t, float('nan')):>10.1f}" for t in ts)
            print(f"{name:<20} {cols} {row['loglog_slope']:>6.2f}")


def report(path: str) -> None:
    """Prints the growth tables of a --json record again, with the machine it ran on."""
    with open(path) as f:
        record = json.load(f)
    m = record["machine"]
    print(f"# {path}: {m['cpu']} ({m['isa']}, {m['cores']} cores), jax {m.get('jax')}")
    print_growth(growth_with_t(record["shapes"]))


def _spread(ts: list[float]) -> float:
    q = statistics.quantiles(ts, n=4) if len(ts) >= 4 else [min(ts), 0, max(ts)]
    return q[2] - q[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of S1..S5")
    ap.add_argument("--repeats", type=int, default=11, help="timed steps per implementation")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
    ap.add_argument("--impls", default=",".join(MAKERS), help="comma list of implementations")
    ap.add_argument("--json", default=None, help="write the results to this path")
    ap.add_argument(
        "--gap",
        type=float,
        default=0.3,
        help="idle seconds before each timed step (see bench_shape)",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=xla:FLAGS or NAME=unroll:N, an lstm_jax variant timed beside the others",
    )
    ap.add_argument("--report", help="print the growth tables of a --json record and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--unroll", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # Before JAX starts its backend here (the GEMM peak below): see worker_env.
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if args.report:
        return report(args.report)
    if args.worker:
        return worker(args.worker, args.shapes, args.warmup, args.unroll)
    variants = {name: (kind, value) for name, kind, value in map(parse_variant, args.variant)}

    machine = {
        **cpu_description(),
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        **library_versions(),
    }
    machine["gemm_peak_gflops"] = gemm_peak_gflops()
    names = [n for n in expand_impls(args.impls) if _available(n)]
    print(
        f"# machine: {machine['cpu']} ({machine['isa']}, {machine['cores']} cores), "
        f"{machine['backend']} {machine['device']}, JAX GEMM peak "
        f"{machine['gemm_peak_gflops']:.0f} GFLOP/s (float32 2048^3)"
    )
    print(
        "# "
        + ", ".join(
            f"{k} {v}"
            for k, v in machine.items()
            if k in ("python", "jax", "jaxlib", "flax", "torch", "haiku", "equinox")
        )
    )
    print(
        f"# one process per implementation, taking turns; {args.repeats} rounds after "
        f"{args.warmup} warm-up steps, {args.gap} s idle before each; median [IQR]"
    )
    print(
        f"{'shape':<5} {'impl':<20} {'median ms':>10} {'IQR ms':>8} {'ms/step t':>9} "
        f"{'% peak':>7} {'vs torch':>9} {'vs best JAX peer':>17}"
    )
    results = {}
    for key in args.shapes.split(","):
        shape = SHAPES[key]
        here = [n for n in names if key != "S5" or n in S5_IMPLEMENTATIONS]
        raw = bench_shape(key, args.repeats, args.warmup, here, variants, args.gap)
        medians = {n: statistics.median(ts) for n, ts in raw.items()}
        peers = [n for n in JAX_PEERS if n in medians]
        best_peer = min(peers, key=medians.get) if peers else None
        rows = {}
        for name, sec in medians.items():
            row = {
                "median_s": sec,
                "iqr_s": _spread(raw[name]),
                "times_s": raw[name],
                "ms_per_timestep": sec * 1e3 / shape[1],
            }
            if not name.startswith(CELL_PREFIX):  # step_gflop counts the LSTM's matmuls
                row["fraction_of_gemm_peak"] = step_gflop(shape) / sec / machine["gemm_peak_gflops"]
            if "pytorch" in medians:
                row["speedup_vs_pytorch"] = medians["pytorch"] / sec
            if best_peer:
                row["speedup_vs_best_jax_peer"] = medians[best_peer] / sec
            rows[name] = row
            vs_t, vs_j = (
                f"{row[k]:.2f}x" if k in row else "-"  # S5: no JAX peer has the layer
                for k in ("speedup_vs_pytorch", "speedup_vs_best_jax_peer")
            )
            peak = (
                f"{100 * row['fraction_of_gemm_peak']:.1f}%"
                if "fraction_of_gemm_peak" in row
                else "-"
            )
            print(
                f"{key:<5} {name:<20} {sec * 1e3:>10.1f} {row['iqr_s'] * 1e3:>8.1f} "
                f"{row['ms_per_timestep']:>9.3f} {peak:>7} "
                f"{vs_t:>9} {vs_j:>17}",
                flush=True,
            )
        results[key] = {"shape": shape, "best_jax_peer": best_peer, "results": rows}
    growth = growth_with_t(results)
    print_growth(growth)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine,
                    "variants": variants,
                    "shapes": results,
                    "growth": {
                        f"B{b}_D{d}_H{h}_L{n}": table for (b, d, h, n), table in growth.items()
                    },
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
