"""Runs the `lstm-jax` CLI in a subprocess, as a user would from a shell."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI run in a test: W&B offline, tests/ importable (fault_tasks)."""
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        **(extra or {}),
    }


def start_cli(overrides, cwd: Path) -> subprocess.Popen:
    """Starts `python -m lstm_jax OVERRIDES...` in `cwd` without waiting for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "lstm_jax", *overrides],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    *overrides: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Runs `python -m lstm_jax OVERRIDES...` in `cwd`, as a user would from a shell."""
    result = subprocess.run(
        [sys.executable, "-m", "lstm_jax", *overrides],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,  # the caller decides, and the message below carries stderr
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"lstm-jax {' '.join(overrides)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-6000:]}"
        )
    return result


# The smallest real run (adding, T=6, hidden 8): a loss line every step, an evaluation and
# a checkpoint every 2; add trainer.max_steps.
TINY_RUN = (
    "task.seq_len=6",
    "task.val_size=16",
    "task.test_size=16",
    "task.eval_batch_size=16",
    "model.hidden_size=8",
    "trainer.batch_size=8",
    "trainer.progress_bar=false",
    "logger=none",
    "logger.diagnostics_every=null",
    "trainer.eval_every=2",
    "trainer.log_every=1",
    "trainer.checkpoint_every=2",
)


def tiny_adding(steps: int) -> list[str]:
    """Overrides for a real but tiny training on the adding task (T=6, hidden 16): a loss
    line every step, an evaluation every 4, a checkpoint every 2; no diagnostics."""
    return [
        "task=adding",
        "task.seq_len=6",
        "task.val_size=64",
        "task.test_size=64",
        "task.eval_batch_size=32",
        "model.hidden_size=16",
        "trainer.batch_size=16",
        f"trainer.max_steps={steps}",
        "trainer.log_every=1",
        "trainer.eval_every=4",
        "trainer.checkpoint_every=2",
        "logger.diagnostics_every=null",
        "trainer.progress_bar=false",
    ]


def slow_adding(seconds_per_batch: float) -> list[str]:
    """The same data with a pause per batch (tests/fault_tasks.py), to stop a run mid-way."""
    return [
        "task._target_=fault_tasks.SlowAddingTask",
        f"+task.seconds_per_batch={seconds_per_batch}",
    ]


def tree_hashes(root: Path) -> dict[str, str]:
    """{file path under `root`: sha256 of its bytes}, to show a command changed no file."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
