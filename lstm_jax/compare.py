"""`lstm-jax-compare RUN_OR_SWEEP_DIR...`: compare finished runs offline.

The offline counterpart of a W&B dashboard. It reads each run dir (DESIGN contract 3:
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

Swept parameters are the job overrides (and config values) that differ between the runs.
Table columns: `best <monitor>` and `best step` (the best validation value and its step),
then the final (last logged) value of each validation metric, the test metrics (evaluated
at the best checkpoint), `steps`, `wall_time_s` and `status` (`done` once summary.json
exists, else `incomplete`).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import math
import operator
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RUN_MARKERS = ("metrics.jsonl", "summary.json")
DEFAULT_METRICS = ("val/*", "test/*")
DEFAULT_EXCLUDE = ("*baseline*",)
# Config keys that differ between runs without being an experimental choice.
IGNORED_CONFIG_KEYS = ("paths.*", "hydra.*", "logger.wandb.name", "logger.wandb.tags")


# ----------------------------------------------------------------------------- reading


@dataclass
class Run:
    """One run dir as read from disk."""

    path: Path
    name: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # flattened: "model.cell" -> "lstm"
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # (monitor, mode) of finished runs of the same sweep, for a run without summary.json
    monitor_hint: tuple[str, str] | None = None

    @property
    def done(self) -> bool:
        return bool(self.summary)

    @property
    def monitor(self) -> str | None:
        monitor = self.summary.get("monitor")
        if isinstance(monitor, str):
            return monitor
        if self.monitor_hint and self.monitor_hint[0] in self.series:
            return self.monitor_hint[0]
        for name in ("val/loss", *sorted(k for k in self.series if k.startswith("val/"))):
            if name in self.series:
                return name
        return None

    @property
    def monitor_mode(self) -> str:
        mode = self.summary.get("monitor_mode")
        if mode in ("min", "max"):
            return mode
        if self.monitor_hint and self.monitor_hint[0] == self.monitor:
            return self.monitor_hint[1]
        return goal(self.monitor or "") or "min"

    def final(self, metric: str) -> float | None:
        values = self.series.get(metric)
        if values:
            return values[-1][1]
        test = self.summary.get("test")
        if isinstance(test, dict) and _is_number(test.get(metric)):
            return float(test[metric])
        final = self.summary.get("final")
        if isinstance(final, dict) and _is_number(final.get(metric)):
            return float(final[metric])
        return None

    def best(self, metric: str, mode: str | None = None) -> tuple[float | None, int | None]:
        """The best logged value of `metric` and its step (the summary's, for the monitor)."""
        best = self.summary.get("best")
        if (metric == self.summary.get("monitor") and isinstance(best, dict)
                and _is_number(best.get(metric))):
            step = best.get("step")
            return float(best[metric]), int(step) if _is_number(step) else None
        values = [(s, v) for s, v in self.series.get(metric, []) if math.isfinite(v)]
        if not values:
            return None, None
        mode = mode or goal(metric) or "min"
        step, value = (min if mode == "min" else max)(values, key=lambda sv: sv[1])
        return value, step


def goal(metric: str) -> str | None:
    """"min" or "max" for a metric name (the W&B logger's rule), None if unknown."""
    from lstm_jax.logging.wandb_logger import metric_goal

    last = metric.rsplit("/", 1)[-1].lower()
    if last in ("solved", "seq_acc"):
        return "max"
    return metric_goal(metric)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_value(text: str) -> Any:
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str, bool)) or value is None else text


def parse_override(override: str) -> tuple[str, Any]:
    """"model.cell=gru" -> ("model.cell", "gru"); "+x=1" -> ("x", 1); "~x" -> ("x", None)."""
    key, _, value = override.partition("=")
    key = key.lstrip("+~").strip()
    return key, _parse_value(value) if value else None


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(node, list):
        out[prefix[:-1]] = json.dumps(node)
    else:
        out[prefix[:-1]] = node
    return out


