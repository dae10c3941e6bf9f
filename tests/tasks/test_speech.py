"""Speech tasks: FSDD splits, batches, padding invariance, CTC loss and decoding, edit
distance. The data are tiny generated WAVs ("digit" d = a tone at 300 + 250 d Hz); the one
test that reads the real FSDD skips when it is absent."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from lstm_jax.data.batching import sum_batches
from lstm_jax.data.fsdd import parse_clip_name
from lstm_jax.models import SequenceHead
from lstm_jax.models.core import model_config as configs_model
from lstm_jax.tasks import speech

SR = 8000
SPEAKERS = ["anna", "bob"]
NUM_INDICES = 4  # takes 0: test, 1: val, 2-3: train


def model_config(cell="lstm", **overrides):
    cfg = {"hidden_size": 8, "num_layers": 1, "bidirectional": True, "dropout": 0.0}
    return configs_model(cell, **{**cfg, **overrides})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rec = root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s, speaker in enumerate(SPEAKERS):
        for digit in range(10):
            for index in range(NUM_INDICES):
                n = int(SR * (0.08 + 0.03 * ((digit + index + s) % 4)))
                t = np.arange(n) / SR
                freq = (300 + 250 * digit) * (1 + 0.03 * s)
                wave = 0.3 * np.sin(2 * np.pi * freq * t) * np.hanning(n)
                wave += 0.003 * rng.standard_normal(n)
                sf.write(rec / f"{digit}_{speaker}_{index}.wav", wave.astype(np.float32), SR)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One feature cache for the module (the cache tests use their own)."""
    return tmp_path_factory.mktemp("cache")


def task_kwargs(data_dir, cache_dir, **overrides):
    kwargs = {
        "batch_size": 8,
        "seed": 0,
        "data_dir": str(data_dir),
        "cache_dir": str(cache_dir),
        "speakers": SPEAKERS,
        "num_indices": NUM_INDICES,
        "test_indices": [0, 1],
        "val_indices": [1, 2],
        "pad_multiple": 8,
        "eval_batch_size": 16,
        "download": False,
    }
    kwargs.update(overrides)
    return kwargs


def test_missing_data_names_the_file(tmp_path):
    task = speech.FSDDTask(**task_kwargs(tmp_path / "nowhere", tmp_path))
    with pytest.raises(FileNotFoundError, match=r"fsdd/recordings/0_anna_0.wav.*paths.data_dir"):
        task.train_batch(0)


# ---- batches and cache ---------------------------------------------------------------------


def test_fsdd_batches_are_deterministic_and_cached(data_dir, tmp_path):
    task = speech.FSDDTask(
        **task_kwargs(data_dir, tmp_path, augment={"freq_masks": 1, "time_masks": 1})
    )
    b0, b0_again, b1 = task.train_batch(0), task.train_batch(0), task.train_batch(1)
    assert b0["x"].shape[0] == 8 and b0["x"].shape[2] == 40 and b0["x"].shape[1] % 8 == 0
    assert b0["seq_lengths"].dtype == np.int32 and b0["y"].dtype == np.int32
    for k in b0:
        np.testing.assert_array_equal(b0[k], b0_again[k])
    assert not np.array_equal(b0["x"], b1["x"])
    assert task.cache_hits == {"fsdd": False}
    sizes = {s: len(task.splits[s]["feats"]) for s in ("train", "val", "test")}
    assert sizes == {"train": 40, "val": 20, "test": 20}
    # a fresh task (a second run) reads the cache and replays the same batches
    again = speech.FSDDTask(
        **task_kwargs(data_dir, tmp_path, augment={"freq_masks": 1, "time_masks": 1})
    )
    np.testing.assert_array_equal(again.train_batch(1)["x"], b1["x"])
    assert again.cache_hits == {"fsdd": True}
    # one epoch visits every training utterance once
    steps = task.steps_per_epoch()
    names = task.splits["train"]["names"]
    seen = []
    for step in range(steps):
        x = task.train_batch(step)
        seen += [tuple(v) for v in x["y"]] if x["y"].ndim > 1 else x["y"].tolist()
    assert len(seen) == steps * 8 <= len(names)


