"""Speech figures: an utterance's spectrogram with its predicted digit, and a connected
utterance's spectrogram above its CTC posteriors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def figure(width: float, height: float, rows: int = 1):
    """A stand-alone Figure and its `rows` axes (one column)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    return fig, axes


def digit_figure(spectrogram: np.ndarray, probs: np.ndarray, name: str, true: int, kind: str):
    """The (F, T) input of one clip, titled with its true and predicted digit."""
    fig, (ax,) = figure(5, 2.6)
    ax.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma")
    pred = int(probs.argmax())
    ax.set_title(f"{name}: true {true}, predicted {pred} (p={probs[pred]:.2f})")
    ax.set_xlabel("frame (10 ms)")
    ax.set_ylabel(kind)
    return fig


def ctc_figure(
    spectrogram: np.ndarray,
    probs: np.ndarray,
    ref: Sequence[int],
    hyp: Sequence[int],
    edits: int,
    *,
    frame_stack: int,
    kind: str,
    blank: int = 0,
):
    """Spectrogram (F, T) titled with the reference and decoded digits, above the per-frame
    posteriors `probs` (n frames, blank + digits) of blank and each digit (label d + 1)."""
    fig, (ax, ax2) = figure(7, 4, rows=2)
    ax.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma")
    ax.set_title(
        f"true {''.join(map(str, ref))}   predicted {''.join(map(str, hyp))}   (edits {edits})"
    )
    ax.set_ylabel(kind)
    n = probs.shape[0]
    frames = np.arange(n) * frame_stack
    ax2.plot(frames, probs[:, blank], color="0.7", lw=1, label="blank")
    for d in range(probs.shape[1] - 1):
        ax2.plot(frames, probs[:, d + 1], lw=1.2, label=str(d))
    ax2.set_xlim(0, n * frame_stack)
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("frame (10 ms)")
    ax2.set_ylabel("CTC posterior")
    ax2.legend(ncol=11, fontsize=6, loc="upper right")
    return fig
