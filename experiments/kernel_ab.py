"""A kernel change timed against an earlier revision of it, in one process.

Loads the lstm_jax package as it was at git revision REV beside the working tree's (renamed
lstm_jax_at_<rev>, so both import in one process), and times
the gradient of each cell kernel (loss = mean(y ** 2) over a precomputed input projection,
so only the recurrence and its hand-written backward are measured) for both, interleaved,
at each B,T,H. Prints the largest gradient difference first: a speed change must not be a
numerics change.

    python experiments/kernel_ab.py --against HEAD~1 --cell lstm --shapes 32,128,256 16,1024,128
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from interleaved import print_medians, time_interleaved

import lstm_jax

GATE_BLOCKS = {"lstm": 4, "gru": 3, "rnn": 1}


def package_at(rev: str) -> str:
    """Imports lstm_jax as it was at `rev` under the name lstm_jax_at_<rev> and returns that
    name: the revision's own modules throughout (its kernels, masking and dense helpers),
    whichever file held a cell's kernel then (nn/scan.py before issue 31, nn/<cell>.py
    since)."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "archive", rev, "lstm_jax"], cwd=root, check=True, capture_output=True
    ).stdout
    name = "lstm_jax_at_" + re.sub(r"\W", "_", rev)
    target = Path(tempfile.mkdtemp())
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / "lstm_jax").rename(target / name)
    for path in (target / name).rglob("*.py"):  # absolute imports of the package, renamed
        path.write_text(re.sub(r"\blstm_jax\b", name, path.read_text()))
    sys.path.insert(0, str(target))
    return name


def kernel_of(package: str, cell: str):
    """The cell's public kernel entry (`lstm_scan` etc., whose signature every revision
    keeps), from the module that holds it in `package`."""
    for module in (f"{package}.nn.{cell}", f"{package}.nn.scan"):
        try:
            found = getattr(importlib.import_module(module), f"{cell}_scan", None)
        except ModuleNotFoundError:
            continue
        if found is not None:
            return found
    raise SystemExit(f"kernel_ab.py: {package} has no {cell}_scan in nn/{cell}.py or nn/scan.py")


def kernel_gradient(package, cell, b, t, h, masked):
    """A jitted (xw, w_hh) -> gradients of the cell's kernel in `package`, and its inputs."""
    rng = np.random.default_rng(0)
    g = GATE_BLOCKS[cell]
    xw = jnp.asarray(rng.standard_normal((t, 1, b, g * h)) * 0.3, jnp.float32)
    w_hh = jnp.asarray(rng.standard_normal((1, h, g * h)) * 0.05, jnp.float32)
    h0 = jnp.zeros((1, b, h), jnp.float32)
    mask = None
    if masked:
        lengths = jnp.asarray(rng.integers(t // 2, t + 1, b))
        mask = (jnp.arange(t)[:, None] < lengths[None, :]).astype(jnp.float32)
    scan_fn = kernel_of(package, cell)
    if cell == "lstm":
        run = lambda xw, w: scan_fn(xw, w, h0, h0, mask)[0]  # noqa: E731
    elif cell == "gru":
        b_hn = jnp.zeros((1, h), jnp.float32)
        run = lambda xw, w: scan_fn(xw, w, b_hn, h0, mask)[0]  # noqa: E731
    else:
        run = lambda xw, w: scan_fn(xw, w, h0, mask)[0]  # noqa: E731
    grad = jax.jit(jax.grad(lambda xw, w: jnp.mean(run(xw, w) ** 2), argnums=(0, 1)))
    return grad, (xw, w_hh)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="git revision of the kernel to compare")
    ap.add_argument("--cell", choices=sorted(GATE_BLOCKS), default="lstm")
    ap.add_argument("--shapes", nargs="+", default=["32,128,256", "16,1024,128"], help="B,T,H")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--masked", action="store_true", help="lengths drawn from [T/2, T]")
    args = ap.parse_args(argv)
    before = package_at(args.against)
    calls = {}
    for shape in args.shapes:
        b, t, h = map(int, shape.split(","))
        grads = []
        for label, package in ((args.against, before), ("working tree", lstm_jax.__name__)):
            grad, inputs = kernel_gradient(package, args.cell, b, t, h, args.masked)
            calls[f"{shape} {label}"] = lambda grad=grad, inputs=inputs: jax.block_until_ready(
                grad(*inputs)
            )
            grads.append(calls[f"{shape} {label}"]())
        diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(*grads, strict=True))
        scale = max(float(jnp.max(jnp.abs(x))) for x in grads[0])
        print(f"# {args.cell} B,T,H = {shape}: max |gradient difference| {diff:.3g}", end=" ")
        print(f"(largest gradient {scale:.3g})")
    for call in calls.values():
        call()
    print_medians(time_interleaved(calls, args.repeats), f"{args.cell} kernel gradient", width=32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
