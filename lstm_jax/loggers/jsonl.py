"""metrics.jsonl: one JSON object per logged step, always written (also without W&B).

Each line is `{"step": int, name: value, ...}` with scalars as floats (None for NaN/inf),
1-D profiles as a short list (at most `max_profile_points`, first and last kept),
histograms and raw samples as a summary dict {"n", "mean", "std", "min", "max", "p05",
"p50", "p95"}, images as the path of a PNG under `media/` relative to the run dir.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lstm_jax.loggers import values as V

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


def _safe_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


class JsonlLogger:
    """Appends to `run_dir/metrics.jsonl`, flushing every line.

    A fresh run (resume=False) starts the file empty. A resumed run keeps it; with
    `resume_step` (or a later `truncate_after(step)`) the lines of steps after the
    resumed checkpoint are dropped first, so the resumed file equals an uninterrupted one.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        resume: bool = False,
        resume_step: int | None = None,
        max_profile_points: int = 32,
        filename: str = METRICS_FILE,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / filename
        self.max_profile_points = max_profile_points
        if not resume:
            self.path.write_text("")
        elif resume_step is not None:
            self._truncate_file(resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    # -- resume -----------------------------------------------------------------------
    def _truncate_file(self, step: int) -> int:
        """Keeps the lines with step <= `step` (and drops a torn last line)."""
        if not self.path.exists():
            self.path.write_text("")
            return 0
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        return len(kept)

    def truncate_after(self, step: int) -> int:
        """Drops every line with step > `step`; returns the number of lines kept."""
        self._fh.close()
        kept = self._truncate_file(step)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run
        return kept

    # -- logging ----------------------------------------------------------------------
    def _convert(self, key: str, value: Any, step: int) -> Any:
        kind = V.kind_of(value)
        if kind == V.SCALAR:
            return V.to_float(value)
        if kind == V.PROFILE:
            return V.clean_json(
                V.downsample(np.asarray(value, dtype=np.float64), self.max_profile_points)
            )
        if kind == V.HISTOGRAM:
            return V.histogram_summary(
                value["counts"], value["edges"], lowest=value.get("min"), highest=value.get("max")
            )
        if kind == V.SAMPLES:
            return V.samples_summary(value)
        if kind == V.IMAGE:
            return self._save_image(key, value, step)
        if type(value).__module__.startswith("wandb"):
            return None  # a W&B-only object (wandb.Table, ...): nothing to write here
        return V.clean_json(value)

    def _save_image(self, key: str, value: Any, step: int) -> str:
        media = self.run_dir / "media"
        media.mkdir(exist_ok=True)
        path = media / f"{_safe_name(key)}_{step}.png"
        if V.is_figure(value):
            value.savefig(path)
        else:
            import matplotlib.image

            arr = np.asarray(value)
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            matplotlib.image.imsave(path, arr, cmap="gray" if arr.ndim == 2 else None)
        return str(path.relative_to(self.run_dir))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        record: dict[str, Any] = {"step": int(step)}
        for key, value in metrics.items():
            if key == "step":
                continue
            record[key] = self._convert(key, value, int(step))
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self._fh.flush()

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Merges `summary` into run_dir/summary.json (scalars as floats)."""
        path = self.run_dir / SUMMARY_FILE
        current: dict[str, Any] = {}
        if path.exists():
            try:
                current = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                current = {}
        for key, value in summary.items():
            kind = V.kind_of(value)
            current[key] = (
                V.to_float(value)
                if kind == V.SCALAR and not isinstance(value, int)
                else V.clean_json(value)
            )
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(current, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def finish(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (or of the one in a run dir)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
