"""Starts `lstm-jax` as several JAX processes on localhost, as a user would on one machine
(or several): every process gets the coordinator address, the process count and its id.

    procs = start_processes(run_dir, overrides, num_processes=2, devices_per_process=4)
    wait_all(procs)

Process i > 0 can be audited: a Python audit hook records every write it makes under the
run dir (open for writing, mkdir of a new dir, rename, remove, ...) into a JSON file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from cli_runner import REPO

# Runs the CLI with an audit hook that lists the writes under AUDIT_DIR (written to
# AUDIT_OUT at exit). Writes through C++ libraries (tensorstore) bypass it; the tests
# check the run dir's file list for those.
_AUDITED_CLI = r"""
import atexit, json, os, sys
root = os.path.realpath(os.environ["AUDIT_DIR"])
writes = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PATH_EVENTS = {"os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.utime", "os.symlink",
               "os.link", "shutil.rmtree", "shutil.copyfile", "shutil.move"}

def under_root(path):
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        return False
    real = os.path.realpath(os.fspath(path))
    return real == root or real.startswith(root + os.sep)

def hook(event, args):
    if event == "open" and args[2] is not None and args[2] & WRITE_FLAGS and under_root(args[0]):
        writes.append([event, os.fspath(args[0])])
    # The run dir itself may be made by whichever process's Hydra gets there first (an
    # empty dir, exist_ok); what goes into it must come from process 0 alone.
    elif (event == "os.mkdir" and under_root(args[0]) and not os.path.exists(args[0])
          and os.path.realpath(os.fspath(args[0])) != root):
        writes.append([event, os.fspath(args[0])])
    elif event == "os.rename" and (under_root(args[0]) or under_root(args[1])):
        writes.append([event, os.fspath(args[1])])
    elif event in PATH_EVENTS and args and under_root(args[0]):
        writes.append([event, os.fspath(args[0])])

def dump():
    with open(os.environ["AUDIT_OUT"], "w") as f:
        json.dump(writes, f)

sys.addaudithook(hook)
atexit.register(dump)
sys.argv = ["lstm-jax", *sys.argv[1:]]
from lstm_jax.cli import main
main()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_env(devices: int) -> dict[str, str]:
    """The environment of a CPU process with `devices` host devices, W&B offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_", "OMPI_"))}
    env.update(
        {
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        }
    )
    return env


def start_processes(
    run_dir: Path,
    overrides: list[str] | tuple[str, ...],
    *,
    num_processes: int,
    devices_per_process: int,
    cwd: Path,
    audit_out: Path | None = None,
    audit_from: int = 1,
) -> list[subprocess.Popen]:
    """Starts the processes of one run (hydra.run.dir=run_dir); stdout+stderr of process i
    go to run_dir's sibling `<run dir name>.p<i>.log`. With `audit_out`, processes
    i >= audit_from write the list of their writes under run_dir to `<audit_out>.p<i>.json`."""
    port = free_port()
    procs = []
    for i in range(num_processes):
        env = cpu_env(devices_per_process)
        if num_processes > 1:
            env.update(
                {
                    "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                    "JAX_NUM_PROCESSES": str(num_processes),
                    "JAX_PROCESS_ID": str(i),
                }
            )
        args = [*overrides, f"hydra.run.dir={run_dir}"]
        if audit_out is not None and i >= audit_from:
            env.update({"AUDIT_DIR": str(run_dir), "AUDIT_OUT": f"{audit_out}.p{i}.json"})
            cmd = [sys.executable, "-c", _AUDITED_CLI, *args]
        else:
            cmd = [sys.executable, "-m", "lstm_jax", *args]
        log = open(run_dir.parent / f"{run_dir.name}.p{i}.log", "w")  # noqa: SIM115
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def log_tail(run_dir: Path, i: int, n: int = 3000) -> str:
    path = run_dir.parent / f"{run_dir.name}.p{i}.log"
    return path.read_text()[-n:] if path.exists() else ""


def wait_all(procs: list[subprocess.Popen], run_dir: Path, timeout: float = 300) -> None:
    """Waits for every process; on a failure or timeout kills the others and raises with
    the tail of each process's output."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    if any(codes):
        tails = "\n".join(
            f"--- process {i} (exit {c}):\n{log_tail(run_dir, i)}" for i, c in enumerate(codes)
        )
        raise AssertionError(f"a process of the run failed: exit codes {codes}\n{tails}")
