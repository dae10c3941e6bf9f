"""Which kernel (cuDNN or the scan kernel) each step kind of a run uses, for its record.

    record = step_backends(train_model, eval_model, diagnostics=True)
    # {"train": "scan", "eval": "cudnn", "diagnostics": "scan",
    #  "why_scan": {"train": "dropout between layers is active (...)",
    #               "diagnostics": "the gates were requested"}}

The trainer takes it when it is built (so the warning below comes before any work) and
writes it to summary.json and the W&B summary under "backends". Each step kind asks the
layers the question their calls ask (lstm_jax.nn.cudnn's `blockers` and `why_not`): the
train step calls the train-mode model, evaluation the eval-mode one, the diagnostics the
train-mode model with the gates requested. A kind whose model holds no recurrent layer is
left out; a model whose layers differ gives "cudnn+scan".
On a CUDA GPU, an LSTM with backend="auto" that trains on the scan kernel is warned about
once, naming why.
"""

from __future__ import annotations

import warnings
from typing import Any

from flax import nnx

from lstm_jax.nn import cudnn
from lstm_jax.nn.lstm import LSTM
from lstm_jax.nn.registry import RecurrentLayer


def _kernels(model: nnx.Module, return_gates: bool) -> tuple[str | None, list[str], bool]:
    """(the kernels the model's recurrent layers run, why the scan kernel where it runs,
    whether an LSTM with backend="auto" runs the scan kernel)."""
    kernels, why, auto_missed = set(), [], False
    for _, layer in nnx.iter_graph(model):
        if not isinstance(layer, RecurrentLayer):
            continue
        if isinstance(layer, LSTM):
            reasons = cudnn.why_not(layer.backend, layer.cudnn_blockers(return_gates=return_gates))
            auto_missed |= bool(reasons) and layer.backend == "auto"
        else:
            reasons = [f"the {layer.CELL} cell has no cuDNN kernel"]
        kernels.add("scan" if reasons else "cudnn")
        why += [r for r in reasons if r not in why]
    return ("+".join(sorted(kernels)) or None), why, auto_missed


def step_backends(
    train_model: nnx.Module, eval_model: nnx.Module, *, diagnostics: bool
) -> dict[str, Any]:
    """The kernel of each step kind (train, eval and, where `diagnostics`, diagnostics)
    and, under "why_scan", why a kind runs the scan kernel."""
    record: dict[str, Any] = {}
    why_scan: dict[str, str] = {}
    kinds = [("train", train_model, False), ("eval", eval_model, False)]
    if diagnostics:
        kinds.append(("diagnostics", train_model, True))
    for kind, model, return_gates in kinds:
        kernel, why, auto_missed = _kernels(model, return_gates)
        if kernel is None:
            continue
        record[kind] = kernel
        if why:
            why_scan[kind] = "; ".join(why)
        if kind == "train" and auto_missed and cudnn.on_cuda():
            warnings.warn(
                f"backend='auto' trains on the scan kernel, not cuDNN, on this GPU: "
                f"{why_scan[kind]} (summary.json 'backends' records each step's kernel).",
                stacklevel=2,
            )
    record["why_scan"] = why_scan
    return record
