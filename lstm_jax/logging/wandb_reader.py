"""Reads an offline W&B run file (`run-<id>.wandb`) back into Python, for tests and for
comparing runs without a W&B server (wandb itself ships no reader for these files).

The file is a LevelDB-style log: a 7-byte header (`:W&B`, a 2-byte magic, a version
byte), then 32 KiB blocks (counted from the start of the file, header included) of
chunks `[crc32 u32 LE][length u16 LE][type u8][payload]`; type 1 is a whole record,
2/3/4 the first/middle/last piece of one split across blocks; a block tail too short for
a chunk header is zero padding. The crc32 (zlib) covers the type byte then the payload.
Each record is a serialized `wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_HEADER_LEN = 7
FILE_IDENT = b":W&B"
BLOCK_LEN = 32 * 1024
CHUNK_HEADER_LEN = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


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


def iter_record_bytes(data: bytes) -> Iterator[bytes]:
    """The serialized records of a `.wandb` file's bytes, in order.

    A torn tail (a run killed mid-write) ends the iteration; a corrupt chunk raises.
    """
    if len(data) < FILE_HEADER_LEN or data[:4] != FILE_IDENT:
        raise ValueError("not a W&B run file: missing the ':W&B' header")
    pos = FILE_HEADER_LEN
    pieces: list[bytes] | None = None
    while pos < len(data):
        left = BLOCK_LEN - pos % BLOCK_LEN
        if left < CHUNK_HEADER_LEN:
            pos += left  # zero padding at the end of a block
            continue
        if pos + CHUNK_HEADER_LEN > len(data):
            return
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0 and crc == 0:
            pos += left  # zeroed (preallocated / padded) rest of the block
            continue
        start = pos + CHUNK_HEADER_LEN
        payload = data[start : start + length]
        if len(payload) < length:
            return
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise ValueError(f"W&B run file: bad checksum in the chunk at byte {pos}")
        pos = start + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pieces = [payload]
        elif kind == MIDDLE and pieces is not None:
            pieces.append(payload)
        elif kind == LAST and pieces is not None:
            pieces.append(payload)
            yield b"".join(pieces)
            pieces = None
        else:
            raise ValueError(f"W&B run file: unexpected chunk type {kind} at byte {pos}")


def _last_record_kind(data: bytes) -> str | None:
    """The type of the last whole record of a `.wandb` file's bytes (None if none yet).

    Reads only the last block when its last chunk is a whole record."""
    from wandb.proto import wandb_internal_pb2 as pb

    start = max(FILE_HEADER_LEN, (len(data) - 1) // BLOCK_LEN * BLOCK_LEN)
    last = None
    pos = start
    while pos + CHUNK_HEADER_LEN <= len(data) and BLOCK_LEN - pos % BLOCK_LEN >= CHUNK_HEADER_LEN:
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 or pos + CHUNK_HEADER_LEN + length > len(data):
            break
        last = (kind, data[pos + CHUNK_HEADER_LEN : pos + CHUNK_HEADER_LEN + length])
        pos += CHUNK_HEADER_LEN + length
    if last is None or last[0] != FULL:
        records = list(iter_record_bytes(data)) if len(data) > FILE_HEADER_LEN else []
        payload = records[-1] if records else None
    else:
        payload = last[1]
    if payload is None:
        return None
    record = pb.Record()
    record.ParseFromString(payload)
    return record.WhichOneof("record_type")


def wait_until_complete(path: str | os.PathLike, timeout: float = 60.0) -> bool:
    """Waits until the run file ends with its exit record (W&B's service writes the file
    asynchronously: `run.finish()` can return before the file is flushed). Returns whether
    it completed within `timeout` seconds."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            if _last_record_kind(path.read_bytes()) == "exit":
                return True
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def iter_records(path: str | os.PathLike) -> Iterator[Any]:
    """The `Record` protos of one `.wandb` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    for raw in iter_record_bytes(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        yield record


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def _value(item: Any) -> Any:
    try:
        return json.loads(item.value_json)
    except (json.JSONDecodeError, ValueError):
        return item.value_json


def _set_nested(target: dict, item: Any) -> None:
    if item.nested_key:
        node = target
        for part in item.nested_key[:-1]:
            node = node.setdefault(part, {})
        node[item.nested_key[-1]] = _value(item)
    else:
        target[item.key] = _value(item)


def read_wandb_run(path: str | os.PathLike) -> dict[str, Any]:
    """An offline run as a dict.

    `path` is a `.wandb` file or a dir holding one (a run dir, its `wandb/` dir, ...;
    with several, the newest). Returns {"run_id", "project", "entity", "name", "group",
    "job_type", "tags", "config": {...}, "history": [{key: value, ...}, ...] (one dict
    per logged row; W&B's own `_step`, `_runtime`, `_timestamp` included), "summary":
    {...}, "metrics": {name: {"step_metric", "summary"}} (from define_metric),
    "exit_code": int or None, "record_counts": {record type: n}}.
    """
    files = find_wandb_files(path)
    if not files:
        raise FileNotFoundError(f"no .wandb file under {path}")
    out: dict[str, Any] = {
        "path": str(files[-1]), "run_id": None, "project": None, "entity": None, "name": None,
        "group": None, "job_type": None, "tags": [], "config": {}, "history": [],
        "summary": {}, "metrics": {}, "exit_code": None, "record_counts": {},
    }
    for record in iter_records(files[-1]):
        kind = record.WhichOneof("record_type")
        out["record_counts"][kind] = out["record_counts"].get(kind, 0) + 1
        if kind == "run":
            run = record.run
            out.update(
                run_id=run.run_id, project=run.project, entity=run.entity,
                name=run.display_name, group=run.run_group, job_type=run.job_type,
                tags=list(run.tags),
            )
            for item in run.config.update:
                _set_nested(out["config"], item)
            for item in run.summary.update:
                _set_nested(out["summary"], item)
        elif kind == "config":
            for item in record.config.update:
                _set_nested(out["config"], item)
            for item in record.config.remove:
                out["config"].pop(_key(item), None)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set_nested(row, item)
            out["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _set_nested(out["summary"], item)
            for item in record.summary.remove:
                out["summary"].pop(_key(item), None)
        elif kind == "metric":
            m = record.metric
            name = m.name or m.glob_name
            out["metrics"][name] = {
                "step_metric": m.step_metric or None,
                "summary": [f for f in ("min", "max", "mean", "best", "last", "none", "copy", "first")
                            if getattr(m.summary, f, False)],
                "goal": int(m.goal),
            }
        elif kind == "exit":
            out["exit_code"] = int(record.exit.exit_code)
    return out
