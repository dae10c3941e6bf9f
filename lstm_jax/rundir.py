"""One run per run dir (docs/DESIGN.md contract 3), checked before Hydra writes anything there.

A start in a dir that already holds a run is refused unless `trainer.resume=true`; a
resume whose config differs from the stored `.hydra/config.yaml` in a key that changes
shapes, data or the optimisation trajectory is refused unless the key is listed in
`trainer.resume_allow`. Accepted changes are appended to `resumes.jsonl` in the run dir.

`lstm_jax.cli.OutputDirCheck.on_run_start` calls `check_start` before Hydra saves the new
config, so a refused start changes nothing in the dir. A sweep's jobs get no such hook
(Hydra saves each job's config before any callback or job code runs): a resumed sweep
copies every job's stored config first (`snapshot_sweep_configs`, at the sweep's start),
and each job checks against that copy and restores it on refusal (`check_sweep_job`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from lstm_jax.train.optim import SCHEDULE_KEYS

# Held (fcntl.flock) by the process whose run owns the dir, for the run's life: the check
# that the dir is free and the run's first write happen under it, so two starts at once
# cannot both pass the check. It holds the owner's pid, for the refusal of the other.
CLAIM_FILE = ".run.lock"
RESUME_LOG = "resumes.jsonl"
BEFORE_RESUME = ".hydra_before_resume"  # in a resumed sweep's dir while its jobs check
SWEEP_CONFIG = "multirun.yaml"  # Hydra's record of the sweep, in the sweep dir

# Keys that may change on a resume without changing what the run computes.
_FREE_PREFIXES = ("hydra.", "logger.", "paths.")
_FREE_KEYS = {
    "experiment_name",
    "task.data_dir",
    "trainer.resume",
    "trainer.resume_allow",
    "trainer.progress_bar",
    "trainer.log_every",
    "trainer.eval_every",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.evaluate_test",
    "trainer.early_stopping_patience",
    "trainer.stop_when",
    # A longer or shorter run is the same trajectory unless a schedule reads max_steps, and
    # then the schedule's own key (optim.schedule.decay_steps) differs.
    "trainer.max_steps",
}


# Keys that change the shapes of a model's parameters: a resume can never accept them (its
# checkpoints could not be restored), so trainer.resume_allow naming one is refused.
SHAPE_KEYS = frozenset(
    {"model._target_", "model.cell", "model.hidden_size", "model.num_layers", "model.bidirectional"}
)


class RunDirError(ValueError):
    """A start that would mix two runs in one dir, or a resume with a changed config."""


def holds_run(run_dir: Path) -> bool:
    """Whether a run has written its records or state in `run_dir`: a start that failed
    before its first step leaves an empty metrics.jsonl and empty checkpoint dirs, which
    do not count."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        return True
    if (run_dir / "summary.json").exists():
        return True
    checkpoints = run_dir / "checkpoints"
    return checkpoints.is_dir() and any(
        any(kind.iterdir()) for kind in checkpoints.iterdir() if kind.is_dir()
    )


SUMMARY_FILE = "summary.json"


