"""The comparison table: the swept parameters of a set of runs against their final and
best metrics, and a `--solved` condition on one column."""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from lstm_jax.compare.runs import (
    DEFAULT_EXCLUDE,
    DEFAULT_METRICS,
    IGNORED_CONFIG_KEYS,
    Run,
    _is_number,
)

# ----------------------------------------------------------------------------- the table


def swept_parameters(runs: list[Run]) -> tuple[list[str], dict[str, Any]]:
    """(parameters that differ between runs, parameters that all runs share).

    From the job overrides, plus config values that differ (runs of different
    experiments); for a single run, its overrides."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.overrides if k not in keys]
    if len(runs) > 1:
        config_keys = sorted(set().union(*(r.config for r in runs)))
        for key in config_keys:
            if key in keys or any(fnmatch.fnmatch(key, pat) for pat in IGNORED_CONFIG_KEYS):
                continue
            values = {json.dumps(param_value(r, key), default=str) for r in runs}
            if len(values) > 1 and not _follows_from_the_cell(runs, key):
                keys.append(key)
    swept, fixed = [], {}
    for key in keys:
        values = {json.dumps(param_value(r, key), default=str) for r in runs}
        if len(values) > 1 or len(runs) == 1:
            swept.append(key)
        else:
            fixed[key] = param_value(runs[0], key)
    return swept, fixed


def _follows_from_the_cell(runs: list[Run], key: str) -> bool:
    """Whether a model key differs only because the cell does (model._target_, an
    LSTM-only key such as model.forget_bias): one value per cell, so not a column of its own
    beside model.cell."""
    if not key.startswith("model.") or key == "model.cell":
        return False
    by_cell: dict[str, set[str]] = {}
    for run in runs:
        value = json.dumps(param_value(run, key), default=str)
        by_cell.setdefault(str(param_value(run, "model.cell")), set()).add(value)
    return all(len(values) == 1 for values in by_cell.values())


def param_value(run: Run, key: str) -> Any:
    if key in run.config:
        return run.config[key]
    return run.overrides.get(key)


def _select(names: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    return [
        n
        for n in names
        if any(fnmatch.fnmatch(n, p) for p in include)
        and not any(fnmatch.fnmatch(n, p) for p in exclude)
    ]


def _metric_order(name: str) -> tuple:
    split = 0 if name.startswith("val/") else 1 if name.startswith("test/") else 2
    return (split, name)


_CONDITION = re.compile(
    r"^\s*(?P<column>.+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+0-9.eE]+)\s*$"
)
_OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def parse_condition(text: str) -> tuple[str, Any, float]:
    """ "test/mse<0.01" -> ("test/mse", operator.lt, 0.01)."""
    match = _CONDITION.match(text)
    if not match:
        raise ValueError(f"--solved {text!r}: expected COLUMN OP NUMBER, e.g. 'test/mse<0.01'")
    return match["column"], _OPS[match["op"]], float(match["value"])


@dataclass
class Table:
    columns: list[str]
    rows: list[dict[str, Any]]
    params: list[str]
    fixed: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what a reader must know about the table


def build_table(
    runs: list[Run],
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE,
    solved: str | None = None,
    sort: str | None = None,
) -> Table:
    params, fixed = swept_parameters(runs)
    finished = {(r.monitor, r.monitor_mode) for r in runs if r.done and r.monitor}
    if len(finished) == 1:
        for run in runs:
            if not run.done:
                run.monitor_hint = next(iter(finished))
    names = sorted(set().union(*(r.series for r in runs)), key=_metric_order)
    test_names = sorted(
        {
            k
            for r in runs
            for k in (r.summary.get("test") or {})
            if _is_number((r.summary.get("test") or {}).get(k))
        }
    )
    names += [n for n in test_names if n not in names]
    chosen = _select(names, metrics, exclude)
    if solved:  # the column the --solved condition reads is shown whatever --metrics says
        column = parse_condition(solved)[0]
        if column in names and column not in chosen:
            chosen.append(column)
    monitors = sorted({r.monitor for r in runs if r.monitor})
    # Runs of different tasks share metric names (val/mse of adding and of a forecast) but
    # not their meaning: each task's metrics get columns of their own.
    tasks = sorted({_task(r) for r in runs})
    notes = []
    if len(tasks) > 1:
        notes.append(
            f"runs of {len(tasks)} tasks ({', '.join(tasks)}): each task's metrics have "
            "columns of their own, named 'METRIC [TASK]'"
        )

    def column(name: str, run: Run) -> str:
        return f"{name} [{_task(run)}]" if len(tasks) > 1 else name

    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.name}
        for key in params:
            row[key] = param_value(run, key)
        for monitor in monitors:
            if len(tasks) > 1 and monitor not in run.series and monitor != run.monitor:
                continue  # another task's monitor
            value, step = run.best(monitor, run.monitor_mode if monitor == run.monitor else None)
            row[column(f"best {monitor}", run)] = value
            step_column = "best step" if len(monitors) == 1 else f"best step {monitor}"
            row[column(step_column, run)] = step
        for name in chosen:
            if (
                len(tasks) > 1
                and name not in run.series
                and name not in (run.summary.get("test") or {})
            ):
                continue
            row[column(name, run)] = run.final(name)
        row["steps"] = run.summary.get(
            "steps", max((s for v in run.series.values() for s, _ in v), default=None)
        )
        wall = run.summary.get("wall_time_s")
        row["wall_time_s"] = float(wall) if _is_number(wall) else None
        row["status"] = "done" if run.done else "incomplete"
        rows.append(row)

    # every row's columns, in the order they first appear (each task adds its own)
    columns = list(dict.fromkeys(c for row in rows for c in row)) or ["run"]
    for tail in ("steps", "wall_time_s", "status"):  # kept last, after every task's metrics
        if tail in columns:
            columns.append(columns.pop(columns.index(tail)))
    if solved:
        column, op, threshold = parse_condition(solved)
        if column not in columns:
            raise ValueError(f"--solved {solved!r}: no column {column!r}; columns: {columns}")
        for row in rows:
            value = row.get(column)
            row["solved"] = None if value is None else float(op(value, threshold))
        columns.insert(columns.index("steps"), "solved")
    if sort:
        if sort not in columns:
            raise ValueError(f"--sort {sort!r}: no such column; columns: {columns}")
        rows.sort(key=lambda r: (r.get(sort) is None, _sortable(r.get(sort))))
    return Table(columns=columns, rows=rows, params=params, fixed=fixed, notes=notes)


def _task(run: Run) -> str:
    """The run's task, by the class its config names (AddingTask)."""
    return str(run.config.get("task._target_", "?")).rpartition(".")[2]


def _sortable(value: Any) -> tuple:
    return (0, value, "") if _is_number(value) else (1, 0, str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def format_table(table: Table, fmt: str = "text") -> str:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=table.columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in table.rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in table.columns})
        return buffer.getvalue()
    cells = [[_fmt(row.get(c)) for c in table.columns] for row in table.rows]
    if fmt not in ("markdown", "text"):
        raise ValueError(f"unknown format {fmt!r}; choose text, csv or markdown")
    align = ["right" if _numeric_column(table, c) else "left" for c in table.columns]
    # Cells are already formatted text: tabulate only lays them out.
    return (
        tabulate(
            cells,
            headers=table.columns,
            tablefmt="pipe" if fmt == "markdown" else "simple",
            colalign=align,
            disable_numparse=True,
        )
        + "\n"
    )


def _numeric_column(table: Table, column: str) -> bool:
    values = [r.get(column) for r in table.rows if r.get(column) is not None]
    return bool(values) and all(_is_number(v) for v in values)
