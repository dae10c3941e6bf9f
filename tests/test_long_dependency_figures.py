"""experiments/long_dependency_figures.py: the per-seed table and the memory horizon read
the runs the way experiments/README.md reports them (finished vs still running, solved)."""

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


def _write_run(run_dir: Path, val_losses: dict[int, float], solved_at=None, test=None):
    """A run with baseline 0.5: val/loss at the given steps; summary.json iff `test`."""
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
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if test is not None:
        (run_dir / "summary.json").write_text(json.dumps({"test": test}))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    # seed 0 solved at step 300 and stopped there; seed 1 spent its budget on the plateau;
    # seed 2 is still running at step 200.
    _write_run(
        root / "copy_T100_chrono" / "seed0",
        {100: 0.6, 200: 0.45, 300: 0.05},
        solved_at=300,
        test={"test/loss": 0.04, "test/baseline_loss": 0.5, "test/acc": 0.995},
    )
    _write_run(
        root / "copy_T100_chrono" / "seed1",
        {100: 0.6, 200: 0.5001, 300: 0.5001, 400: 0.5002},
        test={"test/loss": 0.5, "test/baseline_loss": 0.5, "test/acc": 0.125},
    )
    _write_run(root / "copy_T100_chrono" / "seed2", {100: 0.7, 200: 0.49})
    _write_run(
        root / "copy_T200_chrono" / "seed0",
        {100: 0.6, 400: 0.5},
        test={"test/loss": 0.5, "test/baseline_loss": 0.5, "test/acc": 0.125},
    )
    return root


def test_table_carries_a_finished_run_forward_and_blanks_a_running_one(figures, root):
    jobs, done, dirs = figures.load([root])
    table = figures.trajectory_table(dirs, jobs, done, ["copy_T100_chrono"], [200, 400])
    lines = table.splitlines()
    assert lines[0] == (
        "| job | seed | 200 | 400 | test / baseline | test acc | first < 0.99 | solved at"
        " | status |"
    )
    rows = {line.split(" | ")[1]: line for line in lines[2:]}
    assert set(rows) == {"0", "1", "2"}
    # solved at 300 and stopped: its last value (0.05 / 0.5) stands at step 400
    assert rows["0"] == (
        "| copy_T100_chrono | 0 | 0.9000 | 0.1000 | 0.0800 | 0.995 | 200 | 300 | done |"
    )
    assert rows["1"] == ("| copy_T100_chrono | 1 | 1.0002 | 1.0004 | 1.0000 | 0.125 |  |  | done |")
    # still running at step 200: no value at 400, no test result
    assert rows["2"] == ("| copy_T100_chrono | 2 | 0.9800 |  |  |  | 200 |  | running (step 200) |")


def test_horizon_counts_solved_and_finished_seeds_not_running_ones(figures, root):
    jobs, done, _ = figures.load([root])
    results = figures.outcomes(jobs, done)
    table = figures.horizon(results)
    # T=100: seed 0 solved, seed 1 finished unsolved, seed 2 running (not a result yet)
    assert table["copy"]["chrono"] == {100: (1, 2), 200: (0, 1)}
    # the final val loss over the baseline of the same runs: 0.05 / 0.5 and 0.5002 / 0.5
    finals = figures.final_relative(results)
    assert finals["copy"]["chrono"] == {
        100: pytest.approx([0.1, 1.0004]),
        200: pytest.approx([1.0]),
    }


def test_transcribed_outcomes_count_only_for_runs_without_a_dir(figures, root):
    # copy_T100_chrono seed 1 has a run dir (unsolved, 1.0004): its transcribed line is
    # ignored; seed 3 and copy_T500_chrono exist only as transcribed lines.
    (root / figures.TRANSCRIBED).write_text(
        "job,seed,commit,solved_at,final_val_over_baseline\n"
        "copy_T100_chrono,1,abc1234,250,0.2\n"
        "copy_T100_chrono,3,abc1234,7250,0.03\n"
        "copy_T500_chrono,0,abc1234,,1.0003\n"
    )
    jobs, done, _ = figures.load([root])
    results = figures.all_outcomes([root], jobs, done)
    assert figures.horizon(results)["copy"]["chrono"] == {100: (2, 3), 200: (0, 1), 500: (0, 1)}
    finals = figures.final_relative(results)["copy"]["chrono"]
    assert finals[100] == pytest.approx([0.1, 1.0004, 0.03])
    assert finals[500] == [1.0003]


def test_a_run_in_several_roots_is_read_where_it_finished(figures, root, tmp_path):
    # the live dir holds seed 2 still running; the records hold it finished and solved
    records = tmp_path / "records"
    _write_run(
        records / "copy_T100_chrono" / "seed2",
        {100: 0.7, 200: 0.49, 300: 0.01},
        solved_at=300,
        test={"test/loss": 0.01, "test/baseline_loss": 0.5, "test/acc": 1.0},
    )
    for roots in ([root, records], [records, root]):
        jobs, done, dirs = figures.load(roots)
        assert ("copy_T100_chrono", 2) in done
        assert dirs["copy_T100_chrono", 2] == records / "copy_T100_chrono" / "seed2"
        assert len(jobs["copy_T100_chrono"][2]) == 4  # 3 evaluations and a training row


def test_main_prints_the_table_of_each_task(figures, root, tmp_path, capsys):
    assert figures.main([str(root), "--out", str(tmp_path / "figs"), "--table-steps", "400"]) == 0
    out = capsys.readouterr().out
    assert "copy_T100: validation loss over the baseline" in out
    assert "| copy_T200_chrono | 0 | 1.0000 | 1.0000 | 0.125 |  |  | done |" in out
    assert (tmp_path / "figs" / "memory_horizon.png").exists()


def test_time_constants_are_drawn_for_the_gru_update_gate_too(figures, tmp_path):
    tau = {"p05": 1.0, "p50": 2.0, "p95": 9.0}
    gru = [{"step": s, "gates/layer_0/update_tau": tau} for s in (0, 1000)]
    rnn = [{"step": s, "train/loss": 1.0} for s in (0, 1000)]
    jobs = {"copy_T100_gru": {0: gru}, "copy_T100_rnn": {0: rnn}}
    assert figures.plot_tau(jobs, "copy_T100", ["copy_T100_gru"], tmp_path).exists()
    assert figures.plot_tau(jobs, "copy_T100", ["copy_T100_rnn"], tmp_path) is None
