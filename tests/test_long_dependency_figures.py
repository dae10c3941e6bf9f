"""experiments/long_dependency_figures.py: every long-dependency table and figure from the
records of each setup, read as experiments/README.md reports them (finished, solved, still
going), with survival medians that count unfinished and unsolved runs as censored."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "experiments" / "long_dependency_figures.py"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("long_dependency_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _write_run(run_dir: Path, val_losses: dict[int, float], solved_at=None, test=None, extra=None):
    """A copy-task run with baseline 0.5: val/loss at the given steps; summary.json iff
    `test`; `extra` adds per-step rows (diagnostics)."""
    run_dir.mkdir(parents=True)
    lines = [
        {
            "step": step,
            "val/loss": loss,
            "val/baseline_loss": 0.5,
            "val/solved": float(solved_at is not None and step >= solved_at),
        }
        for step, loss in sorted(val_losses.items())
    ]
    lines.insert(1, {"step": 150, "train/loss": 9.0})  # training rows are not evaluations
    lines += extra or []
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if test is not None:
        (run_dir / "summary.json").write_text(json.dumps({"test": test, "steps": max(val_losses)}))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "records"
    setup = root / "rmsprop_clipNone"
    # seed 0 solved at step 300 and stopped there; seed 1 spent its budget on the plateau;
    # seed 2 is unfinished at step 200 (a snapshot).
    _write_run(
        setup / "copy_T100_chrono" / "seed0",
        {100: 0.6, 200: 0.45, 300: 0.05},
        solved_at=300,
        test={"test/loss": 0.04, "test/baseline_loss": 0.5, "test/acc": 0.995},
        extra=[{"step": 200, "memory/probe_acc": 0.5, "memory/recall_grad_ratio": 0.1}],
    )
    _write_run(
        setup / "copy_T100_chrono" / "seed1",
        {100: 0.6, 200: 0.5001, 300: 0.5001, 400: 0.5002},
        test={"test/loss": 0.5, "test/baseline_loss": 0.5, "test/acc": 0.125},
    )
    _write_run(setup / "copy_T100_chrono" / "seed2", {100: 0.7, 200: 0.49})
    _write_run(
        setup / "copy_T200_chrono" / "seed0",
        {100: 0.6, 400: 0.5},
        test={"test/loss": 0.5, "test/baseline_loss": 0.5, "test/acc": 0.125},
    )
    # Another setup solves copy T=200 in its one seed.
    _write_run(
        root / "adam_clip1.0" / "copy_T200_chrono" / "seed0",
        {100: 0.4, 200: 0.01},
        solved_at=200,
        test={"test/loss": 0.01, "test/baseline_loss": 0.5, "test/acc": 1.0},
    )
    return root


def test_per_run_table_carries_a_finished_run_forward_and_blanks_an_unfinished_one(figures, root):
    runs = [r for r in figures.load(root) if r.setup == "rmsprop_clipNone" and r.length == 100]
    lines = figures.trajectory_table(runs, steps=(200, 400)).splitlines()
    assert lines[0] == (
        "| job | seed | 200 | 400 | test / baseline | test acc | escaped at | solved at | status |"
    )
    rows = {line.split(" | ")[1]: line for line in lines[2:]}
    # solved at 300 and stopped: its last value (0.05 / 0.5) stands at step 400
    assert (
        rows["0"]
        == "| copy_T100_chrono | 0 | 0.9000 | 0.1000 | 0.0800 | 0.995 | 200 | 300 | done |"
    )
    assert rows["1"] == "| copy_T100_chrono | 1 | 1.0002 | 1.0004 | 1.0000 | 0.125 |  |  | done |"
    assert rows["2"] == (
        "| copy_T100_chrono | 2 | 0.9800 |  |  |  | 200 |  | unfinished at step 200 |"
    )


def test_outcomes_count_solved_and_finished_runs_and_censor_the_rest(figures, root):
    runs = [r for r in figures.load(root) if r.setup == "rmsprop_clipNone"]
    table = figures.outcome_table(runs).splitlines()
    row = next(line for line in table if line.startswith("| copy T=100 | chrono"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # 1 solved of 2 with an outcome (seed 2 is unfinished): Wilson [0.09, 0.91].
    assert cells[2:4] == ["3 (0,1,2)", "1/2 [0.09, 0.91]"]
    # Escape (< 0.99 x baseline): seeds 0 and 2 at 200, seed 1 never (censored at 400):
    # S = 1/3 at 200 -> median 200. Greenwood 2/(3*1): the band's top at 200 is
    # (1/3) ** (1 / exp(1.96 * 0.8165 / 1.0986)) = 0.77 > 0.5, so the upper bound is not reached.
    assert cells[4] == "200 [200, not reached]"
    # Solve: seed 0 at 300; seed 1 censored at 400, seed 2 at 200 (it left before 300): at 300
    # seeds 0 and 1 are at risk, S = 1/2 -> median 300; top of the band 0.5 ** (1/7.4) = 0.91.
    assert cells[5] == "300 [300, not reached]"
    assert cells[7] == "seed 2 unfinished at step 200"


def test_the_horizon_table_names_the_setups_that_solved_the_largest_T(figures, root):
    table = figures.horizon_table(figures.load(root))
    (row,) = [line for line in table.splitlines() if line.startswith("| copy | chrono")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "200 (adam_clip1.0 1/1)"  # all seeds of that setup solved T=200
    assert cells[3] == "200 (adam_clip1.0 1/1)"
    assert cells[4] == "100: rmsprop_clipNone; 200: adam_clip1.0, rmsprop_clipNone"
    # a second setup that solves T=200 in one of two seeds joins the "any seed" cell only
    for seed, solved_at in ((0, 200), (1, None)):
        _write_run(
            root / "adam_clipNone" / "copy_T200_chrono" / f"seed{seed}",
            {100: 0.4, 200: 0.01 if solved_at else 0.5},
            solved_at=solved_at,
            test={"test/loss": 0.01, "test/baseline_loss": 0.5, "test/acc": 1.0},
        )
    table = figures.horizon_table(figures.load(root))
    (row,) = [line for line in table.splitlines() if line.startswith("| copy | chrono")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "200 (adam_clip1.0 1/1)"
    assert cells[3] == "200 (adam_clip1.0 1/1; adam_clipNone 1/2)"


def test_main_writes_every_figure_and_the_tables_file(figures, root, tmp_path, capsys):
    out, tables = tmp_path / "figs", tmp_path / "tables.md"
    assert figures.main([str(root), "--out", str(out), "--tables", str(tables)]) == 0
    for name in (
        "copy_T100_relative_loss.png",
        "copy_T100_memory.png",
        "copy_T200_relative_loss.png",
    ):
        assert (out / "rmsprop_clipNone" / name).read_bytes()[:4] == b"\x89PNG"
    assert (out / "memory_horizon.png").exists()
    text = tables.read_text()
    assert f"Written by `python experiments/long_dependency_figures.py {root}`" in text
    assert "## Setup `adam_clip1.0`" in text and "## Setup `rmsprop_clipNone`" in text
    # The same records give the same files, byte for byte: nothing is left to edit by hand.
    first = tables.read_bytes()
    figures.main([str(root), "--out", str(out), "--tables", str(tables)])
    assert tables.read_bytes() == first


def test_time_constants_are_drawn_for_the_gru_update_gate_too(figures, root, tmp_path):
    tau = {"p05": 1.0, "p50": 2.0, "p95": 9.0}
    setup = root / "rmsprop_clipNone"
    _write_run(
        setup / "copy_T100_gru" / "seed0",
        {100: 0.6},
        extra=[{"step": s, "gates/layer_0/update_tau": tau} for s in (0, 100)],
    )
    _write_run(setup / "copy_T100_rnn" / "seed0", {100: 0.6})
    runs = {r.variant: r for r in figures.load(root) if r.length == 100 and r.seed == 0}
    assert figures.plot_tau("s", "copy_T100", [runs["gru"]], tmp_path).exists()
    assert figures.plot_tau("s", "copy_T100", [runs["rnn"]], tmp_path) is None


def test_a_band_holds_an_ended_runs_last_value_but_not_a_snapshots(figures):
    """A finished run (solved, or out of budget) keeps its last value in the median and the
    min-max band; an unfinished one (a snapshot) stops at its last step: carrying it forward
    would draw values that were never measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [(0, 1.0), (10, 2.0)]
    stopped_early = [(0, 3.0), (4, 0.5)]  # solved at step 4: its value holds
    snapshot = [(0, 5.0), (5, 6.0)]  # still going at step 5: nothing known after
    fig, ax = plt.subplots()
    figures._band(ax, [(finished, True), (stopped_early, True), (snapshot, False)], "C0", "x")
    (line,) = ax.get_lines()
    median = dict(zip(line.get_xdata(), line.get_ydata(), strict=True))
    assert median[0] == 3.0  # 1, 3, 5
    assert median[5] == 1.0  # 1 (held), 0.5 (held), 6
    assert median[10] == 1.25  # 2, 0.5 (held); the snapshot's 6 is not carried to step 10
    plt.close(fig)