def _read_yaml(path: Path, run: Run) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        run.warnings.append(f"cannot read {path.name}: {error}")
        return None


def read_run(path: str | Path, name: str | None = None) -> Run:
    """Reads a run dir; missing or damaged files give warnings, not errors (a run that is
    still going, or was killed, has a partial metrics.jsonl and no summary.json)."""
    path = Path(path)
    run = Run(path=path, name=name or path.name)
    hydra_dir = path / ".hydra"
    overrides = _read_yaml(hydra_dir / "overrides.yaml", run) if (hydra_dir / "overrides.yaml").exists() else None
    for item in overrides or []:
        key, value = parse_override(str(item))
        if key and not key.startswith("hydra."):
            run.overrides[key] = value
    if (hydra_dir / "config.yaml").exists():
        config = _read_yaml(hydra_dir / "config.yaml", run)
        run.config = _flatten(config) if isinstance(config, dict) else {}

    metrics = path / "metrics.jsonl"
    if metrics.exists():
        for number, line in enumerate(metrics.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                run.warnings.append(f"metrics.jsonl line {number} is not JSON (skipped)")
                continue
            step = record.get("step")
            if not _is_number(step):
                continue
            for key, value in record.items():
                if key != "step" and _is_number(value):
                    run.series.setdefault(key, []).append((int(step), float(value)))
        for values in run.series.values():
            values.sort(key=lambda sv: sv[0])

    summary = path / "summary.json"
    if summary.exists():
        try:
            loaded = json.loads(summary.read_text(encoding="utf-8"))
            run.summary = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError) as error:
            run.warnings.append(f"cannot read summary.json: {error}")
    return run


def _is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def _sort_key(path: Path) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """The runs under each path: the path itself if it is a run dir, else every run dir
    below it (a sweep's job dirs 0, 1, ..., in job order). Names are relative paths."""
    runs: list[Run] = []
    seen: set[Path] = set()
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        if _is_run_dir(root):
            found = [root]
        else:
            found = sorted(
                {p.parent for marker in RUN_MARKERS for p in root.rglob(marker)
                 if ".hydra" not in p.parts and "wandb" not in p.parts},
                key=lambda p: _sort_key(p.relative_to(root)),
            )
        for run_dir in found:
            resolved = run_dir.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            rel = run_dir.relative_to(root) if run_dir != root else Path(run_dir.name)
            name = str(rel) if len(paths) == 1 else f"{root.name}/{rel}" if run_dir != root else root.name
            runs.append(read_run(run_dir, name))
    return runs


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
            if len(values) > 1:
                keys.append(key)
    swept, fixed = [], {}
    for key in keys:
        values = {json.dumps(param_value(r, key), default=str) for r in runs}
        if len(values) > 1 or len(runs) == 1:
            swept.append(key)
        else:
            fixed[key] = param_value(runs[0], key)
    return swept, fixed


def param_value(run: Run, key: str) -> Any:
    if key in run.config:
        return run.config[key]
    return run.overrides.get(key)