def test_speed_and_crop_augmentation_vary_train_batches_only(data_dir, cache):
    plain = speech.FSDDTask(**task_kwargs(data_dir, cache))
    warped = speech.FSDDTask(
        **task_kwargs(data_dir, cache, augment={"speed_range": [0.5, 0.6], "crop_fraction": 0.2})
    )
    a, b = plain.train_batch(3), warped.train_batch(3)
    np.testing.assert_array_equal(a["y"], b["y"])  # same utterances, same order
    # factors 0.5-0.6 stretch every utterance to 1.4-2.4x its cropped length
    assert np.all(b["seq_lengths"] > 1.3 * 0.8 * a["seq_lengths"])
    again = speech.FSDDTask(
        **task_kwargs(data_dir, cache, augment={"speed_range": [0.5, 0.6], "crop_fraction": 0.2})
    )
    np.testing.assert_array_equal(again.train_batch(3)["x"], b["x"])  # a function of the step
    # evaluation reads the clips as recorded
    np.testing.assert_array_equal(
        warped.make_batch("test", np.arange(4))["x"], plain.make_batch("test", np.arange(4))["x"]
    )
    with pytest.raises(ValueError, match="speed_range"):
        speech.FSDDTask(**task_kwargs(data_dir, cache, augment={"speed_range": [1.2, 0.9]}))
    with pytest.raises(ValueError, match="crop_fraction=0"):
        speech.ConnectedDigitsTask(**task_kwargs(data_dir, cache, augment={"crop_fraction": 0.1}))


def test_speaker_heldout_task_tests_on_the_held_out_voice(data_dir, cache):
    task = speech.FSDDTask(**task_kwargs(data_dir, cache, heldout_speaker="bob"))
    assert {parse_clip_name(n)[1] for n in task.splits["test"]["names"]} == {"bob"}
    assert len(task.splits["test"]["names"]) == 10 * NUM_INDICES
    assert {parse_clip_name(n)[1] for n in task.splits["train"]["names"]} == {"anna"}


# ---- padding invariance -------------------------------------------------------------------


@pytest.mark.parametrize(
    "pooling, bidirectional", [("mean", True), ("last", True), ("last", False)]
)
def test_padding_never_changes_a_prediction(data_dir, cache, pooling, bidirectional):
    head = functools.partial(SequenceHead, pooling=pooling)
    task = speech.FSDDTask(**task_kwargs(data_dir, cache, head=head))
    model = task.make_model(model_config(bidirectional=bidirectional), rngs=nnx.Rngs(0))
    model.eval()
    lengths = task.splits["test"]["lengths"]
    short = int(np.argmin(lengths))
    others = np.argsort(lengths)[-3:]
    alone = task.make_batch("test", np.array([short]))
    padded = task.make_batch("test", np.concatenate([others, [short]]))
    assert padded["x"].shape[1] > alone["x"].shape[1]
    logits_alone, _ = task.forward(model, alone)
    logits_padded, _ = task.forward(model, padded)
    np.testing.assert_allclose(logits_padded[-1], logits_alone[0], rtol=1e-5, atol=1e-5)
    # garbage in the padding changes nothing either
    noisy = dict(padded)
    x = padded["x"].copy()
    x[-1, lengths[short] :] = 7.0
    noisy["x"] = x
    np.testing.assert_allclose(task.forward(model, noisy)[0][-1], logits_alone[0], atol=1e-5)


def test_ctc_frame_outputs_ignore_padding(data_dir, cache):
    task = speech.ConnectedDigitsTask(
        **task_kwargs(data_dir, cache, num_train=16, num_val=4, num_test=4, frame_stack=2)
    )
    model = task.make_model(model_config(), rngs=nnx.Rngs(0))
    model.eval()
    lengths = task.splits["test"]["lengths"]
    i, j = int(np.argmin(lengths)), int(np.argmax(lengths))
    n = int(lengths[i])
    alone, _ = task.forward(model, task.make_batch("test", np.array([i])))
    both, _ = task.forward(model, task.make_batch("test", np.array([j, i])))
    np.testing.assert_allclose(both[1, :n], alone[0, :n], atol=1e-5)


def test_connected_task_labels_and_cache(data_dir, tmp_path):
    kwargs = task_kwargs(data_dir, tmp_path, num_train=24, num_val=6, num_test=6, frame_stack=2)
    task = speech.ConnectedDigitsTask(**kwargs)
    batch = task.train_batch(0)
    assert batch["x"].shape[2] == 80 and batch["labels"].shape == (8, 5)
    for lab, n in zip(batch["labels"], batch["label_lengths"], strict=True):
        assert 2 <= n <= 5 and np.all(lab[:n] >= 1) and np.all(lab[n:] == 0)
    # test utterances are made of test clips only (take 0)
    for recipe in task.splits["test"]["recipes"]:
        assert all(parse_clip_name(c)[2] == 0 for c in recipe["clips"])
    assert not any(task.cache_hits.values())
    again = speech.ConnectedDigitsTask(**kwargs)
    _ = again.splits
    assert all(again.cache_hits.values())
    np.testing.assert_array_equal(again.train_batch(0)["x"], batch["x"])


