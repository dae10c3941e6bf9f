"""Figures of the long-dependency runs (experiments/long_dependency.sh), from their
metrics.jsonl alone:

- `<job>_relative_ce.png`: validation cross-entropy (or MSE) over the memoryless baseline
  during training, median and min-max over seeds, one colour per job of a task and T;
- `<task>_dh_t.png`: the per-timestep gradient profile ||dL/dh_t|| (grad_norm/dh_t, 32
  points over the sequence) at a few points of training, one panel per job (seed 0);
- `<task>_forget_tau.png`: the memory time constants tau = -1/ln f of the gate that keeps
  the state (LSTM forget, GRU update; 5th, 50th and 95th percentile over units and steps)
  over training, one colour per job;
- `memory_horizon.png`: per task and cell, the fraction of seeds that solved the task at
  each T (the largest solved T is the horizon) and, below it, the final validation loss
  over the baseline (median, min-max over seeds): how much memory a cell has short of solving.
  Runs whose dirs were lost before records were kept count from a root's
  `transcribed_outcomes.csv` (job, seed, commit, solved_at, final_val_over_baseline).

RUNS_DIR defaults to the committed records (experiments/long_dependency_runs, see
experiments/long_dependency.sh) and the live runs (experiments/results/long_dependency); a run
in several is read from the first that holds it finished.

With `--table-steps 2500,5000,20000` it also prints, per task, a markdown table of each run's
validation loss over the baseline at those steps, its test loss over the baseline and test
accuracy (summary.json: the best checkpoint's), the first evaluation below 0.99 of the
baseline, and the step it solved at: the per-seed tables of experiments/README.md.

    python experiments/long_dependency_figures.py [RUNS_DIR ...] [--out experiments/figures]
        [--table-steps 2500,5000,10000,20000]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lstm_jax.compare.over import carry_forward
from lstm_jax.nn import CELLS

# The gates whose time constants the diagnostics log (LSTM forget, GRU update).
RETAIN_GATES = tuple(dict.fromkeys(c.RETAIN_GATE for c in CELLS.values() if c.RETAIN_GATE))
JOB = re.compile(r"^(?P<task>[a-z_]+)_T(?P<T>\d+)_(?P<variant>\w+)$")
TRANSCRIBED = "transcribed_outcomes.csv"
DEFAULT_ROOTS = ("experiments/long_dependency_runs", "experiments/results/long_dependency")


def read(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a kill
    return rows


def series(rows: list[dict], key: str) -> list[tuple[int, object]]:
    return [(r["step"], r[key]) for r in rows if key in r]


def load(
    roots: list[Path],
) -> tuple[dict[str, dict[int, list[dict]]], set[tuple[str, int]], dict[tuple[str, int], Path]]:
    """({job: {seed: rows}} for every job dir holding seed<k>/metrics.jsonl under any of
    `roots`, the (job, seed) pairs whose run finished (summary.json written), and each run's
    dir). A run under several roots is read from the first root that holds it finished, else
    from the first that holds it."""
    jobs: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    done: set[tuple[str, int]] = set()
    dirs: dict[tuple[str, int], Path] = {}
    for root in roots:
        for metrics in sorted(root.glob("*/seed*/metrics.jsonl")):
            key = (metrics.parent.parent.name, int(metrics.parent.name.removeprefix("seed")))
            finished = (metrics.parent / "summary.json").exists()
            if key in done or (key in dirs and not finished):
                continue
            jobs[key[0]][key[1]] = read(metrics.parent)
            dirs[key] = metrics.parent
            if finished:
                done.add(key)
    return jobs, done, dirs


def by_task(jobs):
    tasks = defaultdict(list)
    for job in jobs:
        match = JOB.match(job)
        if match:
            tasks[f"{match['task']}_T{match['T']}"].append(job)
    return tasks


def relative_loss(rows):
    """(step, val/loss over its baseline) at every evaluation."""
    out = []
    for r in rows:
        base = r.get("val/baseline_loss", r.get("val/baseline_mse"))
        if "val/loss" in r and base:
            out.append((r["step"], r["val/loss"] / base))
    return out


def solved_at(rows) -> int | None:
    """The step of the first evaluation with val/solved, or None."""
    return next((r["step"] for r in rows if r.get("val/solved")), None)


def _save_log_panel(fig, ax, ylabel: str, title: str, path: Path) -> Path:
    """Log-y panel over training steps, labelled and saved."""
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _at_steps(curve, steps, finished: bool) -> list[float]:
    """`curve` at each of `steps`: a finished run (solved, or its budget spent) keeps its
    last value past its end; a run still going counts only up to its last evaluation."""
    values = carry_forward(curve, steps)
    if finished:
        return values
    return [v if s <= curve[-1][0] else math.nan for s, v in zip(steps, values, strict=True)]


def plot_relative(jobs, done, task, names, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, job in enumerate(sorted(names)):
        runs = [(relative_loss(rows), (job, seed) in done) for seed, rows in jobs[job].items()]
        runs = [(c, finished) for c, finished in runs if c]
        if not runs:
            continue
        steps = sorted({s for c, _ in runs for s, _ in c})
        carried = [_at_steps(c, steps, finished) for c, finished in runs]
        columns = [[v for v in col if not math.isnan(v)] for col in zip(*carried, strict=True)]
        xs = [s for s, col in zip(steps, columns, strict=True) if col]
        cols = [col for col in columns if col]
        color = plt.get_cmap("tab10")(k)
        ax.plot(
            xs, [statistics.median(c) for c in cols], color=color, label=f"{job} (n={len(runs)})"
        )
        ax.fill_between(
            xs, [min(c) for c in cols], [max(c) for c in cols], color=color, alpha=0.2, linewidth=0
        )
    ax.axhline(1.0, color="k", linestyle="--", linewidth=0.8, label="memoryless baseline")
    return _save_log_panel(
        fig,
        ax,
        "val loss / baseline",
        f"{task}: val loss over the baseline\n(median and min-max over seeds)",
        out / f"{task}_relative_ce.png",
    )


def plot_dh_t(jobs, task, names, out: Path) -> Path | None:
    names = [n for n in sorted(names) if 0 in jobs[n] and series(jobs[n][0], "grad_norm/dh_t")]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, job in zip(axes[0], names, strict=True):
        profiles = series(jobs[job][0], "grad_norm/dh_t")
        picks = sorted({0, len(profiles) // 2, len(profiles) - 1})
        for k in picks:
            step, profile = profiles[k]
            t = [i / (len(profile) - 1) for i in range(len(profile))]
            ax.plot(t, profile, label=f"step {step}")
        ax.set_yscale("log")
        ax.set_xlabel("position in the sequence (0 = first step)")
        ax.set_ylabel("||dL/dh_t||")
        ax.set_title(job)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{task}_dh_t.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_tau(jobs, task, names, out: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for k, job in enumerate(sorted(names)):
        if 0 not in jobs[job]:
            continue
        gate, points = next(
            ((g, p) for g in RETAIN_GATES if (p := series(jobs[job][0], f"gates/layer_0/{g}_tau"))),
            (None, []),
        )
        if not points:
            continue
        color = plt.get_cmap("tab10")(k)
        steps = [s for s, _ in points]
        ax.plot(steps, [v["p50"] for _, v in points], color=color, label=f"{job} {gate} median")
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
    match = re.search(r"_T(\d+)$", task)
    if match:
        ax.axhline(int(match[1]), color="k", linestyle="--", linewidth=0.8, label="T")
    return _save_log_panel(
        fig,
        ax,
        "tau = -1 / ln f (steps)",
        f"{task}: memory time constants\n(5th, 50th and 95th percentile), seed 0",
        out / f"{task}_forget_tau.png",
    )


def _test_result(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()).get("test", {}) if path.exists() else {}


def _cell(value: float, decimals: int = 4) -> str:
    # Fixed decimals: a plateau shows as 1.0004, not rounded onto the baseline.
    return "" if math.isnan(value) else f"{value:.{decimals}f}"


def trajectory_table(dirs, jobs, done, names, steps: list[int]) -> str:
    """Markdown: one row per (job, seed) of a task: val loss / baseline at `steps` (blank
    past a running run's last evaluation), then test loss / baseline, test acc, the first
    evaluation below 0.99 x the baseline and the first with val/solved (blank: never)."""
    head = ["job", "seed", *[f"{s:,}" for s in steps]]
    head += ["test / baseline", "test acc", "first < 0.99", "solved at", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for job in sorted(names):
        for seed, rows in sorted(jobs[job].items()):
            curve = relative_loss(rows)
            if not curve:
                continue
            finished = (job, seed) in done
            test = _test_result(dirs[job, seed])
            base = test.get("test/baseline_loss", test.get("test/baseline_mse"))
            loss = test.get("test/loss")
            below = next((s for s, v in curve if v < 0.99), None)
            solved = solved_at(rows)
            cells = [job, str(seed), *(_cell(v) for v in _at_steps(curve, steps, finished))]
            cells += [
                _cell(loss / base) if loss is not None and base else "",
                _cell(test["test/acc"], 3) if "test/acc" in test else "",
                f"{below:,}" if below is not None else "",
                f"{solved:,}" if solved is not None else "",
                "done" if finished else f"running (step {rows[-1]['step']:,})",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    """A run's result: the step it solved at (None: it spent its budget) and its last
    validation loss over the baseline."""

    job: str
    seed: int
    solved_at: int | None
    final_val_over_baseline: float


def outcomes(jobs, done) -> list[Outcome]:
    """The outcome of every run with a result: it solved or finished its budget (a run still
    going has none yet)."""
    found = []
    for job, seeds in sorted(jobs.items()):
        for seed, rows in sorted(seeds.items()):
            solved, curve = solved_at(rows), relative_loss(rows)
            if curve and (solved is not None or (job, seed) in done):
                found.append(Outcome(job, seed, solved, curve[-1][1]))
    return found


def read_transcribed(path: Path) -> list[Outcome]:
    """The outcomes of runs whose dirs are gone, as experiments/README.md reported them."""
    with path.open(newline="") as handle:
        return [
            Outcome(
                row["job"],
                int(row["seed"]),
                int(row["solved_at"]) if row["solved_at"] else None,
                float(row["final_val_over_baseline"]),
            )
            for row in csv.DictReader(handle)
        ]


def all_outcomes(roots: list[Path], jobs, done) -> list[Outcome]:
    """The runs' outcomes, then each root's transcribed ones for runs not found as dirs."""
    found = outcomes(jobs, done)
    have = {(o.job, o.seed) for o in found}
    for root in roots:
        if (root / TRANSCRIBED).exists():
            for outcome in read_transcribed(root / TRANSCRIBED):
                if (outcome.job, outcome.seed) not in have:
                    found.append(outcome)
                    have.add((outcome.job, outcome.seed))
    return found


def by_length(results: list[Outcome]) -> dict[str, dict[str, dict[int, list[Outcome]]]]:
    """{task: {variant: {T: [its outcomes]}}}, the jobs named <task>_T<T>_<variant>."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for o in results:
        if match := JOB.match(o.job):
            out[match["task"]][match["variant"]][int(match["T"])].append(o)
    return out


def horizon(results: list[Outcome]) -> dict[str, dict[str, dict[int, tuple[int, int]]]]:
    """{task: {variant: {T: (seeds solved, seeds with a result)}}}."""
    return {
        task: {
            variant: {
                t: (sum(o.solved_at is not None for o in runs), len(runs))
                for t, runs in by_t.items()
            }
            for variant, by_t in variants.items()
        }
        for task, variants in by_length(results).items()
    }


def final_relative(results: list[Outcome]) -> dict[str, dict[str, dict[int, list[float]]]]:
    """{task: {variant: {T: [last val loss / baseline of each run]}}}: the graded side of the
    horizon, how much of the memoryless loss a cell removed even where it solved nothing."""
    return {
        task: {
            variant: {t: [o.final_val_over_baseline for o in runs] for t, runs in by_t.items()}
            for variant, by_t in variants.items()
        }
        for task, variants in by_length(results).items()
    }


def plot_horizon(results: list[Outcome], out: Path) -> Path | None:
    """Per task: the fraction of seeds solved at each T (top) and the final validation loss
    over the baseline, median and min-max over seeds (bottom)."""
    table, finals = horizon(results), final_relative(results)
    if not table:
        return None
    fig, axes = plt.subplots(
        2, len(table), figsize=(5.5 * len(table), 7), squeeze=False, sharex="col"
    )
    for col, (task, variants) in enumerate(sorted(table.items())):
        top, bottom = axes[0][col], axes[1][col]
        for k, (variant, by_t) in enumerate(sorted(variants.items())):
            color = plt.get_cmap("tab10")(k)
            ts = sorted(by_t)
            fractions = [by_t[t][0] / by_t[t][1] for t in ts]
            top.plot(ts, [f + 0.02 * k for f in fractions], marker="o", color=color, label=variant)
            for t, f in zip(ts, fractions, strict=True):
                top.annotate(
                    f"{by_t[t][0]}/{by_t[t][1]}",
                    (t, f + 0.02 * k),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3 + 9 * k),  # apart where the fractions coincide
                )
            ratios = finals[task][variant]
            ts = sorted(ratios)
            median = [statistics.median(ratios[t]) for t in ts]
            bottom.errorbar(
                ts,
                median,
                yerr=[
                    [m - min(ratios[t]) for m, t in zip(median, ts, strict=True)],
                    [max(ratios[t]) - m for m, t in zip(median, ts, strict=True)],
                ],
                marker="o",
                capsize=3,
                color=color,
                label=variant,
            )
        top.set_ylim(-0.1, 1.15)
        top.set_ylabel("fraction of seeds solved within the budget")
        top.set_title(f"memory horizon: {task}")
        bottom.axhline(1.0, color="k", linestyle="--", linewidth=0.8, label="memoryless baseline")
        bottom.set_yscale("log")
        # At least a decade below the baseline: a task where every run ends on it (1.000x)
        # is then drawn flat on the baseline, not stretched over a 0.1 % range.
        values = [r for ratios in finals[task].values() for rs in ratios.values() for r in rs]
        bottom.set_ylim(min(0.1, min(values) / 1.5), max(1.5, max(values) * 1.5))
        bottom.set_ylabel("final val loss / baseline (median, min-max)")
        bottom.set_xlabel("T")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "memory_horizon.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", default=list(DEFAULT_ROOTS))
    ap.add_argument("--out", default="experiments/figures")
    ap.add_argument(
        "--table-steps",
        type=lambda text: [int(s) for s in text.split(",")],
        help="comma-separated steps: also print each task's per-seed table at them",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    roots = [Path(r) for r in args.runs if Path(r).is_dir()]
    if not roots:
        ap.error(f"none of {' '.join(args.runs)} is a directory: pass the runs' directory")
    jobs, done, dirs = load(roots)
    written = []
    for task, names in sorted(by_task(jobs).items()):
        written.append(plot_relative(jobs, done, task, names, out))
        written += [
            p for p in (plot_dh_t(jobs, task, names, out), plot_tau(jobs, task, names, out)) if p
        ]
    horizon_path = plot_horizon(all_outcomes(roots, jobs, done), out)
    written += [horizon_path] if horizon_path else []
    for path in written:
        print(f"wrote {path}")
    if args.table_steps:
        for task, names in sorted(by_task(jobs).items()):
            table = trajectory_table(dirs, jobs, done, names, args.table_steps)
            print(f"\n{task}: validation loss over the baseline\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
