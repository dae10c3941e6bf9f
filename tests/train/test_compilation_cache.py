"""JAX's persistent compilation cache: on by default in the user cache dir, pointed
elsewhere with paths.compilation_cache_dir, off with paths.compilation_cache_dir=null."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from lstm_jax.config import CONFIG_DIR, user_cache

# A fresh process (JAX reads the cache setting once) that enables the cache the way the CLI
# does and compiles one program, which compiles in milliseconds: the setting stores every
# program, however fast it compiled (JAX alone keeps only those over a second).
PROGRAM = """
import sys, jax, jax.numpy as jnp
from lstm_jax.config import enable_compilation_cache
enable_compilation_cache(None if sys.argv[1] == "null" else sys.argv[1])
print(float(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).sum()))
print("cache dir:", jax.config.jax_compilation_cache_dir)
"""
ENV = {k: v for k, v in os.environ.items() if k != "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"}


def _compile_with_cache(directory: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, directory],
        env=ENV,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def _entries(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_the_cache_fills_where_the_setting_points_and_a_rerun_reuses_it(tmp_path):
    cache = tmp_path / "xla_cache"
    _compile_with_cache(str(cache))
    first = _entries(cache)
    assert first
    _compile_with_cache(str(cache))
    assert _entries(cache) == first  # the same program: read back, nothing new written


def test_null_leaves_the_cache_off():
    assert "cache dir: None" in _compile_with_cache("null")


def test_the_default_is_the_user_cache_dir_and_the_cli_applies_the_setting():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[])
        off = compose("train", overrides=["paths.compilation_cache_dir=null"])
    if "LSTM_JAX_COMPILATION_CACHE" not in os.environ:
        assert cfg.paths.compilation_cache_dir == user_cache("xla")
    assert off.paths.compilation_cache_dir is None
    # The CLI hands the setting to JAX before the trainer compiles anything.
    from lstm_jax import cli

    source = Path(cli.__file__).read_text()
    assert 'enable_compilation_cache(cfg.paths.get("compilation_cache_dir"))' in source
