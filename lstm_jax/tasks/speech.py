"""Speech: the Free Spoken Digit Dataset (FSDD) as isolated words and as connected digits.

Size: over 400 lines, for a reason. The two tasks
share `_SpeechTask` (feature loading, splits, batches, augmentation, the evaluation around
the shared padded loop); a module per task would make one domain import another, so they
stay together here, with data, CTC metrics and figures in their own modules (below).

Data. FSDD (https://github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0): 3,000
recordings `fsdd/recordings/{digit}_{speaker}_{index}.wav`, 6 speakers x 10 digits x 50
takes, 8 kHz mono. Files are looked up under the data root with
`lstm_jax.data.resolve_data_file` (downloaded from the repository where the network allows,
checked against `fsdd/SHA256SUMS-recordings.txt` when that file is there). Features come
from `lstm_jax.data.audio` (librosa log-mel or MFCC, cached on disk, then normalised).

Splits (index = the take number in the file name):
- `heldout_speaker=None` (official split): test = takes 0-4 of every speaker and digit
  (300 clips, the dataset's own split); FSDD has no validation split, so validation = takes
  45-49 (300 clips, `val_indices`), and train = takes 5-44 (2,400 clips). Validation comes
  from the far end because neighbouring takes share a session: nicolas' takes 0-9 of "eight"
  are cut short in the same way, and a model that never trained on takes 5-9 misses them.
  (The connected-digit task keeps validation = takes 5-9, as its figures were measured.)
- `heldout_speaker="theo"` (speaker independent): test = all 500 clips of that speaker;
  validation = takes 45-49 of the other five speakers (so model selection never sees the
  held-out voice; validation accuracy is speaker-dependent and optimistic); train = the other
  takes of the other five speakers (2,250 clips).

Tasks.
- `FSDDTask`: isolated-word classification. Model (`lstm_jax.models.SequenceHead`, the
  task's `head` node): frames -> recurrent core (the `model` group; a BiLSTM with
  `model.bidirectional=true`) -> masked mean pooling over the valid frames (or
  `head.pooling=last`: the forward state at the last valid frame concatenated with the
  backward state at frame 0) -> dropout (`head.dropout`) -> linear over the 10 digits.
  Cross-entropy; metrics `loss`, `acc`. Monitor `val/acc` (max).
- `ConnectedDigitsTask`: connected digits with CTC. Each utterance concatenates 2-5 FSDD
  clips of one split (train clips for train, validation clips for validation, test clips
  for test) at the waveform level, with gaps of `gap_ms` silence (low Gaussian noise of
  std `silence_noise`) between clips and up to `edge_ms` before and after; the pools are
  generated once from `data_seed` (independent of the training seed) and cached. Model:
  frames (optionally stacked, `frame_stack`, for a lower frame rate) -> core -> linear
  over blank + 10 digits per frame (a `SequenceHead` with pooling "none"); `optax.ctc_loss`
  (blank id 0, digit d is label d + 1); greedy decoding (best path, repeats merged, blanks
  dropped); metric `der`, the digit error rate = total edit distance / total reference
  digits, plus `ser` (utterances with any error). Monitor `val/der` (min).

Batches are padded with `seq_lengths`; the core masks exactly, so padding never changes a
prediction. `train_batch(step)` is a pure function of (seed, step): the epoch's order comes
from (seed, epoch) and, with `bucket_batches > 0`, batches hold utterances of similar length.
Train-time augmentation (`task.augment`), all drawn from (seed, step): random cropping
(`crop_fraction`, the isolated-word task only), speed perturbation (`speed_range`,
time-stretching the frames) and SpecAugment-style masks (`freq_masks`, `time_masks`). The
front end is `task.features` (`lstm_jax.data.audio.FeatureConfig`); the FSDD files, splits and
connected-digit synthesis are `lstm_jax.data.fsdd`'s, the CTC loss, decoding and error rates
`lstm_jax.metrics.ctc`'s, the figures `lstm_jax.figures.speech`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lstm_jax.data import audio
from lstm_jax.data.batching import EpochSampler, pad_sequences, padded_batches, sum_batches
from lstm_jax.data.fsdd import (
    NUM_DIGITS,
    SPEAKERS,
    connected_recipes,
    fsdd_split,
    parse_clip_name,
    render_connected,
    resolve_fsdd,
)
from lstm_jax.figures import speech as figures
from lstm_jax.metrics.ctc import BLANK, ctc_greedy_decode, ctc_loss, edit_distance
from lstm_jax.models import SequenceHead
from lstm_jax.tasks.base import Batch, Metrics, Task

# --------------------------------------------------------------------------------------
# Shared speech task machinery
# --------------------------------------------------------------------------------------


def _group(cls: type, value: Any) -> Any:
    """A config group as its dataclass: None -> defaults, a mapping -> cls(**mapping)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    fields = dict(value)
    if "trim_db" in fields and fields["trim_db"] is not None:
        fields["trim_db"] = float(fields["trim_db"])
    if "speed_range" in fields:
        fields["speed_range"] = tuple(fields["speed_range"])
    return cls(**fields)


