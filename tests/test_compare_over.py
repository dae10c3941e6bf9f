"""lstm-jax-compare --over KEY: seed statistics on run dirs fabricated in the run-dir format,
checked against numbers worked out by hand below (not through the code under test)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from lstm_jax.compare import main

# (init, seed) -> (test/acc at the end, the step of the first evaluation with val/solved = 1,
# or None: never solved). Evaluations every 100 steps up to 600; a solved run stops there
# (trainer.stop_when), an unsolved one runs to 600.
RUNS = {
    ("chrono", 0): (1.00, 200),
    ("chrono", 1): (0.99, 500),
    ("chrono", 2): (0.40, None),
    ("standard", 0): (0.20, None),
    ("standard", 1): (0.30, None),
    ("standard", 2): (1.00, 600),
}


def _write_run(run_dir: Path, init: str, seed: int) -> None:
    test_acc, solved_at = RUNS[(init, seed)]
    chrono = 750 if init == "chrono" else None
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = [f"seed={seed}"] + ([f"model.chrono_max_steps={chrono}"] if chrono else [])
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {
        "experiment_name": "copy_T500",
        "seed": seed,
        "model": {"cell": "lstm", "chrono_max_steps": chrono},
        "task": {"seq_len": 500},
        "trainer": {"max_steps": 600},
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    last = solved_at or 600
    lines = []
    for step in range(100, last + 1, 100):
        solved = float(solved_at is not None and step >= solved_at)
        # val/loss falls by 0.01 per evaluation from a seed-dependent start
        lines.append(
            {
                "step": step,
                "train/loss": 1.0,
                "val/loss": 0.1 * (seed + 1) - step / 1e4,
                "val/solved": solved,
            }
        )
    lines.append({"step": last, "test/acc": test_acc})
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    summary = {
        "monitor": "val/loss",
        "monitor_mode": "min",
        "best": {"val/loss": lines[-2]["val/loss"], "step": last},
        "test": {"test/acc": test_acc},
        "steps": last,
        "wall_time_s": 10.0 * last,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "long_dependency"
    for init, seed in RUNS:
        _write_run(root / f"copy_T500_{init}" / f"seed{seed}", init, seed)
    return root


def _rows(capsys) -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    return {row["model.chrono_max_steps"]: row for row in rows}


def test_over_seed_reports_n_mean_std_solved_fraction_and_steps_to_solve(runs_root, capsys):
    assert (
        main(
            [
                str(runs_root),
                "--over",
                "seed",
                "--solved",
                "val/solved>0",
                "--format",
                "csv",
                "--no-plots",
                "--metrics",
                "test/acc",
            ]
        )
        == 0
    )
    rows = _rows(capsys)
    assert set(rows) == {"750", ""}  # two groups: chrono and standard (null)
    chrono, standard = rows["750"], rows[""]
    assert chrono["n"] == standard["n"] == "3"
    assert chrono["seed"] == standard["seed"] == "0,1,2"
    # by hand: chrono test/acc 1.00, 0.99, 0.40 -> mean 0.796667, sample std 0.343560
    assert float(chrono["test/acc mean"]) == pytest.approx(0.7966667, abs=1e-6)
    assert float(chrono["test/acc std"]) == pytest.approx(0.3435598, abs=1e-6)
    # standard 0.20, 0.30, 1.00 -> mean 0.5, std 0.435890
    assert float(standard["test/acc mean"]) == pytest.approx(0.5)
    assert float(standard["test/acc std"]) == pytest.approx(0.4358899, abs=1e-6)
    # solved (final val/solved > 0): chrono 2 of 3, standard 1 of 3
    assert float(chrono["solved fraction"]) == pytest.approx(2 / 3)
    assert float(standard["solved fraction"]) == pytest.approx(1 / 3)
    # steps to solve among the solved runs: chrono {200, 500}, standard {600}
    assert chrono["solved runs"] == "2" and standard["solved runs"] == "1"
    assert float(chrono["steps to solve median"]) == 350.0
    assert (chrono["steps to solve min"], chrono["steps to solve max"]) == ("200", "500")
    assert float(standard["steps to solve median"]) == 600.0
    assert chrono["done"] == "3"


def test_steps_to_solve_of_a_test_condition_is_read_on_validation(runs_root, capsys):
    # test/acc >= 0.99 holds for chrono seeds 0 and 1; over training it is checked on
    # val/acc, which these runs do not log, so no run has steps to solve.
    assert (
        main(
            [
                str(runs_root),
                "--over",
                "seed",
                "--solved",
                "test/acc>=0.99",
                "--format",
                "csv",
                "--no-plots",
            ]
        )
        == 0
    )
    chrono = _rows(capsys)["750"]
    assert float(chrono["solved fraction"]) == pytest.approx(2 / 3)
    assert chrono["solved runs"] == "0" and chrono["steps to solve median"] == ""


def test_over_an_unknown_key_is_a_clear_error(runs_root, capsys):
    assert main([str(runs_root), "--over", "sead", "--no-plots"]) == 1
    assert "--over 'sead'" in capsys.readouterr().err


def test_over_draws_a_median_and_band_per_group(runs_root, tmp_path, capsys):
    out = tmp_path / "plots"
    assert (
        main(
            [
                str(runs_root),
                "--over",
                "seed",
                "--curves",
                "val/loss,val/solved",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    for name in ("val_loss_over_seed.png", "val_solved_over_seed.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert "val_solved_over_seed.png" in capsys.readouterr().out


def test_band_carries_a_stopped_run_forward():
    from lstm_jax.compare.over import carry_forward

    series = [(100, 0.0), (200, 1.0)]  # stopped when solved at step 200
    assert carry_forward(series, [50, 100, 200, 300, 600])[1:] == [0.0, 1.0, 1.0, 1.0]
