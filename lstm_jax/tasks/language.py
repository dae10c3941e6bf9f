"""Language modelling: character level (Tiny Shakespeare, any text file) and word level (PTB
format), with stateful truncated backpropagation through time.

Model (`lstm_jax.models.LanguageModel`): token embedding -> dropout -> stacked recurrent core
-> dropout -> projection to the vocabulary (optionally tied to the embedding, Press & Wolf
2017 / Inan et al. 2017); the task supplies the vocabulary size.

Dropout follows Zaremba et al. 2014: only the non-recurrent connections, i.e. the embedding
output, between stacked layers, and before the softmax. `dropout` (a task option) is the rate
on the embedding output and before the softmax; the rate between layers is the core's own
`model.dropout`. With `variational_dropout: true` every one of these masks is drawn once per
sequence and shared by all time steps (Gal & Ghahramani 2016, without the recurrent masks);
the stack is then built from single-layer cores so that the between-layer mask can be
applied (also when `model.dropout` > 0, so that every mask comes from the task's key). With
no between-layer dropout and no variational masks, one multi-layer core call does the whole
stack (the fast path).

Dropout masks in training are drawn from the key the trainer hands `loss` for each step
(`lstm_jax.tasks.base.step_key(seed, step)`), so a resumed run replays exactly the masks of an
uninterrupted one, and no RNG state is mutated inside the trainer's jitted step.

Training (truncated BPTT, as the classic PTB setups): the training tokens are laid out as B
contiguous streams (B = batch_size); step s reads window s mod W of each stream (W windows an
epoch), and the final (h, c) of a window is the initial state of the next (the trainer keeps
it as the carry, with the gradient stopped). The carry is reset to zeros at the start of
every epoch. Evaluation carries the state over the whole split (`eval_batch_size` streams;
1 = the whole split as one sequence) and scores every next-token prediction exactly once.

Starting from the initial state: with state carried over hundreds of windows, a stream
starts from the zero state once an epoch, so a model can learn to read text only from the
states that carrying produces and score a fresh input (a short prompt, a sample's first
characters) badly. `reset_probability` p starts each stream's window from the initial state
with probability p instead (drawn per stream and window from the step's key, so a resumed
run draws the same), and `initial_state_loss` measures the effect: the mean NLL of the
first `initial_state_tokens` predictions after a line start, from the initial state.

Metrics: `loss` (mean negative log-likelihood per token, nats), `ppl` = exp(loss) (word
level) or `bpc` = loss / ln 2 (character level), `initial_state_loss` (nats, see above).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lstm_jax.data import text as text_data
from lstm_jax.data.batching import sum_batches
from lstm_jax.models import LanguageModel, reinit_uniform
from lstm_jax.tasks.base import Batch, Metrics, Task

# fold_in constant that separates the stream-reset draws from the dropout masks of a step
_RESET_STREAM = 0x5E5E7


@nnx.jit
def _eval_window(model, inputs, targets, mask, state):
    logits, state, _ = model(inputs, state)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return jnp.sum(nll * mask), state


def _sample_logits(key, logits, temperature: float, top_k: int | None):
    logits = logits.astype(jnp.float32)
    if temperature <= 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _generate(graphdef, params, prompt, key, length: int, temperature: float, top_k):
    model = nnx.merge(graphdef, params)
    logits, state, _ = model(prompt[None, :])

    def step(carry, k):
        state, last = carry
        tok = _sample_logits(k, last, temperature, top_k)
        logits, state, _ = model(tok[None, None], state)
        return (state, logits[0, -1]), tok

    _, toks = jax.lax.scan(step, (state, logits[0, -1]), jax.random.split(key, length))
    return toks


_generate_jit = jax.jit(_generate, static_argnums=(0, 4, 5, 6))


class LanguageModelTask(Task):
    """Shared by `CharLM` and `WordLM`: stream batching, model, loss, evaluation, sampling."""

    monitor = "val/loss"
    level = "word"

    def __init__(
        self,
        *,
        corpus: text_data.Corpus,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        seq_len: int = 35,
        embed_size: int | None = None,
        tie_weights: bool = False,
        dropout: float = 0.0,
        variational_dropout: bool = False,
        init_scale: float | None = None,
        eval_batch_size: int = 1,
        eval_seq_len: int | None = None,
        reset_probability: float = 0.0,
        initial_state_tokens: int = 32,
    ):
        super().__init__(batch_size=batch_size, seed=seed, data_dir=data_dir)
        if not 0.0 <= float(reset_probability) <= 1.0:
            raise ValueError(
                f"task.reset_probability={reset_probability}: must be in [0, 1] (the chance "
                "that a training stream starts a window from the initial state)"
            )
        if int(initial_state_tokens) < 1:
            raise ValueError(
                f"task.initial_state_tokens={initial_state_tokens}: must be at least 1 "
                "(the predictions after a line start that initial_state_loss averages)"
            )
        self.reset_probability = float(reset_probability)
        self.initial_state_tokens = int(initial_state_tokens)
        self.corpus = corpus
        self.vocab = corpus.vocab
        self.seq_len = int(seq_len)
        self.embed_size = embed_size
        self.tie_weights = bool(tie_weights)
        self.dropout = float(dropout)
        self.variational_dropout = bool(variational_dropout)
        self.init_scale = init_scale
        self.eval_batch_size = int(eval_batch_size)
        self.eval_seq_len = int(eval_seq_len or max(self.seq_len, 256))
        self._streams, self.steps_per_epoch = text_data.train_streams(
            corpus["train"], batch_size, self.seq_len
        )

    # --- model -----------------------------------------------------------------------------

    def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> LanguageModel:
        model = LanguageModel(
            len(self.vocab),
            model_config,
            embed_size=self.embed_size,
            tie_weights=self.tie_weights,
            dropout=self.dropout,
            variational_dropout=self.variational_dropout,
            rngs=rngs,
        )
        if self.init_scale is not None:
            reinit_uniform(model, float(self.init_scale), rngs.params())
        return model

    # --- data ------------------------------------------------------------------------------

    def epoch_and_window(self, step: int) -> tuple[int, int]:
        return divmod(int(step), self.steps_per_epoch)

    def train_batch(self, step: int) -> Batch:
        _, k = self.epoch_and_window(step)
        return text_data.stream_window(self._streams, k, self.seq_len)

    def initial_carry(self, model: LanguageModel) -> Any:
        return model.zero_state(self.batch_size)

    def reset_carry(self, step: int) -> bool:
        return self.epoch_and_window(step)[1] == 0

    # --- loss and metrics ------------------------------------------------------------------

    def _metrics(self, loss) -> dict[str, Any]:
        if self.level == "char":
            return {"bpc": loss / math.log(2.0)}
        return {"ppl": jnp.exp(loss) if isinstance(loss, jax.Array) else math.exp(loss)}

    def loss(
        self,
        model: LanguageModel,
        batch: Batch,
        carry: Any = None,
        *,
        return_gates: bool = False,
        hidden_perturbation: jax.Array | None = None,
        key: jax.Array | None = None,
    ):
        if carry is not None:
            carry = jax.lax.stop_gradient(carry)
            if self.reset_probability > 0 and key is not None:
                carry = self.reset_streams(carry, key)
        logits, state, gates = model(
            batch["inputs"],
            carry,
            return_gates=return_gates,
            hidden_perturbation=hidden_perturbation,
            dropout_key=key,
        )
        nll = optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), batch["targets"]
        )
        loss = jnp.mean(nll)
        return loss, {"metrics": self._metrics(loss), "carry": state, "gates": gates}

    def reset_streams(self, carry: Any, key: jax.Array) -> Any:
        """The carry with each stream (axis -2 of every (layers, B, H) leaf) set to the
        initial state with probability `reset_probability`, drawn from `key`."""
        batch = jax.tree.leaves(carry)[0].shape[-2]
        keep = jax.random.bernoulli(
            jax.random.fold_in(key, _RESET_STREAM), 1.0 - self.reset_probability, (batch,)
        )
        return jax.tree.map(lambda s: jnp.where(keep[:, None], s, jnp.zeros_like(s)), carry)

    def _split(self, split: str) -> np.ndarray:
        name = {"valid": "val", "validation": "val"}.get(split, split)
        ids = self.corpus[name]
        if len(ids) < 2:
            raise ValueError(
                f"the {name} split is empty (split fractions of this task leave it no text)"
            )
        return ids

    def evaluate(self, model: LanguageModel, split: str) -> Metrics:
        """Mean NLL over every next-token prediction of `split`, the state carried through
        each of `eval_batch_size` contiguous streams (1 = the whole split in one stream)."""
        ids = self._split(split)
        state = None

        def sums(w: Batch) -> dict[str, Any]:  # the state runs on from window to window
            nonlocal state
            if state is None:
                state = model.zero_state(w["inputs"].shape[0])
            s, state = _eval_window(model, w["inputs"], w["targets"], w["mask"], state)
            return {"nll": s, "count": w["mask"].sum()}

        windows = text_data.eval_windows(ids, self.eval_batch_size, self.eval_seq_len)
        totals = sum_batches(windows, sums)
        loss = totals["nll"] / totals["count"]
        return {
            "loss": loss,
            **{k: float(v) for k, v in self._metrics(loss).items()},
            "initial_state_loss": self.initial_state_loss(model, ids),
        }

    def initial_state_loss(self, model: LanguageModel, ids: np.ndarray) -> float:
        """Mean NLL of the first `initial_state_tokens` predictions after up to 256 line
        starts of `ids` (evenly spread; the token after a newline or end of sentence, or
        evenly spaced positions in a text without one), each read from the initial state:
        how the model scores a fresh input, against `loss`, the carried-state average."""
        k = min(self.initial_state_tokens, len(ids) - 1)
        last_start = len(ids) - k - 1  # a start s reads ids[s : s + k + 1]
        line_end = self.vocab._index.get("\n" if self.level == "char" else text_data.EOS, -1)
        starts = np.flatnonzero(ids[:last_start] == line_end) + 1
        if len(starts) == 0:
            starts = np.arange(0, last_start + 1, max(1, (last_start + 1) // 256))
        starts = starts[np.linspace(0, len(starts) - 1, min(256, len(starts))).astype(int)]
        columns = starts[:, None] + np.arange(k)
        inputs, targets = ids[columns], ids[columns + 1]
        nll, _ = _eval_window(
            model, inputs, targets, np.ones(inputs.shape, np.float32), model.zero_state(len(starts))
        )
        return float(nll) / inputs.size

    # --- sampling --------------------------------------------------------------------------

    def encode_prompt(self, prompt: str) -> np.ndarray:
        if self.level == "char":
            tokens: Sequence[str] = list(prompt)
            default = "\n" if "\n" in self.vocab._index else self.vocab.tokens[0]
        else:
            tokens = prompt.split()
            default = text_data.EOS if text_data.EOS in self.vocab._index else self.vocab.tokens[0]
        if not tokens:
            tokens = [default]
        return self.vocab.encode(tokens)

    def generate(
        self,
        model: LanguageModel,
        prompt: str = "",
        length: int = 500,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
    ) -> str:
        """`length` tokens sampled after `prompt` (temperature 0 = greedy); returns the
        prompt followed by the generated text; `model` is in eval mode (the caller's
        choice, as everywhere the trainer is not in the loop)."""
        ids = jnp.asarray(self.encode_prompt(prompt))
        graphdef, params = nnx.split(model)
        toks = _generate_jit(
            graphdef,
            params,
            ids,
            jax.random.key(seed),
            int(length),
            float(temperature),
            None if top_k is None else int(top_k),
        )
        text = self.vocab.decode(np.asarray(toks))
        if self.level == "char":
            return prompt + text
        return (
            (prompt + " " + text)
            .strip()
            .replace(f" {text_data.EOS} ", "\n")
            .replace(f" {text_data.EOS}", "\n")
        )


class CharLM(LanguageModelTask):
    """Character-level language modelling on one text file (default Tiny Shakespeare),
    split by contiguous fractions `split` = (train, val, test)."""

    level = "char"
    metric_names = ("loss", "bpc", "initial_state_loss")

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        path: str = text_data.TINY_SHAKESPEARE,
        split: Sequence[float] = (0.9, 0.05, 0.05),
        **kwargs,
    ):
        corpus = text_data.load_char_corpus(data_dir, path, tuple(split))
        super().__init__(
            corpus=corpus, batch_size=batch_size, seed=seed, data_dir=data_dir, **kwargs
        )


class WordLM(LanguageModelTask):
    """Word-level language modelling on a PTB-format corpus:
    `<data root>/<folder>/<prefix>.{train,valid,test}.txt`."""

    level = "word"
    metric_names = ("loss", "ppl", "initial_state_loss")

    def __init__(
        self,
        *,
        batch_size: int,
        seed: int = 0,
        data_dir: str | None = None,
        folder: str = "ptb",
        prefix: str = "ptb",
        **kwargs,
    ):
        corpus = text_data.load_word_corpus(data_dir, folder, prefix)
        super().__init__(
            corpus=corpus, batch_size=batch_size, seed=seed, data_dir=data_dir, **kwargs
        )
