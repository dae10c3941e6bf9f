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


def times(value: float, factor: float) -> int:
    """round(value * factor): `${times:${task.seq_len},1.5}`, chrono's T_max of 3T/2 for copy."""
    return round(float(value) * float(factor))


for _name, _resolver in (("user_cache", user_cache), ("times", times)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


def enable_compilation_cache(directory: str | None) -> None:
    """Points JAX's persistent compilation cache at `directory` (None leaves it off).

    Every program is stored, however fast it compiled: JAX's default (only programs that
    took a second or more) kept the train step alone, and the default run's evaluation and
    logging helpers, each well under a second, still cost it 4 s at every start (measured
    in experiments/README.md, issue 13). JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS, when
    set, still chooses."""
    import jax

    if directory:
        os.makedirs(directory, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(directory))
        if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
