"""SLURM for real: a one-node cluster on this machine (experiments/slurm_local_cluster.sh:
slurmctld and slurmd on localhost, root and Debian needed), a 2-job sweep with
`hydra/launcher=slurm` (hydra-submitit-launcher), and a preemption: a running job requeued
with `scontrol requeue` resumes from its checkpoint and ends with the metrics of the
uninterrupted job.

    sudo -E python -m pytest -m slurm -n 0 tests/test_slurm.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import REPO, run_cli, slow_adding, tiny_adding

pytestmark = pytest.mark.slurm

SCRIPT = REPO / "experiments" / "slurm_local_cluster.sh"
STEPS = 12
# Each job: 1 CPU, no GPU, 1 GB, so that both jobs of the sweep run at once on 2 cores.
LAUNCH = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
TINY = tiny_adding(STEPS)
# The same data with a pause per batch: 8 s of training left after the step-4 checkpoint,
# longer than the cluster's KillWait (5 s), so the requeue kills the job mid-run.
SLOW = slow_adding(1.0)
ENV = {"JAX_PLATFORMS": "cpu"}


def _script(action: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=900, check=check
    )


@pytest.fixture(scope="module")
def cluster():
    was_running = _script("status", check=False).returncode == 0
    started = _script("start", check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    yield
    if not was_running:
        _script("stop")


def _curve(run_dir: Path) -> list[tuple]:
    """Every logged train/val/test value by step (timings left out)."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        out.append(
            tuple(
                sorted(
                    (k, v)
                    for k, v in record.items()
                    if k == "step" or k.split("/")[0] in ("train", "val", "test")
                )
            )
        )
    return out


def _job_ids(sweep: Path) -> list[str]:
    """The SLURM job ids (`<array job>_<task>` for a job array) of a sweep, from
    submitit's folder: one subdir with the pickled job per SLURM job."""
    folder = sweep / ".submitit"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if list(p.glob("*_submitted.pkl")))


@pytest.fixture(scope="module")
def sweep(cluster, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("slurm")
    sweep_dir = work / "sweep"
    t0 = time.monotonic()
    run_cli(
        "-m",
        *LAUNCH,
        *TINY,
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=work,
        env=ENV,
        timeout=600,
    )
    return {"dir": sweep_dir, "work": work, "seconds": time.monotonic() - t0}


def test_sweep_of_2_jobs_runs_on_slurm(sweep):
    sweep_dir = sweep["dir"]
    jobs = _job_ids(sweep_dir)
    assert len(jobs) == 2, jobs  # a SLURM job array of two tasks, one per sweep job
    results = []
    for job in ("0", "1"):
        run_dir = sweep_dir / job
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["steps"] == STEPS and summary["device_count"] == 1
        assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        results.append(summary["test"]["test/mse"])
    assert results[0] != results[1]  # seed=0 and seed=1 really are two runs
    for job in jobs:  # submitit's record of each SLURM job: it finished and returned
        assert (sweep_dir / ".submitit" / job / f"{job}_0_result.pkl").is_file()
    print(f"2-job SLURM sweep: {sweep['seconds']:.1f} s")


def test_requeued_job_resumes_to_the_uninterrupted_result(sweep):
    work, sweep_dir = sweep["work"], sweep["dir"] / "requeue"
    env = {
        **os.environ,
        **ENV,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.monotonic()
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lstm_jax",
            "-m",
            *LAUNCH,
            *TINY,
            *SLOW,
            "seed=0",
            "trainer.resume=true",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_dir = sweep_dir / "0"
    try:
        while not (run_dir / "checkpoints" / "4").is_dir():
            assert launcher.poll() is None, launcher.stdout.read()[-4000:]
            assert time.monotonic() - t0 < 300, "no checkpoint of step 4 after 300 s"
            time.sleep(0.2)
        (job,) = _job_ids(sweep_dir)
        subprocess.run(["scontrol", "requeue", job], check=True)
        requeued_at = time.monotonic() - t0
        # SLURM holds a requeued job ~2 minutes before it may start again; start it now.
        while True:
            state = subprocess.run(
                ["squeue", "-h", "-j", job, "-o", "%t"], capture_output=True, text=True, check=False
            ).stdout.strip()
            if state == "PD":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
                break
            assert time.monotonic() - t0 < 300, f"job {job} not pending again: {state!r}"
            time.sleep(0.2)
        out, _ = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    seconds = time.monotonic() - t0
    assert launcher.returncode == 0, out[-4000:]
    info = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, check=True
    ).stdout
    assert "Restarts=1" in info, info
    log = (run_dir / "cli.log").read_text()
    assert "Resuming from step" in log, log[-3000:]
    resumed_from = int(log.split("Resuming from step ")[1].split()[0])
    assert 4 <= resumed_from < STEPS
    # The same metrics, step by step, and the same final summary as the uninterrupted job.
    reference = sweep["dir"] / "0"
    assert _curve(run_dir) == _curve(reference)
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    assert summary["steps"] == STEPS
    assert summary["test"] == expected["test"] and summary["best"] == expected["best"]
    print(
        f"requeue: requeued at {requeued_at:.1f} s (after the step-4 checkpoint), resumed "
        f"from step {resumed_from}, finished at {seconds:.1f} s"
    )
