"""Language modelling: corpora, stream batching, state carry, tied weights, metrics, presets.

Everything runs on corpora generated here (a PTB-format word corpus and a small text file)
with tiny models.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from omegaconf import OmegaConf

from lstm_jax.data import text as text_data
from lstm_jax.models.core import model_config as configs_model
from lstm_jax.tasks.base import step_key
from lstm_jax.tasks.language import CharLM, WordLM

# --- generated corpora -------------------------------------------------------------------


def write_ptb_corpus(root: Path, *, n_train=400, n_valid=60, n_test=60, vocab=40, seed=0):
    """A PTB-format corpus under root/ptb: lines of words, rare words already `<unk>`."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)] + ["<unk>"]
    folder = root / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        lines = []
        for _ in range(n):
            k = int(rng.integers(3, 12))
            lines.append(
                " " + " ".join(words[int(j)] for j in rng.integers(0, len(words), k)) + " "
            )
        (folder / f"ptb.{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_unique_ptb(root: Path, n_words: int = 600):
    """Train split whose words are all distinct (w0 w1 ...), so a token's identity is its
    position: batching mistakes (repeats, skips) show up directly."""
    folder = root / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    words = [f"u{i}" for i in range(n_words)]
    lines = [" ".join(words[i : i + 10]) for i in range(0, n_words, 10)]
    (folder / "ptb.train.txt").write_text("\n".join(lines) + "\n")
    (folder / "ptb.valid.txt").write_text("u1 u2 u3 zzz\n")
    (folder / "ptb.test.txt").write_text("u4 u5\n")
    return root


def write_text(path: Path, n_chars=3000, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(list("abcde fgh\n"), size=n_chars))
    path.write_text(text)
    return path


def model_cfg(cell="lstm", hidden=16, layers=2, dropout=0.0):
    return configs_model(
        cell, hidden_size=hidden, num_layers=layers, bidirectional=False, dropout=dropout
    )


@nnx.jit
def run_model(model, tokens, state=None):
    """The model outside the task, jitted (eager op-by-op execution is slow to compile)."""
    return model(tokens, state)[:2]


def jit_loss(task):
    return nnx.jit(lambda m, batch, carry: task.loss(m, batch, carry))


# --- corpora and vocabulary --------------------------------------------------------------


def test_word_corpus_ptb_conventions_and_train_only_vocab(tmp_path):
    write_unique_ptb(tmp_path, 30)
    corpus = text_data.load_word_corpus(tmp_path)
    v = corpus.vocab
    # <eos> closes every line (3 lines of 10 words), words by frequency: <eos> first
    assert v.tokens[0] == "<eos>"
    assert len(corpus["train"]) == 33
    assert v.decode(corpus["train"][:11]) == " ".join(f"u{i}" for i in range(10)) + " <eos>"
    # 'zzz' only occurs in valid: the vocabulary is built on train, so it becomes <unk>
    assert "zzz" not in v.tokens and v.unk_id is not None
    assert v.decode(corpus["val"]) == "u1 u2 u3 <unk> <eos>"


def test_char_corpus_split_and_unknown_char(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abababababababababab" * 9 + "xyz" * 7 + "ab")  # 180 + 21 + 2 chars
    corpus = text_data.load_char_corpus(None, str(f), (0.8, 0.1, 0.1))
    n = 203
    assert [len(corpus[s]) for s in ("train", "val", "test")] == [
        int(0.8 * n),
        int(0.1 * n),
        n - int(0.8 * n) - int(0.1 * n),
    ]
    v = corpus.vocab
    assert set(v.tokens) == {"a", "b", text_data.CHAR_UNK}
    assert v.decode(corpus["test"]).endswith(text_data.CHAR_UNK + "ab")


def test_missing_files_name_file_and_setting(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        text_data.load_word_corpus(tmp_path)
    msg = str(e.value)
    assert "ptb/ptb.train.txt" in msg and "paths.data_dir" in msg and "simple-examples" in msg
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        CharLM(batch_size=2, data_dir=str(tmp_path), path="nope.txt")
    with pytest.raises(FileNotFoundError, match="abs_missing.txt"):
        CharLM(batch_size=2, path=str(tmp_path / "abs_missing.txt"))


# --- stream batching ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_size,seq_len", [(4, 7), (3, 10), (1, 35)])
def test_stream_batching_reads_every_token_once_per_epoch(tmp_path, batch_size, seq_len):
    write_unique_ptb(tmp_path, 600)
    task = WordLM(batch_size=batch_size, data_dir=str(tmp_path), seq_len=seq_len)
    train = task.corpus["train"]
    n, W = len(train), task.steps_per_epoch
    L = n // batch_size
    assert W == (L - 1) // seq_len
    inputs = np.concatenate([task.train_batch(s)["inputs"] for s in range(W)], axis=1)
    targets = np.concatenate([task.train_batch(s)["targets"] for s in range(W)], axis=1)
    assert inputs.shape == (batch_size, W * seq_len)
    for b in range(batch_size):
        # row b of consecutive batches is one contiguous stream: nothing repeated or skipped
        start = b * L
        np.testing.assert_array_equal(inputs[b], train[start : start + W * seq_len])
        np.testing.assert_array_equal(targets[b], train[start + 1 : start + W * seq_len + 1])
    # every input position is distinct within the epoch, and only stream tails are left out
    positions = (np.arange(batch_size)[:, None] * L + np.arange(W * seq_len)[None]).ravel()
    assert len(np.unique(positions)) == positions.size
    assert n - positions.size < batch_size * (seq_len + 1) + batch_size
    # epochs repeat the same windows; the carry is reset exactly at epoch starts
    for k in (0, 1, W - 1):
        np.testing.assert_array_equal(
            task.train_batch(k)["inputs"], task.train_batch(W + k)["inputs"]
        )
    assert [s for s in range(3 * W) if task.reset_carry(s)] == [0, W, 2 * W]


def test_eval_windows_score_every_prediction_exactly_once():
    ids = np.arange(1, 104, dtype=np.int32)  # 103 tokens, 102 pairs
    for streams, T in [(1, 10), (4, 7), (5, 200), (200, 3)]:
        pairs = []
        total = 0.0
        for w in text_data.eval_windows(ids, streams, T):
            assert w["inputs"].shape == w["targets"].shape == w["mask"].shape
            assert w["inputs"].shape[1] == T
            sel = w["mask"] > 0
            pairs += list(zip(w["inputs"][sel].tolist(), w["targets"][sel].tolist(), strict=True))
            total += w["mask"].sum()
        assert total == 102
        assert sorted(pairs) == [(i, i + 1) for i in range(1, 103)]


def test_split_too_short_is_a_clear_error(tmp_path):
    write_unique_ptb(tmp_path, 40)
    with pytest.raises(ValueError, match="too short"):
        WordLM(batch_size=8, data_dir=str(tmp_path), seq_len=10)


# --- model, state carry, tied weights ----------------------------------------------------


@pytest.fixture(scope="module")
def char_file(tmp_path_factory):
    return write_text(tmp_path_factory.mktemp("char") / "text.txt", n_chars=1200)


def make_task(char_file, **kw):
    kw.setdefault("batch_size", 3)
    kw.setdefault("seq_len", 8)
    return CharLM(path=str(char_file), split=(0.8, 0.1, 0.1), **kw)


@pytest.mark.parametrize("cell,variational", [("lstm", False), ("lstm", True), ("gru", False)])
def test_state_carry_equals_one_long_sequence(char_file, cell, variational):
    """Two windows with the carry passed on == the concatenated sequence in one call."""
    task = make_task(char_file, variational_dropout=variational)
    model = task.make_model(model_cfg(cell), rngs=nnx.Rngs(0))
    model.eval()
    b0, b1 = task.train_batch(0), task.train_batch(1)
    carry0 = task.initial_carry(model)
    loss = jit_loss(task)
    l0, aux0 = loss(model, b0, carry0)
    l1, aux1 = loss(model, b1, aux0["carry"])
    full_in = np.concatenate([b0["inputs"], b1["inputs"]], axis=1)
    full_tg = np.concatenate([b0["targets"], b1["targets"]], axis=1)
    logits, state = run_model(model, full_in)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, full_tg)
    np.testing.assert_allclose(float(l0), float(nll[:, :8].mean()), rtol=1e-5)
    np.testing.assert_allclose(float(l1), float(nll[:, 8:].mean()), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(aux1["carry"]), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # the carry really matters: from a zero state window 1 scores differently
    l1_reset, _ = loss(model, b1, task.initial_carry(model))
    assert abs(float(l1_reset) - float(l1)) > 1e-4
    # the initial carry is zeros in the core's layout (num_layers, B, H)
    for leaf in jax.tree.leaves(carry0):
        assert leaf.shape == (2, 3, 16) and not np.any(np.asarray(leaf))


def test_carry_is_not_backpropagated_through(char_file):
    task = make_task(char_file)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(0))
    b0, b1 = task.train_batch(0), task.train_batch(1)

    def window2_loss(carry_scale):
        _, aux = task.loss(model, b0, task.initial_carry(model))
        carry = jax.tree.map(lambda c: c * carry_scale, aux["carry"])
        return task.loss(model, b1, carry)[0]

    assert float(jax.jit(jax.grad(window2_loss))(1.0)) == 0.0


def test_tied_weights_share_the_embedding(char_file):
    task = make_task(char_file, tie_weights=True)
    untied = make_task(char_file)
    cfg = model_cfg(hidden=16)
    tied_model = task.make_model(cfg, rngs=nnx.Rngs(0))
    untied_model = untied.make_model(cfg, rngs=nnx.Rngs(0))
    v, h = len(task.vocab), 16

    def count(m):
        return sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))

    assert tied_model.out is None
    assert count(untied_model) - count(tied_model) == v * h  # the decoder matrix is gone
    # logits are h_t @ E^T + b
    y = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, h)), jnp.float32)
    tied_model.out_bias.value = jnp.arange(v, dtype=jnp.float32)
    expected = np.asarray(y) @ np.asarray(tied_model.embed.embedding.value).T + np.arange(v)
    np.testing.assert_allclose(np.asarray(tied_model.project(y)), expected, rtol=1e-5, atol=1e-5)
    # the embedding's gradient has a part from the output layer: nonzero for a token that
    # never occurs as an input
    batch = task.train_batch(0)
    missing = sorted(set(range(v)) - set(batch["inputs"].ravel().tolist()))
    if missing:
        grads = nnx.jit(nnx.grad(lambda m: task.loss(m, batch, None)[0]))(tied_model)
        assert np.any(np.asarray(grads["embed"]["embedding"].value)[missing[0]] != 0)
    with pytest.raises(ValueError, match="embed_size"):
        make_task(char_file, tie_weights=True, embed_size=8).make_model(cfg, rngs=nnx.Rngs(0))


