"""experiments/recall_by_gap.py: the probe reads the symbols and the recall where the
generator puts them, and reports each gap of a trained variable-copy run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

from lstm_jax.data.synthetic import variable_copy

SCRIPT = Path(__file__).parents[1] / "experiments" / "recall_by_gap.py"


@pytest.fixture(scope="module")
def recall_by_gap():
    spec = importlib.util.spec_from_file_location("recall_by_gap", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_symbol_and_recall_steps_are_where_the_generator_puts_them(recall_by_gap):
    T, k = 20, 10
    for gap in (1, 7, T):
        x, y = variable_copy(np.random.default_rng(gap), 8, T, gap=gap)
        symbols, delimiter, recall = recall_by_gap.symbol_and_recall_steps(k, gap)
        assert (x[:, delimiter] == 9).all()
        assert list(symbols) == [
            t for t in range(x.shape[1]) if (1 <= x[:, t]).all() and (x[:, t] <= 8).all()
        ]
        assert list(recall) == [t for t in range(y.shape[1]) if (y[:, t] != 0).all()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("variable_copy_run")
    run_cli(
        "task=variable_copy",
        "task.seq_len=12",
        "task.val_size=32",
        "task.test_size=32",
        "model.hidden_size=16",
        "trainer.batch_size=16",
        "trainer.max_steps=20",
        "trainer.eval_every=10",
        "trainer.checkpoint_every=10",
        "logger.diagnostics_every=null",
        "trainer.progress_bar=false",
        f"hydra.run.dir={run_dir}",
        cwd=run_dir,
    )
    return run_dir


@pytest.mark.slow  # 17 s; trains a run: .ci/run's slow step
def test_a_row_per_gap_of_a_trained_run(recall_by_gap, tiny_run, capsys):
    assert recall_by_gap.main([str(tiny_run), "--gaps", "1,6,12", "--sequences", "64"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()]
    rows = [[cell.strip() for cell in row] for row in rows if row and row[0].strip().isdigit()]
    assert [row[0] for row in rows] == ["1", "6", "12"]
    for _, acc, ce, ratio in rows:
        assert 0.0 <= float(acc) <= 1.0 and float(ce) > 0 and np.isfinite(float(ratio))


def test_a_gap_outside_the_run_or_a_dir_without_checkpoints_is_refused(
    recall_by_gap, tiny_run, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        recall_by_gap.main([str(tiny_run), "--gaps", "0,13"])
    assert exit_info.value.code == 2
    assert "--gaps [0, 13] outside [1, T=12]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recall_by_gap.main([str(tmp_path)])
    assert "has no checkpoints: pass a run dir that kept them" in capsys.readouterr().err
