"""Audio front end for the speech tasks: WAV reading, librosa features, an on-disk feature
cache, normalisation, frame stacking and SpecAugment-style masking (padding and
length-bucketed epochs are `lstm_jax.data.batching`'s).

Features (`FeatureConfig`, the defaults are the usual speech front end at FSDD's 8 kHz):

- `kind="logmel"`: `librosa.feature.melspectrogram` (power 2, Hann window, `center=True`
  with zero padding, Slaney mel filters, librosa's defaults) with a 25 ms window
  (`win_length=200`) zero-padded to `n_fft=256`, a 10 ms hop (`hop_length=80`), `n_mels=40`
  bands from `fmin=20` Hz to `fmax=sr/2`; then `librosa.power_to_db(ref=1.0, amin=1e-10,
  top_db=None)`, i.e. absolute dB with a -100 dB floor and no per-utterance clipping.
- `kind="mfcc"`: `librosa.feature.mfcc` (DCT-II, ortho) of that log-mel, `n_mfcc=13`.
- `deltas=True` appends first and second differences (`librosa.feature.delta`, width 9).
- `trim_db=x` first cuts leading and trailing audio more than x dB below the clip's loudest
  frame (`librosa.effects.trim`, frames of `n_fft` samples every `hop_length`).

Features are (T, F) float32, one row per 10 ms frame; T = 1 + len(wave) // hop_length.

Cache: `cached_features(cache_dir, name, recipe, compute)` stores all utterances of one set
as one `.npz` (frames concatenated, with offsets) under `cache_dir`, named by a hash of the
feature parameters and the recipe (the file list with sizes, or the generation recipe of
synthetic utterances). A second run with the same parameters loads the file instead of
recomputing; changing any parameter or file gives a new key. Writes are atomic.

Normalisation (applied after the cache, so it is cheap to switch): "utterance" (mean and
variance of each feature over the frames of each utterance: per-utterance CMVN), "global"
(mean and std of each feature over all training frames), or "none".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

CACHE_ENV = "LSTM_JAX_CACHE"
_CACHE_VERSION = 1
_EPS = 1e-5


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the librosa front end (see the module docstring)."""

    kind: str = "logmel"  # logmel | mfcc
    sample_rate: int = 8000
    n_fft: int = 256
    win_length: int = 200  # 25 ms at 8 kHz
    hop_length: int = 80  # 10 ms at 8 kHz
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float | None = None  # None: sample_rate / 2
    n_mfcc: int = 13
    deltas: bool = False
    trim_db: float | None = None  # None: keep the clip as recorded

    def __post_init__(self):
        if self.kind not in ("logmel", "mfcc"):
            raise ValueError(f"features kind={self.kind!r}: expected 'logmel' or 'mfcc'.")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} exceeds n_fft={self.n_fft}.")

    @property
    def num_features(self) -> int:
        base = self.n_mels if self.kind == "logmel" else self.n_mfcc
        return base * (3 if self.deltas else 1)

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation of the speech tasks (the `task.augment` group), all drawn
    from (seed, step): SpecAugment-style masks (`freq_masks` of up to `freq_width` bands,
    `time_masks` of up to `time_width` frames; 0 disables), speed perturbation (time-stretch
    by a factor from `speed_range` = [min, max]; [1, 1] disables) and random cropping (up to
    `crop_fraction` of the frames, split between start and end)."""

    freq_masks: int = 0
    freq_width: int = 8
    time_masks: int = 0
    time_width: int = 10
    speed_range: tuple[float, float] = (1.0, 1.0)
    crop_fraction: float = 0.0

    def __post_init__(self):
        lo, hi = (float(v) for v in self.speed_range)
        if not 0 < lo <= hi:
            raise ValueError(
                f"speed_range={list(self.speed_range)}: expected [min, max] factors with "
                "0 < min <= max ([1.0, 1.0] disables speed perturbation)."
            )
        object.__setattr__(self, "speed_range", (lo, hi))
        if not 0.0 <= float(self.crop_fraction) < 1.0:
            raise ValueError(f"crop_fraction={self.crop_fraction}: expected a fraction in [0, 1).")

    @property
    def masks(self) -> dict[str, int]:
        """The keyword arguments of `spec_augment`."""
        return {
            "freq_masks": int(self.freq_masks),
            "freq_width": int(self.freq_width),
            "time_masks": int(self.time_masks),
            "time_width": int(self.time_width),
        }


def load_wav(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """A mono float32 waveform in [-1, 1] at `sample_rate` (channels averaged, resampled
    with librosa if the file has another rate)."""
    import soundfile as sf

    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise ValueError(
            f"{path} cannot be decoded as audio ({str(error).strip()}); replace it with a good "
            "copy of the dataset's file."
        ) from None
    wave = wave.mean(axis=1)
    if sr != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def compute_features(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(T, F) float32 features of a mono waveform (see the module docstring)."""
    import librosa

    wave = np.asarray(wave, np.float32)
    if cfg.trim_db is not None:
        # Some FSDD takes carry up to 0.8 s of untrimmed silence after the word, which
        # per-utterance CMVN and mean pooling then average in.
        wave, _ = librosa.effects.trim(
            wave, top_db=cfg.trim_db, frame_length=cfg.n_fft, hop_length=cfg.hop_length
        )
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        power=2.0,
    )
    feats = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    if cfg.kind == "mfcc":
        feats = librosa.feature.mfcc(S=feats, n_mfcc=cfg.n_mfcc)
    if cfg.deltas:
        d1 = librosa.feature.delta(feats, width=9, order=1, mode="nearest")
        d2 = librosa.feature.delta(feats, width=9, order=2, mode="nearest")
        feats = np.concatenate([feats, d1, d2], axis=0)
    return np.ascontiguousarray(feats.T, dtype=np.float32)