def test_variational_dropout_masks_are_shared_over_time(char_file):
    task = make_task(char_file, dropout=0.5, variational_dropout=True)
    model = task.make_model(model_cfg(dropout=0.5), rngs=nnx.Rngs(0))
    model.train()
    x = jnp.ones((4, 20, 16))
    for drop in (model.drop_in, model.drop_mid, model.drop_out):
        out = np.asarray(drop(x))
        assert np.all(out == out[:, :1]), "mask differs between time steps"
        assert 0 < (out == 0).mean() < 1
    # non-variational dropout draws a fresh mask per step, also between the layers
    plain = make_task(char_file, dropout=0.5).make_model(model_cfg(dropout=0.5), rngs=nnx.Rngs(0))
    plain.train()
    for drop in (plain.drop_in, plain.drop_mid, plain.drop_out):
        out = np.asarray(drop(x))
        assert not np.all(out == out[:, :1]) and 0 < (out == 0).mean() < 1
    # dropout is on in training and off in eval mode
    batch = task.train_batch(0)
    loss = nnx.jit(lambda m, b, c, key: task.loss(m, b, c, key=key))
    k0, k1 = step_key(task.seed, 0), step_key(task.seed, 1)  # the trainer's keys
    model.eval()
    e1, e2 = (float(loss(model, batch, None, k0)[0]) for _ in range(2))
    model.train()
    t1, t2 = (float(loss(model, batch, None, k0)[0]) for _ in range(2))
    t3 = float(loss(model, task.train_batch(1), None, k0)[0])
    other = float(loss(model, batch, None, k1)[0])
    # masks are a function of (seed, step): the same step replays them (resume), another
    # step draws new ones, and eval mode has none
    assert e1 == e2 and t1 == t2 and t1 != e1 and other != t1 and t3 != t1


