"""`lstm-jax-compare RUN_OR_SWEEP_DIR...`: compare finished runs offline.

The offline counterpart of a W&B dashboard. It reads each run dir (docs/DESIGN.md contract 3:
`.hydra/overrides.yaml`, `.hydra/config.yaml`, `metrics.jsonl`, `summary.json`), prints one
table row per run, the swept parameters against the final and best metrics, and draws PNG
plots:

- `learning_curves.png`: train/loss and the monitored validation metric of every run,
  overlaid;
- `<y>_vs_<x>[_by_<group>].png`: one table column against one swept parameter, a line per
  value of another (the memory-horizon sweep: `--y solved --x task.seq_len --group
  model.cell`).

    lstm-jax-compare multirun/memory_horizon/2025-01-01_12-00-00
    lstm-jax-compare multirun/sweep_a multirun/sweep_b outputs/one_run --format markdown
    lstm-jax-compare SWEEP --solved "test/mse<0.01" --y solved --x task.seq_len --group model.cell

`--over seed` makes one row per group of runs that differ only in the seed (lstm_jax.compare.over),
with `--solved`/`--escape` survival statistics of the steps to each event (.survival).

Swept parameters are the job overrides (and config values) that differ between the runs.
Table columns: `best <monitor>` and `best step` (the best validation value and its step),
then the final (last logged) value of each validation metric, the test metrics (evaluated
at the best checkpoint), `steps`, `wall_time_s` and `status` (`done` once summary.json
exists, else `incomplete`).
"""

from lstm_jax.compare.cli import main
from lstm_jax.compare.runs import Run, find_runs, goal, parse_override, read_run
from lstm_jax.compare.table import Table, build_table, format_table, parse_condition

__all__ = [
    "Run",
    "Table",
    "build_table",
    "find_runs",
    "format_table",
    "goal",
    "main",
    "parse_condition",
    "parse_override",
    "read_run",
]
