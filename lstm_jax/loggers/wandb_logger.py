"""The W&B logger: one W&B run per training run, offline unless the user is logged in.

- Mode: `logger.wandb.mode` when set; else the WANDB_MODE environment variable; else
  "online" when an API key is configured (WANDB_API_KEY, or a netrc entry for the W&B
  host), otherwise "offline". It never prompts and never needs an account; when "online"
  was chosen only because a key exists and the server cannot be reached, the run falls
  back to offline (after W&B's init timeout) instead of failing.
- The run files sit in `run_dir/wandb/`; the run id is kept in `run_dir/wandb_run_id.txt`
  and reused (resume="allow") when the run is resumed. In a sweep, each job's offline run
  is also linked into `<sweep dir>/wandb/`: `wandb leet <sweep dir>/wandb` shows them all.
- The x-axis of every chart is the training step, the metric "step" (not W&B's internal
  row counter), so re-logging steps after a resume never drops data.
- Validation and test metrics report their best and their last value in the run summary
  (`{"min": ..., "last": ...}` for loss-like names, "max" for accuracy-like ones,
  `monitor_mode` for the task's monitor). Histograms and profiles (gates, dh_t, tau) stay out
  of the summary (`define_metric(summary="none")`): W&B would put their last bins there.
- A run is named by the experiment and the job's overrides, and tagged with each override
  (lstm_jax.loggers.run_names), beside `logger.wandb.tags`.
"""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lstm_jax.loggers import values as V
from lstm_jax.loggers.run_names import default_run_name, override_tags
from lstm_jax.metrics.direction import goal

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id.txt"
DEFAULT_HOST = "https://api.wandb.ai"
MAX_HIST_BINS = 512  # W&B's limit for a histogram
MAX_LINE_POINTS = 256


def api_key_configured() -> bool:
    """Whether W&B credentials are configured (env var or netrc), without prompting."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST).netloc
    candidates = (
        [os.environ["NETRC"]]
        if os.environ.get("NETRC")
        else [os.path.join(os.path.expanduser("~"), name) for name in (".netrc", "_netrc")]
    )
    for path in candidates:
        try:
            creds = netrc.netrc(path).authenticators(host)
        except (FileNotFoundError, netrc.NetrcParseError, OSError):
            continue
        if creds and creds[2]:
            return True
    return False


def resolve_mode(configured: str | None) -> str:
    """online | offline | disabled (see the module doc for the order of precedence)."""
    if configured:
        mode = str(configured)
    elif os.environ.get("WANDB_MODE"):
        mode = os.environ["WANDB_MODE"]
    else:
        mode = "online" if api_key_configured() else "offline"
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in ("online", "offline", "disabled", "shared"):
        raise ValueError(
            f"logger.wandb.mode / WANDB_MODE = {mode!r}: use online, offline or disabled"
        )
    return mode


def new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def default_group(cfg: Any) -> str:
    """experiment_name; in a sweep, plus the sweep dir's name, so that the jobs of one sweep
    form one W&B group and a later sweep of the same experiment another."""
    name = str(cfg.get("experiment_name") or "run")
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not inside a Hydra app
        return name
    if hc.mode == RunMode.MULTIRUN:
        return f"{name}/{Path(hc.sweep.dir).name}"
    return name


def sweep_wandb_dir() -> Path | None:
    """`<sweep dir>/wandb` when this is a job of a Hydra sweep (-m), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not inside a Hydra app
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return Path(hc.sweep.dir).absolute() / "wandb"


def link_into_sweep(run: Any, run_id: str) -> Path | None:
    """In a sweep, links this job's offline run dir into `<sweep dir>/wandb/`, so that
    `wandb leet <sweep dir>/wandb` browses every run of the sweep and `wandb sync <sweep
    dir>/wandb/offline-run-*` uploads them. The link is named `offline-run-<overrides>-<id>`
    (the prefix is what leet looks for; the overrides the sweep varies, from the run's name,
    are what its run list then shows). A resumed job replaces its older link."""
    sweep = sweep_wandb_dir()
    sync_file = getattr(run.settings, "sync_file", None)
    if sweep is None or not sync_file:
        return None
    target = Path(sync_file).absolute().parent
    sweep.mkdir(parents=True, exist_ok=True)
    for old in sweep.glob(f"*-{run_id}"):
        if old.is_symlink():
            old.unlink()
    # the overrides of the run's name (`memory_horizon:model=gru,task.seq_len=200`): the
    # sweep dir is one experiment's
    overrides = str(run.name or "").split(":", 1)[-1]
    name = "".join(c if c.isalnum() or c in "-_.,=+~" else "_" for c in overrides)
    link = sweep / (f"offline-run-{name[:150]}-{run_id}" if name else target.name)
    link.symlink_to(os.path.relpath(target, sweep), target_is_directory=True)
    return link


