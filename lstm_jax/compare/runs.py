"""Reading run dirs for lstm-jax-compare: one `Run` per dir (docs/DESIGN.md contract 3:
`.hydra/overrides.yaml`, `.hydra/config.yaml`, `metrics.jsonl`, `summary.json`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

import lstm_jax.config  # noqa: F401  (the resolvers a stored config may use)
from lstm_jax.metrics.direction import best_of, goal

RUN_MARKERS = ("metrics.jsonl", "summary.json")
DEFAULT_METRICS = ("val/*", "test/*")
DEFAULT_EXCLUDE = ("*baseline*",)
# Config keys that differ between runs without being an experimental choice.
IGNORED_CONFIG_KEYS = ("paths.*", "hydra.*", "logger.wandb.name", "logger.wandb.tags")


# ----------------------------------------------------------------------------- reading


@dataclass
class Run:
    """One run dir as read from disk."""

    path: Path
    name: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # flattened: "model.cell" -> "lstm"
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # (monitor, mode) of finished runs of the same sweep, for a run without summary.json
    monitor_hint: tuple[str, str] | None = None

    @property
    def done(self) -> bool:
        return bool(self.summary)

    @property
    def monitor(self) -> str | None:
        monitor = self.summary.get("monitor")
        if isinstance(monitor, str):
            return monitor
        if self.monitor_hint and self.monitor_hint[0] in self.series:
            return self.monitor_hint[0]
        for name in ("val/loss", *sorted(k for k in self.series if k.startswith("val/"))):
            if name in self.series:
                return name
        return None

    @property
    def monitor_mode(self) -> str:
        mode = self.summary.get("monitor_mode")
        if mode in ("min", "max"):
            return mode
        if self.monitor_hint and self.monitor_hint[0] == self.monitor:
            return self.monitor_hint[1]
        return goal(self.monitor or "") or "min"

    def final(self, metric: str) -> float | None:
        values = self.series.get(metric)
        if values:
            return values[-1][1]
        test = self.summary.get("test")
        if isinstance(test, dict) and _is_number(test.get(metric)):
            return float(test[metric])
        final = self.summary.get("final")
        if isinstance(final, dict) and _is_number(final.get(metric)):
            return float(final[metric])
        return None

    def best(self, metric: str, mode: str | None = None) -> tuple[float | None, int | None]:
        """The best logged value of `metric` and its step (the summary's, for the monitor)."""
        best = self.summary.get("best")
        if (
            metric == self.summary.get("monitor")
            and isinstance(best, dict)
            and _is_number(best.get(metric))
        ):
            step = best.get("step")
            return float(best[metric]), int(step) if _is_number(step) else None
        found = best_of(self.series.get(metric, []), mode or goal(metric) or "min")
        if found is None:
            return None, None
        step, value = found
        return value, step


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_value(text: str) -> Any:
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str, bool)) or value is None else text


def parse_override(override: str) -> tuple[str, Any]:
    """ "model.cell=gru" -> ("model.cell", "gru"); "+x=1" -> ("x", 1); "~x" -> ("x", None)."""
    key, _, value = override.partition("=")
    key = key.lstrip("+~").strip()
    return key, _parse_value(value) if value else None


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(node, list):
        out[prefix[:-1]] = json.dumps(node)
    else:
        out[prefix[:-1]] = node
    return out


def _resolve_interpolations(flat: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The flattened stored config with each `${...}` value resolved where it resolves from
    the config alone (`${oc.select:lstm_init.chrono_max_steps,null}`: what the run used);
    one that needs the run's Hydra (`${hydra:...}`, `${now:...}`) stays as written."""
    node = OmegaConf.create(config)
    out = dict(flat)
    for key, value in flat.items():
        if isinstance(value, str) and "${" in value:
            try:
                out[key] = OmegaConf.select(node, key)
            except Exception:  # noqa: BLE001 - any resolver error: keep the text
                pass
    return out


def _read_yaml(path: Path, run: Run) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        run.warnings.append(f"cannot read {path.name}: {error}")
        return None


def read_run(path: str | Path, name: str | None = None) -> Run:
    """Reads a run dir; missing or damaged files give warnings, not errors (a run that is
    still going, or was killed, has a partial metrics.jsonl and no summary.json)."""
    path = Path(path)
    run = Run(path=path, name=name or path.name)
    hydra_dir = path / ".hydra"
    overrides = (
        _read_yaml(hydra_dir / "overrides.yaml", run)
        if (hydra_dir / "overrides.yaml").exists()
        else None
    )
    for item in overrides or []:
        key, value = parse_override(str(item))
        if key and not key.startswith("hydra."):
            run.overrides[key] = value
    if (hydra_dir / "config.yaml").exists():
        config = _read_yaml(hydra_dir / "config.yaml", run)
        if isinstance(config, dict):
            run.config = _resolve_interpolations(_flatten(config), config)
    if "model" in run.overrides:
        # A cell chosen as a config group (`model=gru`) is named `model.cell`, as in the
        # config and in runs made before cells were groups: one column, one --group key.
        run.overrides = {
            ("model.cell" if key == "model" else key): (
                run.config.get("model.cell", value) if key == "model" else value
            )
            for key, value in run.overrides.items()
        }

    metrics = path / "metrics.jsonl"
    if metrics.exists():
        for number, line in enumerate(metrics.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                run.warnings.append(f"metrics.jsonl line {number} is not JSON (skipped)")
                continue
            step = record.get("step")
            if not _is_number(step):
                continue
            for key, value in record.items():
                if key != "step" and _is_number(value):
                    run.series.setdefault(key, []).append((int(step), float(value)))
        for values in run.series.values():
            values.sort(key=lambda sv: sv[0])

    summary = path / "summary.json"
    if summary.exists():
        try:
            loaded = json.loads(summary.read_text(encoding="utf-8"))
            run.summary = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError) as error:
            run.warnings.append(f"cannot read summary.json: {error}")
    return run


def _is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def _sort_key(path: Path) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """The runs under each path: the path itself if it is a run dir, else every run dir
    below it (a sweep's job dirs 0, 1, ..., in job order). Names are relative paths."""
    runs: list[Run] = []
    seen: set[Path] = set()
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        if _is_run_dir(root):
            found = [root]
        else:
            found = sorted(
                {
                    p.parent
                    for marker in RUN_MARKERS
                    for p in root.rglob(marker)
                    if ".hydra" not in p.parts and "wandb" not in p.parts
                },
                key=lambda p: _sort_key(p.relative_to(root)),
            )
        for run_dir in found:
            resolved = run_dir.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            rel = run_dir.relative_to(root) if run_dir != root else Path(run_dir.name)
            name = (
                str(rel)
                if len(paths) == 1
                else f"{root.name}/{rel}"
                if run_dir != root
                else root.name
            )
            runs.append(read_run(run_dir, name))
    return runs
