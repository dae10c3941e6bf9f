"""What a run is called in the dashboards: the job's command-line overrides, the one thing
that differs between the runs of a sweep. W&B names and tags its runs with them, and
TensorBoard names each run's event dir after them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_NAME = 128  # W&B's limit for a display name
MAX_TAG = 64  # W&B's limit for a tag


def job_overrides() -> list[str]:
    """This job's task overrides as given (`model=gru`, `+optim.lr=0.1`), without the keys
    Hydra's `override_dirname.exclude_keys` leaves out and without `experiment` (the name
    says it already); [] outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not inside a Hydra app
        return []
    exclude = set(hc.job.config.override_dirname.exclude_keys or []) | {"experiment"}
    return [o for o in hc.overrides.task if _key(o) not in exclude]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys() -> set[str]:
    """The keys a Hydra sweep varies, for a job of a sweep: those given as a sweep on the
    command line (`model=rnn,gru`, read from the sweep dir's multirun.yaml, which the
    sweeper writes before any job starts) and those of `hydra.sweeper.params` (a preset's
    grid, an Optuna search space). Empty outside a sweep."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not inside a Hydra app
        return set()
    if hc.get("mode") != RunMode.MULTIRUN:
        return set()
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    keys = {_key(str(k)) for k in (hc.sweeper.get("params") or {})}
    multirun = Path(hc.sweep.dir) / "multirun.yaml"
    if multirun.is_file():
        given = list(OmegaConf.load(multirun).hydra.overrides.task)
        parsed = OverridesParser.create().parse_overrides(given)
        keys |= {_key(o.get_key_element()) for o in parsed if o.is_sweep_override()}
    return keys


def default_run_name(cfg: Any) -> str:
    """experiment_name plus the job's command-line overrides (when run by Hydra); in a
    sweep, only the overrides of the keys the sweep varies, so that the runs of a sweep are
    named by what differs between them (and the name is not cut short by the fixed ones)."""
    name = str(cfg.get("experiment_name") or "run")
    kept = job_overrides()
    swept = swept_keys()
    if swept:
        kept = [o for o in kept if _key(o) in swept]
    return f"{name}:{','.join(kept)}"[:MAX_NAME] if kept else name


def override_tags() -> list[str]:
    """One tag per override of the job (cut to W&B's 64 characters), so that the runs table
    filters by `model=gru` or `optim.lr=0.003`."""
    return [o[:MAX_TAG] for o in job_overrides()]