def test_init_scale_reinitialises_every_parameter(char_file):
    task = make_task(char_file, init_scale=0.05)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(0))
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert len(leaves) >= 7  # embedding, 2 x (w_ih, w_hh, b), decoder kernel and bias
    for leaf in leaves:
        a = np.asarray(leaf)
        assert np.abs(a).max() <= 0.05 and a.std() > 0.01


# --- metrics -----------------------------------------------------------------------------


@pytest.mark.parametrize("eval_batch_size", [1, 3])
def test_evaluate_matches_hand_computation(char_file, eval_batch_size):
    """loss = mean NLL of every next-token prediction with the state carried through each
    stream, computed here by running each stream through the model in one call."""
    task = make_task(char_file, eval_batch_size=eval_batch_size, eval_seq_len=7)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(1))
    model.eval()
    ids = task.corpus["val"]
    pairs = len(ids) - 1
    per = -(-pairs // eval_batch_size)
    total = 0.0
    for r in range(eval_batch_size):
        lo, hi = r * per, min((r + 1) * per, pairs)
        logits, _ = run_model(model, jnp.asarray(ids[lo:hi])[None])
        logp = np.asarray(jax.nn.log_softmax(logits[0].astype(jnp.float32)))
        total -= logp[np.arange(hi - lo), ids[lo + 1 : hi + 1]].sum()
    loss = total / pairs
    got = task.evaluate(model, "val")
    assert set(got) == {"loss", "bpc", "initial_state_loss"}
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(got["bpc"], loss / math.log(2), rtol=1e-5)


def test_initial_state_loss_matches_hand_computation(tmp_path):
    """initial_state_loss = mean NLL of the first k predictions after each line start (up
    to 256, evenly spread), every one read from the zero state."""
    rng = np.random.default_rng(3)
    lines = ["".join(rng.choice(list("abcdef "), size=rng.integers(3, 12))) for _ in range(900)]
    f = tmp_path / "lines.txt"
    f.write_text("\n".join(lines) + "\n")
    task = CharLM(path=str(f), split=(0.5, 0.5, 0.0), batch_size=2, initial_state_tokens=5)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(4))
    model.eval()
    ids = task.corpus["val"]
    newline = task.vocab.encode(["\n"])[0]
    starts = [i + 1 for i in range(len(ids) - 6) if ids[i] == newline]
    assert len(starts) > 256  # the subsampling is exercised
    starts = [starts[j] for j in np.linspace(0, len(starts) - 1, 256).astype(int)]
    nll = []
    for s in starts:
        logits, _ = run_model(model, jnp.asarray(ids[s : s + 5])[None])  # no state: zeros
        logp = np.asarray(jax.nn.log_softmax(logits[0].astype(jnp.float32)))
        nll.append(-logp[np.arange(5), ids[s + 1 : s + 6]])
    got = task.evaluate(model, "val")["initial_state_loss"]
    np.testing.assert_allclose(got, np.mean(nll), rtol=1e-5)


