"""Typed schema of the composed config, checked before a run writes or computes anything.

The trainer, optim and model groups are pydantic models with ranges (lr > 0, sizes >= 1,
probabilities in [0, 1), ...). The task group is checked against the constructor of its
`_target_`: the keys it accepts, the type of each from its annotations, and the ranges of
`TASK_RANGES` for the parameter names that follow the project's conventions, so a new task
is checked without a table of its own.

    validate(cfg)   # raises ConfigError("model.hidden_size=0: Input should be ...")
"""

from __future__ import annotations

import importlib
import inspect
import re
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
    # optim.optimizer (the optax constructor and its keys) is checked against its
    # _target_'s signature, like the task group.
    lr: Annotated[float, Field(gt=0.0)]
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


def constructor_parameters(target: Any) -> dict[str, inspect.Parameter]:
    """The keyword parameters `target(...)` accepts (a class, following `**kwargs` up its
    base classes, or a function such as optax.adam), with each one's annotation resolved
    (`from __future__ import annotations`)."""
    functions = (
        [vars(klass)["__init__"] for klass in target.__mro__ if "__init__" in vars(klass)]
        if isinstance(target, type)
        else [target]
    )
    params: dict[str, inspect.Parameter] = {}
    for function in functions:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # noqa: BLE001 - an unresolvable hint is checked as Any
            hints = {}
        signature = inspect.signature(function).parameters.values()
        for p in signature:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name == "self" or p.name in params:
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


def _target_object(node: dict[str, Any], key: str) -> Any:
    target = node.get("_target_")
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{key}._target_={target!r} cannot be imported ({error}).") from None


def _validate_target(
    node: dict[str, Any], key: str, cfg: DictConfig, *, supplied: dict[str, str] | None = None
) -> None:
    """Checks the keys of the `_target_` node at `key` (task, optim.optimizer) against the
    parameters of its target: each must be one it takes, of its annotated type, and in the
    range TASK_RANGES gives its name. `supplied`: parameters the code passes itself, each
    with the setting a user changes instead."""
    target = _target_object(node, key)
    params = constructor_parameters(target)
    name = getattr(target, "__qualname__", str(target))
    for param, value in node.items():
        if param in ("_target_", "_partial_"):
            continue
        if supplied and param in supplied:
            raise ConfigError(f"{key}.{param} is set by lstm-jax; set {supplied[param]} instead.")
        if param not in params:
            raise ConfigError(
                f"{key}.{param} is not a setting of {name} (it takes "
                f"{', '.join(sorted(set(params) - set(supplied or ())))})."
            )
        annotation = params[param].annotation
        ranges = [field for pattern, field in TASK_RANGES if re.fullmatch(pattern, param)]
        if ranges and annotation in (int, float, int | None, float | None):
            annotation = Annotated[annotation, ranges[0]]
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError as error:
            raise ConfigError(_one_line(f"{key}.{param}", value, error, cfg)) from None
        except Exception:  # noqa: BLE001, S110 - a hint pydantic cannot check is left to the target
            pass


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
        _validate_target(_resolved(cfg, "task"), "task", cfg)
    if "optim" in cfg and "optimizer" in cfg.optim:
        optimizer = _resolved(cfg, "optim")["optimizer"]
        if "_target_" not in optimizer:
            raise ConfigError(
                "optim.optimizer has no _target_: choose a preset with optim=adam|adamw|sgd|"
                "rmsprop or name an optax constructor (optim.optimizer._target_=optax.lion)."
            )
        supplied = {"learning_rate": "optim.lr (and optim.schedule)"}
        _validate_target(optimizer, "optim.optimizer", cfg, supplied=supplied)
    for group, schema in GROUPS.items():
        if group not in cfg:
            continue
        values = _resolved(cfg, group)
        try:
            schema.model_validate(values)
        except ValidationError as error:
            raise ConfigError(_one_line(group, values, error, cfg)) from None
