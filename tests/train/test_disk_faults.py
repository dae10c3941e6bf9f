"""A full disk and a run dir made read-only mid-run end the run in one line that names the
place, the way out and the resume command (the newest checkpoint is intact); memory the
machine cannot hold is reported with its size and the keys that lower it. Disk faults are
made real: a small tmpfs, and one remounted read-only (root only; skipped elsewhere)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cli_runner import TINY_RUN, run_cli, slow_adding, start_cli

# Slow (real runs filling a tmpfs, a read-only remount, a refused allocation): .ci/run's
# -m slow step runs it, after the 10-minute default suite.
pytestmark = pytest.mark.slow


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {result.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size) mounts a tmpfs of `size` (e.g. "600k") and returns its path; the test
    is skipped, saying why, where it cannot mount (root and mount rights needed)."""
    mounts = []

    def make(size: str) -> Path:
        target = tmp_path / f"tmpfs{len(mounts)}"
        target.mkdir()
        try:
            mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
        except OSError as error:
            pytest.skip(f"cannot mount a tmpfs here (root and mount rights needed): {error}")
        mounts.append(target)
        return target

    yield make
    for target in mounts:
        subprocess.run(["umount", "-l", str(target)], check=False)


def one_error_line(result_stderr: str) -> str:
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result_stderr[-4000:]
    return lines[0]


def resume_words(line: str) -> list[str]:
    return shlex.split(line.split("resume with: ", 1)[1])


def test_a_full_disk_ends_the_run_in_one_line_with_the_resume_command(tmpfs, tmp_path):
    # room for a tiny run's first checkpoints, not for forty of them
    run_dir = tmpfs("600k") / "run"
    overrides = [*TINY_RUN, "trainer.max_steps=40", "trainer.keep_checkpoints=40"]
    result = run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"lstm-jax: error: no space left on the device at {run_dir}")
    assert re.search(rf"its newest checkpoint, {re.escape(str(run_dir))}/checkpoints/\d+", line)
    # the way out it names: copy the run dir to a disk with room, resume there
    words = resume_words(line)
    assert words[-2:] == ["trainer.resume=true", f"hydra.run.dir={run_dir}"]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run_dir, elsewhere)
    run_cli(*words[1:-1], f"hydra.run.dir={elsewhere}", cwd=tmp_path)
    assert json.loads((elsewhere / "summary.json").read_text())["steps"] == 40


def test_a_run_dir_made_read_only_mid_run_ends_in_one_line(tmpfs, tmp_path):
    run_dir = tmpfs("50m") / "run"
    process = start_cli(
        [*TINY_RUN, *slow_adding(0.1), "trainer.max_steps=200", f"hydra.run.dir={run_dir}"],
        tmp_path,
    )
    checkpoints = run_dir / "checkpoints"
    deadline = time.time() + 240
    while not (checkpoints / "4").is_dir():
        assert process.poll() is None and time.time() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.05)
    # A file system with files open for writing cannot become read-only; a bind mount of
    # checkpoints/ can, between two saves (none of its files is open then).
    mount("--bind", str(checkpoints), str(checkpoints))
    try:
        for _ in range(100):
            try:
                mount("-o", "remount,bind,ro", str(checkpoints))
                break
            except OSError:  # a save in progress: busy
                time.sleep(0.01)
        else:
            pytest.fail("checkpoints/ stayed busy")
        _, stderr = process.communicate(timeout=240)
    finally:
        subprocess.run(["umount", "-l", str(checkpoints)], check=False)
    assert process.returncode == 1
    line = one_error_line(stderr)
    assert line.startswith(f"lstm-jax: error: the file system is read-only at {checkpoints}")
    assert re.search(rf"its newest checkpoint, {re.escape(str(checkpoints))}/\d+", line)
    assert resume_words(line)[-1] == f"hydra.run.dir={run_dir}"


def test_memory_the_machine_cannot_hold_is_refused_before_any_work(tmp_path):
    started = time.perf_counter()
    result = run_cli(
        "task=adding",
        "task.seq_len=100000000",  # far beyond any machine
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(
        "lstm-jax: error: task.seq_len=100000000 with trainer.batch_size=64 and "
        "model.hidden_size=128 needs at least 6,554 GB for the states a training step keeps"
    ), line
    assert line.endswith("Lower task.seq_len, trainer.batch_size or model.hidden_size.")
    assert time.perf_counter() - started < 60  # no data generated, nothing compiled
