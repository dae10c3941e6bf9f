"""Sequential image classification: Fashion-MNIST read as a sequence.

- mode="row": 28 steps of 28 pixels (a row per step), the row-by-row task (anchor: an LSTM
  reaches about 88-90 % test accuracy).
- mode="pixel": 784 steps of 1 pixel (raster order), optionally in a fixed random order
  (`permute=true`, the "permuted" variant; the permutation is drawn from `permutation_seed`).

The idx files are read from the data root (`paths.data_dir` / $LSTM_JAX_DATA) under
`fashion-mnist/`, downloaded from the Fashion-MNIST repository (with SHA-256 check) where the
network allows. Splits: train = the first 60,000 - val_size training images, val = the last
`val_size` (5,000 by default) training images, test = the 10,000 t10k images. Pixels are
scaled to [0, 1] and standardised with the training-set mean and std of Fashion-MNIST
(0.2860, 0.3530). The class is predicted by a linear head on the final hidden state of the
top layer (`lstm_jax.models.SequenceHead`, pooling="last"); cross-entropy loss; monitored
by val/acc (max).

Training batches are a pure function of (seed, step): each epoch is a permutation of the
training images drawn from `np.random.default_rng([seed, 0, epoch])` and step k takes the
k-th slice of batch_size of it (the remainder of an epoch is dropped), as
`lstm_jax.data.batching.EpochSampler` with stream (0,) cuts it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lstm_jax.data.batching import EpochSampler
from lstm_jax.data.fashion_mnist import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    NUM_CLASSES,
    load_fashion_mnist,
)
from lstm_jax.tasks.base import TRAIN, ArrayTask, Batch


class SequentialImageTask(ArrayTask):
    """Fashion-MNIST as a sequence (row: 28 x 28; pixel: 784 x 1, optionally permuted)."""

    monitor = "val/acc"
    metric_names = ("loss", "acc")
    monitor_tiebreak = "val/loss"
    pooling = "last"
    out_features = NUM_CLASSES

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        mode: str = "row",
        permute: bool = False,
        permutation_seed: int = 0,
        val_size: int = 5000,
        eval_batch_size: int = 1000,
        head: Callable[..., nnx.Module] | None = None,
    ):
        super().__init__(
            batch_size=batch_size,
            seed=seed,
            data_dir=data_dir,
            eval_batch_size=eval_batch_size,
            head=head,
        )
        if mode not in ("row", "pixel"):
            raise ValueError(f"mode={mode!r}: expected 'row' or 'pixel'.")
        if permute and mode != "pixel":
            raise ValueError("permute=true needs mode=pixel.")
        self.mode = mode
        self.permute = bool(permute)
        self.in_features = 28 if mode == "row" else 1
        images, labels = load_fashion_mnist(data_dir, "train")
        if not 0 < val_size < images.shape[0]:
            raise ValueError(f"val_size={val_size} must be in (0, {images.shape[0]}).")
        self._order = (
            np.random.default_rng(permutation_seed).permutation(images[0].size)
            if self.permute
            else None
        )
        n_train = images.shape[0] - int(val_size)
        self._train = (self._sequences(images[:n_train]), labels[:n_train])
        self._eval_cache["val"] = (self._sequences(images[n_train:]), labels[n_train:])
        test_images, test_labels = load_fashion_mnist(data_dir, "t10k")
        self._eval_cache["test"] = (self._sequences(test_images), test_labels)
        if n_train < batch_size:
            raise ValueError(f"batch_size={batch_size} exceeds the {n_train} training images.")
        self._sampler = EpochSampler(n_train, batch_size, seed, stream=(TRAIN,))

    def _sequences(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, 28, 28) -> uint8 sequences (N, T, F)."""
        n = images.shape[0]
        if self.mode == "row":
            return np.ascontiguousarray(images)
        flat = images.reshape(n, -1)
        if self._order is not None:
            flat = flat[:, self._order]
        return np.ascontiguousarray(flat[:, :, None])

    def _inputs(self, x):
        return (jnp.asarray(x, jnp.float32) / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD

    def train_batch(self, step: int) -> Batch:
        idx = self._sampler.indices(step)
        return {"x": self._train[0][idx], "y": self._train[1][idx]}

    def _forward_loss(self, out, y):
        ce = optax.softmax_cross_entropy_with_integer_labels(out, y)
        return jnp.mean(ce), {"acc": jnp.mean(jnp.argmax(out, -1) == y)}

    def _eval_sums(self, out, y, w):
        ce = optax.softmax_cross_entropy_with_integer_labels(out, y)
        return {"ce": jnp.sum(w * ce), "hit": jnp.sum(w * (jnp.argmax(out, -1) == y))}

    def _finish_eval(self, sums, n):
        return {"loss": sums["ce"] / n, "acc": sums["hit"] / n}
