"""Typed schema of the composed config, checked before a run writes or computes anything.

The trainer group is checked against the trainer's own `TrainerConfig`, the optim and model
groups against pydantic models here, each with ranges (lr > 0, sizes >= 1, probabilities in
[0, 1), ...). The task and model groups are also checked against the constructor of
their class (a task's `_target_`; the layer the model's `cell` names in
lstm_jax.nn.registry, lstm_jax.nn.LSTM for configs/model/lstm.yaml): the keys it accepts,
the type of each from its annotations, and the ranges of `TASK_RANGES` for the parameter
names that follow the project's conventions, so a new task or cell is checked without a
table of its own. Nested `_target_` nodes (a task's
`head: {_target_: ..., _partial_: true}`) are checked the same way. A key that another cell
has (`model=gru model.forget_bias=1`) is refused with the cell that takes it. A parameter
typed as a dataclass is a nested group (`task.features`, `task.augment`): its keys are
checked the same way, field by field.

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

from lstm_jax.train.trainer import TrainerConfig

Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class ConfigError(ValueError):
    """A config value out of its type or range; the message names the key and value."""


class _Group(BaseModel):
    # Keys a group gains later are accepted here; the composed config is struct already.
    model_config = ConfigDict(extra="allow")


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
    # _target_'s signature, like the task and model nodes.
    lr: Annotated[float, Field(gt=0.0)]
    clip_grad_norm: Annotated[float, Field(gt=0.0)] | None = None
    schedule: ScheduleSchema


class ModelSchema(_Group):
    """The keys every cell has; a cell's own keys are checked against its constructor."""

    hidden_size: Positive
    num_layers: Positive = 1
    bidirectional: bool = False
    dropout: Probability = 0.0
    dtype: Literal["float32", "bfloat16", "float16"] | None = "float32"


GROUPS: dict[str, type] = {
    "trainer": TrainerConfig,  # the trainer's own settings class: one list of its keys
    "optim": OptimSchema,
    "model": ModelSchema,
}

