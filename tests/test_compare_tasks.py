"""lstm-jax-compare keeps tasks apart: runs of two tasks that both report val/mse get a
column each, and the reader is told why."""

from __future__ import annotations

from pathlib import Path

from lstm_jax.compare.runs import Run
from lstm_jax.compare.table import build_table


def run_of(task: str, name: str, mse: float) -> Run:
    return Run(
        path=Path(name),
        name=name,
        config={"task._target_": f"lstm_jax.tasks.{task}", "model.cell": "lstm"},
        series={"val/mse": [(10, mse * 2), (20, mse)]},
        summary={
            "monitor": "val/mse",
            "monitor_mode": "min",
            "best": {"val/mse": mse, "step": 20},
            "test": {"test/mse": mse},
            "steps": 20,
        },
    )


def test_two_tasks_metrics_are_never_in_one_column():
    runs = [
        run_of("synthetic.AddingTask", "adding", 0.01),
        run_of("timeseries.ForecastTask", "etth1", 0.4),
    ]
    table = build_table(runs)
    assert "val/mse" not in table.columns and "best val/mse" not in table.columns
    adding, etth1 = table.rows
    assert adding["best val/mse [AddingTask]"] == 0.01
    assert etth1["best val/mse [ForecastTask]"] == 0.4
    assert "best val/mse [ForecastTask]" not in adding
    assert "test/mse [AddingTask]" in table.columns and "test/mse [ForecastTask]" in table.columns
    assert table.columns[-3:] == ["steps", "wall_time_s", "status"]
    assert table.notes == [
        "runs of 2 tasks (AddingTask, ForecastTask): each task's metrics have columns of "
        "their own, named 'METRIC [TASK]'"
    ]


def test_runs_of_one_task_keep_plain_column_names():
    table = build_table(
        [run_of("synthetic.AddingTask", "a", 0.01), run_of("synthetic.AddingTask", "b", 0.02)]
    )
    assert "best val/mse" in table.columns and "val/mse" in table.columns
    assert table.notes == []
