"""Training is visible (issue 30): a line per evaluation in the output and the run's log file
wherever the run goes, a live bar on a terminal, and a closing table of the test metrics."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from cli_runner import REPO, run_cli, tiny_adding

EVAL_LINE = re.compile(
    r"step (\d+)/8 \| [\d.]+ steps/s \| ETA [\d:]+ \| train/loss [\d.]+ \| val/loss [\d.]+, "
    r"val/mse [\d.]+"
)


def test_without_a_terminal_each_evaluation_is_a_line_in_the_output_and_the_log_file(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*tiny_adding(8), "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    log_file = (run_dir / "cli.log").read_text()
    for text in (result.stdout + result.stderr, log_file):
        assert [int(m.group(1)) for m in EVAL_LINE.finditer(text)] == [4, 8], text[-2000:]
        assert "test metrics (the best checkpoint, step" in text
        assert re.search(r"test/mse\s+[\d.]+", text)
    assert "it/s" not in result.stderr  # no bar where no one watches


def test_on_a_terminal_the_run_shows_a_live_bar(tmp_path):
    """The presets used to set trainer.progress_bar=false and train in silence."""
    primary, replica = pty.openpty()
    # A terminal of 24 x 120 (a new pty is 0 x 0, where tqdm draws nothing).
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    overrides = [o for o in tiny_adding(8) if o != "trainer.progress_bar=false"]
    process = subprocess.Popen(
        [sys.executable, "-m", "lstm_jax", *overrides, "logger=none", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path, env=env, stdout=replica, stderr=replica,
    )  # fmt: skip
    os.close(replica)
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=300) == 0
    text = screen.decode(errors="replace")
    assert "8/8" in text and "loss=" in text  # tqdm's bar with the latest train loss
    # The evaluation lines print above the bar, once each.
    assert [int(m.group(1)) for m in EVAL_LINE.finditer(text)] == [4, 8], text[-2000:]
