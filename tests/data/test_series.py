"""CSV series: reading, column modes and calendar features (lstm_jax.data.series)."""

from __future__ import annotations

import numpy as np
import pytest
from series_csv import write_csv

from lstm_jax.data import series as ts


def test_read_csv_and_modes(tmp_path):
    path = write_csv(tmp_path / "x.csv", 50)
    table = ts.read_csv(path)
    assert table.columns == ["a", "b", "OT"]
    assert table.values.shape == (50, 3)
    assert table.dates[1] - table.dates[0] == np.timedelta64(3600, "s")
    np.testing.assert_allclose(table.values[7], [7.0, 7.1, 7.2])

    data, names, outs = ts.select_columns(table, "S", "OT")
    assert names == ["OT"] and outs == [0] and data.shape == (50, 1)
    data, names, outs = ts.select_columns(table, "M", "OT")
    assert names == ["a", "b", "OT"] and outs == [0, 1, 2]
    data, names, outs = ts.select_columns(table, "MS", "OT")
    assert outs == [2]
    np.testing.assert_allclose(data[:, outs[0]], table.values[:, 2])
    with pytest.raises(ValueError, match="target"):
        ts.select_columns(table, "M", "nope")
    with pytest.raises(ValueError, match="features"):
        ts.select_columns(table, "X", "OT")


def test_read_csv_errors_name_the_cell(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("date,a\n2016-01-01 00:00:00,1.0\n2016-01-01 01:00:00,oops\n")
    with pytest.raises(ValueError, match=r"row 2, column 'a'"):
        ts.read_csv(p)
    with pytest.raises(ValueError, match="date column"):
        ts.read_csv(p, date_column="time")


def test_time_features_known_dates():
    dates = np.array(["2016-07-01 00:00:00", "2016-07-03 23:00:00"], dtype="datetime64[s]")
    f = ts.time_features(dates, "h")  # hour, weekday, day of month, day of year
    # 2016-07-01 was a Friday (weekday 4), day 1 of the month, day 183 of a leap year
    np.testing.assert_allclose(f[0], [-0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5], atol=1e-6)
    np.testing.assert_allclose(f[1], [0.5, 6 / 6 - 0.5, 2 / 30 - 0.5, 184 / 365 - 0.5], atol=1e-6)
    assert f.dtype == np.float32 and np.all(np.abs(f) <= 0.5)
