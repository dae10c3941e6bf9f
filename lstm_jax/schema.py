"""Typed schema of the composed config, checked before a run writes or computes anything.

The trainer, optim and model groups are pydantic models with ranges (lr > 0, sizes >= 1,
probabilities in [0, 1), ...). The task group is checked against the constructor of its
`_target_`: the keys it accepts, the type of each from its annotations, and the ranges of
`TASK_RANGES` for the parameter names that follow the project's conventions, so a new task
is checked without a table of its own. A parameter typed as a dataclass is a nested group
(`task.features`, `task.augment`): its keys are checked the same way, field by field.

    validate(cfg)   # raises ConfigError("model.hidden_size=0: Input should be ...")
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import types
import typing
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class ConfigError(ValueError):
    """A config value out of its type or range; the message names the key and value."""


class _Group(BaseModel):
    # Keys a group gains later are accepted here; the composed config is struct already.
    model_config = ConfigDict(extra="allow")


class TrainerSchema(_Group):
    max_steps: Positive
    batch_size: Positive
    eval_every: Positive
    log_every: Positive
    checkpoint_every: Positive
    keep_checkpoints: Positive
    resume: bool = False
    resume_allow: list[str] = []
    early_stopping_patience: Positive | None = None
    evaluate_test: bool = True
    progress_bar: bool = True
    stop_when: str | None = None


class ScheduleSchema(_Group):
    name: Literal["constant", "cosine", "warmup_cosine", "exponential"]
    warmup_steps: NonNegative = 0
    decay_steps: Positive
    end_lr_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    decay_rate: Annotated[float, Field(gt=0.0)] = 0.5
    transition_steps: Positive = 1000
    transition_begin: NonNegative = 0
    staircase: bool = True

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.name == "warmup_cosine" and self.decay_steps <= self.warmup_steps:
            raise ValueError(
                f"decay_steps={self.decay_steps} must exceed warmup_steps="
                f"{self.warmup_steps} (decay_steps counts the warmup; it defaults to "
                "trainer.max_steps)"
            )
        return self


class OptimSchema(_Group):
    name: Literal["adam", "adamw", "sgd", "rmsprop"]
    lr: Annotated[float, Field(gt=0.0)]
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    momentum: Probability = 0.0
    nesterov: bool = False
    b1: Probability = 0.9
    b2: Probability = 0.999
    eps: Annotated[float, Field(gt=0.0)] = 1e-8
    clip_grad_norm: Annotated[float, Field(gt=0.0)] | None = None
    schedule: ScheduleSchema


class ModelSchema(_Group):
    cell: Literal["lstm", "gru", "rnn"]
    hidden_size: Positive
    num_layers: Positive = 1
    bidirectional: bool = False
    dropout: Probability = 0.0
    forget_bias: float = 1.0
    chrono_max_steps: Positive | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = "float32"


GROUPS: dict[str, type[BaseModel]] = {
    "trainer": TrainerSchema,
    "optim": OptimSchema,
    "model": ModelSchema,
}

# Ranges of task parameters by name (regular expressions over the full name).
TASK_RANGES: list[tuple[str, Any]] = [
    (
        r"(.*_)?(size|len|length|steps|every)|seq_len|horizon|n_(mels|mfcc|fft)|frame_stack",
        Field(ge=1),
    ),
    (r"num_.*|.*_masks|.*_width|pad_multiple|bucket_batches", Field(ge=0)),
    (r".*dropout.*|.*_prob|.*_fraction", Field(ge=0.0, lt=1.0)),
]


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters `cls(...)` accepts, following `**kwargs` up the base classes,
    with each one's annotation resolved (`from __future__ import annotations`)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        init = vars(klass)["__init__"]
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - an unresolvable hint is checked as Any
            hints = {}
        signature = inspect.signature(init).parameters.values()
        for p in signature:
            if p.kind is p.VAR_KEYWORD or p.name == "self" or p.name in params:
                continue
            params[p.name] = p.replace(annotation=hints.get(p.name, Any))
        if not any(p.kind is p.VAR_KEYWORD for p in signature):
            break
    return params


def _raw(cfg: DictConfig | None, key: str) -> Any:
    node: Any = OmegaConf.to_container(cfg, resolve=False) if cfg is not None else None
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _user_key(cfg: DictConfig | None, key: str) -> str:
    """The key a user sets: trainer.batch_size for task.batch_size: ${trainer.batch_size}."""
    match = re.fullmatch(r"\$\{([\w.]+)\}", str(_raw(cfg, key)))
    return match[1] if match else key


def _one_line(key: str, value: Any, error: ValidationError, cfg: DictConfig | None = None) -> str:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"] if not isinstance(part, int))
    full = _user_key(cfg, f"{key}.{loc}" if loc else key)
    shown = first.get("input", value)
    if first["type"] == "missing":
        return f"{full} is required and not set."
    if isinstance(shown, dict):
        return f"{full}: {first['msg']}."
    return f"{full}={shown!r}: {first['msg']}."


def _target_class(task_cfg: dict[str, Any]) -> type:
    target = task_cfg.get("_target_")
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"task._target_={target!r} cannot be imported ({error}).") from None


def _group_class(annotation: Any) -> type | None:
    """The dataclass of a nested config group (`features: FeatureConfig | None`), or None."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else ()
    for option in (annotation, *options):
        if isinstance(option, type) and dataclasses.is_dataclass(option):
            return option
    return None


