"""Seed statistics for `lstm-jax-compare --over KEY`: runs that differ only in KEY (the seed,
usually) become one row.

Each row holds the parameters the group shares, `n` (its runs), the mean and standard
deviation (sample, ddof=1; none for one run) of each chosen metric column, and, with
`--solved`, the solved fraction with its Wilson 95 % interval and the median, min and max
steps to solve among the runs that solved. "Steps to solve" is the first logged step at which
the `--solved` condition held on the validation metric: the condition's column itself when it
is a `val/` metric, its `val/` counterpart for a `test/` column (the test split is scored
once, at the end). With `--solved` and `--escape`, the time to each event as a Kaplan-Meier
median with its 95 % interval, runs without the event censored at their last step
(lstm_jax.compare.survival).

The curve plot draws, per group, the median of a metric over the group's runs and a min-max
band. A run that ended before the others (stopped when solved, or early) keeps its last
value from then on, so the band does not narrow to the runs that are still going.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from lstm_jax.compare.plots import _label, _pyplot, save_figure
from lstm_jax.compare.runs import Run, _is_number
from lstm_jax.compare.survival import Condition, event_times, survival_columns, wilson_interval
from lstm_jax.compare.table import Table, _fmt, param_value


def steps_to_solve(run: Run, condition: str) -> int | None:
    """The first step at which `condition` (e.g. 'val/solved>0') held on the validation
    series of `run`; None if it never did."""
    return Condition.parse(condition, "--solved").first_step(run)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def _group_key(run: Run, params: list[str]) -> str:
    return json.dumps([param_value(run, p) for p in params], default=str)


def group_runs(runs: list[Run], table: Table, over: str) -> list[tuple[dict[str, Any], list[int]]]:
    """[(the parameters a group shares, indices of its runs in `runs`)], in first-seen
    order. Runs join a group when every swept parameter but `over` is equal."""
    if over not in table.params and not any(over in (r.config or r.overrides) for r in runs):
        raise ValueError(f"--over {over!r}: no run has that key; swept parameters: {table.params}")
    shared = [p for p in table.params if p != over]
    groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for index, run in enumerate(runs):
        key = _group_key(run, shared)
        if key not in groups:
            groups[key] = ({p: param_value(run, p) for p in shared}, [])
        groups[key][1].append(index)
    return list(groups.values())


def build_over_table(
    runs: list[Run],
    table: Table,
    over: str,
    solved: str | None = None,
    escape: str | None = None,
) -> Table:
    """The per-group table of `table` (one row per run, as `build_table` makes it)."""
    events = {
        name: Condition.parse(text, option)
        for name, text, option in (("solve", solved, "--solved"), ("escape", escape, "--escape"))
        if text
    }
    groups = group_runs(runs, table, over)
    shared = [p for p in table.params if p != over]
    skip = {"run", *table.params, "status", "solved", "best step"}
    metric_columns = [
        c for c in table.columns if c not in skip and any(_is_number(r.get(c)) for r in table.rows)
    ]
    rows = []
    for params, members in groups:
        row: dict[str, Any] = {
            **params,
            "n": len(members),
            over: ",".join(_fmt(param_value(runs[i], over)) for i in members),
        }
        for column in metric_columns:
            values = [
                float(table.rows[i][column])
                for i in members
                if _is_number(table.rows[i].get(column)) and math.isfinite(table.rows[i][column])
            ]
            row[f"{column} mean"], row[f"{column} std"] = _mean_std(values)
        if solved:
            flags = [table.rows[i].get("solved") for i in members]
            known = [f for f in flags if f is not None]
            row["solved fraction"] = sum(known) / len(known) if known else None
            low, high = wilson_interval(sum(known), len(known))
            row["solved fraction_ci_low"], row["solved fraction_ci_high"] = low, high
            steps = [s for s in (steps_to_solve(runs[i], solved) for i in members) if s is not None]
            row["solved runs"] = len(steps)
            row["steps to solve median"] = statistics.median(steps) if steps else None
            row["steps to solve min"] = min(steps) if steps else None
            row["steps to solve max"] = max(steps) if steps else None
        for name, condition in events.items():
            row.update(survival_columns(name, *event_times(runs, members, condition)))
        row["done"] = sum(table.rows[i].get("status") == "done" for i in members)
        rows.append(row)
    columns = list(rows[0]) if rows else [*shared, "n"]
    return Table(columns=columns, rows=rows, params=shared, fixed=table.fixed)


def group_label(shared: dict[str, Any], first: Run, params: list[str]) -> str:
    """A group's name in a plot legend: its shared parameters, short."""
    return ", ".join(f"{p.rsplit('.', 1)[-1]}={_fmt(v)}" for p, v in shared.items()) or _label(
        first, params
    )


def carry_forward(series: list[tuple[int, float]], steps: list[int]) -> list[float]:
    """`series` at each of `steps`, its last value carried forward past its end (NaN
    before its first point)."""
    out, j, last = [], 0, math.nan
    for step in steps:
        while j < len(series) and series[j][0] <= step:
            last = series[j][1]
            j += 1
        out.append(last)
    return out


def plot_group_curves(
    runs: list[Run],
    groups: list[tuple[dict[str, Any], list[int]]],
    params: list[str],
    metric: str,
    path: Path,
    logy: bool = False,
) -> Path | None:
    """One median line and min-max band of `metric` per group, step on x."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for number, (shared, members) in enumerate(groups):
        series = [runs[i].series.get(metric, []) for i in members]
        series = [s for s in series if s]
        if not series:
            continue
        steps = sorted({step for s in series for step, _ in s})
        columns = [carry_forward(s, steps) for s in series]
        finite = [[v for v in values if not math.isnan(v)] for values in zip(*columns, strict=True)]
        keep = [k for k, values in enumerate(finite) if values]
        xs = [steps[k] for k in keep]
        median = [statistics.median(finite[k]) for k in keep]
        color = plt.get_cmap("tab10")(number % 10)
        label = group_label(shared, runs[members[0]], params)
        ax.plot(xs, median, color=color, label=f"{label} (n={len(series)})", linewidth=1.4)
        ax.fill_between(
            xs,
            [min(finite[k]) for k in keep],
            [max(finite[k]) for k in keep],
            color=color,
            alpha=0.2,
            linewidth=0,
        )
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: median and min-max over runs")
    if logy:
        ax.set_yscale("log")
    return save_figure(fig, ax, path)
