"""Fashion-MNIST: the idx file reader and the train / t10k splits, read from the data root
(`paths.data_dir` / $LSTM_JAX_DATA) under `fashion-mnist/`, downloaded from the
Fashion-MNIST repository (with SHA-256 check) where the network allows."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from lstm_jax.data.files import resolve_data_file

FASHION_MNIST_URL = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
)
FASHION_MNIST_FILES = {  # SHA-256 of each file
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",  # noqa: E501
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",  # noqa: E501
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",  # noqa: E501
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",  # noqa: E501
}
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
NUM_CLASSES = 10


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an idx file (optionally gzipped) of unsigned bytes into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number).")
    if data[2] != 0x08:
        raise ValueError(f"{path}: idx element type {data[2]:#x} is not unsigned byte (0x08).")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise ValueError(f"{path}: {len(data) - offset} bytes of data, expected {expected}.")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist(data_dir: str | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int32) of split 'train' or 't10k'."""
    arrays = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{split}-{kind}-ubyte.gz"
        path = resolve_data_file(
            data_dir,
            f"fashion-mnist/{name}",
            url=FASHION_MNIST_URL + name,
            sha256=FASHION_MNIST_FILES[name],
        )
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"fashion-mnist {split}: {images.shape[0]} images, {labels.shape[0]} labels."
        )
    return images, labels.astype(np.int32)
