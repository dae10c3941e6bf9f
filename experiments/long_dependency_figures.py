"""Every long-dependency table and figure of experiments/README.md, from the committed records
alone, in one command (nothing to rename or copy by hand afterwards):

    python experiments/long_dependency_figures.py [RECORDS]
        [--out experiments/figures/long_dependency]
        [--tables experiments/long_dependency_tables.md]

RECORDS (default experiments/setup_grid_runs) holds one directory per optimiser setup of the
grid (configs/sweep/setup_grid.yaml: `rmsprop_clipNone`, `adam_clip1.0`, ...; and issue 12's
`optax-rmsprop_clipNone`, optax's eps-in-the-root RMSProp), each holding
`<task>_T<T>_<variant>/seed<S>/` run records (experiments/long_dependency.sh writes them). It
writes, per setup and task:

- `<setup>/<task>_relative_loss.png`: validation loss over the memoryless baseline during
  training, the median and min-max over seeds (one seed: its line, named), the baseline and,
  where "solved" is a loss threshold (adding: val/mse < 0.01), that threshold;
- `<setup>/<task>_dh_t.png`, `<setup>/<task>_tau.png`: seed 0's ||dL/dh_t|| profile at three
  points of training and the memory time constants of its retaining gate (5th, 50th and 95th
  percentile over units and steps);
- `<setup>/<task>_memory.png` (runs that log it): the linear probe of the stored items at the
  recall step and the recall's gradient at the items over the recall step, median over seeds;
- `memory_horizon.png`: per task, the fraction of seeds solved at each T that was run, with
  its Wilson 95 % interval, per variant and setup (markers side by side at each T, no lines
  across T values not run);

and the tables file: per setup, task and variant the solved fraction (Wilson interval), the
Kaplan-Meier median steps to escape the baseline (val loss < 0.99 x baseline) and to solve,
with 95 % intervals and unfinished runs censored at their last step (lstm_jax.compare.survival);
the memory horizon (the largest T solved by any setup, with its seeds); and each run's
validation loss over the baseline at fixed steps.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lstm_jax.compare.over import carry_forward
from lstm_jax.compare.runs import Run, read_run
from lstm_jax.compare.survival import (
    Condition,
    kaplan_meier,
    last_step,
    median_with_interval,
    wilson_interval,
)
from lstm_jax.nn import CELLS

# The gates whose time constants the diagnostics log (LSTM forget, GRU update).
RETAIN_GATES = tuple(dict.fromkeys(c.RETAIN_GATE for c in CELLS.values() if c.RETAIN_GATE))
JOB = re.compile(r"^(?P<task>[a-z_]+)_T(?P<T>\d+)_(?P<variant>\w+)$")
ESCAPE_FRACTION = 0.99  # escaped: the validation loss below 0.99 x the memoryless baseline
TABLE_STEPS = (2500, 5000, 10000, 20000)


@dataclass
class Record:
    """One run's record: its setup, job (task, T, variant), seed, raw metrics rows and the
    compare reader's view of it (numeric series, summary)."""

    setup: str
    job: str
    seed: int
    rows: list[dict]
    run: Run
    task: str = field(init=False)
    length: int = field(init=False)
    variant: str = field(init=False)

    def __post_init__(self):
        match = JOB.match(self.job)
        self.task, self.length, self.variant = match["task"], int(match["T"]), match["variant"]

    @property
    def finished(self) -> bool:
        return bool(self.run.summary)

    @property
    def loss_key(self) -> str:
        return "val/mse" if "val/baseline_mse" in self.run.series else "val/loss"

    @property
    def baseline_key(self) -> str:
        return "val/baseline_mse" if self.loss_key == "val/mse" else "val/baseline_loss"

    def relative_loss(self) -> list[tuple[int, float]]:
        base = dict(self.run.series.get(self.baseline_key, []))
        return [(s, v / base[s]) for s, v in self.run.series.get(self.loss_key, []) if base.get(s)]

    def escape(self) -> Condition:
        text = f"{self.loss_key}<{ESCAPE_FRACTION}*{self.baseline_key}"
        return Condition.parse(text, "escape")

    def solved_at(self) -> int | None:
        return Condition.parse("val/solved>0", "solved").first_step(self.run)