def record_failure(run_dir: str | Path, message: str) -> None:
    """Marks the run in `run_dir` failed in its summary.json ("status": "failed" and the
    error), merged into what is there; a later run that finishes sets "finished"."""
    path = Path(run_dir) / SUMMARY_FILE
    summary: dict[str, Any] = {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    summary.update(status="failed", error=message)
    try:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a full or read-only disk: the error itself was already reported
        pass


def failed_jobs(sweep_dir: str | Path) -> tuple[int, list[tuple[Path, str]]]:
    """(number of jobs, [(job dir, error)] of those whose summary.json says failed) of the
    sweep in `sweep_dir`: its job dirs are those holding `.hydra/`."""
    jobs = sorted(
        (p.parent for p in Path(sweep_dir).glob("**/.hydra") if BEFORE_RESUME not in p.parts),
        key=lambda p: (len(p.parts), str(p)),
    )
    failed = []
    for job in jobs:
        try:
            summary = json.loads((job / SUMMARY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if summary.get("status") == "failed":
            failed.append((job, str(summary.get("error", ""))))
    return len(jobs), failed


class RunDirBusy(RunDirError):
    """Another process holds the run dir's claim."""


# The claims this process holds: {run dir: open file descriptor of its CLAIM_FILE}.
_claims: dict[Path, int] = {}


def claim(run_dir: str | Path) -> None:
    """Takes the run dir for this process until release() or the process ends (the lock
    goes with the process, also when it is killed). RunDirBusy names the process that
    holds it."""
    run_dir = Path(run_dir).absolute()
    if run_dir in _claims:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / CLAIM_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise RunDirBusy(
            f"the run dir {run_dir} is in use by another lstm-jax process"
            f"{f' (pid {owner})' if owner else ''}. Wait for it to end, or start this run "
            "in another dir (hydra.run.dir=PATH, or leave hydra.run.dir unset)."
        ) from None
    _claims[run_dir] = fd


def mark_claim(run_dir: str | Path) -> None:
    """Writes this process's pid into the claim, once the start is accepted (a refused
    start leaves the dir's files as they were)."""
    fd = _claims[Path(run_dir).absolute()]
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # a full disk: only the other start's refusal loses the pid
        pass


def release(run_dir: str | Path) -> None:
    fd = _claims.pop(Path(run_dir).absolute(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the lock


def claim_free_dir(run_dir: str | Path) -> Path:
    """For a default (time-stamped) run dir: claims `run_dir`, or, when another run holds
    it or is starting in it (two starts in one second), the first free of `run_dir_2`,
    `run_dir_3`, ... Returns the claimed dir."""
    run_dir = Path(run_dir)
    for n in range(1, 1000):
        candidate = run_dir if n == 1 else run_dir.with_name(f"{run_dir.name}_{n}")
        try:
            claim(candidate)
        except RunDirBusy:
            continue
        if holds_run(candidate):
            release(candidate)
            continue
        return candidate
    raise RunDirError(f"no free run dir beside {run_dir} (tried {run_dir.name}_2 to _999).")


def _leaves(cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (resolved value, raw value)}; a value that cannot be resolved here
    (`${hydra:...}` outside a job) is kept raw."""
    out: dict[str, tuple[Any, Any]] = {}

    def walk(node: Any, prefix: str) -> None:
        for key in node:
            path = f"{prefix}{key}"
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_interpolation():
                walk(child, path + ".")
                continue
            raw = child._value()
            try:
                value = OmegaConf.select(cfg, path, throw_on_resolution_failure=True)
            except Exception:  # noqa: BLE001 - unresolvable here: compare the raw text
                value = raw
            if isinstance(value, DictConfig | ListConfig):
                value = OmegaConf.to_container(value, resolve=False)
            out[path] = (value, raw)

    walk(cfg, "")
    return out


def _material(key: str, cfg: dict[str, tuple[Any, Any]]) -> bool:
    if key in _FREE_KEYS or key.startswith(_FREE_PREFIXES):
        return False
    if key.startswith("optim.schedule.") and key != "optim.schedule.name":
        name = cfg.get("optim.schedule.name", (None, None))[0]
        return key.rpartition(".")[2] in SCHEDULE_KEYS.get(name, ())
    return True


def config_changes(old: DictConfig, new: DictConfig) -> dict[str, tuple[Any, Any, Any]]:
    """The keys that matter whose values differ: {key: (old, new, new raw value)}."""
    old_leaves, new_leaves = _leaves(old), _leaves(new)
    missing = ("<absent>", None)
    changes = {}
    for key in sorted(old_leaves.keys() | new_leaves.keys()):
        before, after = old_leaves.get(key, missing), new_leaves.get(key, missing)
        if before[0] == after[0]:
            continue
        if _material(key, new_leaves) or _material(key, old_leaves):
            changes[key] = (before[0], after[0], after[1])
    return changes


def _allowed(key: str, raw: Any, allow: set[str]) -> bool:
    """Listed in trainer.resume_allow, or an interpolation of a listed key
    (optim.schedule.decay_steps: ${trainer.max_steps})."""
    return key in allow or (isinstance(raw, str) and any(f"${{{a}}}" in raw for a in allow))


def _source(key: str, raw: Any) -> str:
    """The key a user sets: `trainer.max_steps` for `optim.schedule.decay_steps:
    ${trainer.max_steps}`."""
    if isinstance(raw, str) and raw.startswith("${") and raw.endswith("}") and ":" not in raw:
        return raw[2:-1]
    return key


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def snapshot_sweep_configs(sweep_dir: str | Path) -> None:
    """Before a resumed sweep's jobs start: a copy of each job's `.hydra/` files under
    `<sweep>/.hydra_before_resume/<job>/` (replacing any left by an aborted sweep). Hydra
    rewrites a job's `.hydra/` before the job's code runs, so the job checks its config
    against this copy and puts the copy back when it refuses."""
    sweep_dir = Path(sweep_dir).resolve()
    shutil.rmtree(sweep_dir / BEFORE_RESUME, ignore_errors=True)
    (sweep_dir / BEFORE_RESUME).mkdir()
    if (sweep_dir / SWEEP_CONFIG).is_file():  # Hydra's launcher rewrites it next
        shutil.copy2(sweep_dir / SWEEP_CONFIG, sweep_dir / BEFORE_RESUME / SWEEP_CONFIG)
    for stored in sorted(sweep_dir.rglob(".hydra/config.yaml")):
        job = stored.parent.parent
        if BEFORE_RESUME not in job.parts and holds_run(job):
            shutil.copytree(stored.parent, sweep_dir / BEFORE_RESUME / job.relative_to(sweep_dir))


def check_sweep_job(
    cfg: DictConfig, run_dir: str | Path, sweep_dir: str | Path
) -> dict[str, tuple[Any, Any]]:
    """check_start for a job of a resumed sweep, against the job's config as it was before
    this sweep (snapshot_sweep_configs); a refused job's `.hydra/` is put back as it was."""
    run_dir, sweep_dir = Path(run_dir).resolve(), Path(sweep_dir).resolve()
    try:
        saved = sweep_dir / BEFORE_RESUME / run_dir.relative_to(sweep_dir)
    except ValueError:  # a job dir outside the sweep dir: nothing was copied
        return check_start(cfg, run_dir)
    if not saved.is_dir():
        return check_start(cfg, run_dir)
    try:
        return check_start(cfg, run_dir, stored=saved / "config.yaml")
    except RunDirError:
        shutil.rmtree(run_dir / ".hydra")
        shutil.copytree(saved, run_dir / ".hydra")
        _restore_after_refusal(sweep_dir)
        raise
    finally:
        shutil.rmtree(saved, ignore_errors=True)


def _restore_after_refusal(sweep_dir: Path) -> None:
    """A refused job ends the sweep: the sweep's own config goes back as it was, and so do
    the copies of jobs that never started (their `.hydra/` still equals the copy); a copy
    that differs belongs to a job running beside this one (a cluster launcher) and stays."""
    saved = sweep_dir / BEFORE_RESUME
    if (saved / SWEEP_CONFIG).is_file():
        shutil.copy2(saved / SWEEP_CONFIG, sweep_dir / SWEEP_CONFIG)
    for snapshot in [c.parent for c in saved.rglob("config.yaml")]:
        job = sweep_dir / snapshot.relative_to(saved)
        if all(
            (job / ".hydra" / f.name).is_file()
            and (job / ".hydra" / f.name).read_bytes() == f.read_bytes()
            for f in snapshot.glob("*.yaml")
        ):
            shutil.rmtree(snapshot)
    if not any(saved.rglob("config.yaml")):
        shutil.rmtree(saved, ignore_errors=True)


def discard_sweep_snapshot(sweep_dir: str | Path) -> None:
    shutil.rmtree(Path(sweep_dir) / BEFORE_RESUME, ignore_errors=True)


def check_start(
    cfg: DictConfig, run_dir: str | Path, stored: Path | None = None
) -> dict[str, tuple[Any, Any]]:
    """Refuses (RunDirError) a start that would mix runs in `run_dir`; returns the allowed
    config changes of a resume ({key: (old, new)}), recorded in resumes.jsonl. `stored`:
    the run's config (default: its `.hydra/config.yaml`)."""
    run_dir = Path(run_dir)
    if not holds_run(run_dir):
        return {}
    resume = bool(cfg.trainer.get("resume", False))
    if not resume:
        raise RunDirError(
            f"the run dir {run_dir} already holds a run. Start this one in a new dir "
            f"(hydra.run.dir=PATH, or leave hydra.run.dir unset for a fresh time-stamped one), "
            f"or continue that run with trainer.resume=true hydra.run.dir={run_dir}."
        )
    stored = stored or run_dir / ".hydra" / "config.yaml"
    try:
        stored_cfg = OmegaConf.load(stored)
        if not isinstance(stored_cfg, DictConfig):
            raise ValueError("it does not hold a config")
    except (OSError, ValueError, yaml.YAMLError) as error:
        reason = (
            "it is missing"
            if isinstance(error, FileNotFoundError)
            else f"it cannot be read ({(str(error).splitlines() or [''])[0]})"
        )
        raise RunDirError(
            f"trainer.resume=true in {run_dir}, but the run's config {stored} is needed to "
            f"check that this config matches its checkpoints, and {reason}. Put the file "
            "back (e.g. from a copy of the run dir), or start a new run in another dir."
        ) from None
    changes = config_changes(stored_cfg, cfg)
    allow = set(cfg.trainer.get("resume_allow") or [])
    reshaping = sorted(k for k in changes if k in allow and k in SHAPE_KEYS)
    if reshaping:
        listed = "; ".join(
            f"{k}: {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in reshaping
        )
        raise RunDirError(
            f"trainer.resume_allow cannot accept {', '.join(reshaping)} ({listed}): it changes "
            f"the shapes of the parameters the checkpoints in {run_dir} hold. Resume with the "
            "run's values, or start a new run in another dir."
        )
    refused = {k: v for k, v in changes.items() if not _allowed(k, v[2], allow)}
    if refused:
        listed = "; ".join(
            f"{k}: {_show(a)} -> {_show(b)}"
            + (f" (from {_source(k, raw)})" if _source(k, raw) != k else "")
            for k, (a, b, raw) in refused.items()
        )
        keys = dict.fromkeys(_source(k, raw) for k, (_, _, raw) in refused.items())
        allowable = [k for k in keys if k not in SHAPE_KEYS]
        fixed = [k for k in keys if k in SHAPE_KEYS]
        ways = "Resume with the run's values, or start a new run in another dir"
        if allowable:
            ways = (
                "Resume with the run's values, start a new run in another dir, or allow the "
                f"change with trainer.resume_allow=[{','.join(allowable)}]"
            )
        if fixed:
            ways += f" ({', '.join(fixed)} changes the parameters' shapes: no resume can allow it)"
        raise RunDirError(
            f"trainer.resume=true in {run_dir}, but this config differs from the run's in "
            f"{listed}. {ways}."
        )
    accepted = {k: (a, b) for k, (a, b, _) in changes.items()}
    if accepted:
        with open(run_dir / RESUME_LOG, "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "allowed_changes": {k: list(v) for k, v in accepted.items()},
                    },
                    default=str,
                )
                + "\n"
            )
    return accepted
