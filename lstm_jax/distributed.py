"""Processes, devices and data parallelism, on JAX's own multi-device, multi-host runtime.

The same training code runs on 1 device, N devices of one host, or N hosts:

    maybe_initialize_distributed()       # first thing in the CLI, before any JAX call
    mesh = make_data_mesh()              # 1-D mesh over every device, axis "data"
    model_state = replicate(model_state, mesh)     # parameters: a full copy per device
    batch = shard_batch(task.train_batch(step), mesh)  # batch: split on its first axis
    loss, grads = jitted_step(model_state, batch)  # XLA inserts the gradient all-reduce
    if is_main_process(): write files / W&B

Multi-host batches follow the Task contract: `train_batch(step)` is a pure function of
(seed, step), so every process builds the same global batch and `shard_batch` places on
each process's devices only their rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

DATA_AXIS = "data"

# LSTM_JAX_DISTRIBUTED=auto (default): initialize when the environment says this process is
# one of several; =1 always call jax.distributed.initialize() (JAX then detects the cluster,
# e.g. Cloud TPU pods); =0 never.
_ENV_SWITCH = "LSTM_JAX_DISTRIBUTED"


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def detect_multiprocess(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """How this process is one of several, from the environment; None for a single process.

    Returns {"source": "jax" | "slurm" | "ompi", "num_processes": n, "process_id": i}
    (process_id None where the launcher does not say). Looks at, in order:
    JAX_NUM_PROCESSES / JAX_PROCESS_ID (with JAX_COORDINATOR_ADDRESS), a SLURM job step
    with several tasks (srun, and so submitit: SLURM_STEP_NUM_TASKS or SLURM_NTASKS with
    SLURM_PROCID), and Open MPI (OMPI_COMM_WORLD_SIZE).
    """
    env = os.environ if env is None else env
    n = _int_env(env, "JAX_NUM_PROCESSES")
    if n is not None and n > 1:
        return {"source": "jax", "num_processes": n, "process_id": _int_env(env, "JAX_PROCESS_ID")}
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env:
        n = _int_env(env, "SLURM_STEP_NUM_TASKS") or _int_env(env, "SLURM_NTASKS")
        if n is not None and n > 1:
            return {
                "source": "slurm",
                "num_processes": n,
                "process_id": _int_env(env, "SLURM_PROCID"),
            }
    n = _int_env(env, "OMPI_COMM_WORLD_SIZE")
    if n is not None and n > 1:
        return {
            "source": "ompi",
            "num_processes": n,
            "process_id": _int_env(env, "OMPI_COMM_WORLD_RANK"),
        }
    return None


def maybe_initialize_distributed(env: Mapping[str, str] | None = None) -> bool:
    """Calls `jax.distributed.initialize()` when this job is one of several processes.

    Call it first, before anything touches a JAX device. A no-op (returns False) for a
    single process, so the same command runs on a laptop, one GPU node, or a SLURM job
    of several tasks. Returns True when the distributed runtime is (now) initialized.
    """
    env = os.environ if env is None else env
    if jax.distributed.is_initialized():
        log.info("%s", describe_topology())  # again, once the run's log is set up
        return True
    switch = env.get(_ENV_SWITCH, "auto").strip().lower()
    if switch in ("0", "false", "no", "off"):
        return False
    info = detect_multiprocess(env)
    if info is None and switch not in ("1", "true", "yes", "on"):
        return False

    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise RuntimeError(
            f"This process is one of several ({info}), but JAX's backend was already "
            "initialized before lstm_jax.distributed.maybe_initialize_distributed() ran; "
            "call it before any JAX computation or device query."
        )
    kwargs: dict[str, Any] = {}
    if info is not None and info["source"] == "jax":
        kwargs = {
            "coordinator_address": env.get("JAX_COORDINATOR_ADDRESS"),
            "num_processes": info["num_processes"],
            "process_id": info["process_id"],
        }
    elif info is not None:
        kwargs = {"cluster_detection_method": info["source"]}
    log.info("jax.distributed.initialize(%s) for %s", kwargs, info or "forced")
    jax.distributed.initialize(**kwargs)
    log.info("%s", describe_topology())
    return True


# Hydra overrides for every process but process 0, which alone writes the run dir: no
# `.hydra/` copy of the config, the job's log to stdout (not `<job>.log`), no write probe.
NON_MAIN_HYDRA_OVERRIDES = (
    "hydra.output_subdir=null",
    "hydra/job_logging=stdout",
    "~hydra.callbacks.output_dir_check",
)


def process_overrides(argv: list[str]) -> list[str]:
    """The Hydra overrides this process adds to `argv` (the command line, program name
    excluded) in a run of several processes: none for process 0, NON_MAIN_HYDRA_OVERRIDES
    for the others. Call it after `maybe_initialize_distributed()`.

    Raises ValueError when the processes would not share one run dir: several processes
    need `hydra.run.dir=PATH` (the default holds the start time, which differs between
    processes), and a sweep (`-m`) is launched once, not once per process.
    """
    if not jax.distributed.is_initialized() or jax.process_count() == 1:
        return []
    if any(a in ("-m", "--multirun") for a in argv):
        raise ValueError(
            f"this is one of {jax.process_count()} processes, but the command is a sweep "
            "(-m): start the sweep once (e.g. with hydra/launcher=slurm) and let each job "
            "start its processes."
        )
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        raise ValueError(
            f"this is one of {jax.process_count()} processes: give every process the same "
            "run dir with hydra.run.dir=PATH (the default name holds the start time, which "
            "differs between processes)."
        )
    return [] if is_main_process() else list(NON_MAIN_HYDRA_OVERRIDES)


def wait_for_all_processes(name: str, timeout_s: float = 3600.0) -> None:
    """A barrier of the distributed runtime's coordination service (no device collective,
    so none of gloo's 30 s timeouts); a no-op for a single process."""
    if not jax.distributed.is_initialized() or jax.process_count() == 1:
        return
    from jax._src import distributed as jax_distributed

    jax_distributed.global_state.client.wait_at_barrier(name, int(timeout_s * 1000))


