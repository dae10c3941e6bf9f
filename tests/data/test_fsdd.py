"""FSDD clip names and splits, connected-digit recipes and rendering, and the real files
(skipped unless they are under the data root)."""

from __future__ import annotations

import numpy as np
import pytest
from real_data import require_real_data

from lstm_jax.data import fsdd


def test_official_and_speaker_heldout_splits():
    official = fsdd.fsdd_split(fsdd.SPEAKERS, 50)
    assert {k: len(v) for k, v in official.items()} == {"train": 2400, "val": 300, "test": 300}
    assert all(fsdd.parse_clip_name(n)[2] < 5 for n in official["test"])
    held = fsdd.fsdd_split(fsdd.SPEAKERS, 50, heldout_speaker="theo")
    assert {k: len(v) for k, v in held.items()} == {"train": 2250, "val": 250, "test": 500}
    assert {fsdd.parse_clip_name(n)[1] for n in held["test"]} == {"theo"}
    assert "theo" not in {fsdd.parse_clip_name(n)[1] for n in held["train"] + held["val"]}
    for split in (official, held):
        names = split["train"] + split["val"] + split["test"]
        assert len(set(names)) == 3000
    with pytest.raises(ValueError):
        fsdd.fsdd_split(fsdd.SPEAKERS, 50, heldout_speaker="nobody")


def test_connected_recipes_and_rendering():
    names = [f"{d}_anna_0.wav" for d in range(10)]
    rng = np.random.default_rng(3)
    recipes = fsdd.connected_recipes(names, 50, rng, min_digits=2, max_digits=5)
    assert {len(r["clips"]) for r in recipes} <= {2, 3, 4, 5}
    assert all(len(r["gaps"]) == len(r["clips"]) + 1 for r in recipes)
    assert all(400 <= g <= 2400 for r in recipes for g in r["gaps"][1:-1])  # 50-300 ms
    waves = {n: np.ones(100, np.float32) for n in names}
    wave = fsdd.render_connected(recipes[0], waves, 1e-3)
    assert len(wave) == 100 * len(recipes[0]["clips"]) + sum(recipes[0]["gaps"])
    np.testing.assert_array_equal(wave, fsdd.render_connected(recipes[0], waves, 1e-3))


def test_real_fsdd_files_and_features():
    root = require_real_data("fsdd/SHA256SUMS-recordings.txt", "fsdd/recordings/0_george_0.wav")
    splits = fsdd.fsdd_split(fsdd.SPEAKERS, 50)
    names = splits["test"][:3]
    paths = fsdd.resolve_fsdd(str(root), names, download=False)
    from lstm_jax.data import audio

    cfg = audio.FeatureConfig()
    for p in paths:
        wave = audio.load_wav(p, 8000)
        feats = audio.compute_features(wave, cfg)
        assert feats.shape == (cfg.num_frames(len(wave)), 40)
    sums = fsdd._read_sums(str(root))
    assert len(sums) == 3000 and all(n in sums for n in names)
