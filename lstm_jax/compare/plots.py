"""PNG plots of lstm-jax-compare: learning curves, and a table column against a swept
parameter."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lstm_jax.compare.runs import Run, _is_number
from lstm_jax.compare.table import Table, _fmt, _sortable, param_value

# ----------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, ax, path: Path) -> Path:
    """A grid, the legend, and the figure written to `path` and closed."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _label(run: Run, params: list[str]) -> str:
    if not params:
        return run.name
    return ", ".join(f"{p.rsplit('.', 1)[-1]}={_fmt(param_value(run, p))}" for p in params)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_learning_curves(
    runs: list[Run], params: list[str], metrics: list[str], path: Path, logy: bool = False
) -> Path | None:
    """One panel per metric, one line per run (step on x)."""
    metrics = [m for m in metrics if any(m in r.series for r in runs)]
    if not metrics:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, run in enumerate(runs):
            if metric not in run.series:
                continue
            steps, values = zip(*run.series[metric], strict=True)
            ax.plot(
                steps,
                values,
                label=_label(run, params),
                color=cmap(i % cmap.N),
                marker="." if len(steps) < 30 else None,
                linewidth=1.2,
            )
        ax.set_xlabel("step")
        ax.set_title(metric)
        if logy and all(v > 0 for r in runs for _, v in r.series.get(metric, [])):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_metric_vs_param(
    table: Table, y: str, x: str, group: str | None, path: Path
) -> Path | None:
    """`y` (a table column) against swept parameter `x`, one line per value of `group`;
    runs with the same (x, group) (e.g. several seeds) are averaged, each also shown as a dot."""
    points: dict[Any, dict[Any, list[float]]] = {}
    for row in table.rows:
        value = row.get(y)
        if not _is_number(value) or row.get(x) is None:
            continue
        points.setdefault(row.get(group) if group else None, {}).setdefault(row[x], []).append(
            float(value)
        )
    if not points:
        return None
    plt = _pyplot()
    xs_all = sorted({xv for g in points.values() for xv in g}, key=_sortable)
    numeric_x = all(_is_number(v) for v in xs_all)
    position = (lambda v: v) if numeric_x else {v: i for i, v in enumerate(xs_all)}.__getitem__
    fig, ax = plt.subplots(figsize=(6, 4))
    binary = y == "solved" or y.endswith("/solved")
    keys = sorted(points, key=_sortable)
    for i, key in enumerate(keys):
        by_x = points[key]
        xs = sorted(by_x, key=_sortable)
        means = [sum(by_x[v]) / len(by_x[v]) for v in xs]
        if binary:  # lines of several groups at 0 or 1 would hide each other
            means = [m + 0.025 * (i - (len(keys) - 1) / 2) for m in means]
        label = f"{group.rsplit('.', 1)[-1]}={_fmt(key)}" if group else None
        (line,) = ax.plot([position(v) for v in xs], means, marker="o", label=label)
        if any(len(by_x[v]) > 1 for v in xs):
            ax.scatter(
                [position(v) for v in xs for _ in by_x[v]],
                [s for v in xs for s in by_x[v]],
                color=line.get_color(),
                alpha=0.35,
                s=12,
            )
    if numeric_x:
        if min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 20:
            ax.set_xscale("log")
        ax.set_xticks(xs_all)
        ax.set_xticklabels([_fmt(v) for v in xs_all])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(xs_all)))
        ax.set_xticklabels([_fmt(v) for v in xs_all])
    values = [v for g in points.values() for vs in g.values() for v in vs]
    if binary:
        ax.set_ylim(-0.1, 1.1)
        ax.set_yticks([0, 1])
        ax.set_yticklabels(["no", "yes"])
    elif min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} vs {x}" + (f" by {group}" if group else ""))
    ax.grid(alpha=0.3)
    if group:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def default_axes(table: Table, x: str | None = None) -> tuple[str | None, str | None, str | None]:
    """(y, x, group) for the parameter plot: x the numeric swept parameter with the most
    values (unless given), group the other swept parameter with the fewest; y "solved"
    when the table has it, else the best monitored value."""

    def n_values(p: str) -> int:
        return len({json.dumps(r.get(p), default=str) for r in table.rows})

    params = [p for p in table.params if n_values(p) > 1]
    if x is None and params:
        numeric = [
            p
            for p in params
            if all(_is_number(r.get(p)) for r in table.rows if r.get(p) is not None)
        ]
        x = max(numeric or params, key=n_values)
    others = [p for p in params if p != x]
    group = min(others, key=n_values) if others else None
    if "solved" in table.columns:
        y = "solved"
    elif "val/solved" in table.columns:
        y = "val/solved"
    else:
        y = next((c for c in table.columns if c.startswith("best ") and c != "best step"), None)
    return y, x, group