# Ranges of task parameters by name (regular expressions over the full name).
TASK_RANGES: list[tuple[str, Any]] = [
    (
        r"(.*_)?(size|len|length|steps|every|tokens)|seq_len|horizon|n_(mels|mfcc|fft)|frame_stack",
        Field(ge=1),
    ),
    (r"num_.*|.*_masks|.*_width|pad_multiple|bucket_batches", Field(ge=0)),
    (r".*dropout.*|.*_prob|.*_fraction", Field(ge=0.0, lt=1.0)),
    (r".*_probability", Field(ge=0.0, le=1.0)),
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


def _target_class(node: dict[str, Any], key: str) -> Any:
    target = node.get("_target_")
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{key}._target_={target!r} cannot be imported ({error}).") from None


# Keys of a config node that are not constructor arguments: Hydra's (the model's `cell`,
# which names its layer, is skipped by _validate_model).
_NOT_ARGUMENTS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
# Constructor arguments the code supplies, never a config: the core's input width.
_SUPPLIED = ("in_features", "rngs")


def _settings(params: dict[str, inspect.Parameter], partial: bool) -> list[str]:
    """The names a config may set: a partial node's required arguments come from code."""
    return sorted(
        name
        for name, p in params.items()
        if name not in _SUPPLIED and not (partial and p.default is p.empty)
    )


_UNIONS = (typing.Union, types.UnionType)


def _group_class(annotation: Any) -> type | None:
    """The dataclass of a nested config group (`features: FeatureConfig | None`), or None."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else ()
    for option in (annotation, *options):
        if isinstance(option, type) and dataclasses.is_dataclass(option):
            return option
    return None


def _check_value(key: str, name: str, annotation: Any, value: Any, cfg: DictConfig) -> None:
    """`value` against `annotation` and the range its `name` implies (TASK_RANGES)."""
    ranges = [field for pattern, field in TASK_RANGES if re.fullmatch(pattern, name)]
    if ranges and annotation in (int, float, int | None, float | None):
        annotation = Annotated[annotation, ranges[0]]
    try:
        TypeAdapter(annotation).validate_python(value)
    except ValidationError as error:
        raise ConfigError(_one_line(f"{key}.{name}", value, error, cfg)) from None
    except Exception:  # noqa: BLE001, S110 - a hint pydantic cannot check is left to the code
        pass


def _validate_group(values: dict[str, Any], key: str, group: type, cfg: DictConfig) -> None:
    """A nested group typed as a dataclass (`task.features`), field by field."""
    hints = typing.get_type_hints(group)
    names = [f.name for f in dataclasses.fields(group)]
    for name, value in values.items():
        if name not in names:
            raise ConfigError(
                f"{key}.{name} is not a setting of {group.__name__} (it takes "
                f"{', '.join(sorted(names))})."
            )
        _check_value(key, name, hints[name], value, cfg)


def _validate_node(
    node: dict[str, Any],
    key: str,
    cfg: DictConfig,
    *,
    skip: tuple[str, ...] = (),
    elsewhere: Any = None,
    set_by_code: dict[str, str] | None = None,
) -> None:
    """Checks `node` against its `_target_`'s constructor (a class or a function such as
    optax.adam); `elsewhere(name)` says which other config would take a key this one does
    not (for the message); `set_by_code` maps the arguments the code passes itself to the
    setting a user changes instead."""
    cls = _target_class(node, key)
    params = constructor_parameters(cls)
    for name, value in node.items():
        if name in _NOT_ARGUMENTS or name in skip:
            continue
        if set_by_code and name in set_by_code:
            raise ConfigError(f"{key}.{name} is set by lstm-jax; set {set_by_code[name]} instead.")
        if name not in params or name in _SUPPLIED:
            hint = elsewhere(name) if elsewhere else ""
            raise ConfigError(
                f"{key}.{name} is not a setting of {cls.__name__} (it takes "
                f"{', '.join(_settings(params, bool(node.get('_partial_'))))}){hint}."
            )
        if isinstance(value, dict) and "_target_" in value:
            _validate_node(value, f"{key}.{name}", cfg)
            continue
        annotation = params[name].annotation
        group = _group_class(annotation)
        if group is not None and isinstance(value, dict):
            _validate_group(value, f"{key}.{name}", group, cfg)
            continue
        _check_value(key, name, annotation, value, cfg)


def _validate_task(task_cfg: dict[str, Any], cfg: DictConfig) -> None:
    _validate_node(task_cfg, "task", cfg)


def _validate_optimizer(node: dict[str, Any], cfg: DictConfig) -> None:
    if "_target_" not in node:
        raise ConfigError(
            "optim.optimizer has no _target_: choose a preset with optim=adam|adamw|sgd|rmsprop"
            " or name an optax constructor (optim.optimizer._target_=optax.lion)."
        )
    set_by_code = {"learning_rate": "optim.lr (and optim.schedule)"}
    _validate_node(node, "optim.optimizer", cfg, set_by_code=set_by_code)


def _cells_with(name: str) -> str:
    """', it is a setting of model=lstm' for a key only some cells have."""
    from lstm_jax.nn.registry import CELLS

    having = [cell for cell, cls in CELLS.items() if name in constructor_parameters(cls)]
    if not having:
        return ""
    choices = " or ".join(f"model={cell}" for cell in having)
    return f"; {name} belongs to {choices}: choose that cell, or drop the key"


def _validate_model(model_cfg: dict[str, Any], cfg: DictConfig) -> None:
    from lstm_jax.models.core import core_class

    try:
        cls = core_class(model_cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    node = {"_target_": f"{cls.__module__}.{cls.__name__}", **model_cfg}
    _validate_node(node, "model", cfg, skip=("cell", "dtype"), elsewhere=_cells_with)


def check_model_overrides(overrides: list[str]) -> None:
    """Refuses, before Hydra composes anything, a command-line `model.KEY=V` that the chosen
    cell (`model=NAME`, default lstm) does not have: Hydra's own error would suggest
    `+model.KEY=V`, which only moves the failure to the schema. `model.cell=NAME` is refused
    too: the cell is chosen with its group, `model=NAME`, which brings the cell's own keys."""
    from lstm_jax.models.core import core_class
    from lstm_jax.nn.registry import CELLS

    cell = "lstm"
    for item in overrides:
        if item.startswith("model="):
            cell = item.partition("=")[2]
    if cell not in CELLS:
        return  # Hydra names the unknown choice and lists the options
    params = constructor_parameters(CELLS[cell])
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+~") == "model.cell":
            for name in value.split(","):
                try:
                    core_class({"cell": name})
                except ValueError as error:
                    raise ConfigError(str(error)) from None
            raise ConfigError(
                f"{item}: switch the cell with model={value}, not model.cell={value} (the "
                "group brings the cell's own settings)."
            )
        if not key.startswith("model.") or "," in item.partition("=")[2]:
            continue
        name = key.removeprefix("model.")
        if "." in name or name in ("cell", "_target_") or name in params:
            continue
        import difflib

        near = difflib.get_close_matches(name, list(params), n=1, cutoff=0.75)
        hint = f": did you mean model.{near[0]}?" if near else _cells_with(name)
        raise ConfigError(
            f"model.{name} is not a setting of {CELLS[cell].__name__} (model={cell}; it takes "
            f"{', '.join(_settings(params, False))}){hint}" + ("" if near else ".")
        )


