"""Conversion between lstm_jax layer parameters and PyTorch nn.LSTM / nn.GRU / nn.RNN state
dicts given as numpy arrays. No torch import: the dict is plain numpy.

PyTorch names, per layer k and direction (suffix "" or "_reverse"):
    weight_ih_l{k}{sfx} (G*H, D), weight_hh_l{k}{sfx} (G*H, H),
    bias_ih_l{k}{sfx} (G*H,), bias_hh_l{k}{sfx} (G*H,)
lstm_jax layout: w_ih (D, N, G*H), w_hh (N, H, G*H) (the transposes, directions stacked).
Gate order is PyTorch's in both (LSTM i,f,g,o; GRU r,z,n), so conversion is transposition.
"""

from __future__ import annotations

import re

import numpy as np

SUFFIXES = ("", "_reverse")


def infer_config(state_dict, gates):
    """Sizes of the PyTorch module that produced ``state_dict``."""
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    if any(k.startswith("weight_hr") for k in sd):
        raise ValueError("LSTM with proj_size (weight_hr_l*) is not supported.")
    layers = {int(m.group(1)) for k in sd if (m := re.fullmatch(r"weight_ih_l(\d+)", k))}
    if not layers or layers != set(range(len(layers))):
        raise ValueError(f"not a PyTorch recurrent state dict: keys {sorted(sd)}")
    w_hh = sd["weight_hh_l0"]
    hidden = w_hh.shape[1]
    if w_hh.shape[0] != gates * hidden:
        raise ValueError(
            f"weight_hh_l0 has shape {w_hh.shape}; expected ({gates}*H, H) for this cell."
        )
    return {
        "in_features": sd["weight_ih_l0"].shape[1],
        "hidden_size": hidden,
        "num_layers": len(layers),
        "bidirectional": "weight_ih_l0_reverse" in sd,
        "use_bias": "bias_ih_l0" in sd,
    }


def layer_from_torch(state_dict, k, num_dirs):
    """Layer k's weights in lstm_jax layout plus the raw (b_ih, b_hh) of each direction."""
    sfx = SUFFIXES[:num_dirs]
    w_ih = np.stack([np.asarray(state_dict[f"weight_ih_l{k}{s}"]).T for s in sfx], axis=1)
    w_hh = np.stack([np.asarray(state_dict[f"weight_hh_l{k}{s}"]).T for s in sfx], axis=0)
    biases = [
        (np.asarray(state_dict[f"bias_ih_l{k}{s}"]), np.asarray(state_dict[f"bias_hh_l{k}{s}"]))
        for s in sfx
        if f"bias_ih_l{k}{s}" in state_dict
    ]
    return w_ih.astype(np.float32), w_hh.astype(np.float32), biases


def layer_to_torch(k, w_ih, w_hh, biases):
    """Inverse of layer_from_torch: w_ih (D, N, GH), w_hh (N, H, GH), biases per direction."""
    out = {}
    for d in range(w_hh.shape[0]):
        s = SUFFIXES[d]
        out[f"weight_ih_l{k}{s}"] = np.ascontiguousarray(np.asarray(w_ih)[:, d, :].T)
        out[f"weight_hh_l{k}{s}"] = np.ascontiguousarray(np.asarray(w_hh)[d].T)
        if biases:
            out[f"bias_ih_l{k}{s}"], out[f"bias_hh_l{k}{s}"] = biases[d]
    return out
