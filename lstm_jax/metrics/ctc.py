"""CTC helpers and error rates: per-utterance CTC loss (optax), greedy (best-path) decoding,
the Levenshtein edit distance and the error rate over a set of utterances (digit, word or
character error rate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

BLANK = 0  # CTC blank; digit d is label d + 1


def ctc_greedy_decode(path: np.ndarray, length: int | None = None, blank: int = BLANK) -> list[int]:
    """Best-path decoding of one frame-wise argmax `path`: repeats merged, then blanks
    dropped. Returns label ids (digit + 1 for the digit tasks)."""
    path = np.asarray(path)[: len(path) if length is None else int(length)]
    out, prev = [], None
    for p in path.tolist():
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


def edit_distance(ref: Sequence[Any], hyp: Sequence[Any]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_rate(refs: Sequence[Sequence[Any]], hyps: Sequence[Sequence[Any]]) -> float:
    """Total edit distance over total reference length (digit/word/character error rate)."""
    edits = sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True))
    total = sum(len(r) for r in refs)
    return edits / max(total, 1)


def ctc_loss(
    logits: jax.Array, seq_lengths: jax.Array, labels: jax.Array, label_lengths: jax.Array
) -> jax.Array:
    """Per-utterance CTC negative log-likelihood (B,) with optax.ctc_loss (blank id 0)."""
    t = logits.shape[1]
    logit_paddings = (jnp.arange(t)[None, :] >= seq_lengths[:, None]).astype(jnp.float32)
    label_paddings = (jnp.arange(labels.shape[1])[None, :] >= label_lengths[:, None]).astype(
        jnp.float32
    )
    return optax.ctc_loss(
        logits.astype(jnp.float32), logit_paddings, labels, label_paddings, blank_id=BLANK
    )
