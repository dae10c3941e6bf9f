"""Time-series loader, protocol, metrics and forecasters (lstm_jax.tasks.timeseries)."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from real_data import require_real_data
from series_csv import write_csv

from lstm_jax.data import series as ts
from lstm_jax.models import DirectForecaster, SegmentForecaster, Seq2SeqForecaster
from lstm_jax.models.core import model_config as configs_model
from lstm_jax.tasks.base import step_key
from lstm_jax.tasks.timeseries import TimeSeriesForecast

ETTH1_ROWS = 14400  # rows the ETTh1 protocol uses


@pytest.fixture(scope="module")
def ett_like(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("ts") / "ett_like.csv", ETTH1_ROWS + 30)


def make_task(path, **kw) -> TimeSeriesForecast:
    args = {
        "batch_size": 32,
        "seed": 0,
        "path": str(path),
        "split": "etth",
        "input_len": 96,
        "horizon": 24,
    }
    args.update(kw)
    return TimeSeriesForecast(**args)


def rows_of(task: TimeSeriesForecast, arr: np.ndarray, col: int) -> np.ndarray:
    """Undo the scaler for input column `col` and read back the row number of each cell."""
    raw = task.scaler.inverse_transform(arr, [col])
    return np.rint(raw - col / 10).astype(int)


# ------------------------------------------------------------------------------ protocol


@pytest.mark.parametrize("L,H", [(96, 24), (336, 96), (96, 720)])
def test_etth_window_counts_equal_the_protocol(ett_like, L, H):
    task = make_task(ett_like, input_len=L, horizon=H)
    assert task.borders == {
        "train": (0, 8640),
        "val": (8640 - L, 11520),
        "test": (11520 - L, 14400),
    }
    assert task.num_windows("train") == 8640 - L - H + 1
    assert task.num_windows("val") == 2880 - H + 1
    assert task.num_windows("test") == 2880 - H + 1
    # rows past 14400 (the CSV has 30 more) are never read
    assert sum(1 for _ in task.eval_batches("test")) == -(-(2880 - H + 1) // 256)


def test_ratio_split_counts(tmp_path):
    path = write_csv(tmp_path / "r.csv", 1000)
    task = TimeSeriesForecast(batch_size=8, path=str(path), input_len=48, horizon=12)
    assert task.borders == {"train": (0, 700), "val": (652, 800), "test": (752, 1000)}
    assert task.num_windows("train") == 700 - 48 - 12 + 1
    assert task.num_windows("val") == 100 - 12 + 1
    assert task.num_windows("test") == 200 - 12 + 1


def test_no_val_or_test_window_reaches_training(ett_like):
    L, H = 96, 24
    task = make_task(ett_like, input_len=L, horizon=H, batch_size=64)
    seen = []
    for step in range(task.steps_per_epoch):
        b = task.train_batch(step)
        assert b["x"].shape == (64, L, 3) and b["y"].shape == (64, H, 3)
        x_rows, y_rows = rows_of(task, b["x"][..., 0], 0), rows_of(task, b["y"][..., 0], 0)
        assert x_rows.max() < 8640 and y_rows.max() < 8640
        np.testing.assert_array_equal(y_rows[:, 0], x_rows[:, -1] + 1)  # contiguous window
        seen.append(x_rows[:, 0])
    starts = np.concatenate(seen)
    assert len(np.unique(starts)) == len(starts)  # an epoch draws each window at most once
    assert len(starts) == task.steps_per_epoch * 64 > task.num_windows("train") - 64

    # targets of val / test windows lie in their own split; every split row is a target
    for split, (lo, hi) in {"val": (8640, 11520), "test": (11520, 14400)}.items():
        ys = [rows_of(task, b["y"][b["weight"] > 0][..., 2], 2) for b in task.eval_batches(split)]
        ys = np.concatenate(ys)
        assert ys.min() == lo and ys.max() == hi - 1
        assert len(ys) == task.num_windows(split)


def test_scaler_fit_on_training_rows_only(tmp_path, ett_like):
    base = make_task(ett_like)
    raw = ts.read_csv(ett_like).values
    np.testing.assert_allclose(base.scaler.mean, raw[:8640].mean(0))
    np.testing.assert_allclose(base.scaler.std, raw[:8640].std(0))
    # multiply every val/test value by 100: the scaler and the training batches are unchanged
    shifted = make_task(write_csv(tmp_path / "shifted.csv", ETTH1_ROWS, scale_after=8640))
    np.testing.assert_allclose(shifted.scaler.mean, base.scaler.mean)
    np.testing.assert_allclose(shifted.scaler.std, base.scaler.std)
    for step in (0, 5, 300):
        for k in ("x", "y"):
            np.testing.assert_array_equal(shifted.train_batch(step)[k], base.train_batch(step)[k])
    assert not np.allclose(shifted.splits["test"].data, base.splits["test"].data)


def test_train_batches_are_a_pure_function_of_seed_and_step(ett_like):
    a, b = make_task(ett_like, seed=3), make_task(ett_like, seed=3)
    c = make_task(ett_like, seed=4)
    for step in (7, 0, 7, 1000):  # out of order, revisited, later epoch
        np.testing.assert_array_equal(a.train_batch(step)["x"], b.train_batch(step)["x"])
    assert not np.array_equal(a.train_batch(0)["x"], c.train_batch(0)["x"])
    spe = a.steps_per_epoch
    assert not np.array_equal(a.train_batch(0)["x"], a.train_batch(spe)["x"])  # reshuffled


def test_modes_shapes_and_time_features(ett_like):
    for mode, c_out in (("S", 1), ("M", 3), ("MS", 1)):
        task = make_task(ett_like, features=mode, time_features=True, batch_size=4)
        b = task.train_batch(0)
        assert b["x"].shape == (4, 96, 1 if mode == "S" else 3)
        assert b["y"].shape == (4, 24, c_out)
        assert b["x_mark"].shape == (4, 96, 4) and b["y_mark"].shape == (4, 24, 4)
        # the last output is the OT column (its cells end in .2)
        raw = task.scaler.inverse_transform(b["y"][..., -1], [task.columns.index("OT")])
        np.testing.assert_allclose(raw - 0.2, np.rint(raw - 0.2), atol=1e-3)


# ------------------------------------------------------------------------------- metrics


class Persistence(nnx.Module):
    """Forecasts the last input value of each output column for every horizon step."""

    def __init__(self, outputs, horizon):
        self.outputs, self.horizon = tuple(outputs), horizon

    def __call__(self, x, x_mark=None, y_mark=None, **kwargs):
        last = x[:, -1:, :][..., jnp.asarray(self.outputs)]
        return jnp.repeat(last, self.horizon, axis=1), None


@pytest.mark.parametrize("mode", ["M", "S"])
def test_metrics_equal_a_hand_computation(tmp_path, mode):
    rng = np.random.default_rng(0)
    n, L, H = 120, 8, 4
    dates = np.datetime64("2020-01-01T00:00:00") + np.arange(n) * np.timedelta64(1, "h")
    vals = rng.normal(size=(n, 2)).cumsum(0)
    lines = ["date,u,OT"] + [
        f"{str(d).replace('T', ' ')},{float(u)!r},{float(o)!r}"
        for d, (u, o) in zip(dates, vals, strict=True)
    ]
    (tmp_path / "h.csv").write_text("\n".join(lines) + "\n")
    # eval_batch_size 5 does not divide the window counts: the padded batch must not count
    task = TimeSeriesForecast(
        batch_size=4,
        path=str(tmp_path / "h.csv"),
        features=mode,
        input_len=L,
        horizon=H,
        eval_batch_size=5,
        loss="mae",
    )
    model = Persistence(task.outputs, H)

    # by hand: standardise with the train rows [0, 84), every window of the test rows
    cols = [0, 1] if mode == "M" else [1]
    train_end, n_test = int(n * 0.7), int(n * 0.2)
    mean, std = vals[:train_end, cols].mean(0), vals[:train_end, cols].std(0)
    z = (vals[:, cols] - mean) / std
    start = n - n_test - L
    se, ae, count = 0.0, 0.0, 0
    for i in range(start, n - L - H + 1):
        truth = z[i + L : i + L + H]
        pred = np.repeat(z[i + L - 1 : i + L], H, axis=0)
        se += np.sum((pred - truth) ** 2)
        ae += np.sum(np.abs(pred - truth))
        count += truth.size
    assert task.num_windows("test") == n - start - L - H + 1 == n_test - H + 1
    got = task.evaluate(model, "test")
    assert got["mse"] == pytest.approx(se / count, rel=1e-5)
    assert got["mae"] == pytest.approx(ae / count, rel=1e-5)
    assert got["loss"] == got["mae"]

    # the training loss on one batch is the same mean over its windows
    batch = task.train_batch(0)
    loss, aux = task.loss(model, batch)
    pred = np.repeat(batch["x"][:, -1:, task.outputs], H, axis=1)
    assert float(aux["metrics"]["mse"]) == pytest.approx(np.mean((pred - batch["y"]) ** 2), 1e-5)
    assert float(loss) == pytest.approx(np.mean(np.abs(pred - batch["y"])), rel=1e-5)
    assert aux["carry"] is None and aux["gates"] is None


# ------------------------------------------------------------------------------- models


VARIANTS = {
    "direct": DirectForecaster,
    "seq2seq": Seq2SeqForecaster,
    "segment": SegmentForecaster,
}


def model_config(cell="lstm", **kw):
    cfg = {"hidden_size": 16, "num_layers": 1, "bidirectional": False, "dropout": 0.0}
    return configs_model(cell, **{**cfg, **kw})


@pytest.mark.parametrize(
    "variant,mode,extra",
    [
        ("segment", "M", {"forecaster": {"head_dropout": 0.2}}),
        ("segment", "MS", {"model": {"cell": "gru"}}),
        (
            "direct",
            "M",
            {
                "forecaster": {"channel_independent": True, "head_dropout": 0.2},
                "time_features": True,
            },
        ),
        ("seq2seq", "M", {"time_features": True}),
    ],
)
def test_forecasters_shapes_gates_and_learning(tmp_path, variant, mode, extra):
    path = write_csv(tmp_path / "m.csv", 400)
    extra = dict(extra)
    mcfg = model_config(**extra.pop("model", {}))
    options = extra.pop("forecaster", {})
    if variant == "segment":
        options["segment_len"] = 12
    task = TimeSeriesForecast(
        batch_size=8,
        path=str(path),
        features=mode,
        input_len=48,
        horizon=20,
        forecaster=functools.partial(VARIANTS[variant], **options),
        **extra,
    )
    model = task.make_model(mcfg, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = {k: jnp.asarray(v) for k, v in task.train_batch(0).items()}

    def loss_of(params, batch, pert=None, return_gates=False):
        # as the trainer does: merge inside the traced function (fresh variables)
        m = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))
        return task.loss(m, batch, return_gates=return_gates, hidden_perturbation=pert)

    @jax.jit
    def probe(params, batch):
        loss, aux = loss_of(params, batch, return_gates=True)
        gate = next(iter(aux["gates"]["layer_0"].values()))
        pert = jnp.zeros(gate.shape[:2] + (16,))
        loss_p, grad_p = jax.value_and_grad(lambda p: loss_of(params, batch, p)[0])(pert)
        fresh = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))
        pred, _ = fresh(batch["x"], batch.get("x_mark"), batch.get("y_mark"))
        return loss, aux, loss_p, grad_p, pred

    loss, aux, loss_p, grad_p, pred = probe(params, batch)
    assert aux["gates"] is not None and "layer_0" in aux["gates"]
    assert pred.shape == batch["y"].shape
    # dL/dh_t through hidden_perturbation: a zero perturbation leaves the loss unchanged
    assert float(loss_p) == pytest.approx(float(loss), rel=1e-6)
    assert float(jnp.abs(grad_p).sum()) > 0

    # a few Adam steps (head dropout on, masks from (seed, step)) reduce the batch's loss
    import optax

    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state, batch):
        value, grads = jax.value_and_grad(lambda p: loss_of(p, batch)[0])(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = opt.init(params)
    losses = []
    for _ in range(10):
        params, opt_state, value = step(params, opt_state, batch)
        losses.append(float(value))
    assert losses[-1] < losses[0]
    model = nnx.merge(graphdef, params, rest)

    metrics = task.evaluate(model, "val")
    assert set(metrics) == {"loss", "mse", "mae"} and np.isfinite(metrics["mse"])
    figs = task.media(model, "test")
    assert list(figs) == ["forecast_test"]
    assert len(figs["forecast_test"].axes) == 3


def test_evaluate_runs_the_model_in_the_mode_it_is_handed(tmp_path):
    """The trainer owns the mode (it evaluates an eval-mode model); evaluate never
    switches it: eval mode is deterministic, train mode keeps its dropout."""
    path = write_csv(tmp_path / "d.csv", 300)
    task = TimeSeriesForecast(
        batch_size=8,
        path=str(path),
        input_len=24,
        horizon=12,
        forecaster=functools.partial(SegmentForecaster, segment_len=12, head_dropout=0.5),
    )
    model = task.make_model(model_config(), rngs=nnx.Rngs(0))
    model.eval()
    a = task.evaluate(model, "val")
    assert a == task.evaluate(model, "val")  # deterministic: dropout off in evaluation
    assert model.dropout.deterministic is True
    model.train()
    t = task.evaluate(model, "val")
    assert model.dropout.deterministic is False  # the caller's model is not switched
    assert t != a  # ... and runs as handed: with its dropout


def test_segment_forecaster_rejects_ragged_input(tmp_path):
    path = write_csv(tmp_path / "s.csv", 300)
    task = TimeSeriesForecast(batch_size=8, path=str(path), input_len=30, horizon=12)
    with pytest.raises(ValueError, match="multiple of segment_len"):
        task.make_model(model_config(), rngs=nnx.Rngs(0))


def test_missing_data_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="ETTh1.csv"):
        TimeSeriesForecast(batch_size=8, data_dir=str(tmp_path / "empty"), dataset="etth1")


# ------------------------------------------------------------------------- real ETTh1


def test_real_etth1_protocol():
    root = require_real_data("ett/ETTh1.csv")
    task = TimeSeriesForecast(batch_size=32, data_dir=str(root), input_len=336, horizon=96)
    assert task.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert (task.num_windows("train"), task.num_windows("val"), task.num_windows("test")) == (
        8209,
        2785,
        2785,
    )
    raw = ts.read_csv(task.file).values
    np.testing.assert_allclose(task.scaler.mean, raw[:8640].mean(0))


def test_dropout_masks_follow_seed_and_step(tmp_path):
    path = write_csv(tmp_path / "k.csv", 300)
    task = TimeSeriesForecast(
        batch_size=8,
        path=str(path),
        input_len=24,
        horizon=12,
        forecaster=functools.partial(SegmentForecaster, segment_len=12, head_dropout=0.5),
    )
    model = task.make_model(model_config(), rngs=nnx.Rngs(0))
    b0 = task.train_batch(0)
    loss = jax.jit(lambda b, key: task.loss(model, b, key=key)[0])
    k0, k1 = step_key(task.seed, 0), step_key(task.seed, 1)  # the trainer's keys
    l0, l0b, l1 = (float(loss(b0, k)) for k in (k0, k0, k1))  # same windows, next step
    assert l0 == l0b and l0 != l1


def _ett_layout_csv(path: Path) -> Path:
    """A CSV in ETTh1/ETTh2's layout (their columns, 17,420 hourly rows), values random."""
    rng = np.random.default_rng(0)
    dates = np.datetime64("2016-07-01T00:00:00") + np.arange(17_420) * np.timedelta64(1, "h")
    lines = ["date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT"]
    for d, row in zip(dates, rng.normal(size=(17_420, 7)).round(3), strict=True):
        lines.append(str(d).replace("T", " ") + "," + ",".join(map(str, row)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_benchmark_file_given_by_path_gets_its_standard_split_and_the_run_records_it(
    tmp_path, caplog
):
    """ETTh2 given as task.path was split 70/10/20 in silence (issue 30): its test MSE looked
    far better than the literature's and was not comparable with it."""
    path = _ett_layout_csv(tmp_path / "ETTh2.csv")
    with caplog.at_level("INFO", logger="lstm_jax"):
        task = TimeSeriesForecast(batch_size=8, path=str(path), input_len=96, horizon=24)
    assert task.borders == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    info = task.run_info()
    assert info["split"] == "etth" and info["split_borders"]["test"] == [11424, 14400]
    assert "17,420 rows" in info["recognised_as_benchmark"]
    assert "its standard split 'etth'" in caplog.text and "test [11424, 14400)" in caplog.text
    # Asked for, the ratio split is kept, and recorded as such.
    ratio = TimeSeriesForecast(
        batch_size=8, path=str(path), input_len=96, horizon=24, split="ratio"
    )
    assert (
        ratio.run_info()["split"] == "ratio" and ratio.run_info()["recognised_as_benchmark"] is None
    )
    assert ratio.borders["train"] == (0, int(17_420 * 0.7))


def test_a_file_of_another_layout_keeps_the_ratio_split(tmp_path):
    task = TimeSeriesForecast(
        batch_size=8, path=str(write_csv(tmp_path / "r.csv", 1000)), input_len=48, horizon=12
    )
    assert task.run_info()["split"] == "ratio"
    assert task.run_info()["recognised_as_benchmark"] is None
