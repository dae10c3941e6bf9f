"""How far back a trained variable-copy model recalls: accuracy and gradient per gap.

A variable-copy run (task=variable_copy) trains on gaps drawn from U[1, T], so its
validation recall mixes every distance; this probe fixes the gap. For each gap g it draws
sequences whose delimiter comes g steps after the symbols and reports, for the run's
checkpoint:

- the recall accuracy on the num_symbols steps after the delimiter (chance 1/C);
- the cross-entropy over the whole sequence over the memoryless baseline (as val/loss);
- ||dL/dh_t|| at the symbols over its value at the recall steps (the run's own diagnostics
  step, on a batch where every sequence has that gap): whether the error of the recall
  reaches the steps where the symbols were read.

    python experiments/recall_by_gap.py RUN_DIR [RUN_DIR ...] [--gaps 1,10,100,500]
        [--which last|best] [--sequences 500]

RUN_DIR is a run dir that still holds its checkpoints (the committed records of
experiments/long_dependency_runs keep none once finished).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from flax import nnx

from lstm_jax.data.synthetic import variable_copy
from lstm_jax.tasks.synthetic import VariableCopyTask
from lstm_jax.train.diagnostics import make_diagnostics_step, to_host
from lstm_jax.train.run import load_run

DEFAULT_GAPS = (1, 10, 25, 50, 100, 200, 300, 400, 500)


def symbol_and_recall_steps(num_symbols: int, gap: int) -> tuple[range, range]:
    """The steps where the symbols are read and where they are recalled, at `gap`."""
    return range(num_symbols), range(num_symbols + gap, 2 * num_symbols + gap)


def probe(task: VariableCopyTask, model: nnx.Module, gaps, sequences: int, seed: int = 0):
    """One row per gap: (gap, recall accuracy, CE / baseline, symbol-over-recall dL/dh)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    diagnostics = make_diagnostics_step(task, graphdef)
    rows = []
    for gap in gaps:
        x, y = variable_copy(
            np.random.default_rng(seed),
            sequences,
            task.seq_len,
            task.num_symbols,
            task.num_categories,
            gap=gap,
        )
        batch = {"x": x, "y": y}
        loss, aux = task.loss(model, batch)
        dh_t = np.asarray(to_host(diagnostics(params, rest, batch, None))["grad_norm/dh_t"])
        symbols, recall = symbol_and_recall_steps(task.num_symbols, gap)
        rows.append(
            (
                gap,
                float(aux["metrics"]["acc"]),
                float(loss) / task.baseline_loss,
                float(dh_t[list(symbols)].mean() / dh_t[list(recall)].mean()),
            )
        )
    return rows


def table(run_dir: Path, rows) -> str:
    lines = [
        f"{run_dir}",
        "",
        "| gap | recall acc | CE / baseline | dL/dh at the symbols / at the recall |",
        "|---|---|---|---|",
    ]
    lines += [f"| {g} | {acc:.3f} | {ce:.4f} | {ratio:.1e} |" for g, acc, ce, ratio in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--gaps", type=lambda text: [int(g) for g in text.split(",")])
    ap.add_argument("--which", choices=("last", "best"), default="last")
    ap.add_argument("--sequences", type=int, default=500)
    args = ap.parse_args(argv)
    for run_dir in args.runs:
        if not (run_dir / "checkpoints" / args.which).is_dir():
            ap.error(f"{run_dir} has no checkpoints/{args.which}: pass a run dir that kept them")
    for run_dir in args.runs:
        _, task, model = load_run(run_dir, args.which)
        if not isinstance(task, VariableCopyTask):
            ap.error(f"{run_dir} is a {type(task).__name__} run: the probe needs variable_copy")
        gaps = args.gaps or [g for g in DEFAULT_GAPS if g <= task.seq_len]
        bad = [g for g in gaps if not 1 <= g <= task.seq_len]
        if bad:
            ap.error(f"--gaps {bad} outside [1, T={task.seq_len}] of {run_dir}")
        print(table(run_dir, probe(task, model, gaps, args.sequences)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
