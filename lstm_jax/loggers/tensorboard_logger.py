"""The TensorBoard logger: event files in the run dir, for an offline browser dashboard.

    tensorboard --logdir <run dir>          # one run
    tensorboard --logdir <sweep dir>        # every run of a sweep, side by side

Each run writes to `<run dir>/tensorboard/<name>/`, the name being the experiment and the
job's overrides (lstm_jax.loggers.run_names, as W&B names the run), so TensorBoard's run
list tells the runs of a sweep apart by what differs between them (`3/tensorboard/
memory_horizon:model=gru,task.seq_len=200`). tensorboardX writes the files: it needs
neither TensorFlow nor torch, and it writes a histogram from the diagnostics' own on-device
counts and edges. What each kind of value becomes (lstm_jax/loggers/values.py):

- scalars: a scalar chart (`gates/<layer>/<gate>_tau_median`, `val/mse`, ...);
- histograms (`gates/<layer>/<gate>`, `..._tau`): a histogram over training, over the span
  of its occupied bins (from the true min to the true max when the diagnostics give them);
- profiles over t (`grad_norm/dh_t`, `memory/recall_dh_t`): a histogram whose buckets are
  the time steps and whose heights are the values, so the histogram panel shows the
  profile's shape as training goes on;
- images and figures: an image; raw samples: a histogram; strings: text.

A resumed run restarts at the checkpoint's step: the events it logged after that step are
dropped by TensorBoard (tensorboardX's `purge_step`), as metrics.jsonl drops its lines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lstm_jax.loggers import values as V
from lstm_jax.loggers.run_names import default_run_name

EVENTS_DIR = "tensorboard"
MAX_PROFILE_BUCKETS = 256


def events_dir(cfg: Any, run_dir: str | os.PathLike) -> Path:
    """`<run dir>/tensorboard/<run name>`; a "/" in an override (a path) becomes "_", so
    that the name is one directory."""
    name = default_run_name(cfg).replace(os.sep, "_")
    return Path(run_dir) / EVENTS_DIR / name


class TensorBoardLogger:
    """One TensorBoard run. `log(metrics, step)`, `log_summary(summary)`, `finish()`."""

    def __init__(
        self, cfg: Any, run_dir: str | os.PathLike, *, resume_step: int | None = None
    ) -> None:
        from tensorboardX import SummaryWriter

        self.log_dir = events_dir(cfg, run_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The resumed run goes on from the step after its checkpoint.
        purge_step = resume_step + 1 if resume_step else None
        # Event files are named by the second they were opened in and read in name order;
        # the suffix keeps a resume within the same second in a file of its own, after.
        self.writer = SummaryWriter(
            logdir=str(self.log_dir), purge_step=purge_step, filename_suffix=f".{time.time_ns()}"
        )
        self._finished = False

    def _histogram(
        self,
        key: str,
        counts: Any,
        edges: Any,
        step: int,
        *,
        trim: bool,
        lowest: Any = None,
        highest: Any = None,
    ) -> None:
        counts = np.asarray(counts, dtype=np.float64).ravel()
        edges = np.asarray(edges, dtype=np.float64).ravel()
        counts = np.where(np.isfinite(counts), counts, 0.0)
        total = counts.sum()
        if total <= 0:
            return  # nothing was counted (every position padded): TensorBoard draws nothing
        centers = 0.5 * (edges[:-1] + edges[1:])
        sums = (float((counts * centers).sum()), float((counts * centers**2).sum()))
        # TensorBoard gives its buckets by their right edges: the first starts at `min` and
        # the last ends at `max`, and draws them on a linear axis. A distribution is drawn
        # over the span of its occupied bins, from its true extremes where known (a tau
        # histogram's log-spaced bins reach 1e4, its values mostly a few steps); a profile
        # over t keeps every step.
        if trim:
            occupied = np.nonzero(counts)[0]
            counts = counts[occupied[0] : occupied[-1] + 1]
            edges = edges[occupied[0] : occupied[-1] + 2].copy()
            if lowest is not None and highest is not None and np.isfinite([lowest, highest]).all():
                edges[0], edges[-1] = lowest, highest
        self.writer.add_histogram_raw(
            key,
            min=float(edges[0]),
            max=float(edges[-1]),
            num=total,
            sum=sums[0],
            sum_squares=sums[1],
            bucket_limits=edges[1:].tolist(),
            bucket_counts=counts.tolist(),
            global_step=step,
        )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        step = int(step)
        for key, value in metrics.items():
            kind = V.kind_of(value)
            if key == "step":
                continue
            if kind == V.SCALAR:
                self.writer.add_scalar(key, float(np.asarray(value)), step)
            elif kind == V.HISTOGRAM:
                self._histogram(
                    key,
                    value["counts"],
                    value["edges"],
                    step,
                    trim=True,
                    lowest=value.get("min"),
                    highest=value.get("max"),
                )
            elif kind == V.PROFILE:
                heights, t_edges = V.block_mean(value, MAX_PROFILE_BUCKETS)
                self._histogram(key, heights, t_edges, step, trim=False)
            elif kind == V.IMAGE:
                if V.is_figure(value):
                    self.writer.add_figure(key, value, step, close=False)
                else:
                    image = np.asarray(value)
                    self.writer.add_image(
                        key, image, step, dataformats="HW" if image.ndim == 2 else "HWC"
                    )
            elif kind == V.SAMPLES:
                samples = np.asarray(value, dtype=np.float64).ravel()
                samples = samples[np.isfinite(samples)]
                if samples.size:
                    self.writer.add_histogram(key, samples, step)
            elif isinstance(value, str):
                self.writer.add_text(key, value, step)

    def log_summary(self, summary: dict[str, Any]) -> None:
        """The run's final and best metrics, as the text of TensorBoard's Text tab."""
        text = json.dumps(V.clean_json(summary), indent=2)
        self.writer.add_text("summary", f"```\n{text}\n```")

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self.writer.close()
