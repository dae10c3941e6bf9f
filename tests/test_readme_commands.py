"""Every `lstm-jax` and `lstm-jax-compare` command that README.md prints runs as printed
(issue 30), in debug=fdr form: each lstm-jax line with `debug=fdr logger=none` appended on
generated data, then each compare line on the run dirs those made (its placeholders, `<time>`
and `RUNS`, filled in). A README edit that breaks a command breaks this test. Slow (about
40 small runs); .ci/run runs it after the default suite. The SLURM and multi-process lines
are run by their own markers (tests/test_slurm.py, tests/test_multiprocess.py)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import REPO, run_cli
from fake_datasets import write_fake_datasets

README = REPO / "README.md"
# Lines that need a cluster or several hosts: their own markers run them.
ELSEWHERE = ("hydra/launcher=slurm", "JAX_COORDINATOR_ADDRESS", "/shared/runs/")


def readme_commands() -> list[str]:
    """The command lines of README.md's bash blocks that start with lstm-jax or
    lstm-jax-compare, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = line.split(" #")[0].strip()
            if re.match(r"^lstm-jax(-compare)?\b", command):
                commands.append(command)
    return commands


def test_the_readme_has_the_commands_this_test_runs():
    commands = readme_commands()
    assert "lstm-jax --help" in commands
    assert any(c.startswith("lstm-jax-compare") for c in commands)
    assert len([c for c in commands if not any(e in c for e in ELSEWHERE)]) >= 10


@pytest.mark.slow
def test_every_readme_command_runs_as_printed(tmp_path):
    (tmp_path / "data").mkdir()
    data = write_fake_datasets(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    ran = []
    runnable = [c for c in readme_commands() if not any(e in c for e in ELSEWHERE)]
    # The runs first, then the compare lines that read them.
    for command in sorted(runnable, key=lambda c: c.startswith("lstm-jax-compare")):
        words = shlex.split(command)
        if words[0] == "lstm-jax":
            extra = (
                [] if "--help" in words else ["debug=fdr", "logger=none", f"paths.data_dir={data}"]
            )
            run_cli(*words[1:], *extra, cwd=work, timeout=900)
        else:
            args = [_fill(w, work) for w in words[1:]]
            done = subprocess.run(
                [sys.executable, "-m", "lstm_jax.compare", *args, "--no-plots"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
            assert "runs (" in done.stdout, command
        ran.append(command)
    assert len(ran) >= 10, ran


def _fill(word: str, work: Path) -> str:
    """A compare argument with README's placeholders pointed at the runs made above."""
    if word == "RUNS":
        return str(work / "multirun" / "adding_T400" / "setup_grid")
    if "<time>" in word:
        parent = work / word.split("<")[0].replace("<experiment>", "")
        if "<experiment>" in word:
            parent = work / "multirun" / "memory_horizon"
        return str(sorted(p for p in parent.iterdir() if p.is_dir())[-1])
    return word
