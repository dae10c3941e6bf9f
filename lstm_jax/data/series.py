"""CSV time series for forecasting (numpy only, no pandas): reading, column selection,
split borders, scaling, calendar features and sliding windows.

- `read_csv(path)`: a CSV with a date column and numeric columns -> dates + a float matrix.
- `select_columns(...)`: the inputs and outputs of a forecasting mode:
  "S" (the target alone -> the target), "M" (all columns -> all columns) and "MS" (all
  columns -> the target).
- `split_borders(...)`: row ranges of train / val / test. "etth" is the standard protocol of
  ETTh1/ETTh2 (12/4/4 months: train rows [0, 8640), val [8640-L, 11520), test
  [11520-L, 14400)); "ratio" is the usual split of a user's own CSV (70/10/20 % of the rows,
  validation and test windows start L rows early so that their first target is the first
  row of the split). The L rows a val/test window reads before its split are inputs only.
- `StandardScaler`: fit on the training rows only.
- `WindowedSplit`: all windows (stride 1) of one split: input rows [i, i+L), target rows
  [i+L, i+L+H). Its window count is rows - L - H + 1.
- `time_features(dates, freq)`: calendar features in [-0.5, 0.5] (Informer's "timeF").
- `DATASETS`: the built-in files (path under the data root, public home, checksum, split).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Batch = dict[str, np.ndarray]

ETTH1_PATH = "ett/ETTh1.csv"
ETTH1_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv"
ETTH1_SHA256 = "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"

# Built-in datasets: relative path under the data root, public home, checksum, split.
DATASETS = {
    "etth1": {
        "path": ETTH1_PATH,
        "url": ETTH1_URL,
        "sha256": ETTH1_SHA256,
        "split": "etth",
        "freq": "h",
    },
}

MODES = ("S", "M", "MS")

# The ETT benchmark files (ETTh1, ETTh2: hourly, 17,420 rows) share one layout; a file given
# by path in that layout gets their standard split, not a ratio split whose test MSE is not
# comparable with the literature's.
ETT_COLUMNS = ("date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ETT_HOURLY_ROWS = 17_420


def benchmark_split(path: Path, table: SeriesTable) -> tuple[str, str] | None:
    """(split, why) for a CSV recognised as a benchmark file: by its SHA-256 (a built-in
    dataset's) or by the ETT hourly layout (ETT's columns and row count); None otherwise."""
    import hashlib

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    for name, spec in DATASETS.items():
        if digest == spec["sha256"]:
            return spec["split"], f"its SHA-256 is {name}'s"
    layout = table.dates is not None and tuple(table.columns) == ETT_COLUMNS[1:]
    if layout and len(table.values) == ETT_HOURLY_ROWS:
        return "etth", "it has ETTh1/ETTh2's columns and 17,420 rows"
    return None


# --------------------------------------------------------------------------------------
# Reading and preparing a CSV
# --------------------------------------------------------------------------------------


@dataclass
class SeriesTable:
    """A CSV read into memory: `dates` (N,) datetime64[s] or None, `columns` the names of
    the numeric columns, `values` (N, C) float64."""

    dates: np.ndarray | None
    columns: list[str]
    values: np.ndarray


MISSING_POLICIES = ("error", "ffill")


def read_csv(
    path: str | os.PathLike,
    *,
    date_column: str | None = "date",
    missing: str = "error",
    usecols: list[str] | None = None,
) -> SeriesTable:
    """Reads a CSV with a header row: `date_column` (parsed as datetime64, e.g.
    "2016-07-01 00:00:00"; None: no date column) and numeric columns (`usecols`, or every
    other column; the rest are not parsed, so a text column nobody uses is no error). An
    empty, NaN or infinite cell is an error that names the row and column, unless
    `missing="ffill"` (the previous row's value is carried forward)."""
    path = Path(path)
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing={missing!r}: choose one of {MISSING_POLICIES}.")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise ValueError(f"{path} is empty; expected a header row.") from None
            rows = [r for r in reader if r and any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path} cannot be read as a UTF-8 CSV ({error}).") from None
    if not rows:
        raise ValueError(f"{path} has a header but no data rows.")
    if date_column is not None and date_column not in header:
        raise ValueError(
            f"{path}: no date column {date_column!r} in the header {header}; set the task's "
            "date_column (or null when the file has none)."
        )
    date_idx = header.index(date_column) if date_column is not None else None
    if usecols is not None:
        unknown = [c for c in usecols if c not in header]
        if unknown:
            raise ValueError(f"columns {unknown} are not in {path}; its columns are {header}.")
    num_idx = [
        j for j in range(len(header)) if j != date_idx and (usecols is None or header[j] in usecols)
    ]
    columns = [header[j] for j in num_idx]
    values = np.empty((len(rows), len(num_idx)), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(
                f"{path}: data row {i + 1} has {len(row)} fields, header {len(header)}."
            )
        for k, j in enumerate(num_idx):
            cell = row[j].strip()
            try:
                values[i, k] = float(cell) if cell or missing == "error" else np.nan
            except ValueError:
                raise ValueError(
                    f"{path}: data row {i + 1}, column {header[j]!r}: {row[j]!r} is not a number."
                    + (
                        " To leave the column out, list the columns to use with "
                        "task.columns=[...] (or task.features=S for the target alone)."
                        if usecols is None
                        else ""
                    )
                ) from None
            if not np.isfinite(values[i, k]):
                if missing == "error" or i == 0 or np.isinf(values[i, k]):
                    raise ValueError(
                        f"{path}: data row {i + 1}, column {header[j]!r}: {row[j]!r} is not a "
                        "finite value. Fix the file, or set task.missing=ffill to carry the "
                        "previous row's value forward (empty and NaN cells, not the first row)."
                    )
                values[i, k] = values[i - 1, k]
    dates = None
    if date_idx is not None:
        dates = np.array([r[date_idx].strip() for r in rows], dtype="datetime64[s]")
    return SeriesTable(dates=dates, columns=columns, values=values)


def select_columns(
    table: SeriesTable, mode: str, target: str, columns: list[str] | None = None
) -> tuple[np.ndarray, list[str], list[int]]:
    """The data matrix of a forecasting mode and which of its columns are outputs.

    Returns (data (N, C_in), names of the C_in columns, indices of the output columns).
    "S": data = the target column; "M": all (or `columns`) -> all; "MS": all -> target.
    """
    if mode not in MODES:
        raise ValueError(f"features={mode!r}: choose one of {MODES}.")
    if target not in table.columns:
        raise ValueError(f"target {target!r} is not a column; columns are {table.columns}.")
    if mode == "S":
        names = [target]
    else:
        names = list(columns) if columns else list(table.columns)
        missing = [c for c in names if c not in table.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in the CSV; columns are {table.columns}.")
        if target not in names:
            names.append(target)
    data = table.values[:, [table.columns.index(c) for c in names]]
    outputs = [names.index(target)] if mode in ("S", "MS") else list(range(len(names)))
    return data, names, outputs


def split_borders(
    n_rows: int,
    input_len: int,
    split: str = "etth",
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of the train, val and test splits.

    "etth": ETTh1/ETTh2's standard 12/4/4-month protocol with 30-day months of 24 rows a
    day: train [0, 8640), val [8640 - L, 11520), test [11520 - L, 14400).
    "ratio": train the first ratios[0] of the rows; test the last ratios[2]; val between
    them; val and test start L rows before their first target row (Autoformer's custom-CSV
    split). The first L rows of val/test are inputs only, never targets."""
    if split == "etth":
        month = 30 * 24
        train_end, val_end, test_end = 12 * month, 16 * month, 20 * month
        if n_rows < test_end:
            raise ValueError(f"split 'etth' needs {test_end} rows; the CSV has {n_rows}.")
        borders = {
            "train": (0, train_end),
            "val": (train_end - input_len, val_end),
            "test": (val_end - input_len, test_end),
        }
    elif split == "ratio":
        if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6:
            raise ValueError(f"split ratios {ratios} must be three fractions summing to 1.")
        n_train = int(n_rows * ratios[0])
        n_test = int(n_rows * ratios[2])
        n_val = n_rows - n_train - n_test
        borders = {
            "train": (0, n_train),
            "val": (n_train - input_len, n_train + n_val),
            "test": (n_rows - n_test - input_len, n_rows),
        }
    else:
        raise ValueError(f"split={split!r}: choose 'etth' or 'ratio'.")
    if min(s for s, _ in borders.values()) < 0:
        raise ValueError(f"input_len={input_len} is longer than the training rows {borders}.")
    return borders


class StandardScaler:
    """Per-column standardisation, fit on the training rows only."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @classmethod
    def fit(cls, data: np.ndarray) -> StandardScaler:
        std = data.std(axis=0)
        return cls(data.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, data: np.ndarray) -> np.ndarray:
        return (data - self.mean) / self.std

    def inverse_transform(self, data: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
        if columns is None:
            return data * self.std + self.mean
        return data * self.std[columns] + self.mean[columns]


# Calendar features of Informer/Autoformer's timeF encoding, each scaled to [-0.5, 0.5].
_FREQ_FEATURES = {
    "h": ("hour", "weekday", "day", "yearday"),
    "t": ("minute", "hour", "weekday", "day", "yearday"),
    "d": ("weekday", "day", "yearday"),
}


def time_features(dates: np.ndarray, freq: str = "h") -> np.ndarray:
    """(N, F) float32 calendar features in [-0.5, 0.5] for datetime64 `dates`:
    freq "h": hour of day, day of week, day of month, day of year; "t" adds minute of hour;
    "d" drops the hour."""
    if freq not in _FREQ_FEATURES:
        raise ValueError(f"time feature freq={freq!r}: choose one of {sorted(_FREQ_FEATURES)}.")
    d = dates.astype("datetime64[s]")
    days = d.astype("datetime64[D]")
    seconds = (d - days).astype(np.int64)
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    cols = {
        "minute": (seconds // 60 % 60) / 59.0 - 0.5,
        "hour": (seconds // 3600) / 23.0 - 0.5,
        # 1970-01-01 was a Thursday (weekday 3 with Monday = 0)
        "weekday": ((days.astype(np.int64) + 3) % 7) / 6.0 - 0.5,
        "day": ((days - months).astype(np.int64)) / 30.0 - 0.5,
        "yearday": ((days - years).astype(np.int64)) / 365.0 - 0.5,
    }
    return np.stack([cols[name] for name in _FREQ_FEATURES[freq]], axis=1).astype(np.float32)


class WindowedSplit:
    """Every window (stride 1) of rows [start, end): input rows [i, i+L) and target rows
    [i+L, i+L+H) of the output columns, i = start .. end - L - H."""

    def __init__(
        self,
        data: np.ndarray,
        start: int,
        end: int,
        input_len: int,
        horizon: int,
        outputs: list[int],
        marks: np.ndarray | None = None,
        name: str = "data",
    ):
        self.data = np.asarray(data[start:end], dtype=np.float32)
        self.marks = None if marks is None else np.asarray(marks[start:end], dtype=np.float32)
        self.start, self.end = start, end
        self.input_len, self.horizon = input_len, horizon
        self.outputs = list(outputs)
        self.num_windows = (end - start) - input_len - horizon + 1
        if self.num_windows <= 0:
            raise ValueError(
                f"the {name} split, rows [{start}, {end}), holds no window of input_len="
                f"{input_len} + horizon={horizon} rows. Lower task.input_len or task.horizon, "
                "or give the split more rows (task.split_ratios, or a longer CSV)."
            )

    def __len__(self) -> int:
        return self.num_windows

    def target_rows(self, i: int) -> tuple[int, int]:
        """Absolute rows [first, last) of window i's targets."""
        first = self.start + i + self.input_len
        return first, first + self.horizon

    def batch(self, idx: np.ndarray) -> Batch:
        """The windows `idx` as a batch: x (B, L, C_in), y (B, H, C_out), and x_mark
        (B, L, F), y_mark (B, H, F) when time features are on."""
        idx = np.asarray(idx, dtype=np.int64)
        L, H = self.input_len, self.horizon
        x_rows = idx[:, None] + np.arange(L)[None, :]
        y_rows = idx[:, None] + L + np.arange(H)[None, :]
        batch = {"x": self.data[x_rows], "y": self.data[y_rows][..., self.outputs]}
        if self.marks is not None:
            batch["x_mark"] = self.marks[x_rows]
            batch["y_mark"] = self.marks[y_rows]
        return batch
