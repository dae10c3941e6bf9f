"""A CSV time series whose cells encode their row, for the series and forecasting tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_csv(path: Path, n_rows: int, *, scale_after: int | None = None) -> Path:
    """Hourly CSV whose cells encode their row: column k of row r holds r + k / 10 (times
    100 after row `scale_after`, to change val/test values without touching train)."""
    dates = np.datetime64("2016-07-01T00:00:00") + np.arange(n_rows) * np.timedelta64(1, "h")
    rows = np.arange(n_rows, dtype=np.float64)
    lines = ["date,a,b,OT"]
    for r, d in zip(rows, dates, strict=False):
        f = 100.0 if scale_after is not None and r >= scale_after else 1.0
        vals = [f * (r + k / 10) for k in range(3)]
        lines.append(str(d).replace("T", " ") + "," + ",".join(f"{v:.1f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")
    return path