def _config_dict(cfg: Any) -> dict:
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra app
        return OmegaConf.to_container(cfg, resolve=False)


class WandbLogger:
    """One W&B run. `log(metrics, step)`, `log_summary(summary)`, `finish()`."""

    def __init__(
        self,
        cfg: Any,
        run_dir: str | os.PathLike,
        *,
        resume: bool = False,
        monitor: str | None = None,
        monitor_mode: str | None = None,
        line_plots: tuple[str, ...] = ("grad_norm/dh_t", "memory/recall_dh_t"),
        init_timeout: float | None = None,
    ):
        import wandb

        self._wandb = wandb
        wcfg = cfg.logger.wandb
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.mode = resolve_mode(wcfg.get("mode"))
        auto_mode = not wcfg.get("mode") and not os.environ.get("WANDB_MODE")
        self.line_plots = tuple(line_plots)
        id_file = self.run_dir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.exists() else ""
        run_id = run_id or new_run_id()
        id_file.write_text(run_id + "\n")
        init_kwargs = {
            "project": wcfg.get("project"),
            "entity": wcfg.get("entity"),
            "group": wcfg.get("group") or default_group(cfg),
            "job_type": wcfg.get("job_type"),
            "tags": list(dict.fromkeys([*(wcfg.get("tags") or []), *override_tags()])) or None,
            "name": wcfg.get("name") or default_run_name(cfg),
            "dir": str(self.run_dir),
            "config": _config_dict(cfg),
            "id": run_id,
            "resume": "allow" if resume else None,
            "reinit": "finish_previous",
        }
        if init_timeout is not None:
            init_kwargs["settings"] = wandb.Settings(init_timeout=init_timeout)
        try:
            self.run = wandb.init(mode=self.mode, **init_kwargs)
        except wandb.errors.Error as e:
            if not (auto_mode and self.mode == "online"):
                raise
            # Online only because a key was found: the server is out of reach. Keep the run
            # offline (`wandb sync` uploads it later) rather than lose the training run.
            log.warning(
                "W&B online init failed (%s); logging offline to %s/wandb instead",
                str(e).splitlines()[0],
                self.run_dir,
            )
            self.mode = "offline"
            wandb.teardown()  # the failed run keeps its id registered in W&B's service
            self.run = wandb.init(mode="offline", **init_kwargs)
        self.run_id = run_id
        if self.mode == "offline":
            link_into_sweep(self.run, run_id)
        # Every logged key is defined on first sight (_maybe_define) with "step" as its x-axis;
        # no "*" glob, which W&B would match before the per-key globs of the histograms.
        self.run.define_metric("step", hidden=True)
        self._goals: dict[str, str | None] = {}
        self._monitor: tuple[str, str] | None = None
        if monitor:
            self.set_monitor(monitor, monitor_mode or "min")
        self._finished = False
        self._lost = False  # W&B's service process is gone (see _call)

    # -- metric definitions -----------------------------------------------------------
    def set_monitor(self, monitor: str, mode: str = "min") -> None:
        """The task's monitored metric reports its `mode` ("min"/"max") in the summary."""
        if mode not in ("min", "max"):
            raise ValueError(f"monitor_mode must be 'min' or 'max', got {mode!r}")
        self._monitor = (monitor, mode)
        self._define(monitor, mode)

    def _define(self, key: str, goal: str | None) -> None:
        self._goals[key] = goal
        summary = {"summary": f"{goal},last"} if goal else {}
        self.run.define_metric(key, step_metric="step", **summary)

    def _maybe_define(self, key: str, kind: str) -> None:
        if key in self._goals:
            return
        if kind in (V.HISTOGRAM, V.PROFILE, V.SAMPLES):
            # W&B copies a key's last value into the run summary; for a histogram that is
            # each of its fields (`key.values`, `key.bins`: every bin), which the glob
            # `key.*` with summary "none" keeps out (W&B matches globs against those dotted
            # field names, not against `key`). A profile's line plot is `key_line_table`.
            self._goals[key] = None
            self.run.define_metric(key, step_metric="step")
            globs = (f"{key}.*", f"{key}_line*") if kind == V.PROFILE else (f"{key}.*",)
            for glob in globs:
                self.run.define_metric(glob, step_metric="step", summary="none")
        elif self._monitor and key == self._monitor[0]:
            self._define(key, self._monitor[1])
        elif key.startswith(("val/", "test/")):
            self._define(key, goal(key))
        else:
            self._define(key, None)

    # -- conversion -------------------------------------------------------------------
    def _histogram(self, counts: Any, edges: Any):
        counts = np.asarray(counts, dtype=np.float64).ravel()
        edges = np.asarray(edges, dtype=np.float64).ravel()
        if counts.size > MAX_HIST_BINS:  # merge neighbouring bins down to W&B's limit
            groups = np.array_split(np.arange(counts.size), MAX_HIST_BINS)
            counts = np.array([counts[g].sum() for g in groups])
            edges = np.array([edges[g[0]] for g in groups] + [edges[-1]])
        counts = np.where(np.isfinite(counts), counts, 0.0)
        return self._wandb.Histogram(np_histogram=(counts, edges))

    def _convert(self, key: str, value: Any, step: int, out: dict[str, Any]) -> None:
        wandb = self._wandb
        kind = V.kind_of(value)
        if kind == V.SCALAR:
            x = V.to_float(value)
            out[key] = float(np.asarray(value)) if x is None else x  # W&B shows NaN/inf
        elif kind == V.HISTOGRAM:
            out[key] = self._histogram(value["counts"], value["edges"])
        elif kind == V.PROFILE:
            # A profile over t (e.g. ||dL/dh_t||) as a histogram over time steps (W&B's
            # histogram panel then shows how it evolves), plus for the keys in `line_plots`
            # a line plot of its shape (a small table file per logged step).
            vals, edges = V.block_mean(value, MAX_HIST_BINS)
            out[key] = self._histogram(vals, edges)
            if key in self.line_plots:
                pts, tedges = V.block_mean(value, MAX_LINE_POINTS)
                t = 0.5 * (tedges[:-1] + tedges[1:] - 1)
                table = wandb.Table(
                    data=[[float(a), float(b)] for a, b in zip(t, pts, strict=True)],
                    columns=["t", "value"],
                )
                out[f"{key}_line"] = wandb.plot.line(
                    table, "t", "value", title=f"{key} (step {step})"
                )
        elif kind == V.IMAGE:
            if V.is_figure(value):
                # wandb.Image renders a Figure through pyplot, which it does not import.
                import matplotlib.pyplot  # noqa: F401
            out[key] = wandb.Image(value)
        elif kind == V.SAMPLES:
            arr = np.asarray(value, dtype=np.float64).ravel()
            out[key] = wandb.Histogram(arr[np.isfinite(arr)])
        else:
            out[key] = value  # strings, W&B objects (wandb.Table, ...), None

    # -- logger API -------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Runs one W&B call. Once W&B's service process is gone (SLURM's SIGTERM to a
        preempted or requeued job reaches it before the trainer), warns once and stops
        logging to W&B: metrics.jsonl goes on, and the run checkpoints or completes."""
        if self._lost:
            return
        try:
            fn(*args, **kwargs)
        except (OSError, self._wandb.errors.Error) as error:
            self._lost = True
            log.warning(
                "W&B %s failed (%s: %s); W&B logging stops for this run (metrics.jsonl goes on)",
                what,
                type(error).__name__,
                error,
            )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self._call("log", self._log, metrics, step)

    def _log(self, metrics: dict[str, Any], step: int) -> None:
        data: dict[str, Any] = {"step": int(step)}
        for key, value in metrics.items():
            if key == "step":
                continue
            self._maybe_define(key, V.kind_of(value))
            self._convert(key, value, int(step), data)
        self.run.log(data)

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Sets run summary entries (final/best metrics, wall time, parameter count ...).

        Note: a key that is also a logged val/test metric overrides its best-of summary.
        """
        self._call("summary", self._log_summary, summary)

    def _log_summary(self, summary: dict[str, Any]) -> None:
        monitor, mode = summary.get("monitor"), summary.get("monitor_mode")
        if isinstance(monitor, str) and mode in ("min", "max") and monitor not in self._goals:
            self.set_monitor(monitor, mode)  # only before its first value: W&B does not recompute
        for key, value in summary.items():
            self.run.summary[key] = (
                V.to_float(value) if V.kind_of(value) == V.SCALAR else V.clean_json(value)
            )

    def finish(self, exit_code: int | None = None) -> None:
        """Finishes the run. W&B's service may flush the last records of the run file a
        moment later; `read_wandb_run` (`wandb leet inspect --follow`) waits for them."""
        if self._finished:
            return
        self._finished = True
        self._call("finish", self.run.finish, exit_code=exit_code)
