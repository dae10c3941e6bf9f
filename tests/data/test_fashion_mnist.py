"""The idx reader of lstm_jax.data.fashion_mnist."""

import gzip

import numpy as np
import pytest
from idx_files import write_idx

from lstm_jax.data.fashion_mnist import read_idx


def test_read_idx_roundtrip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match="unsigned byte"):
        read_idx(tmp_path / "bad.gz")
