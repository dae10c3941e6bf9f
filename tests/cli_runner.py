"""Runs the `lstm-jax` CLI in a subprocess, as a user would from a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(
    *overrides: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Runs `python -m lstm_jax OVERRIDES...` in `cwd`, as a user would from a shell."""
    full_env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "lstm_jax", *overrides],
        cwd=cwd,
        env=full_env,
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
