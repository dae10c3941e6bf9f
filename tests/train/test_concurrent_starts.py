"""Several `lstm-jax` processes started at once (a shell loop with `&`): each run gets a
dir of its own, or a one-line refusal; no dir ever holds two runs (docs/DESIGN.md
contract 3)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from cli_runner import TINY_RUN, start_cli

# Slow (several real lstm-jax processes started at once): .ci/run's -m slow step runs it,
# after the 10-minute default suite.
pytestmark = pytest.mark.slow

TINY = (*TINY_RUN, "trainer.max_steps=4")


def start_at_once(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Starts every command before waiting for any, as `cmd & cmd & wait` would."""
    procs = [start_cli(command, cwd) for command in commands]
    results = []
    for proc, command in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return results


def assert_holds_one_run(run_dir: Path, seed: int) -> None:
    """The dir's config, metrics and summary are those of one run with `seed`, steps 1..4
    once each."""
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"] == seed
    steps = [
        json.loads(line)["step"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in json.loads(line)
    ]
    assert steps == [1, 2, 3, 4], steps
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4


def test_starts_into_one_dir_at_once_give_one_run_and_one_line_refusals(tmp_path):
    run_dir = tmp_path / "run"
    seeds = [0, 1, 2]
    results = start_at_once(
        [[*TINY, f"seed={s}", f"hydra.run.dir={run_dir}"] for s in seeds], tmp_path
    )
    winners = [s for s, r in zip(seeds, results, strict=True) if r.returncode == 0]
    assert len(winners) == 1, [(r.returncode, r.stderr[-2000:]) for r in results]
    for result in results:
        if result.returncode == 0:
            continue
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        # in use by the winner, or (a slow start) already holding its finished run
        assert len(lines) == 1 and lines[0].startswith(f"lstm-jax: error: the run dir {run_dir}"), (
            result.stderr[-3000:]
        )
        assert result.returncode == 1
    assert_holds_one_run(run_dir, winners[0])


def test_starts_in_one_second_into_the_default_dir_get_a_dir_each(tmp_path):
    seeds = [0, 1, 2]
    results = start_at_once(
        [[*TINY, f"seed={s}", "experiment_name=together"] for s in seeds], tmp_path
    )
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-2000:] for r in results]
    run_dirs = sorted((tmp_path / "outputs" / "together").iterdir())
    assert len(run_dirs) == 3, run_dirs
    seen = set()
    for run_dir in run_dirs:
        seed = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"]
        assert_holds_one_run(run_dir, seed)
        seen.add(seed)
    assert seen == set(seeds)
