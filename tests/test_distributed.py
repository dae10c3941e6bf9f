"""lstm_jax.distributed: process detection, the data mesh, batch sharding, replication.

The data-parallel equality checks run in a subprocess with 8 host CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8): loss and gradients of a batch sharded
over 8 devices equal the single-device ones to 1e-5.
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
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    for name in ("SLURM_JOB_ID", "SLURM_PROCID", "JAX_NUM_PROCESSES", "OMPI_COMM_WORLD_SIZE"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT "):])


# ---------------------------------------------------------------- process detection


def test_single_process_environments_are_not_distributed():
    assert detect_multiprocess({}) is None
    # a SLURM job with one task (the submitit default: tasks_per_node=1, nodes=1)
    assert detect_multiprocess({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None
    # an salloc shell without a job step: SLURM_PROCID is missing
    assert detect_multiprocess({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) is None
    assert detect_multiprocess({"OMPI_COMM_WORLD_SIZE": "1"}) is None
    assert detect_multiprocess({"JAX_NUM_PROCESSES": "1"}) is None


def test_multi_process_environments_are_detected():
    slurm = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "3", "SLURM_NTASKS": "8",
             "SLURM_STEP_NUM_TASKS": "4"}
    assert detect_multiprocess(slurm) == {"source": "slurm", "num_processes": 4, "process_id": 3}
    assert detect_multiprocess({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}) == {
        "source": "ompi", "num_processes": 2, "process_id": 1}
    jax_env = {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0", "SLURM_JOB_ID": "7",
               "SLURM_PROCID": "0", "SLURM_NTASKS": "4"}
    assert detect_multiprocess(jax_env)["source"] == "jax"  # explicit settings win


def test_maybe_initialize_is_a_no_op_for_one_process(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    assert maybe_initialize_distributed({}) is False
    assert maybe_initialize_distributed({"SLURM_JOB_ID": "1", "SLURM_PROCID": "0",
                                         "SLURM_NTASKS": "1"}) is False
    assert calls == []


def test_maybe_initialize_calls_jax_for_several_processes(monkeypatch):
    from jax._src import xla_bridge

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    monkeypatch.setattr(distributed, "describe_topology", lambda: "")
    slurm = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_NTASKS": "2",
             "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_LOCALID": "0"}
    assert maybe_initialize_distributed(slurm) is True
    assert calls[-1] == {"cluster_detection_method": "slurm"}
    explicit = {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
                "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}
    assert maybe_initialize_distributed(explicit) is True
    assert calls[-1] == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2,
                         "process_id": 1}
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


# ---------------------------------------------------------------- one device (this process)


def test_one_device_mesh_shards_and_replicates_trivially():
    mesh = make_data_mesh()
    assert mesh.axis_names == ("data",)
    assert mesh.shape["data"] == jax.device_count()
    assert is_main_process()
    batch = {"x": np.ones((4, 3, 2), np.float32), "seq_lengths": np.full((4,), 3, np.int32),
             "scale": np.float32(2.0)}
    out = shard_batch(batch, mesh)
    assert set(out) == set(batch)
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])
    assert out["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert out["scale"].sharding.is_fully_replicated
    params = replicate({"w": np.arange(3.0), "step": 3}, mesh)
    assert params["w"].sharding.is_fully_replicated and params["step"] == 3


# ---------------------------------------------------------------- 8 host CPU devices

_EIGHT_DEVICES = r"""
import json
import jax, jax.numpy as jnp, numpy as np, optax
from flax import nnx
from jax.sharding import PartitionSpec as P
from lstm_jax.distributed import (make_data_mesh, shard_batch, replicate, is_main_process,
                                  maybe_initialize_distributed)

assert maybe_initialize_distributed() is False
assert jax.device_count() == 8, jax.devices()
mesh = make_data_mesh()
out = {"mesh": dict(mesh.shape), "main": is_main_process()}

class TinyRNN(nnx.Module):
    # a recurrent model of the same shape as a task model: encoder -> scan core -> head
    def __init__(self, d, h, rngs):
        self.inp = nnx.Linear(d, h, rngs=rngs)
        self.rec = nnx.Linear(h, h, use_bias=False, rngs=rngs)
        self.head = nnx.Linear(h, 1, rngs=rngs)
    def __call__(self, x, seq_lengths):
        xs = self.inp(x)                                   # (B, T, H)
        mask = (jnp.arange(x.shape[1])[None, :] < seq_lengths[:, None]).astype(x.dtype)
        def step(h, inp):
            xt, mt = inp
            hn = jnp.tanh(xt + self.rec(h))
            return mt[:, None] * hn + (1 - mt[:, None]) * h, None
        h0 = jnp.zeros((x.shape[0], xs.shape[-1]), x.dtype)
        h, _ = jax.lax.scan(step, h0, (xs.swapaxes(0, 1), mask.swapaxes(0, 1)))
        return self.head(h)[:, 0]

def loss_fn(model, batch):
    pred = model(batch["x"], batch["seq_lengths"])
    return jnp.mean((pred - batch["y"]) ** 2) * batch["scale"]

rng = np.random.default_rng(0)
B, T, D = 32, 20, 3
batch = {"x": rng.normal(size=(B, T, D)).astype(np.float32),
         "seq_lengths": rng.integers(5, T + 1, size=(B,)).astype(np.int32),
         "y": rng.normal(size=(B,)).astype(np.float32),
         "scale": np.float32(1.5)}

@nnx.jit
def loss_and_grads(model, batch):
    return nnx.value_and_grad(loss_fn)(model, batch)