def read_rows(run_dir: Path) -> list[dict]:
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a kill; the compare reader warns about it
    return rows


def load(root: Path) -> list[Record]:
    """Every run record under root/<setup>/<job>/seed<S>/ whose job names a task and T."""
    records = []
    for metrics in sorted(root.glob("*/*/seed*/metrics.jsonl")):
        run_dir = metrics.parent
        job, setup = run_dir.parent.name, run_dir.parent.parent.name
        if JOB.match(job):
            seed = int(run_dir.name.removeprefix("seed"))
            records.append(Record(setup, job, seed, read_rows(run_dir), read_run(run_dir)))
    return records


def grouped(records, *keys):
    out = defaultdict(list)
    for r in records:
        out[tuple(getattr(r, k) for k in keys)].append(r)
    return dict(sorted(out.items()))


def series(rows: list[dict], key: str) -> list[tuple[int, object]]:
    return [(r["step"], r[key]) for r in rows if key in r]


# ------------------------------------------------------------------------------- figures


def _band(ax, runs: list[tuple[list[tuple[int, float]], bool]], color, label: str) -> None:
    """The median and min-max of the runs' curves; each run is (its step-value curve, whether
    it ended). A run that ended keeps its last value (it stopped when solved, or spent its
    budget); one still going (a snapshot) is drawn to its last step only, as nothing is known
    of it past there. One run: its line alone."""
    steps = sorted({s for c, _ in runs for s, _ in c})

    def held(curve: list[tuple[int, float]], done: bool) -> list[float]:
        values = carry_forward(curve, steps)
        end = curve[-1][0]
        return (
            values
            if done
            else [v if s <= end else math.nan for s, v in zip(steps, values, strict=True)]
        )

    columns = [
        [v for v in col if not math.isnan(v)]
        for col in zip(*(held(c, e) for c, e in runs), strict=True)
    ]
    xs = [s for s, col in zip(steps, columns, strict=True) if col]
    cols = [col for col in columns if col]
    ax.plot(xs, [statistics.median(c) for c in cols], color=color, label=label)
    if len(runs) > 1:
        ax.fill_between(
            xs, [min(c) for c in cols], [max(c) for c in cols], color=color, alpha=0.2, linewidth=0
        )


def _seeds_label(name: str, runs: list[Record]) -> str:
    if len(runs) == 1:
        return f"{name} (seed {runs[0].seed} alone)"
    return f"{name} (median, min-max of {len(runs)} seeds)"


def _save(fig, ax, path: Path, logy: bool = True) -> Path:
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _write(fig, path)


