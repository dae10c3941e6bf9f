"""How far back a trained variable-copy model recalls: accuracy and gradient per gap.

A variable-copy run (task=variable_copy) trains on gaps drawn from U[1, T], so its
validation recall mixes every distance; this probe fixes the gap. For each gap g it draws
sequences whose delimiter comes g steps after the symbols and reports, for the run's
checkpoint:

- the recall accuracy on the num_symbols steps after the delimiter (chance 1/C);
- the cross-entropy over the whole sequence over the memoryless baseline (as val/loss);
- the gradient of the recall's cross-entropy (the num_symbols recalled steps only) with
  respect to the inputs: its norm at the symbols over its norm at the delimiter, whether
  the error of the recall reaches the steps where the symbols were read, gap steps before
  the cue. (The run's ||dL/dh_t|| diagnostic cannot say this: its loss scores every step,
  blanks included, and its batches mix all gaps, so direct loss fills every position.)

    python experiments/recall_by_gap.py RUN_DIR [RUN_DIR ...] [--gaps 1,10,100,500]
        [--which last|best] [--sequences 500]

RUN_DIR is a run dir that still holds its checkpoints (the committed records of
experiments/setup_grid_runs keep none once finished).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx

from lstm_jax.data.synthetic import variable_copy
from lstm_jax.run import load_run
from lstm_jax.tasks.synthetic import VariableCopyTask, one_hot

DEFAULT_GAPS = (1, 10, 25, 50, 100, 200, 300, 400, 500)


def symbol_and_recall_steps(num_symbols: int, gap: int) -> tuple[range, int, range]:
    """The steps where the symbols are read, the delimiter's step and the steps where the
    symbols are recalled, at `gap`."""
    delimiter = num_symbols + gap - 1
    return range(num_symbols), delimiter, range(delimiter + 1, delimiter + 1 + num_symbols)


def probe(task: VariableCopyTask, model: nnx.Module, gaps, sequences: int, seed: int = 0):
    """One row per gap: (gap, recall accuracy, CE / baseline, recall gradient at the
    symbols over at the delimiter)."""

    def recall_ce(inputs, recall, targets):
        out, _ = model(inputs)
        return optax.softmax_cross_entropy_with_integer_labels(out[:, recall], targets).mean()

    recall_gradient = jax.jit(jax.grad(recall_ce))
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
        loss, aux = task.loss(model, {"x": x, "y": y})
        symbols, delimiter, recall = symbol_and_recall_steps(task.num_symbols, gap)
        recall = np.asarray(recall)
        grad = recall_gradient(one_hot(x, task.in_features), recall, y[:, recall])
        per_step = np.sqrt(np.square(np.asarray(grad)).sum(axis=(0, 2)))  # (T + 2k,)
        rows.append(
            (
                gap,
                float(aux["metrics"]["acc"]),
                float(loss) / task.baseline_loss,
                float(per_step[list(symbols)].mean() / per_step[delimiter]),
            )
        )
    return rows


def table(run_dir: Path, rows) -> str:
    lines = [
        f"{run_dir}",
        "",
        "| gap | recall acc | CE / baseline | recall gradient: symbols / delimiter |",
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
        if not any(p.name.isdigit() for p in (run_dir / "checkpoints").glob("*")):
            ap.error(f"{run_dir} has no checkpoints: pass a run dir that kept them")
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
