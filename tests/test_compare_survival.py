"""Survival statistics of lstm-jax-compare (issue 27): Kaplan-Meier medians of the time to
escape the baseline and to solve, censored at each run's last step, with 95 % intervals, and
Wilson intervals of the solved fraction; every expected number worked out by hand below."""

from __future__ import annotations

import csv
import io
import math

import pytest
from test_compare_over import runs_root  # noqa: F401  (the fabricated seed runs, a fixture)

from lstm_jax.compare import main
from lstm_jax.compare.runs import Run
from lstm_jax.compare.survival import (
    Condition,
    kaplan_meier,
    median_with_interval,
    wilson_interval,
)


def test_kaplan_meier_with_a_censored_run_against_a_hand_computation():
    # Events at 100, 200 and 400; one run censored at 300 (at risk until then, no event).
    curve = kaplan_meier([100, 200, 300, 400], [True, True, False, True])
    assert [p.step for p in curve] == [100, 200, 400]
    assert [p.at_risk for p in curve] == [4, 3, 1]
    # S = 3/4, then 3/4 * 2/3 = 1/2, then 1/2 * (1 - 1/1) = 0.
    assert [p.survival for p in curve] == pytest.approx([0.75, 0.5, 0.0])
    # Greenwood at 200: 1/(4*3) + 1/(3*2) = 0.25; on the log(-log S) scale the half-width is
    # 1.96 * sqrt(0.25) / |ln 0.5| = 1.41383, so the band is 0.5 ** exp(+-1.41383).
    assert curve[1].low == pytest.approx(0.5 ** math.exp(1.41383), rel=1e-4)  # 0.05783
    assert curve[1].high == pytest.approx(0.5 ** math.exp(-1.41383), rel=1e-4)  # 0.84493
    # At 100: 1/12 -> half-width 1.96 * 0.288675 / 0.287682 = 1.96673; low = 0.75 ** 7.1474.
    assert curve[0].low == pytest.approx(0.75 ** math.exp(1.96673), rel=1e-4)  # 0.1279
    # At 400 S = 0: Greenwood's term 1/(1*0) is infinite, the band is [0, 1] (R: NA).
    assert (curve[2].low, curve[2].high) == (0.0, 1.0)
    # Median: first S <= 0.5 (200); interval: first low <= 0.5 (100), and the high band never
    # falls to 0.5 (0.845 at 200, undefined at 400): not reached, as R's survfit gives NA.
    assert median_with_interval(curve) == (200, 100, None)


def test_censoring_is_not_an_event_and_an_unreached_median_is_none():
    curve = kaplan_meier([100, 200, 300, 400], [True, False, False, False])
    assert [p.survival for p in curve] == pytest.approx([0.75])
    median, low, high = median_with_interval(curve)
    assert median is None and high is None and low == 100
    # Dropping the censored runs instead (3 of 4 never solved) would give 1/1 solved: S = 0,
    # a median of 100 that one run cannot bound from above.
    assert median_with_interval(kaplan_meier([100], [True])) == (100, 100, None)


def test_wilson_interval_against_hand_computations():
    # 3/3: centre (1 + 1.9208/3) / (1 + 3.8415/3) = 0.71929, half 0.85943 * 0.32668 = 0.28076
    assert wilson_interval(3, 3) == pytest.approx((0.43853, 1.0), abs=1e-4)
    assert wilson_interval(0, 3) == pytest.approx((0.0, 0.56147), abs=1e-4)
    # 1/2: centre 0.5, half 1.96 / 2.92073 * sqrt(0.125 + 0.24009) = 0.40547
    assert wilson_interval(1, 2) == pytest.approx((0.09453, 0.90547), abs=1e-4)
    assert wilson_interval(0, 0) == (None, None)


def test_a_condition_against_a_fraction_of_another_metric_at_the_same_step():
    run = Run(path=None)  # type: ignore[arg-type]
    run.series = {
        "val/mse": [(100, 0.17), (200, 0.16), (300, 0.14), (400, 0.10)],
        "val/baseline_mse": [(100, 0.167), (200, 0.167), (300, 0.167), (400, 0.167)],
    }
    assert Condition.parse("val/mse<0.9*val/baseline_mse", "--escape").first_step(run) == 300
    assert Condition.parse("test/mse<0.12", "--solved").first_step(run) == 400  # val/ series
    assert Condition.parse("val/mse<=val/baseline_mse", "--escape").first_step(run) == 200
    with pytest.raises(ValueError, match="--escape 'val/mse<<1'"):
        Condition.parse("val/mse<<1", "--escape")


def _csv_rows(capsys):
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    return {row["model.chrono_max_steps"]: row for row in rows}


def test_compare_over_seed_reports_survival_medians_and_intervals(runs_root, capsys, tmp_path):  # noqa: F811
    """The fabricated runs (tests/test_compare_over.py): chrono solves at 200 and 500, its
    third run is censored at 600; the standard init solves one run, at 600. Escape: val/loss
    < 0.15 holds from step 100 for seed 0, from 600 for seed 1, never for seed 2."""
    argv = [
        str(runs_root),
        "--over",
        "seed",
        "--solved",
        "val/solved>0",
        "--escape",
        "val/loss<0.15",
        "--format",
        "csv",
        "--out-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    rows = _csv_rows(capsys)
    chrono, standard = rows["750"], rows[""]
    # Solve, chrono: S = 2/3 at 200, 1/3 at 500 -> median 500; low band 0.054 at 200; the high
    # band at 500 is (1/3) ** (1 / exp(1.96 * 0.81650 / 1.09861)) = 0.774 > 0.5: not reached.
    assert (chrono["solve events"], chrono["solve median"]) == ("2", "500")
    assert (chrono["solve median_ci_low"], chrono["solve median_ci_high"]) == ("200", "")
    # Standard: one solve at 600 among 3 at risk: S = 2/3, the median not reached.
    assert (standard["solve events"], standard["solve median"]) == ("1", "")
    assert standard["solve median_ci_low"] == "600"
    # Escape, chrono: seed 0 at 100; seed 1 censored at 500 (it stopped when solved), seed 2
    # at 600: S = 2/3, median not reached.
    assert (chrono["escape events"], chrono["escape median"]) == ("1", "")
    # Standard: 100, then 600 with 2 at risk (seed 2 is censored at 600, still at risk there):
    # S = 2/3 * 1/2 = 1/3 -> median 600, interval [100, not reached].
    assert (standard["escape events"], standard["escape median"]) == ("2", "600")
    assert (standard["escape median_ci_low"], standard["escape median_ci_high"]) == ("100", "")
    # Solved fraction 2/3 and 1/3 with Wilson's intervals.
    assert float(chrono["solved fraction_ci_low"]) == pytest.approx(0.20765, abs=1e-4)
    assert float(chrono["solved fraction_ci_high"]) == pytest.approx(0.93851, abs=1e-4)
    assert float(standard["solved fraction_ci_low"]) == pytest.approx(0.06149, abs=1e-4)
    for event in ("solve", "escape"):
        png = tmp_path / f"survival_{event}_over_seed.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_escape_without_over_is_refused_in_one_line(runs_root, capsys):  # noqa: F811
    assert main([str(runs_root), "--escape", "val/loss<0.15"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "lstm-jax-compare: error: --escape needs --over KEY: survival statistics are per group"
    ]