def test_reset_probability_starts_streams_from_the_initial_state(char_file):
    """reset_probability p: each stream's carried state is replaced by the zero state with
    probability p, the draw a function of the step key only; p = 0 or no key (evaluation)
    leaves the carry alone."""
    task = make_task(char_file, batch_size=64, reset_probability=0.25)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(0))
    carry = jax.tree.map(
        lambda z: jax.random.normal(jax.random.key(1), z.shape) + 3.0, task.initial_carry(model)
    )
    fractions = []
    for step in range(20):
        reset = task.reset_streams(carry, step_key(0, step))
        again = task.reset_streams(carry, step_key(0, step))
        zero_rows = None
        for got, old, same in zip(*map(jax.tree.leaves, (reset, carry, again)), strict=True):
            got, old = np.asarray(got), np.asarray(old)  # (layers, B, H)
            np.testing.assert_array_equal(got, np.asarray(same))
            rows = np.all(got == 0, axis=(0, 2))
            kept = np.all(got == old, axis=(0, 2))
            assert np.all(rows | kept)  # a stream is either reset whole or kept whole
            zero_rows = rows if zero_rows is None else zero_rows
            np.testing.assert_array_equal(rows, zero_rows)  # h and c reset together
        fractions.append(zero_rows.mean())
    assert 0.18 < np.mean(fractions) < 0.32

    # Through the loss: p = 1 trains from the zero state, whatever the carry; p = 0 and
    # evaluation (no key) use the carry.
    batch = task.train_batch(0)
    losses = {}
    for p, key in [(1.0, step_key(0, 0)), (0.0, step_key(0, 0)), (1.0, None)]:
        task.reset_probability = p
        losses[p, key is None] = float(
            nnx.jit(lambda m, b, c, k: task.loss(m, b, c, key=k)[0])(model, batch, carry, key)
        )
    from_zero = float(jit_loss(task)(model, batch, None)[0])
    np.testing.assert_allclose(losses[1.0, False], from_zero, rtol=1e-6)
    assert abs(losses[0.0, False] - from_zero) > 1e-3
    np.testing.assert_allclose(losses[1.0, True], losses[0.0, False], rtol=1e-6)