model = TinyRNN(D, 16, nnx.Rngs(0))
loss1, grads1 = loss_and_grads(model, batch)

sharded = shard_batch(batch, mesh)
x = sharded["x"]
out["x_spec"] = str(x.sharding.spec)
out["x_shards"] = sorted({tuple(s.data.shape) for s in x.addressable_shards})
out["x_devices"] = len({s.device for s in x.addressable_shards})
out["scale_replicated"] = sharded["scale"].sharding.is_fully_replicated

model8 = replicate(TinyRNN(D, 16, nnx.Rngs(0)), mesh)
kernel = model8.rec.kernel.value if hasattr(model8.rec.kernel, "value") else model8.rec.kernel
out["params_replicated"] = bool(kernel.sharding.is_fully_replicated) and len(kernel.sharding.device_set) == 8
loss8, grads8 = loss_and_grads(model8, sharded)
g1 = jax.tree.leaves(nnx.state(grads1) if isinstance(grads1, nnx.Module) else grads1)
g8 = jax.tree.leaves(nnx.state(grads8) if isinstance(grads8, nnx.Module) else grads8)
out["grads_replicated"] = all(g.sharding.is_fully_replicated for g in g8)
out["loss"] = [float(loss1), float(loss8)]
out["grad_max_abs_diff"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(g1, g8))
out["grad_max_abs"] = max(float(np.max(np.abs(np.asarray(a)))) for a in g1)

# a few optimizer steps, single device vs 8 devices, optimizer state replicated too
def train(model, shard):
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    if shard:
        replicate(opt, mesh)
    @nnx.jit
    def step(model, opt, b):
        loss, grads = nnx.value_and_grad(loss_fn)(model, b)
        opt.update(model, grads)
        return loss
    losses = []
    for i in range(4):
        rng_i = np.random.default_rng(i + 1)
        b = {"x": rng_i.normal(size=(B, T, D)).astype(np.float32),
             "seq_lengths": rng_i.integers(5, T + 1, size=(B,)).astype(np.int32),
             "y": rng_i.normal(size=(B,)).astype(np.float32), "scale": np.float32(1.0)}
        losses.append(float(step(model, opt, shard_batch(b, mesh) if shard else b)))
    return losses
out["train_1"] = train(TinyRNN(D, 16, nnx.Rngs(1)), False)
out["train_8"] = train(replicate(TinyRNN(D, 16, nnx.Rngs(1)), mesh), True)

try:
    shard_batch({"x": np.zeros((10, 4), np.float32)}, mesh)
    out["error"] = None
except ValueError as e:
    out["error"] = str(e)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def eight_devices() -> dict:
    return _run_8_devices(_EIGHT_DEVICES)


def test_8_device_mesh_shards_the_batch_and_replicates_parameters(eight_devices):
    r = eight_devices
    assert r["mesh"] == {"data": 8} and r["main"] is True
    assert r["x_spec"] == str(jax.sharding.PartitionSpec("data"))
    assert r["x_shards"] == [[4, 20, 3]] and r["x_devices"] == 8  # 32 rows / 8 devices
    assert r["scale_replicated"] and r["params_replicated"] and r["grads_replicated"]


def test_8_device_loss_and_gradients_equal_single_device(eight_devices):
    r = eight_devices
    loss1, loss8 = r["loss"]
    assert abs(loss1 - loss8) <= 1e-5 * max(1.0, abs(loss1))
    assert r["grad_max_abs"] > 1e-3  # the gradients are not trivially zero
    assert r["grad_max_abs_diff"] <= 1e-5
    np.testing.assert_allclose(r["train_8"], r["train_1"], rtol=1e-5, atol=1e-5)
    assert r["train_1"][0] != r["train_1"][-1]  # the optimizer really stepped


def test_8_device_indivisible_batch_names_batch_size_and_devices(eight_devices):
    err = eight_devices["error"]
    assert err is not None
    assert "batch size 10" in err and "8 devices" in err and "multiple of 8" in err


# ---------------------------------------------------------------- the trainer, 1 vs 8 devices


@pytest.mark.slow  # two CLI trainings; the equality itself is checked above in the default suite
def test_training_run_on_8_devices_logs_the_losses_of_the_1_device_run(tmp_path):
    """The same `lstm-jax` command on 1 and on 8 host CPU devices: the trainer shards each
    batch over the data mesh and replicates the parameters; the logged train and validation
    losses agree to 1e-5."""
    from cli_runner import run_cli

    overrides = [
        "task=adding", "task.seq_len=6", "model.hidden_size=16", "trainer.batch_size=16",
        "trainer.max_steps=6", "trainer.log_every=1", "trainer.eval_every=3",
        "trainer.checkpoint_every=3", "task.val_size=64", "task.test_size=64",
        "task.eval_batch_size=32", "logger=none", "logger.diagnostics_every=3",
        "trainer.progress_bar=false",
    ]
    logs = {}
    for devices in (1, 8):
        run_dir = tmp_path / f"devices_{devices}"
        env = {"JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env, timeout=300)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["device_count"] == devices
        logs[devices] = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    def series(records, key):
        return [(r["step"], r[key]) for r in records if key in r]

    for key in ("train/loss", "val/mse", "test/mse", "grad_norm/global"):
        one, eight = series(logs[1], key), series(logs[8], key)
        assert one and [s for s, _ in one] == [s for s, _ in eight], key
        np.testing.assert_allclose([v for _, v in eight], [v for _, v in one],
                                   rtol=1e-5, atol=1e-6, err_msg=key)
    losses = [v for _, v in series(logs[1], "train/loss")]
    assert len(set(losses)) > 1  # the parameters did change
