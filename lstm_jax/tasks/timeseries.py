"""Time-series forecasting: the task `TimeSeriesForecast` over the CSV series of
`lstm_jax.data.series` (reading, column modes, split borders, scaling, calendar features and
sliding windows live there).

The data (reading, columns of a forecasting mode, the train/val/test borders, scaling,
windows, calendar features) is `lstm_jax.data.series`; the models are the forecasters of
`lstm_jax.models.forecasters`. Metrics are MSE and MAE on the normalised scale over every
window of the split, as published forecasters report them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.data import resolve_data_file
from lstm_jax.data.batching import EpochSampler, padded_batches, sum_batches
from lstm_jax.data.series import (
    DATASETS,
    StandardScaler,
    WindowedSplit,
    benchmark_split,
    read_csv,
    select_columns,
    split_borders,
)
from lstm_jax.data.series import time_features as calendar_features
from lstm_jax.models.forecasters import Forecaster, SegmentForecaster
from lstm_jax.tasks.base import Batch, Metrics, Task

log = logging.getLogger("lstm_jax")

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
    metric_names = ("mse", "mae", "loss")

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

        # Only the columns the mode reads are parsed: a text column nobody uses is no error.
        used = [target] if features == "S" else ([*columns, target] if columns else None)
        table = read_csv(file, date_column=date_column, missing=missing, usecols=used)
        data, self.columns, self.outputs = select_columns(table, features, target, columns)
        self.recognised = None
        if split is None and path:
            # A benchmark file given by path gets its standard split: a ratio split's test
            # MSE would look like the literature's and not be comparable with it.
            self.recognised = benchmark_split(file, table)
            if self.recognised is not None:
                split = self.recognised[0]
                log.info(
                    "task.path=%s is a benchmark file (%s): its standard split %r "
                    "(task.split=ratio for the %s ratio split).",
                    file,
                    self.recognised[1],
                    split,
                    "/".join(f"{r:g}" for r in split_ratios),
                )
        self.split = split or spec["split"]
        self.borders = split_borders(len(data), self.input_len, self.split, tuple(split_ratios))
        log.info(
            "%s split %r: %s (rows [start, end); val and test start input_len=%d rows before "
            "their first target)",
            self.dataset_name,
            self.split,
            ", ".join(f"{k} [{a}, {b})" for k, (a, b) in self.borders.items()),
            self.input_len,
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
            marks = calendar_features(table.dates, freq or spec["freq"])
        self.num_marks = 0 if marks is None else marks.shape[1]
        self.splits = {
            name: WindowedSplit(
                scaled, s, e, self.input_len, self.horizon, self.outputs, marks, name=name
            )
            for name, (s, e) in self.borders.items()
        }
        self.forecaster = forecaster or SegmentForecaster
        # (seed, epoch) seeds each epoch's order; fewer windows than a batch repeat them
        self._sampler = EpochSampler(
            self.num_windows("train"), self.batch_size, self.seed, repeat_short=True
        )
        self._eval_fn: Any = None

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
        return self._sampler.steps_per_epoch

    def train_batch(self, step: int) -> Batch:
        """Windows of the epoch permutation (seeded by (seed, epoch)) at this step's
        position; the last partial batch of an epoch is dropped."""
        return self.splits["train"].batch(self._sampler.indices(step))

    def eval_batches(self, split: str):
        """Fixed-size batches over every window of `split` in order; the last one is padded
        by repeating its final window, and `weight` (B,) marks the real windows."""
        windows = self.splits[split]
        return padded_batches(len(windows), self.eval_batch_size, windows.batch)

    # -- loss and metrics ----------------------------------------------------------------

    @staticmethod
    def _predict(model, batch, **kwargs):
        return model(batch["x"], batch.get("x_mark"), batch.get("y_mark"), **kwargs)

    def loss(
        self, model, batch, carry=None, *, return_gates=False, hidden_perturbation=None, key=None
    ):
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

    def _forecast(self, model, batch):
        """(pred, per-window SE sum, AE sum) of `model` in the mode it is in, jitted."""
        if self._eval_fn is None:

            def fn(model, batch):
                pred, _ = self._predict(model, batch)
                err = pred - batch["y"]
                return pred, jnp.sum(jnp.square(err), (1, 2)), jnp.sum(jnp.abs(err), (1, 2))

            self._eval_fn = nnx.jit(fn)
        return self._eval_fn(model, {k: v for k, v in batch.items() if k != "weight"})

    def run_info(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "split": self.split,
            "split_borders": {k: list(v) for k, v in self.borders.items()},
            "recognised_as_benchmark": self.recognised[1] if self.recognised else None,
        }

    def evaluate(self, model: nnx.Module, split: str) -> Metrics:
        """MSE and MAE over every window of `split` (normalised scale), and `loss` (the
        training objective's value)."""

        def sums(batch):
            _, se, ae = self._forecast(model, batch)
            return {"se": se, "ae": ae}

        totals = sum_batches(self.eval_batches(split), sums)
        count = self.num_windows(split) * self.horizon * len(self.outputs)
        metrics = {"mse": totals["se"] / count, "mae": totals["ae"] / count}
        metrics["loss"] = metrics[self.loss_name]
        return metrics

    def predict(self, model: nnx.Module, split: str, idx) -> tuple[Batch, np.ndarray]:
        """The batch of windows `idx` of `split` and the model's forecast (in the mode the
        model is in: eval mode from the trainer)."""
        batch = self.splits[split].batch(np.asarray(idx))
        pred, _, _ = self._forecast(model, batch)
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
