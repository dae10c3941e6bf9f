"""Reads an offline W&B run back into Python with W&B's own reader, `wandb leet inspect
--json` (one JSON object per record of the run's `.wandb` transaction log), for tests and
for looking at runs without a W&B server. Nothing here parses the file format itself.

    run = read_wandb_run("outputs/default/2025-01-01_12-00-00")   # a run dir
    run["history"][-1]["train/loss"], run["summary"]["val/mse"], run["config"]["model"]

`wandb leet inspect --follow` waits for a run that is still being written (W&B's service
writes the file asynchronously, so `run.finish()` may return before the last records are on
disk); `read_wandb_run(..., wait=s)` uses it and returns once the run's exit record is there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# The summary kinds of define_metric(summary=...), in the order W&B lists them.
SUMMARY_KINDS = ("min", "max", "mean", "best", "last", "none", "copy", "first")


def find_wandb_files(path: str | os.PathLike) -> list[Path]:
    """The `.wandb` files under `path` (a file, a run dir, or its `wandb/` dir), oldest first."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = []
    for root, dirs, names in os.walk(path):  # not into symlinks (wandb/latest-run)
        dirs.sort()
        files += [Path(root) / n for n in sorted(names) if n.endswith(".wandb")]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def wandb_command() -> list[str]:
    """The `wandb` CLI of this Python environment (the one that wrote the runs)."""
    exe = Path(sys.executable).with_name("wandb")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("wandb")
    if found is None:
        raise FileNotFoundError("the `wandb` command is not installed (pip install wandb)")
    return [found]


def inspect_records(path: str | os.PathLike, *, wait: float = 0.0) -> tuple[list[dict], list[str]]:
    """(records, problems) of one `.wandb` file, from `wandb leet inspect --json`.

    `wait` > 0: follow the file until the run's exit record is written, or until it has
    gone `wait` seconds without a write (a killed run). `problems`: what the reader
    reported on stderr (a torn tail, skipped corrupt chunks). Raises ValueError when W&B
    cannot read the file at all (not a W&B run file).
    """
    cmd = [*wandb_command(), "leet", "inspect", "--json"]
    if wait > 0:
        cmd += ["--follow", "--idle-timeout", f"{max(1, round(wait))}s"]
    result = subprocess.run(
        [*cmd, str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    # The reader's own messages (W&B's general "wandb: WARNING ..." lines left out).
    problems = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith("wandb: ")
    ]
    if result.returncode != 0:
        raise ValueError(f"wandb leet inspect {path}: {' '.join(problems) or 'failed'}")
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return records, problems


def _unflatten_media(row: dict[str, Any]) -> dict[str, Any]:
    """W&B prints a logged object (histogram, image, table) as flat `key._type`,
    `key.values`, ... entries; this puts each back into one dict under `key`."""
    media = {k[: -len("._type")] for k in row if k.endswith("._type")}
    if not media:
        return row
    out: dict[str, Any] = {}
    for key, value in row.items():
        owner = next((m for m in media if key.startswith(m + ".")), None)
        if owner is None:
            out[key] = value
        else:
            out.setdefault(owner, {})[key[len(owner) + 1 :]] = value
    return out


def _remove(target: dict[str, Any], removed: list) -> None:
    for item in removed or []:
        key = item.get("key") or "/".join(item.get("nested_key", []))
        target.pop(key, None)


def read_wandb_run(path: str | os.PathLike, *, wait: float = 10.0) -> dict[str, Any]:
    """An offline run as a dict, read with `wandb leet inspect --json`.

    `path` is a `.wandb` file or a dir holding one (a run dir, its `wandb/` dir, ...;
    with several, the newest). `wait`: see `inspect_records` (0 reads what is there).
    Returns {"path", "run_id", "project", "entity", "name", "group", "job_type", "tags",
    "config": {...}, "history": [{key: value, ...}, ...] (one dict per logged row; W&B's
    own `_step`, `_runtime`, `_timestamp` included), "summary": {...}, "metrics": {name:
    {"step_metric", "summary": [kinds], "goal"}} (from define_metric), "exit_code": int or
    None (no exit record: the run was killed or is still running), "record_counts":
    {record type: n}, "problems": [what the reader reported]}.
    """
    files = find_wandb_files(path)
    if not files:
        raise FileNotFoundError(f"no .wandb file under {path}")
    records, problems = inspect_records(files[-1], wait=wait)
    out: dict[str, Any] = {
        "path": str(files[-1]),
        "run_id": None,
        "project": None,
        "entity": None,
        "name": None,
        "group": None,
        "job_type": None,
        "tags": [],
        "config": {},
        "history": [],
        "summary": {},
        "metrics": {},
        "exit_code": None,
        "record_counts": {},
        "problems": problems,
    }
    for record in records:
        kind = record.get("type")
        body = record.get(kind) or {}
        out["record_counts"][kind] = out["record_counts"].get(kind, 0) + 1
        if kind == "run":
            out.update(
                run_id=body.get("run_id"),
                project=body.get("project"),
                entity=body.get("entity"),
                name=body.get("display_name"),
                group=body.get("run_group"),
                job_type=body.get("job_type"),
                tags=list(body.get("tags", [])),
            )
            out["config"].update(body.get("config", {}).get("update", {}))
            out["summary"].update(_unflatten_media(body.get("summary", {}).get("update", {})))
        elif kind == "config":
            out["config"].update(body.get("update", {}))
            _remove(out["config"], body.get("remove"))
        elif kind == "history":
            out["history"].append(_unflatten_media(body.get("item", {})))
        elif kind == "summary":
            out["summary"].update(_unflatten_media(body.get("update", {})))
            _remove(out["summary"], body.get("remove"))
        elif kind == "metric":
            name = body.get("name") or body.get("glob_name")
            summary = body.get("summary", {})
            out["metrics"][name] = {
                "step_metric": body.get("step_metric") or None,
                "summary": [k for k in SUMMARY_KINDS if summary.get(k)],
                "goal": body.get("goal"),
            }
        elif kind == "exit":
            out["exit_code"] = int(body.get("exit_code", 0))
    return out