# --------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """$LSTM_JAX_CACHE/features, else $XDG_CACHE_HOME/lstm_jax/features, else
    ~/.cache/lstm_jax/features."""
    if os.environ.get(CACHE_ENV):
        return Path(os.path.expanduser(os.environ[CACHE_ENV])) / "features"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lstm_jax" / "features"


def cache_key(cfg: FeatureConfig, recipe: object) -> str:
    """A short hash of the feature parameters and a JSON-serialisable recipe."""
    # Fields added after version 1 enter the key only when set, so older caches stay valid.
    features = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "trim_db" or v is not None}
    payload = json.dumps(
        {"version": _CACHE_VERSION, "features": features, "recipe": recipe},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def file_recipe(paths: Sequence[str | os.PathLike]) -> list[tuple[str, int]]:
    """The recipe of a set of files: (name, size in bytes) of each, in order."""
    return [(Path(p).name, os.path.getsize(p)) for p in paths]


def pack(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates (T_i, F) arrays: data (sum T_i, F), offsets (N + 1,) int64."""
    offsets = np.zeros(len(arrays) + 1, np.int64)
    offsets[1:] = np.cumsum([a.shape[0] for a in arrays])
    data = np.concatenate(arrays, axis=0) if arrays else np.zeros((0, 0), np.float32)
    return data.astype(np.float32, copy=False), offsets


def unpack(data: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def cached_features(
    cache_dir: str | os.PathLike | None,
    name: str,
    cfg: FeatureConfig,
    recipe: object,
    compute: Callable[[], list[np.ndarray]],
) -> tuple[list[np.ndarray], Path | None, bool]:
    """Features of one set, from `cache_dir` when present, else `compute()` then stored.

    Returns (features, cache file or None when caching is off, whether it was a cache hit).
    `cache_dir=False`-like values ("" or "none") turn the cache off.
    """
    if cache_dir is not None and str(cache_dir).lower() in ("", "none", "false", "off"):
        return compute(), None, False
    root = Path(os.path.expanduser(str(cache_dir))) if cache_dir else default_cache_dir()
    path = root / f"{name}-{cache_key(cfg, recipe)}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return unpack(z["data"], z["offsets"]), path, True
        except (OSError, ValueError, KeyError):  # a corrupt file: recompute and overwrite
            pass
    feats = compute()
    data, offsets = pack(feats)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, data=data, offsets=offsets)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return feats, path, False


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------


