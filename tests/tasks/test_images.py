"""Sequential Fashion-MNIST: idx reading, splits, modes, determinism, missing-file error."""

import numpy as np
import pytest
from flax import nnx
from idx_files import write_idx
from real_data import require_real_data

from lstm_jax.data import DATA_ENV
from lstm_jax.data.fashion_mnist import read_idx
from lstm_jax.models.core import model_config as configs_model
from lstm_jax.tasks.images import SequentialImageTask

N_TRAIN, N_TEST = 40, 12


@pytest.fixture
def data_root(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        images[:, 0, 0] = labels  # lets tests recover each image's label
        write_idx(d / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", labels)
    return tmp_path


def model_config(cell="lstm", **kw):
    base = {"hidden_size": 8, "num_layers": 1, "bidirectional": False, "dropout": 0.0}
    return configs_model(cell, **{**base, **kw})


def test_row_mode_splits_and_batches(data_root):
    task = SequentialImageTask(batch_size=8, seed=1, data_dir=str(data_root), val_size=10)
    assert task.monitor == "val/acc" and task.monitor_mode == "max"
    b = task.train_batch(0)
    assert b["x"].shape == (8, 28, 28) and b["x"].dtype == np.uint8
    assert b["y"].shape == (8,) and b["y"].dtype == np.int32
    np.testing.assert_array_equal(b["x"][:, 0, 0], b["y"])  # images stay with their labels
    xv, yv = task._split_arrays("val")
    xt, _yt = task._split_arrays("test")
    assert xv.shape == (10, 28, 28) and xt.shape == (N_TEST, 28, 28)
    np.testing.assert_array_equal(yv, np.arange(30, 40) % 10)  # val = last 10 training images
    # determinism: same step same batch, different steps/epochs differ
    other = SequentialImageTask(batch_size=8, seed=1, data_dir=str(data_root), val_size=10)
    np.testing.assert_array_equal(other.train_batch(4)["x"], task.train_batch(4)["x"])
    assert not np.array_equal(task.train_batch(0)["x"], task.train_batch(1)["x"])
    assert not np.array_equal(task.train_batch(0)["x"], task.train_batch(3)["x"])


def test_epoch_visits_each_training_image_once(data_root):
    task = SequentialImageTask(batch_size=5, data_dir=str(data_root), val_size=10)
    ys = np.concatenate([task.train_batch(s)["x"].reshape(5, -1) for s in range(6)])
    train = read_idx(data_root / "fashion-mnist/train-images-idx3-ubyte.gz")[:30].reshape(30, -1)
    assert sorted(map(bytes, ys)) == sorted(map(bytes, train))


def test_pixel_modes(data_root):
    plain = SequentialImageTask(batch_size=4, data_dir=str(data_root), val_size=10, mode="pixel")
    perm = SequentialImageTask(
        batch_size=4,
        data_dir=str(data_root),
        val_size=10,
        mode="pixel",
        permute=True,
        permutation_seed=3,
    )
    a, b = plain.train_batch(0)["x"], perm.train_batch(0)["x"]
    assert a.shape == b.shape == (4, 784, 1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(np.sort(a[:, :, 0], 1), np.sort(b[:, :, 0], 1))
    np.testing.assert_array_equal(a[:, :, 0][:, perm._order], b[:, :, 0])
    with pytest.raises(ValueError, match="pixel"):
        SequentialImageTask(batch_size=4, data_dir=str(data_root), val_size=10, permute=True)


def test_model_loss_and_evaluate(data_root):
    task = SequentialImageTask(
        batch_size=4, data_dir=str(data_root), val_size=10, eval_batch_size=4
    )
    model = task.make_model(model_config(), rngs=nnx.Rngs(0))
    loss, aux = task.loss(model, task.train_batch(0))
    assert np.isfinite(float(loss)) and 0 <= float(aux["metrics"]["acc"]) <= 1
    assert aux["gates"] is None and aux["carry"] is None
    m = task.evaluate(model, "test")
    assert set(m) == {"loss", "acc"} and 0 <= m["acc"] <= 1
    x, y = task._split_arrays("test")
    out, _ = model(task._inputs(x))
    assert m["acc"] == pytest.approx(float(np.mean(np.argmax(np.asarray(out), -1) == y)))


def test_missing_file_error_names_file_and_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setattr("lstm_jax.data.fashion_mnist.FASHION_MNIST_URL", "http://127.0.0.1:9/")
    with pytest.raises(FileNotFoundError) as e:
        SequentialImageTask(batch_size=4, data_dir=str(tmp_path))
    msg = str(e.value)
    assert "fashion-mnist/train-images-idx3-ubyte.gz" in msg
    assert "paths.data_dir" in msg and DATA_ENV in msg


def test_real_fashion_mnist_shapes():
    root = require_real_data("fashion-mnist/t10k-labels-idx1-ubyte.gz")
    task = SequentialImageTask(batch_size=16, data_dir=str(root))
    assert task._train[0].shape == (55000, 28, 28)
    assert task._split_arrays("val")[0].shape == (5000, 28, 28)
    xt, yt = task._split_arrays("test")
    assert xt.shape == (10000, 28, 28) and np.bincount(yt).tolist() == [1000] * 10