_barriers = 0


def jit(fn: Any, **jit_kwargs: Any) -> Any:
    """`jax.jit(fn, **jit_kwargs)`; in a run of several processes, its first call compiles,
    waits until every process has compiled, then runs. Processes compile at their own
    pace (a loaded host takes longer), and the first collective of the step (the gradient
    all-reduce) would otherwise wait for the slowest one, which CPU collectives (gloo)
    give up after 30 s. Later calls are plain `jax.jit` calls (the compiled step is cached)."""
    jitted = jax.jit(fn, **jit_kwargs)
    if jax.process_count() == 1:
        return jitted
    first = [True]

    def call(*args: Any, **kwargs: Any) -> Any:
        if first[0]:
            global _barriers
            first[0] = False
            jitted.lower(*args, **kwargs).compile()
            _barriers += 1
            wait_for_all_processes(f"lstm_jax.jit:{getattr(fn, '__name__', 'fn')}:{_barriers}")
        return jitted(*args, **kwargs)

    return call


def is_main_process() -> bool:
    """True on process 0, the one that writes files, checkpoints metadata and W&B."""
    return jax.process_index() == 0


def describe_topology() -> str:
    """One line for logs: process i of n, local and global devices, device kind."""
    devices = jax.devices()
    return (
        f"process {jax.process_index()}/{jax.process_count()}, "
        f"{jax.local_device_count()} local / {jax.device_count()} global devices "
        f"({devices[0].device_kind})"
    )


def make_data_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh named "data" over every device (of every process).

    Axis type Auto: jit propagates shardings itself (GSPMD), so code written for one
    device runs unchanged; jax.make_mesh's default (Explicit) would make array shardings
    part of the types and ask every op on the batch axis to say what it wants.
    """
    n = jax.device_count() if devices is None else len(devices)
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
    return int(mesh.shape[DATA_AXIS])


def _key_str(path: tuple) -> str:
    return jax.tree_util.keystr(path) if path else "<batch>"


def _place(x: Any, sharding: NamedSharding) -> jax.Array:
    """Puts a value that is the same on every process onto a (maybe multi-process) sharding."""
    if isinstance(x, jax.Array):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = _place(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        if jax.process_count() == 1 or not x.is_fully_addressable:
            return jax.device_put(x, sharding)
        x = np.asarray(x)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    x = np.asarray(x)
    # Every process holds the whole value; each fills only its own devices' slices.
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """The batch (a dict / pytree of arrays, batch-first) split over the mesh's "data" axis.

    Each device gets B / n rows; 0-d leaves are replicated. Raises ValueError naming the
    batch size and the device count when B is not a multiple of the number of devices.
    """
    n = data_parallel_size(mesh)
    row_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(path: tuple, x: Any) -> Any:
        if x is None:
            return None
        shape = np.shape(x)
        if len(shape) == 0:
            return _place(x, replicated)
        if shape[0] % n:
            multiple = -(-shape[0] // n) * n
            raise ValueError(
                f"batch size {shape[0]} (batch entry {_key_str(path)}, shape {tuple(shape)}) "
                f"is not divisible by the {n} devices of the data-parallel mesh; set "
                f"trainer.batch_size to a multiple of {n} (e.g. {multiple})."
            )
        return _place(x, row_sharding)

    return jax.tree_util.tree_map_with_path(place, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array leaf of `tree` copied in full onto each device of the mesh.

    `tree` may be a pytree (e.g. `nnx.state(model)`, optimizer state) or an `nnx.Module` /
    `nnx.Optimizer`, whose state is then replicated in place (the object is returned).
    """
    from flax import nnx

    sharding = NamedSharding(mesh, PartitionSpec())
    if isinstance(tree, getattr(nnx, "Pytree", nnx.Object)):
        state = nnx.state(tree)
        nnx.update(tree, replicate(state, mesh))
        return tree

    def place(x: Any) -> Any:
        if isinstance(x, (jax.Array, np.ndarray, np.generic)):
            return _place(x, sharding)
        return x

    return jax.tree.map(place, tree)