def _select(names: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    return [n for n in names
            if any(fnmatch.fnmatch(n, p) for p in include)
            and not any(fnmatch.fnmatch(n, p) for p in exclude)]


def _metric_order(name: str) -> tuple:
    split = 0 if name.startswith("val/") else 1 if name.startswith("test/") else 2
    return (split, name)


_CONDITION = re.compile(r"^\s*(?P<column>.+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+0-9.eE]+)\s*$")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


def parse_condition(text: str) -> tuple[str, Any, float]:
    """"test/mse<0.01" -> ("test/mse", operator.lt, 0.01)."""
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
    test_names = sorted({k for r in runs for k in (r.summary.get("test") or {})
                         if _is_number((r.summary.get("test") or {}).get(k))})
    names += [n for n in test_names if n not in names]
    chosen = _select(names, metrics, exclude)
    monitors = sorted({r.monitor for r in runs if r.monitor})

    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.name}
        for key in params:
            row[key] = param_value(run, key)
        for monitor in monitors:
            value, step = run.best(monitor, run.monitor_mode if monitor == run.monitor else None)
            row[f"best {monitor}"] = value
            row["best step" if len(monitors) == 1 else f"best step {monitor}"] = step
        for name in chosen:
            row[name] = run.final(name)
        row["steps"] = run.summary.get("steps", max((s for v in run.series.values() for s, _ in v), default=None))
        wall = run.summary.get("wall_time_s")
        row["wall_time_s"] = float(wall) if _is_number(wall) else None
        row["status"] = "done" if run.done else "incomplete"
        rows.append(row)

    columns = list(rows[0]) if rows else ["run"]
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
    return Table(columns=columns, rows=rows, params=params, fixed=fixed)


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
        writer = csv.DictWriter(buffer, fieldnames=table.columns, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for row in table.rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in table.columns})
        return buffer.getvalue()
    cells = [[_fmt(row.get(c)) for c in table.columns] for row in table.rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(table.columns) + " |",
                 "|" + "|".join("---:" if _numeric_column(table, c) else "---"
                                for c in table.columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines) + "\n"
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}; choose text, csv or markdown")
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(table.columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(table.columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines) + "\n"


def _numeric_column(table: Table, column: str) -> bool:
    values = [r.get(column) for r in table.rows if r.get(column) is not None]
    return bool(values) and all(_is_number(v) for v in values)


# ----------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(run: Run, params: list[str]) -> str:
    if not params:
        return run.name
    return ", ".join(f"{p.rsplit('.', 1)[-1]}={_fmt(param_value(run, p))}" for p in params)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_learning_curves(runs: list[Run], params: list[str], metrics: list[str], path: Path,
                         logy: bool = False) -> Path | None:
    """One panel per metric, one line per run (step on x)."""
    metrics = [m for m in metrics if any(m in r.series for r in runs)]
    if not metrics:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    for ax, metric in zip(axes[0], metrics):
        for i, run in enumerate(runs):
            if metric not in run.series:
                continue
            steps, values = zip(*run.series[metric])
            ax.plot(steps, values, label=_label(run, params), color=cmap(i % cmap.N),
                    marker="." if len(steps) < 30 else None, linewidth=1.2)
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


def plot_metric_vs_param(table: Table, y: str, x: str, group: str | None, path: Path) -> Path | None:
    """`y` (a table column) against swept parameter `x`, one line per value of `group`;
    runs with the same (x, group) (e.g. several seeds) are averaged, each also shown as a dot."""
    points: dict[Any, dict[Any, list[float]]] = {}
    for row in table.rows:
        value = row.get(y)
        if not _is_number(value) or row.get(x) is None:
            continue
        points.setdefault(row.get(group) if group else None, {}).setdefault(row[x], []).append(float(value))
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
        line, = ax.plot([position(v) for v in xs], means, marker="o", label=label)
        if any(len(by_x[v]) > 1 for v in xs):
            ax.scatter([position(v) for v in xs for _ in by_x[v]], [s for v in xs for s in by_x[v]],
                       color=line.get_color(), alpha=0.35, s=12)
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
        numeric = [p for p in params
                   if all(_is_number(r.get(p)) for r in table.rows if r.get(p) is not None)]
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


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lstm-jax-compare",
        description="Compare finished lstm-jax runs offline: a table of the swept parameters "
        "against the final and best metrics, and PNG plots.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR",
                   help="run dirs, or dirs holding run dirs (a sweep: multirun/<exp>/<time>)")
    p.add_argument("--format", choices=("text", "csv", "markdown"), default="text",
                   help="how the table is printed (default: text)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="comma-separated metric names or globs for the final-value columns "
                   "(default: val/*,test/*)")
    p.add_argument("--exclude", default=",".join(DEFAULT_EXCLUDE),
                   help="comma-separated globs of metrics left out (default: *baseline*)")
    p.add_argument("--solved", metavar="COLUMN<NUMBER",
                   help="adds a column 'solved' (1/0), e.g. 'test/mse<0.01' or 'val/acc>=0.99'")
    p.add_argument("--sort", metavar="COLUMN", help="sort rows by this column")
    p.add_argument("--out-dir", type=Path,
                   help="where plots and table.csv / table.md go (default: <dir>/compare for one "
                   "dir given, else ./compare)")
    p.add_argument("--no-plots", action="store_true", help="only print the table")
    p.add_argument("--curves", default=None,
                   help="comma-separated metrics for learning_curves.png "
                   "(default: train/loss and the monitored metric)")
    p.add_argument("--logy", action="store_true", help="log-scale y for learning curves")
    p.add_argument("--y", help="table column plotted against --x (default: solved, or the best monitor)")
    p.add_argument("--x", help="swept parameter on the x-axis (default: the numeric one with most values)")
    p.add_argument("--group", help="swept parameter: one line per value (default: another swept one)")
    return p


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        runs = find_runs(args.paths)
        if not runs:
            raise FileNotFoundError(
                f"no run dirs (with {' or '.join(RUN_MARKERS)}) under {', '.join(args.paths)}")
        table = build_table(runs, _split(args.metrics), _split(args.exclude), args.solved, args.sort)
    except (FileNotFoundError, ValueError) as error:
        print(f"lstm-jax-compare: error: {error}", file=sys.stderr)
        return 1

    for run in runs:
        for warning in run.warnings:
            print(f"lstm-jax-compare: warning: {run.name}: {warning}", file=sys.stderr)
    out = sys.stdout
    done = sum(r.done for r in runs)
    if args.format != "csv":
        print(f"{len(runs)} runs ({done} done)", file=out)
        if table.fixed:
            print("fixed: " + " ".join(f"{k}={'null' if v is None else _fmt(v)}"
                                      for k, v in table.fixed.items()), file=out)
    out.write(format_table(table, args.format))
    optuna = _optuna_results(args.paths)
    if optuna and args.format != "csv":
        print(optuna, file=out)

    if args.no_plots:
        return 0
    out_dir = args.out_dir or (Path(args.paths[0]) / "compare" if len(args.paths) == 1
                               and not _is_run_dir(Path(args.paths[0])) else Path("compare"))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.csv").write_text(format_table(table, "csv"), encoding="utf-8")
    (out_dir / "table.md").write_text(format_table(table, "markdown"), encoding="utf-8")
    written = []
    monitors = sorted({r.monitor for r in runs if r.monitor})
    curves = list(_split(args.curves)) or ["train/loss", *monitors]
    curve_path = plot_learning_curves(runs, table.params, curves, out_dir / "learning_curves.png",
                                      logy=args.logy)
    written += [curve_path] if curve_path else []
    y, x, group = default_axes(table, args.x)
    y, group = args.y or y, args.group or group
    if y and x:
        for name, what in (("--y", y), ("--x", x), ("--group", group)):
            if what and what not in table.columns:
                print(f"lstm-jax-compare: error: {name} {what!r} is not a column; columns: "
                      f"{table.columns}", file=sys.stderr)
                return 1
        name = f"{_safe(y)}_vs_{_safe(x)}" + (f"_by_{_safe(group)}" if group else "") + ".png"
        param_path = plot_metric_vs_param(table, y, x, group, out_dir / name)
        written += [param_path] if param_path else []
    if args.format != "csv":
        print(f"wrote {out_dir / 'table.csv'}, {out_dir / 'table.md'}"
              + "".join(f", {p}" for p in written), file=out)
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
            lines.append(f"optuna best ({given}): value {_fmt(data.get('best_value'))} with "
                         + " ".join(f"{k}={_fmt(v)}" for k, v in (data.get("best_params") or {}).items()))
    return "\n".join(lines) or None


if __name__ == "__main__":
    raise SystemExit(main())
