"""Builds the recurrent core (lstm_jax.nn) that every model wraps, from the `model` config
group: `configs/model/<cell>.yaml`, so that `model=gru` swaps the cell in any experiment.

A model config names its layer once, by `cell`: the registry name (lstm_jax.nn.registry),
which is also what run metadata, W&B columns and `lstm-jax-compare` read (`model.cell`).
Run dirs written before issue 31 also carry `_target_` (the class); such a config is still
read, and refused if the two disagree, e.g. a `model.cell=gru` override left from the old
command line, with the fix (`model=gru`).
"""

from __future__ import annotations

import importlib
from typing import Any

import jax.numpy as jnp
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from lstm_jax.nn.registry import CELLS, RecurrentLayer, cell_class

# Keys of a model config that are not constructor arguments of its layer.
NON_LAYER_KEYS = ("_target_", "cell")


def config_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a DictConfig, dict or attribute namespace."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    if isinstance(config, dict):
        return dict(config)
    return dict(vars(config))


def import_target(target: str) -> Any:
    module, _, name = str(target).rpartition(".")
    return getattr(importlib.import_module(module), name)


def core_class(model_config: Any) -> type[RecurrentLayer]:
    """The layer class of a model config: its `cell`, or the `_target_` of a config
    written before cells were named once (both, in an old run dir, must agree)."""
    options = config_dict(model_config)
    target, cell = options.get("_target_"), options.get("cell")
    if cell is not None and cell not in CELLS:
        choices = ", ".join(f"model={name}" for name in CELLS)
        raise ValueError(f"model.cell={cell!r} is not a known cell; choose {choices}.")
    if target is None:
        if cell is None:
            raise ValueError(f"the model config names no cell: set model={'|'.join(CELLS)}.")
        return cell_class(cell)
    cls = import_target(target)
    registered = {c: name for name, c in CELLS.items()}
    if cls not in registered:
        raise ValueError(
            f"model._target_={target} is not a registered cell (lstm_jax.nn.registry.CELLS: "
            f"{sorted(CELLS)})."
        )
    if cell is not None and cell != registered[cls]:
        raise ValueError(
            f"model.cell={cell} does not match model._target_={target} (cell "
            f"{registered[cls]!r}): switch the cell with model={cell}, not model.cell={cell}."
        )
    return cls


def make_core(model_config: Any, in_features: int, *, rngs: nnx.Rngs) -> RecurrentLayer:
    """The recurrent core of `model_config`, reading (B, T, in_features)."""
    cls = core_class(model_config)
    options = {k: v for k, v in config_dict(model_config).items() if k not in NON_LAYER_KEYS}
    dtype = options.pop("dtype", None)
    return cls(
        in_features,
        dtype=None if dtype in (None, "float32") else jnp.dtype(dtype),
        rngs=rngs,
        **options,
    )


def model_config(cell: str = "lstm", **overrides: Any) -> DictConfig:
    """`configs/model/<cell>.yaml` with `overrides`: the `model` group a run with
    `model=<cell>` composes (for models built in code and in tests)."""
    from lstm_jax.config import CONFIG_DIR

    path = CONFIG_DIR / "model" / f"{cell}.yaml"
    if not path.is_file():
        raise ValueError(f"no model config {path}; cells: {sorted(CELLS)}.")
    return OmegaConf.merge(OmegaConf.load(path), overrides)
