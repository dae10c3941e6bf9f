"""Where the Hydra configs live, and the OmegaConf resolvers they use (registered on
import, so a run's saved `.hydra/config.yaml` resolves outside the CLI too)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

# The configs live at the top of the repository (an editable install keeps them there).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def user_cache(subdir: str) -> str:
    """~/.cache/lstm_jax/<subdir> (or under $XDG_CACHE_HOME): the default data root."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "lstm_jax", subdir)


if not OmegaConf.has_resolver("user_cache"):
    OmegaConf.register_new_resolver("user_cache", user_cache)


def enable_compilation_cache(directory: str | None) -> None:
    """Points JAX's persistent compilation cache at `directory` (None leaves it off).

    Programs that took under a second to compile are not stored (JAX's default), so the
    cache holds the train, eval and diagnostics steps rather than every small helper."""
    import jax

    if directory:
        os.makedirs(directory, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(directory))
