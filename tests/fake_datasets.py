"""Tiny generated copies of every real dataset, in each one's layout under a data root:
Fashion-MNIST idx files, Tiny Shakespeare, PTB, ETTh1 and a custom CSV, and FSDD
recordings (a tone per digit). Shared by the preset and task-contract tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import soundfile as sf

from lstm_jax.data.fsdd import SPEAKERS


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _hourly_csv(path: Path, columns: list[str], n_rows: int, rng) -> None:
    dates = np.datetime64("2016-07-01T00:00") + np.arange(n_rows) * np.timedelta64(1, "h")
    values = np.cumsum(rng.standard_normal((n_rows, len(columns))), axis=0)
    lines = ["date," + ",".join(columns)]
    lines += [
        str(d).replace("T", " ") + ":00," + ",".join(f"{v:.3f}" for v in row)
        for d, row in zip(dates, values, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def write_fake_datasets(root: Path) -> Path:
    """Writes the fake datasets under `root` (about 5 s) and returns it."""
    rng = np.random.default_rng(0)
    (root / "fashion-mnist").mkdir()
    for split, n in (("train", 5100), ("t10k", 100)):
        _write_idx(
            root / "fashion-mnist" / f"{split}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28)),
        )
        _write_idx(root / "fashion-mnist" / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare" / "input.txt").write_text(
        "".join(rng.choice(list("ROMEO: thy duke\n"), 40_000))
    )
    (root / "ptb").mkdir()
    for name in ("train", "valid", "test"):
        lines = [" ".join(f"w{j}" for j in rng.integers(0, 50, 10)) for _ in range(300)]
        (root / "ptb" / f"ptb.{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "ett").mkdir()
    _hourly_csv(
        root / "ett" / "ETTh1.csv",
        ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"],
        14400,
        rng,
    )
    _hourly_csv(root / "my.csv", ["a", "load"], 2000, rng)
    recordings = root / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    sr = 8000
    for s, speaker in enumerate(SPEAKERS):
        for digit in range(10):
            for index in range(50):
                n = int(sr * (0.1 + 0.02 * ((digit + index + s) % 4)))
                wave = 0.3 * np.sin(2 * np.pi * (300 + 250 * digit) * np.arange(n) / sr)
                sf.write(
                    recordings / f"{digit}_{speaker}_{index}.wav",
                    (wave * np.hanning(n)).astype(np.float32),
                    sr,
                )
    return root