_UNIONS = (typing.Union, types.UnionType)


def _check_keys(prefix: str, owner: str, values: dict[str, Any], params: dict, cfg) -> None:
    """Each key of `values` against `params` {name: annotation}: a known name, its type,
    the range its name implies; a dataclass-typed key is checked field by field."""
    for key, value in values.items():
        if key == "_target_":
            continue
        if key not in params:
            raise ConfigError(
                f"{prefix}.{key} is not a setting of {owner} (it takes "
                f"{', '.join(sorted(params))})."
            )
        annotation = params[key]
        group = _group_class(annotation)
        if group is not None and isinstance(value, dict):
            fields = typing.get_type_hints(group)
            names = {f.name for f in dataclasses.fields(group)}
            _check_keys(
                f"{prefix}.{key}", group.__name__, value, {n: fields[n] for n in names}, cfg
            )
            continue
        ranges = [field for pattern, field in TASK_RANGES if re.fullmatch(pattern, key)]
        if ranges and annotation in (int, float, int | None, float | None):
            annotation = Annotated[annotation, ranges[0]]
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError as error:
            raise ConfigError(_one_line(f"{prefix}.{key}", value, error, cfg)) from None
        except Exception:  # noqa: BLE001, S110 - a hint pydantic cannot check is left to the task
            pass


def _validate_task(task_cfg: dict[str, Any], cfg: DictConfig) -> None:
    cls = _target_class(task_cfg)
    params = {name: p.annotation for name, p in constructor_parameters(cls).items()}
    _check_keys("task", cls.__name__, task_cfg, params, cfg)


def _missing(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys set to ??? (without resolving anything: `${hydra:...}` needs a running job)."""
    out = []
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_interpolation():
            out += _missing(child, f"{prefix}{key}.")
        elif child._is_missing():
            out.append(f"{prefix}{key}")
    return out


def _resolved(cfg: DictConfig, group: str) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg[group], resolve=True)
    except Exception as error:  # noqa: BLE001 - an interpolation that cannot resolve
        key = getattr(error, "full_key", None) or group
        raw = _raw(cfg, str(key))
        reason = str(error).splitlines()[0]
        raise ConfigError(f"{key}={raw}: {reason}.") from None


def validate(cfg: DictConfig) -> None:
    """Raises ConfigError (one line naming the key as a user writes it, and its value)
    for the first missing, mistyped or out-of-range value of the composed config."""
    missing = [k for k in _missing(cfg) if not k.startswith("hydra.")]
    if missing:
        raise ConfigError(
            f"{missing[0]} is required and not set: add {missing[0]}=VALUE to the command line."
        )
    # The task first: other groups interpolate its values (chrono_max_steps: ${task.seq_len}).
    if "task" in cfg and "_target_" in cfg.task:
        _validate_task(_resolved(cfg, "task"), cfg)
    for group, schema in GROUPS.items():
        if group not in cfg:
            continue
        values = _resolved(cfg, group)
        try:
            schema.model_validate(values)
        except ValidationError as error:
            raise ConfigError(_one_line(group, values, error, cfg)) from None
