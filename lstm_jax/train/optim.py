"""The optax optimizer named by the `optim` config group."""

from __future__ import annotations

from typing import Any

import optax

# The optim.schedule keys each schedule reads (the others are ignored).
SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "cosine": ("decay_steps", "end_lr_fraction"),
    "warmup_cosine": ("warmup_steps", "decay_steps", "end_lr_fraction"),
    "exponential": ("decay_rate", "transition_steps", "transition_begin", "staircase"),
}


def make_schedule(optim_config: Any) -> optax.Schedule:
    """The learning-rate schedule of `optim.schedule` (a function of the step)."""
    lr = float(optim_config.lr)
    schedule = optim_config.schedule
    name = schedule.name
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(
            lr, decay_steps=int(schedule.decay_steps), alpha=float(schedule.end_lr_fraction)
        )
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=lr,
            warmup_steps=int(schedule.warmup_steps),
            decay_steps=int(schedule.decay_steps),
            end_value=lr * float(schedule.end_lr_fraction),
        )
    if name == "exponential":
        # Zaremba et al. 2014 style: constant for `transition_begin` steps, then multiplied
        # by `decay_rate` every `transition_steps` steps.
        return optax.exponential_decay(
            lr,
            transition_steps=int(schedule.transition_steps),
            decay_rate=float(schedule.decay_rate),
            transition_begin=int(schedule.transition_begin),
            staircase=bool(schedule.staircase),
        )
    raise ValueError(
        f"optim.schedule.name={name!r} is unknown; choose constant, cosine, warmup_cosine "
        "or exponential."
    )


def make_optimizer(optim_config: Any) -> optax.GradientTransformation:
    """Gradient clipping (optim.clip_grad_norm) followed by the named optimizer."""
    lr = make_schedule(optim_config)
    name = optim_config.name
    momentum = float(optim_config.momentum) or None
    if name == "adam":
        optimizer = optax.adam(lr, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps)
    elif name == "adamw":
        optimizer = optax.adamw(
            lr,
            b1=optim_config.b1,
            b2=optim_config.b2,
            eps=optim_config.eps,
            weight_decay=float(optim_config.weight_decay),
        )
    elif name == "sgd":
        optimizer = optax.sgd(lr, momentum=momentum, nesterov=bool(optim_config.nesterov))
    elif name == "rmsprop":
        optimizer = optax.rmsprop(lr, momentum=momentum, eps=optim_config.eps)
    else:
        raise ValueError(
            f"optim.name={name!r} is unknown; choose adam, adamw, sgd or rmsprop "
            "(optim=adam|adamw|sgd|rmsprop selects a preset)."
        )
    if optim_config.clip_grad_norm is None:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(float(optim_config.clip_grad_norm)), optimizer)
