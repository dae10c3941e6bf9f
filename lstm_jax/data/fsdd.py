"""The Free Spoken Digit Dataset (FSDD): clip names, the train/val/test splits, finding (or
downloading) the recordings under the data root, and connected-digit synthesis.

FSDD (https://github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0): 3,000
recordings `fsdd/recordings/{digit}_{speaker}_{index}.wav`, 6 speakers x 10 digits x 50
takes, 8 kHz mono. Files are looked up under the data root with
`lstm_jax.data.resolve_data_file` (downloaded from the repository where the network allows,
checked against `fsdd/SHA256SUMS-recordings.txt` when that file is there). The splits are
described in `lstm_jax.tasks.speech`.

Connected digits: `connected_recipes` draws utterance recipes (which clips, which gaps) from
a generator; `render_connected` turns one recipe into a waveform.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstm_jax.data.files import data_root, resolve_data_file

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
NUM_DIGITS = 10
FSDD_DIR = "fsdd/recordings"
FSDD_URL = (
    "https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/master/recordings/"
)
FSDD_SUMS = "fsdd/SHA256SUMS-recordings.txt"


def clip_name(digit: int, speaker: str, index: int) -> str:
    return f"{digit}_{speaker}_{index}.wav"


def parse_clip_name(name: str) -> tuple[int, str, int]:
    """'7_theo_12.wav' -> (7, 'theo', 12)."""
    digit, speaker, index = Path(name).stem.split("_")
    return int(digit), speaker, int(index)


def fsdd_split(
    speakers: Sequence[str],
    num_indices: int,
    *,
    heldout_speaker: str | None = None,
    test_indices: Sequence[int] = (0, 5),
    val_indices: Sequence[int] = (45, 50),
) -> dict[str, list[str]]:
    """Clip names of the train/val/test splits (see the module docstring). `test_indices`
    and `val_indices` are [start, stop) ranges of take numbers."""
    t0, t1 = test_indices
    v0, v1 = val_indices
    if heldout_speaker is not None and heldout_speaker not in speakers:
        raise ValueError(f"heldout_speaker={heldout_speaker!r} is not one of {list(speakers)}.")
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for speaker in speakers:
        for digit in range(NUM_DIGITS):
            for index in range(num_indices):
                name = clip_name(digit, speaker, index)
                if heldout_speaker is not None:
                    if speaker == heldout_speaker:
                        split = "test"
                    else:
                        split = "val" if v0 <= index < v1 else "train"
                elif t0 <= index < t1:
                    split = "test"
                elif v0 <= index < v1:
                    split = "val"
                else:
                    split = "train"
                splits[split].append(name)
    return splits


def _read_sums(data_dir: str | None) -> dict[str, str]:
    root = data_root(data_dir)
    if root is None or not (root / FSDD_SUMS).is_file():
        return {}
    sums = {}
    for line in (root / FSDD_SUMS).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[Path(parts[1]).name] = parts[0]
    return sums


def resolve_fsdd(
    data_dir: str | None, names: Sequence[str], *, download: bool = True
) -> list[Path]:
    """Paths of FSDD recordings under the data root (downloaded where possible)."""
    sums = _read_sums(data_dir)
    return [
        resolve_data_file(
            data_dir,
            f"{FSDD_DIR}/{name}",
            url=FSDD_URL + name,
            sha256=sums.get(name),
            setting="paths.data_dir (task.data_dir)",
            download=download,
        )
        for name in names
    ]


# --------------------------------------------------------------------------------------
# Connected digits: recipes and waveforms
# --------------------------------------------------------------------------------------


def connected_recipes(
    names: Sequence[str],
    num: int,
    rng: np.random.Generator,
    *,
    min_digits: int = 2,
    max_digits: int = 5,
    gap_ms: Sequence[float] = (50.0, 300.0),
    edge_ms: float = 100.0,
    sample_rate: int = 8000,
) -> list[dict[str, Any]]:
    """`num` utterance recipes: {"clips": [names], "gaps": [samples] (len(clips) + 1: the
    leading silence, the gaps, the trailing silence), "noise_seed": int}."""
    recipes = []
    lo, hi = (round(g * sample_rate / 1000) for g in gap_ms)
    edge = round(edge_ms * sample_rate / 1000)
    for _ in range(num):
        k = int(rng.integers(min_digits, max_digits + 1))
        clips = [names[i] for i in rng.integers(0, len(names), size=k)]
        inner = rng.integers(lo, hi + 1, size=k - 1).tolist()
        edges = rng.integers(0, edge + 1, size=2).tolist()
        recipes.append(
            {
                "clips": clips,
                "gaps": [edges[0], *inner, edges[1]],
                "noise_seed": int(rng.integers(0, 2**31 - 1)),
            }
        )
    return recipes


def render_connected(
    recipe: dict[str, Any], waves: dict[str, np.ndarray], silence_noise: float
) -> np.ndarray:
    """The waveform of one recipe: silence (Gaussian noise of std `silence_noise`), clip,
    silence, clip, ..., silence."""
    rng = np.random.default_rng(recipe["noise_seed"])
    parts = []
    for i, gap in enumerate(recipe["gaps"]):
        parts.append((rng.standard_normal(gap) * silence_noise).astype(np.float32))
        if i < len(recipe["clips"]):
            parts.append(waves[recipe["clips"][i]])
    return np.concatenate(parts)