@pytest.mark.parametrize(
    "option,message",
    [
        ({"reset_probability": -0.1}, "task.reset_probability=-0.1: must be in [0, 1]"),
        ({"initial_state_tokens": 0}, "task.initial_state_tokens=0: must be at least 1"),
    ],
)
def test_bad_initial_state_options_are_refused(char_file, option, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_task(char_file, **option)


def test_uniform_model_metrics(tmp_path):
    """A model with all parameters zero predicts uniformly: loss ln V, ppl V, bpc log2 V."""
    write_ptb_corpus(tmp_path)
    task = WordLM(batch_size=2, data_dir=str(tmp_path), seq_len=5, eval_batch_size=2)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(jnp.zeros_like, params))
    model.eval()
    v = len(task.vocab)
    for split in ("val", "test"):
        got = task.evaluate(model, split)
        np.testing.assert_allclose(got["loss"], math.log(v), rtol=1e-6)
        np.testing.assert_allclose(got["ppl"], v, rtol=1e-5)
    _, aux = jit_loss(task)(model, task.train_batch(0), task.initial_carry(model))
    np.testing.assert_allclose(float(aux["metrics"]["ppl"]), v, rtol=1e-5)
    char = CharLM(batch_size=2, path=str(write_text(tmp_path / "c.txt", 500)), seq_len=5)
    m = char.make_model(model_cfg(), rngs=nnx.Rngs(0))
    nnx.update(m, jax.tree.map(jnp.zeros_like, nnx.state(m, nnx.Param)))
    m.eval()
    got = char.evaluate(m, "test")
    np.testing.assert_allclose(got["bpc"], math.log2(len(char.vocab)), rtol=1e-6)


# --- sampling ----------------------------------------------------------------------------