def _write(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_relative(setup: str, task: str, runs: list[Record], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, (variant, members) in enumerate(grouped(runs, "variant").items()):
        curves = [(c, r.finished) for r in members if (c := r.relative_loss())]
        if curves:
            _band(ax, curves, plt.get_cmap("tab10")(k), _seeds_label(variant[0], members))
    ax.axhline(1.0, color="k", linestyle="--", linewidth=0.8, label="memoryless baseline")
    first = runs[0]
    if first.loss_key == "val/mse":  # adding: solved is val/mse < 0.01, a loss threshold
        base = statistics.median(v for _, v in first.run.series[first.baseline_key])
        ax.axhline(
            0.01 / base, color="g", linestyle=":", linewidth=1.0, label="solved (val/mse < 0.01)"
        )
    else:
        ax.plot([], [], " ", label="solved: recall accuracy >= 0.99 (not on this axis)")
    ax.set_ylabel("val loss / baseline")
    ax.set_title(f"{task}, {setup}: validation loss over the baseline", fontsize=10)
    return _save(fig, ax, out / setup / f"{task}_relative_loss.png")


def _seed_zero(runs: list[Record], key: str) -> list[Record]:
    return [r for r in sorted(runs, key=lambda r: r.variant) if r.seed == 0 and series(r.rows, key)]


def plot_dh_t(setup: str, task: str, runs: list[Record], out: Path) -> Path | None:
    chosen = _seed_zero(runs, "grad_norm/dh_t")
    if not chosen:
        return None
    fig, axes = plt.subplots(1, len(chosen), figsize=(5.5 * len(chosen), 4), squeeze=False)
    for ax, record in zip(axes[0], chosen, strict=True):
        profiles = series(record.rows, "grad_norm/dh_t")
        for k in sorted({0, len(profiles) // 2, len(profiles) - 1}):
            step, profile = profiles[k]
            ax.plot(
                [i / (len(profile) - 1) for i in range(len(profile))], profile, label=f"step {step}"
            )
        ax.set_yscale("log")
        ax.set_xlabel("position in the sequence (0 = first step)")
        ax.set_ylabel("||dL/dh_t|| of the training loss")
        ax.set_title(f"{record.variant}, seed 0 ({setup})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _write(fig, out / setup / f"{task}_dh_t.png")


def plot_tau(setup: str, task: str, runs: list[Record], out: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for k, record in enumerate(sorted(runs, key=lambda r: r.variant)):
        if record.seed != 0:
            continue
        gate, points = next(
            ((g, p) for g in RETAIN_GATES if (p := series(record.rows, f"gates/layer_0/{g}_tau"))),
            (None, []),
        )
        if not points:
            continue
        color = plt.get_cmap("tab10")(k % 10)
        steps = [s for s, _ in points]
        ax.plot(
            steps,
            [v["p50"] for _, v in points],
            color=color,
            label=f"{record.variant} {gate}, seed 0",
        )
        ax.fill_between(
            steps,
            [v["p05"] for _, v in points],
            [v["p95"] for _, v in points],
            color=color,
            alpha=0.2,
            linewidth=0,
        )
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(runs[0].length, color="k", linestyle="--", linewidth=0.8, label="T")
    ax.set_ylabel("tau = -1 / ln(kept fraction), steps")
    ax.set_title(f"{task}, {setup}: memory time constants (5th-50th-95th percentile)", fontsize=10)
    return _save(fig, ax, out / setup / f"{task}_tau.png")


def plot_memory(setup: str, task: str, runs: list[Record], out: Path) -> Path | None:
    probe = next(
        (
            k
            for k in ("memory/probe_acc", "memory/probe_r2_sum")
            if any(k in r.run.series for r in runs)
        ),
        None,
    )
    if probe is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (variant, members) in enumerate(grouped(runs, "variant").items()):
        color = plt.get_cmap("tab10")(k)
        for ax, key in ((left, probe), (right, "memory/recall_grad_ratio")):
            curves = [(r.run.series[key], r.finished) for r in members if r.run.series.get(key)]
            if curves:
                _band(ax, curves, color, _seeds_label(variant[0], members))
    left.set_ylabel(f"{probe} (held out)")
    left.set_title("what h at the recall step holds", fontsize=10)
    right.set_ylabel("||dL_recall/dh|| at the items / at the recall")
    right.set_title("how much of the recall's error reaches the items", fontsize=10)
    _save(fig, left, out / setup / f"{task}_memory.png", logy=False)  # closes the figure
    return out / setup / f"{task}_memory.png"


def _outcome(records: list[Record]) -> tuple[int, int]:
    """(runs solved, runs with an outcome): solved, or finished unsolved; a run still going
    has no outcome yet unless it solved."""
    solved = sum(r.solved_at() is not None for r in records)
    return solved, solved + sum(r.finished and r.solved_at() is None for r in records)


def plot_horizon(records: list[Record], out: Path) -> Path | None:
    tasks = grouped(records, "task")
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 6), squeeze=False)
    for ax, ((task,), runs) in zip(axes[0], tasks.items(), strict=True):
        series = grouped(runs, "variant", "setup")
        # Side by side at each T (a factor on a log axis), never lifted off their value: the
        # series with an outcome at that T share it, so a T run by few is not spread wide.
        at_length: dict[int, list] = {}  # T with an outcome -> the series that have one there
        for key, members in series.items():
            for (length,), at_t in grouped(members, "length").items():
                if _outcome(at_t)[1]:
                    at_length.setdefault(length, []).append(key)
        lengths = sorted(at_length)
        if not lengths:
            ax.set_visible(False)
            continue
        colors = plt.get_cmap("tab20" if len(series) > 10 else "tab10")
        for k, (key, members) in enumerate(series.items()):
            variant, setup = key
            xs, ys, low, high = [], [], [], []
            for (length,), at_t in grouped(members, "length").items():
                solved, n = _outcome(at_t)
                if n == 0:
                    continue
                sharing = at_length[length]
                dodge = 1.06 ** (sharing.index(key) - (len(sharing) - 1) / 2)
                lo, hi = wilson_interval(solved, n)
                xs.append(length * dodge)
                ys.append(solved / n)
                low.append(solved / n - lo)
                high.append(hi - solved / n)
            if xs:
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[low, high],
                    fmt="o",
                    capsize=3,
                    color=colors(k % colors.N),
                    label=f"{variant}, {setup}",
                    linestyle="none",
                )
        ax.set_xscale("log")
        ax.set_xlim(min(lengths) / 1.6, max(lengths) * 1.6)  # the dodge stays small beside it
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("T (the values run)")
        ax.set_ylabel("fraction of seeds solved (Wilson 95 % interval)")
        ax.set_title(f"memory horizon: {task}", fontsize=10)
        ax.grid(alpha=0.3)
        # Below the panel: inside it, a dozen series would hide their own points.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return _write(fig, out / "memory_horizon.png")


# -------------------------------------------------------------------------------- tables


def _steps(value: int | None) -> str:
    return "not reached" if value is None else f"{value:,}"


def _median_cell(times: list[int], observed: list[bool]) -> str:
    median, low, high = median_with_interval(kaplan_meier(times, observed))
    if median is None and low is None:
        return "not reached"
    return f"{_steps(median)} [{_steps(low)}, {_steps(high)}]"


def _test_over_baseline(record: Record) -> float | None:
    test = record.run.summary.get("test", {})
    loss = test.get("test/loss", test.get("test/mse"))
    base = test.get("test/baseline_loss", test.get("test/baseline_mse"))
    return loss / base if loss is not None and base else None


def outcome_table(runs: list[Record]) -> str:
    """Markdown: per task, T and variant of one setup, the solved fraction and the survival
    medians (steps; [95 % interval]; 'not reached': beyond every run's last step)."""
    head = [
        "task",
        "variant",
        "n (seeds)",
        "solved (Wilson 95 %)",
        f"steps to escape, val < {ESCAPE_FRACTION} x baseline: KM median [95 %]",
        "steps to solve: KM median [95 %]",
        "test loss / baseline: mean (min-max)",
        "status",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, length, variant), members in grouped(runs, "task", "length", "variant").items():
        members.sort(key=lambda r: r.seed)
        escape = [(r.escape().first_step(r.run), r) for r in members]
        solve = [(r.solved_at(), r) for r in members]
        solved, n = _outcome(members)
        lo, hi = wilson_interval(solved, n)
        ratios = [x for r in members if (x := _test_over_baseline(r)) is not None]
        running = [r for r in members if not r.finished and r.solved_at() is None]
        cells = [
            f"{task} T={length}",
            variant,
            f"{len(members)} ({','.join(str(r.seed) for r in members)})",
            f"{solved}/{n} [{lo:.2f}, {hi:.2f}]" if n else "-",
            _median_cell(
                [s if s is not None else last_step(r.run) for s, r in escape],
                [s is not None for s, _ in escape],
            ),
            _median_cell(
                [s if s is not None else last_step(r.run) for s, r in solve],
                [s is not None for s, _ in solve],
            ),
            f"{statistics.fmean(ratios):.4f} ({min(ratios):.4f}-{max(ratios):.4f})"
            if ratios
            else "-",
            "done"
            if not running
            else ", ".join(
                f"seed {r.seed} unfinished at step {last_step(r.run):,}" for r in running
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def horizon_table(records: list[Record]) -> str:
    """Markdown: per task and variant, the largest T some setup solved in every seed with an
    outcome, and in at least one seed, each with every setup that did at that T and its
    seeds (solved/with an outcome); and the T values run."""
    head = [
        "task",
        "variant",
        "largest T solved in all seeds (setups, seeds)",
        "largest T solved in any seed (setups, seeds)",
        "T run (setups)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, variant), runs in grouped(records, "task", "variant").items():
        in_all: dict[int, list[str]] = defaultdict(list)
        in_any: dict[int, list[str]] = defaultdict(list)
        for (length, setup), at in grouped(runs, "length", "setup").items():
            solved, n = _outcome(at)
            if n and solved == n:
                in_all[length].append(f"{setup} {solved}/{n}")
            if solved:
                in_any[length].append(f"{setup} {solved}/{n}")
        run_at = grouped(runs, "length")
        tried = "; ".join(
            f"{t}: {', '.join(sorted({r.setup for r in rs}))}" for (t,), rs in run_at.items()
        )

        def cell(by_length: dict[int, list[str]]) -> str:
            if not by_length:
                return "none solved"
            largest = max(by_length)
            return f"{largest} ({'; '.join(sorted(by_length[largest]))})"

        lines.append(f"| {task} | {variant} | {cell(in_all)} | {cell(in_any)} | {tried} |")
    return "\n".join(lines)


def trajectory_table(runs: list[Record], steps=TABLE_STEPS) -> str:
    """Markdown: one row per run: val loss / baseline at `steps` (blank past a running run's
    last evaluation), test loss / baseline and accuracy, first escape, solved at."""
    head = [
        "job",
        "seed",
        *[f"{s:,}" for s in steps],
        "test / baseline",
        "test acc",
        "escaped at",
        "solved at",
        "status",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for record in sorted(runs, key=lambda r: (r.job, r.seed)):
        curve = record.relative_loss()
        if not curve:
            continue
        values = carry_forward(curve, list(steps))
        if not record.finished:
            values = [
                v if s <= curve[-1][0] else math.nan for s, v in zip(steps, values, strict=True)
            ]
        test = record.run.summary.get("test", {})
        ratio = _test_over_baseline(record)
        escaped, solved = record.escape().first_step(record.run), record.solved_at()
        cells = [
            record.job,
            str(record.seed),
            *("" if math.isnan(v) else f"{v:.4f}" for v in values),
        ]
        cells += [
            f"{ratio:.4f}" if ratio is not None else "",
            f"{test['test/acc']:.3f}" if "test/acc" in test else "",
            f"{escaped:,}" if escaped is not None else "",
            f"{solved:,}" if solved is not None else "",
            "done" if record.finished else f"unfinished at step {last_step(record.run):,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(records: list[Record], command: str) -> str:
    parts = [
        "# Long-dependency tables (generated)\n",
        f"Written by `{command}` from the committed records; do not edit by hand.\n",
        "Escape: the first evaluation with the validation loss below "
        f"{ESCAPE_FRACTION} x the memoryless baseline. Solved: the first with val/solved = 1. "
        "Medians are Kaplan-Meier estimates over the seeds, a run without the event censored at "
        "its last step; [95 % interval] (Brookmeyer-Crowley, log-log); 'not reached': beyond "
        "every run's last step. Solved fractions count runs that solved or finished.\n",
        "## Memory horizon, over every setup\n",
        horizon_table(records) + "\n",
    ]
    for (setup,), runs in grouped(records, "setup").items():
        parts += [f"## Setup `{setup}`\n", outcome_table(runs) + "\n"]
        for (task, length), at in grouped(runs, "task", "length").items():
            parts += [
                f"### {setup}: {task} T={length}, per run (val loss / baseline)\n",
                trajectory_table(at) + "\n",
            ]
    return "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="?", default="experiments/setup_grid_runs")
    ap.add_argument("--out", default="experiments/figures/long_dependency")
    ap.add_argument("--tables", default="experiments/long_dependency_tables.md")
    args = ap.parse_args(argv)
    root, out = Path(args.records), Path(args.out)
    records = load(root)
    if not records:
        ap.error(
            f"no run records (<setup>/<task>_T<T>_<variant>/seed<S>/metrics.jsonl) under {root}"
        )
    written = []
    for (setup, task, length), runs in grouped(records, "setup", "task", "length").items():
        name = f"{task}_T{length}"
        written.append(plot_relative(setup, name, runs, out))
        for plot in (plot_dh_t, plot_tau, plot_memory):
            written += [p for p in [plot(setup, name, runs, out)] if p]
    written += [p for p in [plot_horizon(records, out)] if p]
    command = "python experiments/long_dependency_figures.py" + (
        f" {root}" if args.records != ap.get_default("records") else ""
    )
    Path(args.tables).write_text(tables(records, command))
    for path in [*written, Path(args.tables)]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
