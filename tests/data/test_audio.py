"""Audio front end: feature shapes, the on-disk cache, normalisation and batching."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from lstm_jax.data import audio

SR = 8000


def tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    "kwargs, width",
    [
        ({}, 40),
        ({"kind": "mfcc"}, 13),
        ({"kind": "mfcc", "deltas": True}, 39),
        ({"n_mels": 20}, 20),
    ],
)
def test_feature_shapes(kwargs, width):
    cfg = audio.FeatureConfig(**kwargs)
    wave = tone(440, 0.37)
    feats = audio.compute_features(wave, cfg)
    assert feats.dtype == np.float32
    assert (
        feats.shape == (1 + len(wave) // 80, width) == (cfg.num_frames(len(wave)), cfg.num_features)
    )
    assert np.all(np.isfinite(feats))


def test_logmel_peaks_at_the_tone_frequency():
    cfg = audio.FeatureConfig()
    low = audio.compute_features(tone(300, 0.2), cfg).mean(0)
    high = audio.compute_features(tone(2500, 0.2), cfg).mean(0)
    assert low.argmax() < high.argmax()


def test_load_wav_resamples_and_mixes_channels(tmp_path):
    stereo = np.stack([tone(440, 0.5, 16000), tone(440, 0.5, 16000)], axis=1)
    sf.write(tmp_path / "a.wav", stereo, 16000)
    wave = audio.load_wav(tmp_path / "a.wav", SR)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(len(wave) - 4000) <= 2


def test_cache_second_run_skips_extraction(tmp_path):
    cfg = audio.FeatureConfig()
    calls = []

    def compute():
        calls.append(1)
        return [
            audio.compute_features(tone(f, 0.1 + 0.05 * i), cfg) for i, f in enumerate([300, 900])
        ]

    first, path, hit = audio.cached_features(tmp_path, "set", cfg, ["a", "b"], compute)
    assert not hit and path.is_file() and path.parent == tmp_path and len(calls) == 1
    second, path2, hit2 = audio.cached_features(tmp_path, "set", cfg, ["a", "b"], compute)
    assert hit2 and path2 == path and len(calls) == 1
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    # another recipe or other parameters: a new key, computed again
    _, path3, hit3 = audio.cached_features(tmp_path, "set", cfg, ["a", "c"], compute)
    _, path4, hit4 = audio.cached_features(
        tmp_path, "set", audio.FeatureConfig(n_mels=20), ["a", "b"], compute
    )
    assert not hit3 and not hit4 and len({path, path3, path4}) == 3 and len(calls) == 3
    # cache off
    _, none_path, _ = audio.cached_features("none", "set", cfg, ["a", "b"], compute)
    assert none_path is None and len(calls) == 4


def test_normalise_modes():
    rng = np.random.default_rng(0)
    feats = [rng.normal(5, 3, (n, 4)).astype(np.float32) for n in (20, 35)]
    for f in audio.normalise(feats, "utterance"):
        np.testing.assert_allclose(f.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(f.std(0), 1, atol=1e-3)
    stats = audio.global_stats(feats)
    joined = np.concatenate(audio.normalise(feats, "global", stats))
    np.testing.assert_allclose(joined.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(joined.std(0), 1, atol=1e-3)
    np.testing.assert_array_equal(audio.normalise(feats, "none")[0], feats[0])
    with pytest.raises(ValueError):
        audio.normalise(feats, "global")


def test_stack_frames():
    stacked = audio.stack_frames(np.arange(10, dtype=np.float32).reshape(5, 2), 2)
    assert stacked.shape == (3, 4)
    np.testing.assert_array_equal(stacked[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(stacked[2], [8, 9, 0, 0])


def test_spec_augment_masks_within_lengths():
    x = np.ones((4, 50, 10), np.float32)
    lengths = np.array([50, 40, 30, 20])
    out = audio.spec_augment(
        x, lengths, np.random.default_rng(0), freq_masks=2, freq_width=3, time_masks=2, time_width=5
    )
    assert np.all(x == 1)  # input untouched
    assert (out == 0).any() and (out == 1).any()
    # time masks never start beyond the valid part
    for i, n in enumerate(lengths):
        zero_frames = np.where((out[i] == 0).all(-1))[0]
        assert np.all(zero_frames < n)


def test_time_stretch_changes_duration_and_keeps_the_envelope():
    ramp = np.stack([np.arange(40.0), np.full(40, 3.0)], axis=1).astype(np.float32)
    fast = audio.time_stretch(ramp, 2.0)
    slow = audio.time_stretch(ramp, 0.8)
    assert fast.shape == (20, 2) and slow.shape == (50, 2)
    for out in (fast, slow):
        # end points kept, the ramp stays a ramp, a constant feature stays constant
        assert out[0, 0] == 0 and out[-1, 0] == 39
        assert np.all(np.diff(out[:, 0]) > 0)
        np.testing.assert_allclose(out[:, 1], 3.0)
    assert audio.time_stretch(ramp, 1.0) is ramp
    with pytest.raises(ValueError, match="positive"):
        audio.time_stretch(ramp, 0.0)


def test_random_crop_keeps_a_contiguous_window():
    feats = np.arange(100, dtype=np.float32)[:, None]
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(200):
        out = audio.random_crop(feats, 0.3, rng)
        lengths.append(len(out))
        assert len(out) >= 70
        np.testing.assert_array_equal(np.diff(out[:, 0]), 1.0)  # contiguous
    assert min(lengths) < 75 and max(lengths) > 95  # the whole range of cuts is drawn
    starts = {int(audio.random_crop(feats, 0.3, rng)[0, 0]) for _ in range(50)}
    assert len(starts) > 5  # the cut falls on both ends, not only the tail
    np.testing.assert_array_equal(audio.random_crop(feats, 0.0, rng), feats)
    with pytest.raises(ValueError, match="crop_fraction"):
        audio.random_crop(feats, 1.0, rng)


def test_trim_db_cuts_silence_around_the_word():
    rng = np.random.default_rng(0)
    silence = (1e-4 * rng.standard_normal(int(0.3 * SR))).astype(np.float32)
    wave = np.concatenate([silence, tone(500, 0.2), silence, silence])
    kept = audio.compute_features(wave, audio.FeatureConfig())
    trimmed = audio.compute_features(wave, audio.FeatureConfig(trim_db=30))
    assert kept.shape[0] == audio.FeatureConfig().num_frames(len(wave))  # 101 frames
    assert 18 <= trimmed.shape[0] <= 26  # the 0.2 s tone, give or take a frame or two
    assert audio.cache_key(audio.FeatureConfig(trim_db=30), []) != audio.cache_key(
        audio.FeatureConfig(), []
    )
