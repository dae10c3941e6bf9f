"""JAX's persistent compilation cache: on by default in the user cache dir, pointed
elsewhere with paths.compilation_cache_dir, off with paths.compilation_cache_dir=null."""

from __future__ import annotations

from cli_runner import run_cli

TINY = ("task.seq_len=8", "task.val_size=16", "task.test_size=16", "task.eval_batch_size=16",
        "model.hidden_size=8", "trainer.batch_size=8", "trainer.max_steps=2",
        "trainer.eval_every=2", "trainer.log_every=1", "trainer.checkpoint_every=2",
        "logger=none", "trainer.progress_bar=false", "logger.diagnostics_every=0")
# Store every program, however quickly it compiled, so that the tiny run leaves entries.
ENV = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def _entries(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_the_cache_fills_where_the_setting_points_and_a_rerun_reuses_it(tmp_path):
    cache = tmp_path / "xla_cache"
    run_cli(*TINY, f"paths.compilation_cache_dir={cache}", f"hydra.run.dir={tmp_path / 'a'}",
            cwd=tmp_path, env=ENV)
    first = _entries(cache)
    assert len(first) >= 2  # at least the train step and the evaluation
    run_cli(*TINY, f"paths.compilation_cache_dir={cache}", f"hydra.run.dir={tmp_path / 'b'}",
            cwd=tmp_path, env=ENV)
    assert _entries(cache) == first  # the same programs: read back, nothing new written


def test_the_default_is_the_user_cache_dir_and_null_turns_it_off(tmp_path):
    home_cache = tmp_path / "xdg"
    env = {**ENV, "XDG_CACHE_HOME": str(home_cache)}
    run_cli(*TINY, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path, env=env)
    assert _entries(home_cache / "lstm_jax" / "xla")
    off = tmp_path / "off"
    env = {**ENV, "XDG_CACHE_HOME": str(off)}
    run_cli(*TINY, "paths.compilation_cache_dir=null", f"hydra.run.dir={tmp_path / 'b'}",
            cwd=tmp_path, env=env)
    assert not (off / "lstm_jax" / "xla").exists()
