"""The files a resumed run continues beside its checkpoint (docs/DESIGN.md contract 3).

metrics.jsonl must hold the records up to the checkpoint's step: the checkpoint tells
which ones at least (the last train/loss line before it, from the train metrics it carries
since that line, and the best evaluation of the monitor). A checkpoint whose records the
file lost (truncated, a damaged line, the file deleted) is passed over for an older one
whose records it holds, which the resumed run then trains past again, step for step; with
none, the resume is refused naming the file.

A finished run's final records (test metrics, figures) belong to its end: a resume that
trains further drops them (the new end writes them again), and a resume of a run that has
nothing left to train changes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lstm_jax.loggers.jsonl import METRICS_FILE, SUMMARY_FILE

# Keys logged once, when a run ends (Trainer._summarize).
FINAL_PREFIXES = ("test/", "media/")


def read_records(path: Path) -> tuple[list[dict[str, Any]], int | None]:
    """The records of `path` before its first damaged line, and that line's number (None
    when there is none). A torn last line, from a kill mid-write, is not damage."""
    if not path.is_file():
        return [], None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a record")
        except ValueError:
            if number == len(lines):
                break
            return records, number
        records.append(record)
    return records, None


def missing_records(run_dir: Path, meta: dict[str, Any]) -> str | None:
    """Why run_dir's metrics.jsonl cannot continue from the checkpoint of `meta` (None: it
    can): the first record the checkpoint implies and the file does not hold."""
    step = int(meta["step"])
    last_log = step - len(meta.get("pending_train_metrics") or [])
    needed = [(last_log, "train/loss")] if last_log > 0 else []
    if meta.get("best_step") and meta.get("monitor"):
        needed.append((int(meta["best_step"]), meta["monitor"]))
    path = Path(run_dir) / METRICS_FILE
    records, damaged_line = read_records(path)
    held = {(record["step"], key) for record in records for key in record}
    lost = [(at, key) for at, key in needed if (at, key) not in held]
    if not lost:
        return None
    at, key = lost[0]
    if not path.is_file():
        return f"{path} is missing (it held the records of steps 1 to {step})"
    if damaged_line is not None:
        why = f"its line {damaged_line} is damaged"
    else:
        why = f"its last record is of step {records[-1]['step']}" if records else "it is empty"
    return f"{path} holds no {key} record of step {at} ({why})"


def finished_summary(run_dir: Path, step: int) -> dict[str, Any] | None:
    """run_dir's summary.json when it records a run that finished at `step`, else None."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if summary.get("status", "finished") == "finished" and summary.get("steps") == step:
        return summary
    return None


def drop_final_records(run_dir: Path) -> None:
    """Removes the records of an earlier end (test metrics, figures) from metrics.jsonl;
    lines that do not parse are left to the logger's own truncation."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept, dropped = [], False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            kept.append(line)
            continue
        if isinstance(record, dict) and any(k.startswith(FINAL_PREFIXES) for k in record):
            dropped = True
            continue
        kept.append(line)
    if dropped:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)