# Nodes whose keys the schema checks against a constructor's signature: a `+key` there may
# be a real argument of a custom `_target_` (the schema names the arguments otherwise).
_CONSTRUCTOR_NODES = ("task.", "model.", "optim.optimizer.")


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            keys.append(f"{prefix}{key}")
            keys += _dotted_keys(node._get_node(key), f"{prefix}{key}.")
    return keys


def check_override_keys(overrides: list[str]) -> None:
    """Refuses, before Hydra composes the run, a command-line `KEY=V` (or `+KEY=V`) whose key
    the composed config does not have, naming the nearest keys that it has: Hydra's own
    error suggests `+KEY=V`, which only moves the failure past the start of the run. A `+key`
    under a constructor node (task, model, optim.optimizer) is left to `validate`, which
    checks it against the constructor's arguments."""
    import difflib

    from hydra import compose, initialize_config_dir

    from lstm_jax.config import CONFIG_DIR

    settings = [o for o in overrides if "=" in o and not o.startswith(("-", "~"))]
    groups = [o.split(",")[0] for o in settings if "." not in o.partition("=")[0] and "/" not in o]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=groups)
    except Exception:  # noqa: BLE001 - a bad group choice: Hydra's own message names it
        return
    known = set(_dotted_keys(cfg))
    for item in settings:
        key = item.partition("=")[0]
        added = key.startswith("+")
        key = key.lstrip("+")
        if "." not in key or key.startswith("hydra.") or key in known:
            continue
        if added and key.startswith(_CONSTRUCTOR_NODES):
            continue
        near = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.75)
        if added and not near:
            continue  # a new key of the user's own, nothing like an existing one
        hint = f"did you mean {' or '.join(near)}?" if near else "it is not a setting"
        raise ConfigError(
            f"{key} is not a key of the config: {hint} (lstm-jax --cfg job lists them all)."
        )


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
    if "model" in cfg:
        _validate_model(_resolved(cfg, "model"), cfg)
    if "optim" in cfg:
        _validate_optimizer(_resolved(cfg, "optim").get("optimizer") or {}, cfg)
    for group, schema in GROUPS.items():
        if group not in cfg:
            continue
        values = _resolved(cfg, group)
        try:
            TypeAdapter(schema).validate_python(values)
        except ValidationError as error:
            raise ConfigError(_one_line(group, values, error, cfg)) from None
