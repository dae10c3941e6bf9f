"""The `lstm-jax-compare` command line (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from lstm_jax.compare.over import build_over_table, group_label, group_runs, plot_group_curves
from lstm_jax.compare.plots import _safe, default_axes, plot_learning_curves, plot_metric_vs_param
from lstm_jax.compare.runs import (
    DEFAULT_EXCLUDE,
    DEFAULT_METRICS,
    RUN_MARKERS,
    _is_run_dir,
    find_runs,
)
from lstm_jax.compare.survival import Condition, event_times, plot_survival
from lstm_jax.compare.table import _fmt, build_table, format_table

# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lstm-jax-compare",
        description="Compare finished lstm-jax runs offline: a table of the swept parameters "
        "against the final and best metrics, and PNG plots.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_OR_SWEEP_DIR",
        help="run dirs, or dirs holding run dirs (a sweep: multirun/<exp>/<time>)",
    )
    p.add_argument(
        "--format",
        choices=("text", "csv", "markdown"),
        default="text",
        help="how the table is printed (default: text)",
    )
    p.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help="comma-separated metric names or globs for the final-value columns "
        "(default: val/*,test/*)",
    )
    p.add_argument(
        "--exclude",
        default=",".join(DEFAULT_EXCLUDE),
        help="comma-separated globs of metrics left out (default: *baseline*)",
    )
    p.add_argument(
        "--solved",
        metavar="COLUMN<NUMBER",
        help="adds a column 'solved' (1/0), e.g. 'test/mse<0.01' or 'val/acc>=0.99'",
    )
    p.add_argument("--sort", metavar="COLUMN", help="sort rows by this column")
    p.add_argument(
        "--out-dir",
        type=Path,
        help="where plots and table.csv / table.md go (default: <dir>/compare for one "
        "dir given, else ./compare)",
    )
    p.add_argument("--no-plots", action="store_true", help="only print the table")
    p.add_argument(
        "--curves",
        default=None,
        help="comma-separated metrics for learning_curves.png "
        "(default: train/loss and the monitored metric)",
    )
    p.add_argument("--logy", action="store_true", help="log-scale y for learning curves")
    p.add_argument(
        "--y", help="table column plotted against --x (default: solved, or the best monitor)"
    )
    p.add_argument(
        "--x", help="swept parameter on the x-axis (default: the numeric one with most values)"
    )
    p.add_argument(
        "--group", help="swept parameter: one line per value (default: another swept one)"
    )
    p.add_argument(
        "--over",
        metavar="KEY",
        help="one row per group of runs that differ only in KEY (e.g. seed): n, mean "
        "and std of each metric, and with --solved the solved fraction and the "
        "median/min/max steps to solve; curves become a median and min-max band",
    )
    p.add_argument(
        "--escape",
        metavar="COND",
        help="with --over: the time to the first evaluation where COND held, e.g. "
        "'val/mse<0.9*val/baseline_mse' (the escape from the memoryless baseline), as a "
        "Kaplan-Meier median with its 95%% interval, runs that never escaped censored at "
        "their last step (also for --solved); survival_<event>_over_<KEY>.png",
    )
    return p


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.escape and not args.over:
            raise ValueError("--escape needs --over KEY: survival statistics are per group")
        runs = find_runs(args.paths)
        if not runs:
            raise FileNotFoundError(
                f"no run dirs (with {' or '.join(RUN_MARKERS)}) under {', '.join(args.paths)}"
            )
        table = build_table(
            runs, _split(args.metrics), _split(args.exclude), args.solved, args.sort
        )
        groups = group_runs(runs, table, args.over) if args.over else None
        shown = (
            build_over_table(runs, table, args.over, args.solved, args.escape)
            if args.over
            else table
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"lstm-jax-compare: error: {error}", file=sys.stderr)
        return 1

    for run in runs:
        for warning in run.warnings:
            print(f"lstm-jax-compare: warning: {run.name}: {warning}", file=sys.stderr)
    for note in table.notes:
        print(f"lstm-jax-compare: note: {note}", file=sys.stderr)
    out = sys.stdout
    done = sum(r.done for r in runs)
    if args.format != "csv":
        print(f"{len(runs)} runs ({done} done)", file=out)
        if table.fixed:
            print(
                "fixed: "
                + " ".join(
                    f"{k}={'null' if v is None else _fmt(v)}" for k, v in table.fixed.items()
                ),
                file=out,
            )
    out.write(format_table(shown, args.format))
    optuna = _optuna_results(args.paths)
    if optuna and args.format != "csv":
        print(optuna, file=out)

    if args.no_plots:
        return 0
    out_dir = args.out_dir or (
        Path(args.paths[0]) / "compare"
        if len(args.paths) == 1 and not _is_run_dir(Path(args.paths[0]))
        else Path("compare")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.csv").write_text(format_table(shown, "csv"), encoding="utf-8")
    (out_dir / "table.md").write_text(format_table(shown, "markdown"), encoding="utf-8")
    written = []
    monitors = sorted({r.monitor for r in runs if r.monitor})
    curves = list(_split(args.curves)) or ["train/loss", *monitors]
    if groups is not None:  # --over: a median line and min-max band per group
        for metric in curves:
            path = out_dir / f"{_safe(metric)}_over_{_safe(args.over)}.png"
            band = plot_group_curves(runs, groups, table.params, metric, path, logy=args.logy)
            written += [band] if band else []
        for name, text, option in (
            ("solve", args.solved, "--solved"),
            ("escape", args.escape, "--escape"),
        ):
            if not text:
                continue
            condition = Condition.parse(text, option)
            per_group = [
                (
                    group_label(shared, runs[members[0]], table.params),
                    *event_times(runs, members, condition),
                )
                for shared, members in groups
            ]
            path = out_dir / f"survival_{name}_over_{_safe(args.over)}.png"
            title = f"time to {name} ({text}): Kaplan-Meier, + censored"
            written += [p for p in [plot_survival(per_group, title, path)] if p]
    else:
        curve_path = plot_learning_curves(
            runs, table.params, curves, out_dir / "learning_curves.png", logy=args.logy
        )
        written += [curve_path] if curve_path else []
        y, x, group = default_axes(table, args.x)
        y, group = args.y or y, args.group or group
        if y and x:
            for name, what in (("--y", y), ("--x", x), ("--group", group)):
                if what and what not in table.columns:
                    print(
                        f"lstm-jax-compare: error: {name} {what!r} is not a column; "
                        f"columns: {table.columns}",
                        file=sys.stderr,
                    )
                    return 1
            name = f"{_safe(y)}_vs_{_safe(x)}" + (f"_by_{_safe(group)}" if group else "") + ".png"
            param_path = plot_metric_vs_param(table, y, x, group, out_dir / name)
            written += [param_path] if param_path else []
    if args.format != "csv":
        print(
            f"wrote {out_dir / 'table.csv'}, {out_dir / 'table.md'}"
            + "".join(f", {p}" for p in written),
            file=out,
        )
    return 0


def _optuna_results(paths: list[str]) -> str | None:
    lines = []
    for given in paths:
        result = Path(given) / "optimization_results.yaml"
        if result.is_file():
            try:
                data = yaml.safe_load(result.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError:
                continue
            lines.append(
                f"optuna best ({given}): value {_fmt(data.get('best_value'))} with "
                + " ".join(f"{k}={_fmt(v)}" for k, v in (data.get("best_params") or {}).items())
            )
    return "\n".join(lines) or None
