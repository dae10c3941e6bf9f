"""The optimizer of the `optim` config group: an optax constructor (`optim.optimizer`, a
`_target_` + `_partial_` node such as optax.adam), the learning-rate schedule of `optim.lr`
and `optim.schedule`, and gradient clipping."""

from __future__ import annotations

from collections.abc import Callable
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


def make_optimizer(
    optimizer: Callable[..., optax.GradientTransformation],
    learning_rate: optax.Schedule,
    clip_grad_norm: float | None = None,
) -> optax.GradientTransformation:
    """`optimizer(learning_rate=...)` (an optax constructor, e.g. the `optim.optimizer`
    node instantiated as a partial), after clipping by global norm when `clip_grad_norm`."""
    transform = optimizer(learning_rate=learning_rate)
    if clip_grad_norm is None:
        return transform
    return optax.chain(optax.clip_by_global_norm(float(clip_grad_norm)), transform)