def test_generate_is_seeded_and_greedy_at_zero_temperature(char_file):
    task = make_task(char_file)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(0))
    a = task.generate(model, "ab", 30, temperature=1.0, seed=3)
    b = task.generate(model, "ab", 30, temperature=1.0, seed=3)
    c = task.generate(model, "ab", 30, temperature=1.0, seed=4)
    assert a == b and a != c and a.startswith("ab") and len(a) == 32
    greedy = task.generate(model, "ab", 5, temperature=0.0)
    ids = list(task.vocab.encode("ab"))
    logits, state = run_model(model, jnp.asarray(ids)[None])
    for _ in range(5):  # greedy decoding by hand, one token at a time
        ids.append(int(jnp.argmax(logits[0, -1])))
        logits, state = run_model(model, jnp.asarray([[ids[-1]]]), state)
    assert greedy == task.vocab.decode(ids)


def test_top_k_samples_only_among_the_k_most_likely_tokens(char_file):
    task = make_task(char_file)
    model = task.make_model(model_cfg(), rngs=nnx.Rngs(0))
    # top_k=1 leaves one candidate: sampling at any temperature is greedy decoding.
    assert task.generate(model, "ab", 8, temperature=1.5, top_k=1, seed=2) == task.generate(
        model, "ab", 8, temperature=0.0
    )

    # Every token sampled with top_k=2 ranks first or second under the model's logits at its
    # step (replayed by hand); without top_k a hot sample leaves the top two somewhere.
    def ranks(text):
        ids = list(task.vocab.encode(text))
        logits, state = run_model(model, jnp.asarray(ids[:2])[None])
        out = []
        for token in ids[2:]:
            order = np.argsort(-np.asarray(logits[0, -1]))
            out.append(int(np.flatnonzero(order == token)[0]))
            logits, state = run_model(model, jnp.asarray([[token]]), state)
        return out

    assert max(ranks(task.generate(model, "ab", 40, temperature=3.0, top_k=2, seed=0))) <= 1
    assert max(ranks(task.generate(model, "ab", 40, temperature=3.0, seed=0))) > 1


# --- presets end to end ------------------------------------------------------------------


# Slow (CI runs it as a step of its own): the full-size Zaremba models compile for ~17 s each.
@pytest.mark.slow
@pytest.mark.parametrize(
    "preset",
    [
        "ptb_zaremba_small",
        "ptb_zaremba_medium",
    ],
)
def test_ptb_presets_run_end_to_end_on_a_generated_corpus(tmp_path, preset):
    """The Zaremba presets, unchanged except for the number of steps, train, evaluate (val
    and test as whole sequences) and write perplexities on a PTB-format corpus in the data
    root."""
    import json

    from cli_runner import run_cli

    write_ptb_corpus(tmp_path / "data")
    run_dir = tmp_path / "run"
    run_cli(
        f"experiment={preset}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_steps=2",
        "trainer.eval_every=1",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        "logger=none",
        cwd=tmp_path,
    )
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    t = {"ptb_zaremba_small": 20, "ptb_zaremba_medium": 35}[preset]
    assert cfg.task.seq_len == t and cfg.trainer.batch_size == 20 and cfg.model.num_layers == 2
    assert cfg.optim.optimizer._target_ == "optax.sgd" and cfg.optim.optimizer.momentum is None
    # lr 1 and clip 5 on the time-summed cost == lr T and clip 5/T on the per-token mean
    assert cfg.optim.lr == t and math.isclose(cfg.optim.clip_grad_norm * t, 5.0)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in rows if "val/ppl" in r]
    tests = [r for r in rows if "test/ppl" in r]
    assert [r["step"] for r in vals] == [1, 2] and len(tests) == 1
    for r in vals + tests:
        split = "val" if "val/ppl" in r else "test"
        assert math.isclose(r[f"{split}/ppl"], math.exp(r[f"{split}/loss"]), rel_tol=1e-6)
        assert 1.0 < r[f"{split}/ppl"] < 200.0  # about the 42-word vocabulary, not diverged
    assert all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and "test/ppl" in summary["test"]
