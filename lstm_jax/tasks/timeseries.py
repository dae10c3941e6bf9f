"""Time-series forecasting: a CSV loader with sliding windows, and the forecasting task.

Data (numpy only, no pandas):

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

The task `TimeSeriesForecast` pairs this with the forecasters of
`lstm_jax.models.forecasters`; metrics are MSE and MAE on the normalised scale over every
window of the split, as published forecasters report them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.data import resolve_data_file
from lstm_jax.models.forecasters import Forecaster, SegmentForecaster
from lstm_jax.tasks.base import Batch, Metrics, Task

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
    path: str | os.PathLike, *, date_column: str | None = "date", missing: str = "error"
) -> SeriesTable:
    """Reads a CSV with a header row: `date_column` (parsed as datetime64, e.g.
    "2016-07-01 00:00:00"; None: no date column) and numeric columns. An empty, NaN or
    infinite cell is an error that names the row and column, unless `missing="ffill"`
    (the previous row's value is carried forward)."""
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
    num_idx = [j for j in range(len(header)) if j != date_idx]
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


_calendar_features = time_features  # the task's `time_features` argument shadows the name


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
    ):
        self.data = np.asarray(data[start:end], dtype=np.float32)
        self.marks = None if marks is None else np.asarray(marks[start:end], dtype=np.float32)
        self.start, self.end = start, end
        self.input_len, self.horizon = input_len, horizon
        self.outputs = list(outputs)
        self.num_windows = (end - start) - input_len - horizon + 1
        if self.num_windows <= 0:
            raise ValueError(
                f"rows [{start}, {end}) hold no window of input_len={input_len} + "
                f"horizon={horizon}."
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


# --------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------


class TimeSeriesForecast(Task):
    """Multi-horizon forecasting of a CSV time series with a recurrent forecaster.

    Data: `dataset` names a built-in file under the data root ("etth1": ett/ETTh1.csv,
    downloaded with its checksum where the network allows), or `path` points at a user's
    own CSV (a date column `date_column` + numeric columns), which takes precedence.
    `features` is "S" (target -> target), "M" (all -> all) or "MS" (all -> target).
    Windows: `input_len` L rows in, `horizon` H rows out, stride 1. Splits: `split`
    ("etth" for ETTh1's 12/4/4 months, "ratio" with `split_ratios` for other files; default
    the dataset's own, "ratio" for a user's CSV). Data are standardised with a scaler fit on
    the training rows only; MSE/MAE are reported on that normalised scale over every window.
    `time_features` adds calendar features (x_mark, y_mark) to the batches and the model.

    Model (`forecaster`): a partial forecaster class of lstm_jax.models.forecasters with its
    options (the config node configs/task/forecaster/<variant>.yaml: `task/forecaster=direct`
    switches it); the task supplies the sizes only the data knows. Default: the segment
    forecaster. The recurrent core comes from the `model` config group (model=gru: SegRNN's
    GRU).
    `loss` is the training objective ("mse", or "mae" as SegRNN trains); val/test report both.
    """

    monitor = "val/mse"
    monitor_mode = "min"

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        dataset: str | None = "etth1",
        path: str | None = None,
        date_column: str | None = "date",
        missing: str = "error",
        target: str = "OT",
        features: str = "M",
        columns: list[str] | None = None,
        input_len: int = 336,
        horizon: int = 96,
        split: str | None = None,
        split_ratios: tuple[float, float, float] | list[float] = (0.7, 0.1, 0.2),
        scale: bool = True,
        time_features: bool = False,
        freq: str | None = None,
        forecaster: Callable[..., Forecaster] | None = None,
        loss: str = "mse",
        eval_batch_size: int = 256,
        plot_windows: int = 3,
    ):
        super().__init__(batch_size=batch_size, seed=seed, data_dir=data_dir)
        if loss not in ("mse", "mae"):
            raise ValueError(f"loss={loss!r}: choose 'mse' or 'mae'.")
        if path:
            file = Path(os.path.expanduser(str(path)))
            if not file.is_file():
                raise FileNotFoundError(
                    f"Time-series CSV {file} not found (set task.path=/path/to/file.csv)."
                )
            spec = {"split": "ratio", "freq": "h"}
            self.dataset_name = file.stem
        else:
            if dataset not in DATASETS:
                raise ValueError(
                    f"dataset={dataset!r} is not built in ({sorted(DATASETS)}); for your own "
                    "CSV set task.path=/path/to/file.csv."
                )
            spec = DATASETS[dataset]
            file = resolve_data_file(
                data_dir,
                spec["path"],
                url=spec["url"],
                sha256=spec["sha256"],
                setting="paths.data_dir",
            )
            self.dataset_name = dataset
        self.file = file
        self.features = features
        self.target = target
        self.input_len, self.horizon = int(input_len), int(horizon)
        self.loss_name = loss
        self.eval_batch_size = int(eval_batch_size)
        self.plot_windows = int(plot_windows)

        table = read_csv(file, date_column=date_column, missing=missing)
        data, self.columns, self.outputs = select_columns(table, features, target, columns)
        self.borders = split_borders(
            len(data), self.input_len, split or spec["split"], tuple(split_ratios)
        )
        train_start, train_end = self.borders["train"]
        self.scaler = StandardScaler.fit(data[train_start:train_end])
        if not scale:
            self.scaler = StandardScaler(np.zeros(data.shape[1]), np.ones(data.shape[1]))
        scaled = self.scaler.transform(data)
        marks = None
        if time_features:
            if table.dates is None:
                raise ValueError("time_features=true needs a date column (date_column).")
            marks = _calendar_features(table.dates, freq or spec["freq"])
        self.num_marks = 0 if marks is None else marks.shape[1]
        self.splits = {
            name: WindowedSplit(scaled, s, e, self.input_len, self.horizon, self.outputs, marks)
            for name, (s, e) in self.borders.items()
        }
        self.forecaster = forecaster or SegmentForecaster
        self._perm: tuple[int, np.ndarray] | None = None
        self._eval_fns: dict[Any, Any] = {}

    # -- model -------------------------------------------------------------------------

    def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> nnx.Module:
        return self.forecaster(
            model_config,
            in_channels=len(self.columns),
            outputs=self.outputs,
            input_len=self.input_len,
            horizon=self.horizon,
            num_marks=self.num_marks,
            rngs=rngs,
        )

    # -- data --------------------------------------------------------------------------

    def num_windows(self, split: str) -> int:
        return len(self.splits[split])

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.num_windows("train") // self.batch_size)

    def _epoch_permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = (epoch, rng.permutation(self.num_windows("train")))
        return self._perm[1]

    def train_batch(self, step: int) -> Batch:
        """Windows of the epoch permutation (seeded by (seed, epoch)) at this step's
        position; the last partial batch of an epoch is dropped."""
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        perm = self._epoch_permutation(epoch)
        idx = perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        if len(idx) < self.batch_size:  # fewer windows than one batch: repeat them
            idx = np.resize(perm, self.batch_size)
        batch = self.splits["train"].batch(idx)
        # the step, per example (batch-first, so the batch shards like any other array):
        # dropout masks are drawn from (seed, step) and replay exactly on resume
        batch["step"] = np.full((self.batch_size,), step, np.int32)
        return batch

    def eval_batches(self, split: str):
        """Fixed-size batches over every window of `split` in order; the last one is padded
        by repeating its final window, and `weight` (B,) marks the real windows."""
        windows = self.splits[split]
        n, size = len(windows), self.eval_batch_size
        for start in range(0, n, size):
            idx = np.arange(start, min(start + size, n))
            weight = np.ones(size, np.float32)
            weight[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.full(size - len(idx), idx[-1])])
            batch = windows.batch(idx)
            batch["weight"] = weight
            yield batch

    # -- loss and metrics ----------------------------------------------------------------

    @staticmethod
    def _predict(model, batch, **kwargs):
        return model(batch["x"], batch.get("x_mark"), batch.get("y_mark"), **kwargs)

    def loss(self, model, batch, carry=None, *, return_gates=False, hidden_perturbation=None):
        key = None
        if "step" in batch:
            key = jax.random.fold_in(jax.random.key(self.seed), jnp.asarray(batch["step"])[0])
        pred, gates = self._predict(
            model,
            batch,
            return_gates=return_gates,
            hidden_perturbation=hidden_perturbation,
            dropout_key=key,
        )
        err = pred - jnp.asarray(batch["y"], pred.dtype)
        mse = jnp.mean(jnp.square(err))
        mae = jnp.mean(jnp.abs(err))
        loss = mse if self.loss_name == "mse" else mae
        aux = {
            "metrics": {"mse": mse, "mae": mae},
            "carry": carry,
            "gates": gates if return_gates else None,
        }
        return loss, aux

    def _eval_step(self, model):
        """A jitted (state, batch) -> (pred, per-window SE sum, AE sum) of an eval-mode copy
        of `model` (the model passed in is left as it is), and that copy's state."""
        copy = nnx.merge(*nnx.split(model))
        copy.eval()
        graphdef, state = nnx.split(copy)
        fn = self._eval_fns.get(graphdef)
        if fn is None:

            @jax.jit
            def fn(state, batch):
                m = nnx.merge(graphdef, state)
                pred, _ = self._predict(m, batch)
                err = pred - batch["y"]
                return pred, jnp.sum(jnp.square(err), (1, 2)), jnp.sum(jnp.abs(err), (1, 2))

            self._eval_fns[graphdef] = fn
        return fn, state

    def evaluate(self, model: nnx.Module, split: str) -> Metrics:
        """MSE and MAE over every window of `split` (normalised scale), and `loss` (the
        training objective's value)."""
        fn, state = self._eval_step(model)
        se = ae = 0.0
        for batch in self.eval_batches(split):
            weight = batch.pop("weight")
            _, s, a = fn(state, batch)
            se += float(np.sum(np.asarray(s, np.float64) * weight))
            ae += float(np.sum(np.asarray(a, np.float64) * weight))
        count = self.num_windows(split) * self.horizon * len(self.outputs)
        metrics = {"mse": se / count, "mae": ae / count}
        metrics["loss"] = metrics[self.loss_name]
        return metrics

    def predict(self, model: nnx.Module, split: str, idx) -> tuple[Batch, np.ndarray]:
        """The batch of windows `idx` of `split` and the model's forecast (eval mode)."""
        fn, state = self._eval_step(model)
        batch = self.splits[split].batch(np.asarray(idx))
        pred, _, _ = fn(state, batch)
        return batch, np.asarray(pred)

    def media(self, model: nnx.Module, split: str) -> dict[str, Any]:
        """A forecast plot of the target column for a few windows spread over `split`:
        history (the input window), truth and prediction, on the data's original scale."""
        from matplotlib.figure import Figure

        n = self.num_windows(split)
        k = max(1, min(self.plot_windows, n))
        idx = np.linspace(0, n - 1, k).round().astype(int)
        batch, pred = self.predict(model, split, idx)
        col = self.columns.index(self.target)
        out = self.outputs.index(col)
        fig = Figure(figsize=(10, 2.6 * k), constrained_layout=True)
        axes = fig.subplots(k, 1, squeeze=False)[:, 0]
        L, H = self.input_len, self.horizon
        for ax, j, i in zip(axes, range(k), idx, strict=True):
            hist = self.scaler.inverse_transform(batch["x"][j, :, col], [col])
            truth = self.scaler.inverse_transform(batch["y"][j, :, out], [col])
            fc = self.scaler.inverse_transform(pred[j, :, out], [col])
            first, _ = self.splits[split].target_rows(int(i))
            t_hist = np.arange(first - L, first)
            t_fut = np.arange(first, first + H)
            ax.plot(t_hist, hist, color="0.4", lw=1, label="history")
            ax.plot(t_fut, truth, color="tab:blue", lw=1.2, label="truth")
            ax.plot(t_fut, fc, color="tab:red", lw=1.2, label="forecast")
            ax.axvline(first, color="0.7", lw=0.8, ls="--")
            mse = float(np.mean((pred[j] - batch["y"][j]) ** 2))
            ax.set_title(
                f"{self.dataset_name} {split} window {i} (rows {first}..{first + H - 1})"
                f"  {self.target}  window MSE (normalised, all outputs) {mse:.3f}",
                fontsize=9,
            )
            ax.set_ylabel(self.target)
        axes[0].legend(loc="upper left", fontsize=8)
        axes[-1].set_xlabel("row")
        return {f"forecast_{split}": fig}
