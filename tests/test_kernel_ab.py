"""experiments/kernel_ab.py times a cell kernel against an earlier revision of the package
in one process: the revision imports under its own name, whichever nn/ file held the
kernel then, and an unchanged kernel gives identical gradients."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lstm_jax.config import CONFIG_DIR

ROOT = CONFIG_DIR.parent

# Slow (two packages' kernels compiled and timed): .ci/run's -m slow step.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_the_kernel_at_head_matches_the_working_tree(cell):
    out = subprocess.run(
        [sys.executable, "kernel_ab.py", "--against", "HEAD", "--cell", cell]
        + ["--shapes", "4,6,8", "--repeats", "2", "--masked"],
        cwd=ROOT / "experiments",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"# {cell} B,T,H = 4,6,8: max |gradient difference| 0 " in out
    assert "4,6,8 HEAD" in out and "4,6,8 working tree" in out