# ---- training, evaluation and media ----------------------------------------------------------


def _fit(task, model, steps, lr=1e-2):
    import optax

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        def loss_fn(p):
            return task.loss(nnx.merge(graphdef, p, rest), batch)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for s in range(steps):
        params, opt_state, loss = step(params, opt_state, task.train_batch(s))
        losses.append(float(loss))
    return nnx.merge(graphdef, params, rest), losses


def test_fsdd_task_learns_the_tones_and_makes_figures(data_dir, cache):
    # global normalisation: per-utterance CMVN would erase a steady tone's spectrum
    task = speech.FSDDTask(**task_kwargs(data_dir, cache, pad_multiple=32, normalisation="global"))
    model = task.make_model(model_config(hidden_size=16), rngs=nnx.Rngs(0))
    before = task.evaluate(model, "test")
    assert set(before) == {"loss", "acc"}
    model, losses = _fit(task, model, 40)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    after = task.evaluate(model, "test")
    assert after["acc"] >= 0.8 and after["loss"] < before["loss"]
    figs = task.media(model, "test")
    assert len(figs) == 4 and all(hasattr(f, "savefig") for f in figs.values())
    assert "predicted" in next(iter(figs.values())).axes[0].get_title()


def test_connected_task_evaluate_and_media(data_dir, cache):
    task = speech.ConnectedDigitsTask(
        **task_kwargs(data_dir, cache, num_train=16, num_val=4, num_test=5, frame_stack=2)
    )
    model = task.make_model(model_config(), rngs=nnx.Rngs(0))
    metrics = task.evaluate(model, "val")
    assert set(metrics) == {"loss", "der", "ser"}
    assert metrics["loss"] > 0 and 0 <= metrics["ser"] <= 1 and metrics["der"] >= 0
    # the metrics of known frame paths against hand-computed values: every utterance
    # decoded right except utterance 0, whose first digit is dropped (1 deletion)
    data = task.splits["test"]
    n = len(data["digits"])
    width = 2 * task.max_digits + 2
    paths = np.zeros((n, width), np.int32)  # blank, d1 + 1, blank, d2 + 1, ...
    for i, digits in enumerate(data["digits"]):
        kept = digits[1:] if i == 0 else digits
        paths[i, 1 : 2 * len(kept) : 2] = np.asarray(kept) + 1
    lengths = np.full(n, width, np.int32)
    assert task.decode({"path": paths}, lengths)[0] == data["digits"][0][1:]
    assert task.decode({"path": paths}, lengths)[1:] == data["digits"][1:]
    total = sum(len(d) for d in data["digits"])  # 5 utterances of 2-5 digits each
    batch = {"seq_lengths": lengths, "index": np.arange(n), "weight": np.ones(n, np.float32)}
    out = {"path": paths, "loss": np.full(n, 2.0)}
    sums = sum_batches([batch], lambda b: task._batch_sums("test", out, b))
    got = task._finish_eval(sums, n)
    assert got["der"] == pytest.approx(1 / total) and got["ser"] == pytest.approx(1 / n)
    assert got["loss"] == pytest.approx(2.0)
    figs = task.media(model, "test")
    assert len(figs) == 4 and "true" in next(iter(figs.values())).axes[0].get_title()


def test_ctc_config_inherits_the_isolated_word_config():
    """configs/task/fsdd_ctc.yaml takes fsdd.yaml through Hydra defaults and sets only what
    differs; the composed task builds with grouped features and augmentation."""
    from hydra import compose, initialize_config_dir

    import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
    from lstm_jax.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        word = compose("train", overrides=["task=fsdd", "paths.data_dir=/tmp"]).task
        ctc = compose("train", overrides=["task=fsdd_ctc", "paths.data_dir=/tmp"]).task
    assert ctc._target_.endswith("ConnectedDigitsTask") and ctc.head.pooling == "none"
    assert ctc.frame_stack == 2 and list(ctc.val_indices) == [5, 10]
    assert ctc.features == word.features and ctc.augment == word.augment
    shared = set(word) - {"_target_", "head", "frame_stack", "val_indices"}
    assert all(ctc[k] == word[k] for k in shared)
