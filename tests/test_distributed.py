"""lstm_jax.distributed: process detection, the data mesh, batch sharding, replication,
and the overrides of non-main processes.

The 8-device checks run the project's trainer in a subprocess with 8 host CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8). That training on 1 device, 8 devices
and 2 processes gives the same numbers is tests/test_multiprocess.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from lstm_jax import distributed
from lstm_jax.distributed import (
    detect_multiprocess,
    is_main_process,
    make_data_mesh,
    maybe_initialize_distributed,
    replicate,
    shard_batch,
)


def _run_8_devices(script: str, timeout: float = 240) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    for name in ("SLURM_JOB_ID", "SLURM_PROCID", "JAX_NUM_PROCESSES", "OMPI_COMM_WORLD_SIZE"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


# ---------------------------------------------------------------- process detection


def test_single_process_environments_are_not_distributed():
    assert detect_multiprocess({}) is None
    # a SLURM job with one task (the submitit default: tasks_per_node=1, nodes=1)
    assert (
        detect_multiprocess({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None
    )
    # an salloc shell without a job step: SLURM_PROCID is missing
    assert detect_multiprocess({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) is None
    assert detect_multiprocess({"OMPI_COMM_WORLD_SIZE": "1"}) is None
    assert detect_multiprocess({"JAX_NUM_PROCESSES": "1"}) is None


def test_multi_process_environments_are_detected():
    slurm = {
        "SLURM_JOB_ID": "7",
        "SLURM_PROCID": "3",
        "SLURM_NTASKS": "8",
        "SLURM_STEP_NUM_TASKS": "4",
    }
    assert detect_multiprocess(slurm) == {"source": "slurm", "num_processes": 4, "process_id": 3}
    assert detect_multiprocess({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}) == {
        "source": "ompi",
        "num_processes": 2,
        "process_id": 1,
    }
    jax_env = {
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "0",
        "SLURM_JOB_ID": "7",
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "4",
    }
    assert detect_multiprocess(jax_env)["source"] == "jax"  # explicit settings win


def test_maybe_initialize_is_a_no_op_for_one_process(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    assert maybe_initialize_distributed({}) is False
    assert (
        maybe_initialize_distributed(
            {"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
        )
        is False
    )
    assert calls == []


def test_maybe_initialize_calls_jax_for_several_processes(monkeypatch):
    from jax._src import xla_bridge

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    monkeypatch.setattr(distributed, "describe_topology", lambda: "")
    slurm = {
        "SLURM_JOB_ID": "7",
        "SLURM_PROCID": "1",
        "SLURM_NTASKS": "2",
        "SLURM_STEP_NODELIST": "node[01-02]",
        "SLURM_LOCALID": "0",
    }
    assert maybe_initialize_distributed(slurm) is True
    assert calls[-1] == {"cluster_detection_method": "slurm"}
    explicit = {
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
    }
    assert maybe_initialize_distributed(explicit) is True
    assert calls[-1] == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 2,
        "process_id": 1,
    }
    # LSTM_JAX_DISTRIBUTED=0 turns it off; =1 forces it (JAX detects the cluster itself)
    assert maybe_initialize_distributed({**slurm, "LSTM_JAX_DISTRIBUTED": "0"}) is False
    assert maybe_initialize_distributed({"LSTM_JAX_DISTRIBUTED": "1"}) is True
    assert calls[-1] == {}
    assert len(calls) == 3


def test_initializing_after_the_backend_started_is_a_clear_error(monkeypatch):
    from jax._src import xla_bridge

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: True)
    with pytest.raises(RuntimeError, match="before any JAX computation"):
        maybe_initialize_distributed({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"})


def test_only_process_0_keeps_hydra_writing_the_run_dir(monkeypatch):
    from lstm_jax.distributed import NON_MAIN_HYDRA_OVERRIDES, process_overrides

    argv = ["task=adding", "hydra.run.dir=/shared/run"]
    assert process_overrides(argv) == []  # one process: nothing changes
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    assert process_overrides(argv) == []
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert process_overrides(argv) == list(NON_MAIN_HYDRA_OVERRIDES)
    assert "hydra.output_subdir=null" in NON_MAIN_HYDRA_OVERRIDES
    with pytest.raises(ValueError, match=r"same run dir with hydra.run.dir=PATH"):
        process_overrides(["task=adding"])
    with pytest.raises(ValueError, match=r"sweep \(-m\)"):
        process_overrides(["-m", "hydra.run.dir=/x", "seed=0,1"])


# ---------------------------------------------------------------- one device (this process)


def test_one_device_mesh_shards_and_replicates_trivially():
    mesh = make_data_mesh()
    assert mesh.axis_names == ("data",)
    assert mesh.shape["data"] == jax.device_count()
    assert is_main_process()
    batch = {
        "x": np.ones((4, 3, 2), np.float32),
        "seq_lengths": np.full((4,), 3, np.int32),
        "scale": np.float32(2.0),
    }
    out = shard_batch(batch, mesh)
    assert set(out) == set(batch)
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])
    assert out["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert out["scale"].sharding.is_fully_replicated
    params = replicate({"w": np.arange(3.0), "step": 3}, mesh)
    assert params["w"].sharding.is_fully_replicated and params["step"] == 3


# ---------------------------------------------------------------- 8 host CPU devices

# The project's trainer on the adding task, built in a process with 8 host CPU devices: its
# state is replicated on all 8, a task batch is split into 8 row blocks, and a batch that
# does not divide is refused by name. (Training on 1 vs 8 devices vs 2 processes x 4 devices
# gives the same numbers: tests/test_multiprocess.py.)
_EIGHT_DEVICES = r"""
import json, tempfile
import jax
import numpy as np
from hydra import compose, initialize_config_dir
import lstm_jax.cli  # registers the config resolvers
from lstm_jax.config import CONFIG_DIR
from lstm_jax.distributed import (is_main_process, make_data_mesh, maybe_initialize_distributed,
                                  shard_batch)
