"""experiments/bench_lstm.py's rows per cell (issue 31): every registered cell is an
implementation, built as `model=<cell>` builds it, and the growth of step time with T is
fitted from the medians it printed."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from lstm_jax.config import CONFIG_DIR
from lstm_jax.nn.registry import CELLS


def _bench():
    path = CONFIG_DIR.parent / "experiments" / "bench_lstm.py"
    spec = importlib.util.spec_from_file_location("bench_lstm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_stand_for_every_registered_cell_and_a_typo_is_refused():
    bench = _bench()
    assert bench.expand_impls("pytorch,cells") == ["pytorch"] + [f"cell:{c}" for c in CELLS]
    assert bench.expand_impls("cell:gru") == ["cell:gru"]
    with pytest.raises(SystemExit, match="--impls 'cell:gruu' is unknown"):
        bench.expand_impls("cell:gruu")


@pytest.mark.slow  # a compile per cell: .ci/run's -m slow step
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_cell_step_runs_at_its_model_configs_defaults(cell):
    bench = _bench()
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    step = bench.maker(f"cell:{cell}")(2, 5, 3, 4, 1, x)
    step()  # compiles and runs forward and backward of the layer model=<cell> builds


def test_growth_slope_is_the_loglog_fit_of_the_medians():
    bench = _bench()
    results = {
        f"M{t}": {
            "shape": (50, t, 10, 128, 1, False, False),
            "results": {"linear": {"median_s": 1e-3 * t}, "sqrt": {"median_s": 1e-3 * t**0.5}},
        }
        for t in (100, 1000, 4000)
    }
    results["S5"] = {"shape": (32, 200, 80, 256, 2, True, True), "results": {"linear": {}}}
    (table,) = bench.growth_with_t(results).values()
    assert math.isclose(table["linear"]["loglog_slope"], 1.0)
    assert math.isclose(table["sqrt"]["loglog_slope"], 0.5)
    assert table["linear"]["median_ms"] == {100: 100.0, 1000: 1000.0, 4000: 4000.0}


def test_a_json_record_prints_its_growth_table_again(tmp_path, capsys):
    bench = _bench()
    shapes = {
        f"M{t}": {
            "shape": [50, t, 10, 128, 1, False, False],
            "results": {"cell:x": {"median_s": t}},
        }
        for t in (100, 1000)
    }
    machine = {"cpu": "Some CPU", "isa": "AVX2", "cores": 2, "jax": "0.0"}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine": machine, "shapes": shapes}))
    bench.main(["--report", str(path)])
    out = capsys.readouterr().out
    assert "Some CPU (AVX2, 2 cores)" in out
    assert "B=50, input 10, H=128, 1 layer(s)" in out
    assert out.rstrip().endswith("cell:x                 100000.0  1000000.0   1.00")