class _SpeechTask(Task):
    """Feature loading, splits, batching and evaluation shared by the speech tasks.

    Subclasses build `self._splits[split] = {"feats": [(T, F)], "names": [...], ...labels}`
    in `_load` and define the loss and eval metrics.
    """

    num_outputs: int
    # The read-out when the targets fix it (CTC: every frame); None leaves it to `head`.
    pooling: str | None = None

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        cache_dir: str | None = None,
        features: audio.FeatureConfig | None = None,
        normalisation: str = "utterance",
        frame_stack: int = 1,
        speakers: Sequence[str] | None = None,
        num_indices: int = 50,
        heldout_speaker: str | None = None,
        test_indices: Sequence[int] = (0, 5),
        val_indices: Sequence[int] = (45, 50),
        bucket_batches: int = 20,
        pad_multiple: int = 32,
        eval_batch_size: int = 100,
        augment: audio.AugmentConfig | None = None,
        head: Callable[..., nnx.Module] | None = None,
        num_media: int = 4,
        download: bool = True,
    ):
        """`features`: the front end (`task.features`: kind, n_mels, n_mfcc, deltas,
        trim_db, n_fft, win_length, hop_length; `audio.FeatureConfig`); `augment`: the
        train-time augmentation (`task.augment`; `audio.AugmentConfig`). Either may be given
        as a mapping of its fields."""
        super().__init__(batch_size=batch_size, seed=seed, data_dir=data_dir)
        self.head = head or SequenceHead
        self.feature_config = _group(audio.FeatureConfig, features)
        if normalisation not in ("utterance", "global", "none"):
            raise ValueError(f"normalisation={normalisation!r}: expected utterance|global|none.")
        self.cache_dir = cache_dir
        self.normalisation = normalisation
        self.frame_stack = max(int(frame_stack), 1)
        self.speakers = tuple(speakers) if speakers else SPEAKERS
        self.num_indices = int(num_indices)
        self.heldout_speaker = heldout_speaker or None
        self.test_indices = tuple(test_indices)
        self.val_indices = tuple(val_indices)
        self.bucket_batches = int(bucket_batches)
        self.pad_multiple = int(pad_multiple)
        self.eval_batch_size = int(eval_batch_size)
        self.augment_config = _group(audio.AugmentConfig, augment)
        self.augment = self.augment_config.masks
        self.speed_range = self.augment_config.speed_range
        self.crop_fraction = float(self.augment_config.crop_fraction)
        self.num_media = int(num_media)
        self.download = bool(download)
        self.cache_files: dict[str, Path | None] = {}
        self.cache_hits: dict[str, bool] = {}
        self._splits: dict[str, dict[str, Any]] | None = None
        self._sampler: EpochSampler | None = None
        self._eval_fn: Callable | None = None

    # ---- data ----------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.feature_config.num_features * self.frame_stack

    def clip_splits(self) -> dict[str, list[str]]:
        return fsdd_split(
            self.speakers,
            self.num_indices,
            heldout_speaker=self.heldout_speaker,
            test_indices=self.test_indices,
            val_indices=self.val_indices,
        )

    def _features(self, name: str, recipe: Any, compute: Callable[[], list[np.ndarray]]):
        feats, path, hit = audio.cached_features(
            self.cache_dir, name, self.feature_config, recipe, compute
        )
        self.cache_files[name] = path
        self.cache_hits[name] = hit
        return feats

    def _load(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def _finish_splits(self, splits: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Normalises (stats from train) and stacks frames; records lengths."""
        stats = (
            audio.global_stats(splits["train"]["raw"]) if self.normalisation == "global" else None
        )
        for data in splits.values():
            feats = audio.normalise(data.pop("raw"), self.normalisation, stats)
            data["frames"] = feats  # normalised 10 ms frames, for the train-time warps
            data["feats"] = [audio.stack_frames(f, self.frame_stack) for f in feats]
            data["lengths"] = np.array([f.shape[0] for f in data["feats"]], np.int32)
        return splits

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        if self._splits is None:
            self._splits = self._load()
        return self._splits

    def _split(self, split: str) -> dict[str, Any]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; expected 'train', 'val' or 'test'.")
        return self.splits[split]

    def _labels(self, data: dict[str, Any], idx: np.ndarray) -> Batch:
        raise NotImplementedError

    def make_batch(
        self, split: str, idx: np.ndarray, feats: Sequence[np.ndarray] | None = None
    ) -> Batch:
        """The padded batch of utterances `idx` of `split`: their stored features, or
        `feats` (augmented versions of them) in their place."""
        data = self._split(split)
        if feats is None:
            feats = [data["feats"][i] for i in idx]
        x, lengths = pad_sequences(feats, self.pad_multiple)
        return {"x": x, "seq_lengths": lengths, **self._labels(data, np.asarray(idx))}

    @property
    def sampler(self) -> EpochSampler:
        """Epochs from (seed, 0, epoch), bucketed by length (`bucket_batches`)."""
        if self._sampler is None:
            lengths = self._split("train")["lengths"]
            self._sampler = EpochSampler(
                len(lengths),
                self.batch_size,
                self.seed,
                stream=(0,),
                lengths=lengths,
                bucket_batches=self.bucket_batches,
            )
        return self._sampler

    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def train_batch(self, step: int) -> Batch:
        idx = self.sampler.indices(step)
        if self.speed_range != (1.0, 1.0) or self.crop_fraction > 0:
            batch = self._warped_batch(idx, np.random.default_rng([self.seed, 2, int(step)]))
        else:
            batch = self.make_batch("train", idx)
        if self.augment["freq_masks"] or self.augment["time_masks"]:
            rng = np.random.default_rng([self.seed, 1, int(step)])
            batch["x"] = self._augment(batch["x"], batch["seq_lengths"], rng)
        return batch

    def _warped_batch(self, idx: np.ndarray, rng: np.random.Generator) -> Batch:
        """A train batch whose utterances are randomly cropped (`crop_fraction`) and then
        time-stretched by a factor drawn uniformly from `speed_range`, before frame stacking
        and padding."""
        data = self._split("train")
        feats = []
        for i in idx:
            f = data["frames"][i]
            if self.crop_fraction > 0:
                f = audio.random_crop(f, self.crop_fraction, rng)
            f = audio.time_stretch(f, float(rng.uniform(*self.speed_range)))
            feats.append(audio.stack_frames(f, self.frame_stack))
        return self.make_batch("train", idx, feats)

    def _augment(self, x: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """SpecAugment on the un-stacked frames (masks align with 10 ms frames)."""
        k, f = self.frame_stack, self.feature_config.num_features
        b, t, _ = x.shape
        flat = x.reshape(b, t * k, f)
        out = audio.spec_augment(flat, lengths * k, rng, **self.augment)
        return out.reshape(b, t, k * f)

    # ---- model ---------------------------------------------------------------------
    def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> nnx.Module:
        fixed = {} if self.pooling is None else {"pooling": self.pooling}
        return self.head(model_config, self.in_features, self.num_outputs, rngs=rngs, **fixed)

    def forward(self, model: nnx.Module, batch: Batch, **kwargs) -> tuple[jax.Array, Any]:
        return model(
            jnp.asarray(batch["x"], jnp.float32), jnp.asarray(batch["seq_lengths"]), **kwargs
        )

    def _objective(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, Any]]:
        """Mean loss and extra train metrics from the model outputs."""
        raise NotImplementedError

    def loss(
        self,
        model: nnx.Module,
        batch: Batch,
        carry: Any = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        # `key` is unused: SequenceHead takes no dropout key yet, so its head dropout draws
        # from the module's own stream (the model state the trainer carries).
        logits, gates = self.forward(
            model, batch, return_gates=return_gates, hidden_perturbation=hidden_perturbation
        )
        value, metrics = self._objective(logits, batch)
        return value, {"metrics": metrics, "carry": carry, "gates": gates}

    # ---- evaluation ----------------------------------------------------------------
    def _eval_outputs(self, model: nnx.Module, batch: Batch) -> dict[str, jax.Array]:
        raise NotImplementedError

    def _jitted_eval(self) -> Callable:
        if self._eval_fn is None:
            self._eval_fn = nnx.jit(self._eval_outputs)
        return self._eval_fn

    def evaluate(self, model: nnx.Module, split: str) -> Metrics:
        """The padded loop over `split` in fixed-size batches sorted by length (short
        padding, few shapes), with the model in the mode it is handed."""
        data = self._split(split)
        n = len(data["feats"])
        eval_fn = self._jitted_eval()

        def sums(batch: Batch) -> dict[str, Any]:
            inputs = {k: v for k, v in batch.items() if k not in ("weight", "index")}
            out = {k: np.asarray(v) for k, v in eval_fn(model, inputs).items()}
            return self._batch_sums(split, out, batch)

        def make(idx: np.ndarray) -> Batch:
            return {**self.make_batch(split, idx), "index": idx}

        order = np.argsort(data["lengths"], kind="stable")
        batches = padded_batches(n, self.eval_batch_size, make, order=order)
        return self._finish_eval(sum_batches(batches, sums), n)

    def _batch_sums(self, split: str, out: dict[str, np.ndarray], batch: Batch) -> dict:
        """Per-utterance values (B,) of one batch from its `_eval_outputs`."""
        raise NotImplementedError

    def _finish_eval(self, totals: dict[str, float], n: int) -> Metrics:
        raise NotImplementedError

    def _media_indices(self, split: str) -> np.ndarray:
        n = len(self._split(split)["feats"])
        return np.linspace(0, n - 1, min(self.num_media, n)).astype(int)

    def _spectrogram(self, split: str, i: int) -> np.ndarray:
        """(F, T) model input of utterance i, frames un-stacked, for plotting."""
        f = self._split(split)["feats"][i]
        return f.reshape(-1, self.feature_config.num_features).T


# --------------------------------------------------------------------------------------
# Isolated digits
# --------------------------------------------------------------------------------------


class FSDDTask(_SpeechTask):
    """FSDD isolated-word classification (see the module docstring)."""

    monitor = "val/acc"
    metric_names = ("loss", "acc")
    monitor_tiebreak = "val/loss"  # 300 validation clips: accuracy ties often near the top
    num_outputs = NUM_DIGITS

    def __init__(self, *, head: Callable[..., nnx.Module] | None = None, **kwargs):
        # masked mean pooling unless the config's head says otherwise
        super().__init__(head=head or functools.partial(SequenceHead, pooling="mean"), **kwargs)

    def _load(self) -> dict[str, dict[str, Any]]:
        names = self.clip_splits()
        every = sorted(n for ns in names.values() for n in ns)
        paths = resolve_fsdd(self.data_dir, every, download=self.download)
        by_name = dict(zip(every, paths, strict=True))
        sr = self.feature_config.sample_rate
        feats = self._features(
            "fsdd",
            audio.file_recipe(paths),
            lambda: [
                audio.compute_features(audio.load_wav(p, sr), self.feature_config) for p in paths
            ],
        )
        feat_of = dict(zip(every, feats, strict=True))
        splits = {}
        for split, ns in names.items():
            splits[split] = {
                "names": ns,
                "paths": [by_name[n] for n in ns],
                "raw": [feat_of[n] for n in ns],
                "y": np.array([parse_clip_name(n)[0] for n in ns], np.int32),
            }
        return self._finish_splits(splits)

    def _labels(self, data: dict[str, Any], idx: np.ndarray) -> Batch:
        return {"y": data["y"][idx]}

    def _objective(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, Any]]:
        y = jnp.asarray(batch["y"])
        value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
        return value, {"acc": acc}

    def _eval_outputs(self, model: nnx.Module, batch: Batch) -> dict[str, jax.Array]:
        logits, _ = self.forward(model, batch)
        return {"logits": logits}

    def _batch_sums(self, split: str, out: dict[str, np.ndarray], batch: Batch) -> dict:
        y, logits = batch["y"], out["logits"]
        nll = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits, -1)), y[:, None], 1)
        return {"nll": nll[:, 0], "hit": logits.argmax(-1) == y}

    def _finish_eval(self, totals: dict[str, float], n: int) -> Metrics:
        return {"loss": totals["nll"] / n, "acc": totals["hit"] / n}

    def media(self, model: nnx.Module, split: str) -> dict[str, Any]:
        idx = self._media_indices(split)
        logits = np.asarray(self._jitted_eval()(model, self.make_batch(split, idx))["logits"])
        probs = np.asarray(jax.nn.softmax(logits, -1))
        data = self._split(split)
        figs = {}
        for j, i in enumerate(idx):
            figs[f"{split}_spectrogram_{j}"] = figures.digit_figure(
                self._spectrogram(split, i),
                probs[j],
                data["names"][i],
                int(data["y"][i]),
                self.feature_config.kind,
            )
        return figs


# --------------------------------------------------------------------------------------
# Connected digits with CTC
# --------------------------------------------------------------------------------------


class ConnectedDigitsTask(_SpeechTask):
    """Connected FSDD digits, BiLSTM + CTC (see the module docstring)."""

    monitor = "val/der"
    metric_names = ("loss", "der", "ser")
    monitor_tiebreak = "val/loss"
    num_outputs = NUM_DIGITS + 1
    pooling = "none"

    def __init__(
        self,
        *,
        num_train: int = 6000,
        num_val: int = 500,
        num_test: int = 1000,
        min_digits: int = 2,
        max_digits: int = 5,
        gap_ms: Sequence[float] = (50.0, 300.0),
        edge_ms: float = 100.0,
        silence_noise: float = 1e-3,
        data_seed: int = 1234,
        **kwargs,
    ):
        chosen = getattr(kwargs.get("head"), "keywords", {}).get("pooling", "none")
        if chosen != "none":
            raise ValueError(
                f"head.pooling={chosen!r}: CTC reads every frame; set task.head.pooling=none."
            )
        super().__init__(**kwargs)
        if self.crop_fraction > 0:
            raise ValueError(
                "crop_fraction > 0 would cut digits out of connected utterances while their "
                "labels stay; set task.augment.crop_fraction=0 (speed_range is fine)."
            )
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}.")
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.min_digits = int(min_digits)
        self.max_digits = int(max_digits)
        self.gap_ms = tuple(float(g) for g in gap_ms)
        self.edge_ms = float(edge_ms)
        self.silence_noise = float(silence_noise)
        self.data_seed = int(data_seed)

    def _load(self) -> dict[str, dict[str, Any]]:
        names = self.clip_splits()
        sr = self.feature_config.sample_rate
        splits = {}
        for s_id, split in enumerate(("train", "val", "test")):
            clips = names[split]
            rng = np.random.default_rng([self.data_seed, s_id])
            recipes = connected_recipes(
                clips,
                self.sizes[split],
                rng,
                min_digits=self.min_digits,
                max_digits=self.max_digits,
                gap_ms=self.gap_ms,
                edge_ms=self.edge_ms,
                sample_rate=sr,
            )
            paths = resolve_fsdd(self.data_dir, clips, download=self.download)

            def compute(paths=paths, clips=clips, recipes=recipes):
                waves = {n: audio.load_wav(p, sr) for n, p in zip(clips, paths, strict=True)}
                return [
                    audio.compute_features(
                        render_connected(r, waves, self.silence_noise), self.feature_config
                    )
                    for r in recipes
                ]

            recipe_key = {
                "files": audio.file_recipe(paths),
                "utterances": recipes,
                "silence_noise": self.silence_noise,
            }
            raw = self._features(f"fsdd_connected_{split}", recipe_key, compute)
            digits = [[parse_clip_name(c)[0] for c in r["clips"]] for r in recipes]
            labels = np.zeros((len(recipes), self.max_digits), np.int32)
            for i, d in enumerate(digits):
                labels[i, : len(d)] = np.asarray(d) + 1
            splits[split] = {
                "names": [" ".join(Path(c).stem for c in r["clips"]) for r in recipes],
                "recipes": recipes,
                "digits": digits,
                "raw": raw,
                "labels": labels,
                "label_lengths": np.array([len(d) for d in digits], np.int32),
            }
        return self._finish_splits(splits)

    def _labels(self, data: dict[str, Any], idx: np.ndarray) -> Batch:
        return {"labels": data["labels"][idx], "label_lengths": data["label_lengths"][idx]}

    def _per_utterance_loss(self, logits: jax.Array, batch: Batch) -> jax.Array:
        return ctc_loss(
            logits,
            jnp.asarray(batch["seq_lengths"]),
            jnp.asarray(batch["labels"]),
            jnp.asarray(batch["label_lengths"]),
        )

    def _objective(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, Any]]:
        return self._per_utterance_loss(logits, batch).mean(), {}

    def _eval_outputs(self, model: nnx.Module, batch: Batch) -> dict[str, jax.Array]:
        logits, _ = self.forward(model, batch)
        per_utt = self._per_utterance_loss(logits, batch)
        return {"loss": per_utt, "path": jnp.argmax(logits, -1).astype(jnp.int32)}

    def decode(self, out: dict[str, np.ndarray], lengths: np.ndarray) -> list[list[int]]:
        """Greedy CTC decoding of `_eval_outputs` frame paths: digit lists."""
        return [
            [p - 1 for p in ctc_greedy_decode(out["path"][i], lengths[i])]
            for i in range(len(lengths))
        ]

    def _batch_sums(self, split: str, out: dict[str, np.ndarray], batch: Batch) -> dict:
        """Per utterance: CTC loss, edits of the greedy decoding against the reference
        digits, reference length, and whether any digit is wrong."""
        digits = self._split(split)["digits"]
        refs = [digits[i] for i in batch["index"]]
        hyps = self.decode(out, batch["seq_lengths"])
        edits = np.array([edit_distance(r, h) for r, h in zip(refs, hyps, strict=True)])
        return {
            "loss": out["loss"],
            "edits": edits,
            "digits": np.array([len(r) for r in refs]),
            "wrong": np.array([r != h for r, h in zip(refs, hyps, strict=True)]),
        }

    def _finish_eval(self, totals: dict[str, float], n: int) -> Metrics:
        """der = total edits / total reference digits (as `error_rate`); ser = wrong / n."""
        return {
            "loss": totals["loss"] / n,
            "der": totals["edits"] / max(totals["digits"], 1.0),
            "ser": totals["wrong"] / n,
        }

    def media(self, model: nnx.Module, split: str) -> dict[str, Any]:
        idx = self._media_indices(split)
        logits, _ = nnx.jit(self.forward)(model, self.make_batch(split, idx))
        logits = np.asarray(logits)
        data = self._split(split)
        probs = np.asarray(jax.nn.softmax(logits, -1))
        figs = {}
        for j, i in enumerate(idx):
            n = int(data["lengths"][i])
            hyp = [p - 1 for p in ctc_greedy_decode(probs[j].argmax(-1), n)]
            ref = data["digits"][i]
            figs[f"{split}_ctc_{j}"] = figures.ctc_figure(
                self._spectrogram(split, i),
                probs[j, :n],
                ref,
                hyp,
                edit_distance(ref, hyp),
                frame_stack=self.frame_stack,
                kind=self.feature_config.kind,
                blank=BLANK,
            )
        return figs


__all__ = ["ConnectedDigitsTask", "FSDDTask"]
