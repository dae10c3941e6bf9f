"""A metric's direction (min or max) comes from one table, lstm_jax/metrics/direction.py:
for every metric of every task, the trainer's best checkpoint and early stop, the W&B
summary, lstm-jax-compare and the Optuna sweeper pick the same direction."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class

from hydra_plugins.lstm_jax_optuna_sweeper.optuna_sweeper import study_direction
from lstm_jax.compare.runs import Run
from lstm_jax.loggers.wandb_logger import goal as wandb_goal
from lstm_jax.metrics.direction import OPTUNA_DIRECTIONS, best_of, improves, mode_of

TASK_TARGETS = sorted(
    {
        yaml.safe_load(path.read_text())["_target_"]
        for path in (Path(__file__).parents[2] / "configs" / "task").glob("*.yaml")
    }
)
TASK_METRICS = [
    (target, f"val/{name}")
    for target in TASK_TARGETS
    for name in get_class(target).metric_names or ("loss",)
]
# A validation curve whose smallest value comes at step 2, its largest at step 3, with a
# tie at step 4 (the first of equal values is the best).
CURVE = [(1, 2.0), (2, 1.0), (3, 3.0), (4, 1.0), (5, 3.0)]


def _trainer_best_step(mode: str) -> int:
    """The step the trainer's rule saves as best (its last improvement) over CURVE."""
    best_value, best_step = None, None
    for step, value in CURVE:
        if improves(value, best_value, mode):
            best_value, best_step = value, step
    return best_step


@pytest.mark.parametrize("target, metric", TASK_METRICS)
def test_every_task_metric_has_one_direction_that_all_readers_share(target, metric):
    mode = mode_of(metric)  # refuses a metric without a known direction
    assert wandb_goal(metric) == mode
    run = Run(path=Path("."), series={metric: CURVE})
    compare_value, compare_step = run.best(metric)
    assert compare_step == _trainer_best_step(mode) == (2 if mode == "min" else 3)
    assert (compare_step, compare_value) == best_of(CURVE, mode)


@pytest.mark.parametrize("target", TASK_TARGETS)
def test_the_monitor_direction_of_trainer_compare_and_sweeper_agree(target):
    task_class = get_class(target)
    mode = mode_of(task_class.monitor)
    # early stop and the best checkpoint follow Task.monitor_mode, the summary records it
    assert task_class.monitor_mode.fget(task_class) == mode
    assert Run(path=Path("."), summary={"monitor": task_class.monitor}).monitor_mode == mode
    assert study_direction(target, None) == OPTUNA_DIRECTIONS[mode]


def test_a_sweep_direction_against_the_monitor_is_refused_before_any_trial():
    with pytest.raises(ValueError, match="monitor val/acc is better larger: use maximize"):
        study_direction("lstm_jax.tasks.images.SequentialImageTask", "minimize")
    assert study_direction("lstm_jax.tasks.synthetic.AddingTask", "minimize") == "minimize"
    assert study_direction(None, "maximize") == "maximize"
    with pytest.raises(ValueError, match="give minimize or maximize"):
        study_direction(None, None)


def test_a_monitor_without_a_known_direction_is_refused():
    with pytest.raises(ValueError, match="val/score has no known direction"):
        mode_of("val/score")
