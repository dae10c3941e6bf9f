"""The real trainer on a real task (adding) across devices and processes: one process with
1 device, one process with 8 host CPU devices, and 2 JAX processes x 4 devices joined by
`jax.distributed.initialize` on localhost (coordinator address, process count and id, as a
user would start them). The same command gives the same losses, metrics and parameters
(1e-5); only process 0 writes the run dir; a 2-process run killed with SIGKILL resumes from
its checkpoint (trainer.resume=true) to the result of the uninterrupted run.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_runner import run_cli, slow_adding, tiny_adding
from multiprocess_runner import cpu_env, start_processes, wait_all

pytestmark = pytest.mark.multiprocess

STEPS = 8
TINY = tiny_adding(STEPS)
# The killed run: the same data, a pause per batch so that it can be killed mid-way.
SLOW = slow_adding(0.25)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curve(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged train/val/test scalar of the run as {name: [(step, value), ...]}."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in read_jsonl(run_dir / "metrics.jsonl"):
        for key, value in record.items():
            if key.split("/")[0] in ("train", "val", "test") and isinstance(value, float):
                out.setdefault(key, []).append((record["step"], value))
    return out


def final_params(run_dir: Path) -> list[np.ndarray]:
    """The parameters of the run's last checkpoint, restored in this (1-device) process."""
    from flax import nnx

    from lstm_jax.run import load_run

    assert (run_dir / "checkpoints" / str(STEPS)).is_dir()
    _, _, model = load_run(run_dir, "last")
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def max_differences(a: Path, b: Path) -> dict[str, float]:
    """The largest absolute difference between two runs, per metric and over all
    parameters (the checkpoint after the last step)."""
    ca, cb = curve(a), curve(b)
    assert ca.keys() == cb.keys() and "train/loss" in ca and "test/mse" in ca
    diffs = {}
    for key in ca:
        assert [s for s, _ in ca[key]] == [s for s, _ in cb[key]], key
        diffs[key] = max(abs(x - y) for (_, x), (_, y) in zip(ca[key], cb[key], strict=True))
    pa, pb = final_params(a), final_params(b)
    assert [p.shape for p in pa] == [p.shape for p in pb]
    diffs["params"] = max(
        float(np.max(np.abs(x - y))) for x, y in zip(pa, pb, strict=True) if x.size
    )
    return diffs


def files_of(run_dir: Path) -> set[str]:
    """The run dir's files, W&B's own (named by run id and time) and logs left out."""
    out = set()
    for p in run_dir.rglob("*"):
        parts = p.relative_to(run_dir).parts
        if p.is_file() and "wandb" not in parts and p.suffix != ".log":
            # orbax's data files are named by content hash: keep only the dir holding them
            out.add("/".join(parts[: parts.index("d") + 1] if "d" in parts else parts))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multiprocess")
    dirs = {name: root / name for name in ("1x1", "1x8", "2x4", "2x4_killed")}
    run_cli(*TINY, f"hydra.run.dir={dirs['1x1']}", cwd=root, env=cpu_env(1))
    # One process with 8 devices, its writes audited (what the audit of process 1 below
    # would see if it wrote the run dir).
    procs = start_processes(
        dirs["1x8"],
        TINY,
        num_processes=1,
        devices_per_process=8,
        cwd=root,
        audit_out=root / "audit_1x8",
        audit_from=0,
    )
    wait_all(procs, dirs["1x8"])

    run_dir = dirs["2x4"]
    procs = start_processes(
        run_dir, TINY, num_processes=2, devices_per_process=4, cwd=root, audit_out=root / "audit"
    )
    wait_all(procs, run_dir)

    # Killed (SIGKILL, both processes) once a checkpoint exists, then resumed.
    run_dir = dirs["2x4_killed"]
    procs = start_processes(
        run_dir, [*TINY, *SLOW], num_processes=2, devices_per_process=4, cwd=root
    )
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "4").is_dir():
        assert all(p.poll() is None for p in procs), "a process exited before step 4"
        assert time.monotonic() < deadline, "no checkpoint of step 4 after 240 s"
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
    killed_at = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert killed_at[-1] < STEPS and not (run_dir / "summary.json").exists()
    procs = start_processes(
        run_dir,
        [*TINY, *SLOW, "trainer.resume=true"],
        num_processes=2,
        devices_per_process=4,
        cwd=root,
    )
    wait_all(procs, run_dir)
    dirs["audit"] = root / "audit.p1.json"
    dirs["audit_1x8"] = root / "audit_1x8.p0.json"
    return dirs


def test_8_devices_and_2_processes_train_like_1_device(runs):
    """Loss, validation and test metrics at every step, and the final parameters, agree
    to 1e-5 between 1 device, 8 devices of one process and 2 processes x 4 devices."""
    summaries = {
        k: json.loads((runs[k] / "summary.json").read_text()) for k in ("1x1", "1x8", "2x4")
    }
    assert [s["device_count"] for s in summaries.values()] == [1, 8, 8]
    for other in ("1x8", "2x4"):
        diffs = max_differences(runs["1x1"], runs[other])
        assert max(diffs.values()) <= 1e-5, (other, diffs)
    diffs = max_differences(runs["1x8"], runs["2x4"])
    assert max(diffs.values()) <= 1e-5, diffs
    losses = [v for _, v in curve(runs["1x1"])["train/loss"]]
    assert len(losses) == STEPS and len(set(losses)) == STEPS  # the parameters did change


def test_only_process_0_writes_the_run_dir(runs):
    run_dir = runs["2x4"]
    # The audit hook sees a process that writes the run dir ...
    seen = {
        Path(p).relative_to(runs["1x8"]).as_posix()
        for _, p in json.loads(runs["audit_1x8"].read_text())
    }
    assert {".hydra/config.yaml", "metrics.jsonl", "summary.json", "cli.log"} <= seen
    # ... and process 1 of the 2-process run makes no (Python-level) write there
    assert json.loads(runs["audit"].read_text()) == []
    # No file from process 1 (orbax writes through tensorstore, which the hook misses):
    # the 2-process run dir holds files the 1-process run has too, no others.
    assert files_of(run_dir) <= files_of(runs["1x8"])
    assert {".hydra/config.yaml", "metrics.jsonl", "summary.json"} <= files_of(run_dir)
    assert not list(run_dir.rglob("*process_1*"))
    assert len(list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert steps == list(range(1, STEPS + 1))  # each line once
    assert "process 0/2" in (run_dir / "cli.log").read_text()


def test_killed_2_process_run_resumes_to_the_uninterrupted_result(runs):
    diffs = max_differences(runs["2x4"], runs["2x4_killed"])
    assert max(diffs.values()) <= 1e-5, diffs
    assert "Resuming from step" in (runs["2x4_killed"] / "cli.log").read_text()
