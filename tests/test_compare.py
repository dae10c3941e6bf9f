"""lstm-jax-compare on run dirs fabricated in the run-dir format (docs/DESIGN.md contract 3).

The end-to-end check on a real `lstm-jax -m` sweep is in tests/test_sweeps.py."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lstm_jax.compare import (
    build_table,
    find_runs,
    format_table,
    main,
    parse_condition,
    parse_override,
    read_run,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CELLS = ("rnn", "gru", "lstm")
SEQ_LENS = (10, 50, 200, 1000)
HORIZON = {"rnn": 10, "gru": 50, "lstm": 200}  # the largest T each fabricated cell solves


def _write_run(
    run_dir: Path,
    cell: str,
    seq_len: int,
    *,
    finished: bool = True,
    extra_overrides: tuple[str, ...] = (),
    cell_override: str = "model.cell",
) -> None:
    """A run dir as the trainer writes it, for the copy task: val/loss falls to a floor
    that is low (solved) when T is within the cell's horizon."""
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = [
        "experiment=memory_horizon",
        f"{cell_override}={cell}",
        f"task.seq_len={seq_len}",
        "trainer.max_steps=40",
        *extra_overrides,
    ]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {
        "experiment_name": "memory_horizon",
        "seed": 0,
        "model": {"cell": cell, "hidden_size": 64},
        "task": {
            "_target_": "lstm_jax.tasks.synthetic.CopyTask",
            "seq_len": seq_len,
            "batch_size": "${trainer.batch_size}",
        },
        "trainer": {"max_steps": 40, "batch_size": 32},
        "paths": {"output_dir": str(run_dir)},
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    solved = seq_len <= HORIZON[cell]
    floor = 0.01 if solved else 0.5
    lines = []
    for step in range(10, 41, 10):
        lines.append(
            {
                "step": step,
                "train/loss": 2.0 / step + floor,
                "train/lr": 1e-3,
                "grad_norm/dh_t": [0.1, 0.2],
                "gates/layer_0/input": {"mean": 0.5},
            }
        )
        val_loss = 1.0 / step + floor
        lines.append(
            {
                "step": step,
                "val/loss": val_loss,
                "val/baseline_loss": 0.3,
                "val/acc": 1.0 if solved else 0.2,
                "val/solved": float(solved and step >= 20),
            }
        )
    if finished:
        lines.append({"step": 40, "test/loss": floor, "test/acc": 1.0 if solved else 0.2})
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    if not finished:
        text += '{"step": 50, "train/lo'  # killed mid-write
    (run_dir / "metrics.jsonl").write_text(text)
    if finished:
        summary = {
            "monitor": "val/loss",
            "monitor_mode": "min",
            # The best checkpoint's record, deliberately not the logged minimum (step 40):
            # a table that shows it read summary.json, not metrics.jsonl.
            "best": {"val/loss": 1.0 / 30 + floor, "step": 30},
            "test": {"test/loss": floor, "test/acc": 1.0 if solved else 0.2},
            "steps": 40,
            "wall_time_s": 12.5,
            "num_params": 1234,
            "device_kind": "cpu",
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """multirun/memory_horizon/<time>/ with 12 jobs (3 cells x 4 T), as Hydra lays it out."""
    root = tmp_path / "multirun" / "memory_horizon" / "2025-01-01_00-00-00"
    job = 0
    for cell in CELLS:
        for seq_len in SEQ_LENS:
            _write_run(root / str(job), cell, seq_len)
            job += 1
    (root / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    return root


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_parse_override():
    assert parse_override("model.cell=gru") == ("model.cell", "gru")
    assert parse_override("task.seq_len=200") == ("task.seq_len", 200)
    assert parse_override("optim.lr=3e-3") == ("optim.lr", 0.003)
    assert parse_override("+trainer.extra=true") == ("trainer.extra", True)
    assert parse_override("~logger") == ("logger", None)
    column, op, value = parse_condition("test/mse <= 0.01")
    assert column == "test/mse" and op(0.01, value) and not op(0.02, value)
    with pytest.raises(ValueError, match="COLUMN OP NUMBER"):
        parse_condition("solved")


def test_a_cell_chosen_as_a_config_group_is_the_model_cell_column(tmp_path: Path):
    # `lstm-jax -m model=rnn,gru,lstm` records the group choice `model=gru`; runs made
    # before cells were groups recorded `model.cell=gru`: both are the model.cell column.
    for job, cell in enumerate(CELLS):
        _write_run(tmp_path / str(job), cell, 50, cell_override="model")
        # what each cell's own config file adds: its _target_, and LSTM-only keys
        path = tmp_path / str(job) / ".hydra" / "config.yaml"
        config = yaml.safe_load(path.read_text())
        config["model"]["_target_"] = f"lstm_jax.nn.{cell.upper()}"
        if cell == "lstm":
            config["model"]["forget_bias"] = 1.0
        path.write_text(yaml.safe_dump(config))
    table = build_table(find_runs([tmp_path]))
    # the keys that follow from the cell are not columns of their own
    assert table.params == ["model.cell"]
    assert [r["model.cell"] for r in table.rows] == list(CELLS)


def test_sweep_dir_gives_one_row_per_job_in_job_order(sweep: Path):
    runs = find_runs([sweep])
    assert [r.name for r in runs] == [str(i) for i in range(12)]  # 10, 11 after 9
    table = build_table(runs)
    assert table.params == ["model.cell", "task.seq_len"]
    assert table.fixed == {"experiment": "memory_horizon", "trainer.max_steps": 40}
    assert [(r["model.cell"], r["task.seq_len"]) for r in table.rows] == [
        (c, t) for c in CELLS for t in SEQ_LENS
    ]
    # best from summary.json; final values are the last logged; baselines left out
    assert "val/baseline_loss" not in table.columns
    assert table.columns[:5] == ["run", "model.cell", "task.seq_len", "best val/loss", "best step"]
    by_key = {(r["model.cell"], r["task.seq_len"]): r for r in table.rows}
    row = by_key[("gru", 50)]
    assert row["best val/loss"] == pytest.approx(1.0 / 30 + 0.01) and row["best step"] == 30
    assert row["val/solved"] == 1.0 and row["test/acc"] == 1.0 and row["status"] == "done"
    assert by_key[("gru", 200)]["val/solved"] == 0.0
    assert row["steps"] == 40 and row["wall_time_s"] == 12.5
    # lists and dicts in metrics.jsonl (profiles, histograms) are not table columns
    assert not any(c.startswith(("grad_norm/", "gates/")) for c in table.columns)


def test_solved_condition_and_sort(sweep: Path):
    table = build_table(find_runs([sweep]), solved="test/loss<0.1", sort="task.seq_len")
    assert "solved" in table.columns
    assert [r["task.seq_len"] for r in table.rows] == sorted(r["task.seq_len"] for r in table.rows)
    solved = {(r["model.cell"], r["task.seq_len"]): r["solved"] for r in table.rows}
    assert solved == {(c, t): float(t <= HORIZON[c]) for c in CELLS for t in SEQ_LENS}
    with pytest.raises(ValueError, match="no column"):
        build_table(find_runs([sweep]), solved="val/nope<1")


def test_csv_and_markdown(sweep: Path):
    table = build_table(find_runs([sweep]))
    rows = list(csv.DictReader(io.StringIO(format_table(table, "csv"))))
    assert len(rows) == 12 and list(rows[0]) == table.columns
    assert rows[5]["model.cell"] == "gru" and rows[5]["task.seq_len"] == "50"
    assert float(rows[5]["best val/loss"]) == pytest.approx(1.0 / 30 + 0.01)
    md = format_table(table, "markdown").splitlines()
    assert len(md) == 2 + 12
    header = [cell.strip() for cell in md[0].strip("|").split("|")]
    assert header[:4] == ["run", "model.cell", "task.seq_len", "best val/loss"]
    assert set(md[1]) <= set("|-:")
    text = format_table(table, "text").splitlines()
    assert len(text) == 2 + 12 and text[0].split()[:3] == ["run", "model.cell", "task.seq_len"]


def test_incomplete_run_is_listed_with_a_warning(tmp_path: Path):
    _write_run(tmp_path / "a", "lstm", 10)
    _write_run(tmp_path / "b", "lstm", 50, finished=False)
    run = read_run(tmp_path / "b")
    assert not run.done and any("not JSON" in w for w in run.warnings)
    table = build_table(find_runs([tmp_path / "a", tmp_path / "b"]))
    assert table.params == ["task.seq_len"]
    status = {r["run"]: r["status"] for r in table.rows}
    assert status == {"a": "done", "b": "incomplete"}
    row_b = table.rows[1]
    # no summary: the best is computed from the logged values, final from the last line
    assert row_b["best val/loss"] == pytest.approx(1.0 / 40 + 0.01) and row_b["best step"] == 40
    assert row_b["test/acc"] is None


def test_main_writes_table_files_and_valid_pngs(sweep: Path, capsys):
    assert main([str(sweep), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "12 runs (12 done)" in out and "fixed: experiment=memory_horizon" in out
    assert out.count("| memory_horizon") == 0 and out.count("\n| ") == 13  # header + 12 rows
    out_dir = sweep / "compare"
    assert len(list(csv.DictReader((out_dir / "table.csv").open()))) == 12
    # learning curves of train/loss and the monitor; solved vs T, one line per cell
    width, height = _png_size(out_dir / "learning_curves.png")
    assert width > 400 and height > 200
    assert _png_size(out_dir / "val_solved_vs_task.seq_len_by_model.cell.png")[0] > 200


def test_main_custom_axes_and_out_dir(sweep: Path, tmp_path: Path, capsys):
    out_dir = tmp_path / "plots"
    code = main(
        [
            str(sweep),
            "--format",
            "csv",
            "--out-dir",
            str(out_dir),
            "--solved",
            "best val/loss<0.1",
            "--y",
            "best val/loss",
            "--x",
            "model.cell",
            "--curves",
            "val/acc",
            "--logy",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 12 and {r["solved"] for r in rows} == {"0.0", "1.0"}
    _png_size(out_dir / "best_val_loss_vs_model.cell_by_task.seq_len.png")
    _png_size(out_dir / "learning_curves.png")


def test_errors_are_one_line(tmp_path: Path, capsys):
    assert main([str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 1
    assert "no run dirs" in capsys.readouterr().err


def test_console_script_runs(sweep: Path):
    result = subprocess.run(
        [sys.executable, "-m", "lstm_jax.compare", str(sweep), "--no-plots"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + 1 + 2 + 12  # counts, fixed, header, rule, rows
    assert not (sweep / "compare").exists()


def test_incomplete_run_takes_the_monitor_of_the_finished_ones(tmp_path: Path):
    _write_run(tmp_path / "0", "lstm", 10)
    _write_run(tmp_path / "1", "gru", 200, finished=False)
    summary = json.loads((tmp_path / "0" / "summary.json").read_text())
    summary.update(monitor="val/acc", monitor_mode="max", best={"val/acc": 1.0, "step": 20})
    (tmp_path / "0" / "summary.json").write_text(json.dumps(summary))
    table = build_table(find_runs([tmp_path]))
    assert [c for c in table.columns if c.startswith("best")] == ["best val/acc", "best step"]
    assert table.rows[1]["best val/acc"] == 0.2 and table.rows[1]["best step"] == 10
