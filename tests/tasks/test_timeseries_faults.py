"""A forecasting CSV's faults are named with their fix: a text column nobody uses is not
parsed (no error), and a split too short for one window names the split and the keys."""

from __future__ import annotations

import pytest
from series_csv import write_csv

from lstm_jax.tasks.timeseries import TimeSeriesForecast


def forecast(path, **kw) -> TimeSeriesForecast:
    args = {"batch_size": 8, "seed": 0, "path": str(path), "split": "ratio", "input_len": 12}
    return TimeSeriesForecast(**{"horizon": 4, **args, **kw})


def with_text_column(tmp_path):
    """The row-encoding CSV with a station name in every row, beside the numbers."""
    path = write_csv(tmp_path / "series.csv", 200)
    lines = path.read_text().splitlines()
    lines = [lines[0] + ",station"] + [line + ",Heathrow" for line in lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_text_column_nobody_uses_is_not_parsed(tmp_path):
    path = with_text_column(tmp_path)
    assert forecast(path, features="S", target="OT").columns == ["OT"]
    assert forecast(path, features="MS", target="OT", columns=["a"]).columns == ["a", "OT"]
    # M over every column does use it: the error says how to leave it out
    with pytest.raises(ValueError, match=r"'Heathrow' is not a number\. To leave the column out"):
        forecast(path, features="M", target="OT")


def test_a_split_without_a_window_names_the_split_and_the_keys(tmp_path):
    path = write_csv(tmp_path / "series.csv", 200)
    with pytest.raises(ValueError) as error:
        forecast(path, features="S", target="OT", horizon=21)
    assert str(error.value) == (
        "the val split, rows [128, 160), holds no window of input_len=12 + horizon=21 rows. "
        "Lower task.input_len or task.horizon, or give the split more rows "
        "(task.split_ratios, or a longer CSV)."
    )
