"""Where the tests on real datasets look: the data root a run would read (paths.data_dir's
default: $LSTM_JAX_DATA, else the user cache), never one machine's path. A test skips,
naming the file and the setting, only when the file is not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lstm_jax.config import user_cache
from lstm_jax.data import DATA_ENV


def real_data_root() -> Path:
    """configs/paths: data_dir = ${oc.env:LSTM_JAX_DATA,${user_cache:data}}."""
    return Path(os.path.expanduser(os.environ.get(DATA_ENV) or user_cache("data")))


def require_real_data(*relpaths: str) -> Path:
    """The data root, after skipping the test unless every `relpaths` file is under it."""
    root = real_data_root()
    missing = [p for p in relpaths if not (root / p).is_file()]
    if missing:
        pytest.skip(
            f"real data absent: {', '.join(missing)} not under the data root {root} "
            f"(set {DATA_ENV}=/path/to/datasets to run this test)"
        )
    return root