def global_stats(feats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over all frames of `feats` (the training set)."""
    data = np.concatenate(list(feats), axis=0).astype(np.float64)
    return data.mean(axis=0).astype(np.float32), (data.std(axis=0) + _EPS).astype(np.float32)


def normalise(
    feats: Sequence[np.ndarray],
    mode: str,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """mode "utterance": per-utterance CMVN; "global": (x - mean) / std with `stats`
    (from `global_stats` of the training set); "none": unchanged."""
    if mode == "none":
        return [np.asarray(f, np.float32) for f in feats]
    if mode == "utterance":
        out = []
        for f in feats:
            mu = f.mean(axis=0, keepdims=True)
            sd = f.std(axis=0, keepdims=True) + _EPS
            out.append(((f - mu) / sd).astype(np.float32))
        return out
    if mode == "global":
        if stats is None:
            raise ValueError("normalisation='global' needs the training-set stats.")
        mean, std = stats
        return [((f - mean) / std).astype(np.float32) for f in feats]
    raise ValueError(f"normalisation={mode!r}: expected 'utterance', 'global' or 'none'.")


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------


def stack_frames(feats: np.ndarray, factor: int) -> np.ndarray:
    """Low frame rate: concatenates each `factor` consecutive frames (T, F) ->
    (ceil(T / factor), F * factor), zero-padding the end."""
    if factor <= 1:
        return feats
    t, f = feats.shape
    t_out = -(-t // factor)
    padded = np.zeros((t_out * factor, f), feats.dtype)
    padded[:t] = feats
    return padded.reshape(t_out, factor * f)


def spec_augment(
    x: np.ndarray,
    lengths: np.ndarray,
    rng: np.random.Generator,
    *,
    freq_masks: int = 0,
    freq_width: int = 0,
    time_masks: int = 0,
    time_width: int = 0,
) -> np.ndarray:
    """SpecAugment-style masking (Park et al. 2019) of a padded batch x (B, T, F), in place
    of a copy: `freq_masks` bands of up to `freq_width` features and `time_masks` spans of
    up to `time_width` frames (at most a fifth of each utterance) are set to zero (the
    normalised mean)."""
    x = x.copy()
    b, _, f = x.shape
    for i in range(b):
        for _ in range(freq_masks):
            w = int(rng.integers(0, freq_width + 1))
            if w:
                s = int(rng.integers(0, max(f - w, 0) + 1))
                x[i, :, s : s + w] = 0.0
        n = int(lengths[i])
        for _ in range(time_masks):
            w = int(rng.integers(0, min(time_width, n // 5) + 1))
            if w:
                s = int(rng.integers(0, n - w + 1))
                x[i, s : s + w, :] = 0.0
    return x


def time_stretch(feats: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation on features: (T, F) -> (max(1, round(T / factor)), F) by linear
    interpolation along time (factor > 1: faster, shorter). The spectral envelope is kept;
    Ko et al. (2015) perturb the waveform, which also shifts pitch, but at 10 ms frames the
    duration change is what varies most between takes of a digit."""
    if factor <= 0:
        raise ValueError(f"time_stretch factor must be positive, got {factor}.")
    t = feats.shape[0]
    t_new = max(1, round(t / factor))
    if t_new == t:
        return feats
    pos = np.linspace(0.0, t - 1, t_new)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, None].astype(feats.dtype)
    return feats[lo] * (1 - w) + feats[hi] * w


def random_crop(feats: np.ndarray, crop_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Drops up to `crop_fraction` of the T frames of (T, F), split at random between the
    start and the end (a clip trimmed tighter than usual, e.g. a lost final plosive)."""
    if not 0.0 <= crop_fraction < 1.0:
        raise ValueError(f"crop_fraction must be in [0, 1), got {crop_fraction}.")
    t = feats.shape[0]
    drop = int(rng.integers(0, int(crop_fraction * t) + 1))
    start = int(rng.integers(0, drop + 1))
    return feats[start : t - (drop - start)]