from lstm_jax.run import build_trainer

assert maybe_initialize_distributed() is False
assert jax.device_count() == 8, jax.devices()
with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
    cfg = compose("train", overrides=["task=adding", "task.seq_len=20", "model.hidden_size=16",
                                      "trainer.batch_size=32", "paths.data_dir=/tmp"])
trainer = build_trainer(cfg, tempfile.mkdtemp())
out = {"mesh": dict(trainer.mesh.shape), "main": is_main_process()}
leaves = jax.tree.leaves(trainer.state)
out["state_replicated"] = all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 8
                              for x in leaves)
batch = shard_batch(trainer.task.train_batch(0), trainer.mesh)
x = batch["x"]
out["x_spec"] = str(x.sharding.spec)
out["x_shards"] = sorted({tuple(s.data.shape) for s in x.addressable_shards})
out["x_devices"] = len({s.device for s in x.addressable_shards})
try:
    shard_batch(trainer.task.train_batch(0) | {"x": x[:10]}, trainer.mesh)
    out["error"] = None
except ValueError as e:
    out["error"] = str(e)


def step_flops(trainer):  # per device: XLA's cost analysis of the compiled train step
    batch = shard_batch(trainer.task.train_batch(0), trainer.mesh)
    step = trainer._train_step.lower(trainer.state, trainer.bad_step, np.int32(1), batch)
    cost = step.compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


out["flops_8_devices"] = step_flops(trainer)
import lstm_jax.distributed as distributed
distributed.make_data_mesh = lambda: make_data_mesh(jax.devices()[:1])
out["flops_1_device"] = step_flops(build_trainer(cfg, tempfile.mkdtemp()))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def eight_devices() -> dict:
    return _run_8_devices(_EIGHT_DEVICES)


def test_8_device_trainer_shards_the_batch_and_replicates_its_state(eight_devices):
    r = eight_devices
    assert r["mesh"] == {"data": 8} and r["main"] is True
    assert r["state_replicated"]
    assert r["x_spec"] == str(jax.sharding.PartitionSpec("data"))
    assert r["x_shards"] == [[4, 20, 2]] and r["x_devices"] == 8  # 32 rows / 8 devices


def test_8_devices_split_the_work_not_only_the_batch(eight_devices):
    # Each device runs the step on its own 4 rows: its share of the work is about an eighth
    # of the whole step's. A kernel that flattened the (time, batch) axes made XLA gather
    # the whole batch onto every device, and each device then did nine tenths of it.
    per_device, whole = eight_devices["flops_8_devices"], eight_devices["flops_1_device"]
    assert per_device < whole / 6, (per_device, whole)


def test_8_device_indivisible_batch_names_batch_size_and_devices(eight_devices):
    err = eight_devices["error"]
    assert err is not None
    assert "batch size 10" in err and "8 devices" in err and "multiple of 8" in err
