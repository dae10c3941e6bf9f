"""Survival statistics for `lstm-jax-compare --over KEY --solved COND --escape COND`: how long
runs take to leave the memoryless baseline and to solve a task, when some never do.

A run that stops before its event (never solved in the budget, or killed) still says the
event had not happened by its last step: its time is *censored* there, not missing. So the
time to an event is summarised per group by the Kaplan-Meier estimate of the fraction of runs
without the event by step t,

    S(t) = prod over event steps t_i <= t of (1 - d_i / n_i)

(d_i runs with their event at t_i, n_i runs still at risk: neither an event nor censored
before t_i; a run censored at t_i counts as at risk there). Its median is the first step with
S(t) <= 0.5, with the 95 % interval of Brookmeyer and Crowley: the steps whose pointwise 95 %
band of S(t) holds 0.5, the band from Greenwood's variance on the log(-log S) scale (R's
survival::survfit with conf.type="log-log"). A median or a bound that the runs never reach is
None: "not reached", larger than every step observed.

The solved fraction at the end gets Wilson's 95 % score interval, which stays inside [0, 1]
and is not degenerate at 0/n or n/n (3/3 gives [0.44, 1]).

A condition is `COLUMN OP NUMBER` ('val/solved>0') or `COLUMN OP [NUMBER*]COLUMN`, against
another metric logged at the same step ('val/mse<0.9*val/baseline_mse': the escape from the
baseline). It is checked on the validation series over training (a `test/` column's `val/`
counterpart, as for --solved).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_jax.compare.runs import Run

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_EVENT = re.compile(
    rf"^\s*(?P<column>[^<>=!*\s]+)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    rf"(?:(?P<factor>{_NUMBER})\s*\*\s*(?P<scaled>[^<>=!*\s]+)|(?P<value>{_NUMBER})"
    rf"|(?P<other>[^<>=!*\s]+))\s*$"
)


def validation_column(column: str) -> str:
    """The validation series a condition's column is checked on over training."""
    if column.startswith("test/"):
        return "val/" + column[len("test/") :]
    if column.startswith("best "):
        return column[len("best ") :]
    return column


@dataclass(frozen=True)
class Condition:
    """`column op factor * reference` (reference None: `column op factor`)."""

    text: str
    column: str
    op: Callable[[float, float], bool]
    factor: float
    reference: str | None

    @classmethod
    def parse(cls, text: str, option: str) -> Condition:
        match = _EVENT.match(text)
        if not match:
            raise ValueError(
                f"{option} {text!r}: expected COLUMN OP NUMBER or COLUMN OP NUMBER*COLUMN, "
                "e.g. 'val/solved>0' or 'val/mse<0.9*val/baseline_mse'"
            )
        reference = match["scaled"] or match["other"]
        factor = float(match["factor"] or match["value"] or 1.0)
        return cls(
            text,
            validation_column(match["column"]),
            _OPS[match["op"]],
            factor,
            reference and validation_column(reference),
        )

    def first_step(self, run: Run) -> int | None:
        """The first logged step at which the condition held; None if it never did."""
        reference = dict(run.series.get(self.reference, [])) if self.reference else None
        for step, value in run.series.get(self.column, []):
            bound = self.factor if reference is None else reference.get(step)
            if bound is None:
                continue
            if reference is not None:
                bound = self.factor * bound
            if self.op(value, bound):
                return step
        return None

    def columns_missing(self, run: Run) -> list[str]:
        return [c for c in (self.column, self.reference) if c and c not in run.series]


def last_step(run: Run) -> int:
    """The last step a run reached: where its time is censored when it had no event."""
    steps = [s[-1][0] for s in run.series.values() if s]
    summary_steps = run.summary.get("steps")
    if isinstance(summary_steps, int | float):
        steps.append(int(summary_steps))
    return max(steps, default=0)


@dataclass
class SurvivalPoint:
    step: int
    at_risk: int
    events: int
    survival: float
    low: float  # the pointwise 95 % band of S at this step
    high: float


def kaplan_meier(times: list[int], events: list[bool]) -> list[SurvivalPoint]:
    """The Kaplan-Meier curve at each step with an event (see the module docstring)."""
    curve, survival, greenwood = [], 1.0, 0.0
    for step in sorted({t for t, e in zip(times, events, strict=True) if e}):
        at_risk = sum(t >= step for t in times)
        died = sum(t == step and e for t, e in zip(times, events, strict=True))
        survival *= 1.0 - died / at_risk
        greenwood += died / (at_risk * (at_risk - died)) if at_risk > died else math.inf
        if 0.0 < survival < 1.0 and math.isfinite(greenwood):
            spread = math.exp(Z95 * math.sqrt(greenwood) / abs(math.log(survival)))
            low, high = survival**spread, survival ** (1.0 / spread)
        else:
            # S = 0: the last runs at risk all had their event, log(-log S) and Greenwood's
            # variance are infinite and the band is [0, 1] (R gives NA): it bounds the
            # median from below only. A band [0, 0] would put the median's upper bound at
            # the last event, as if n=1 or 3/3 solved knew the median to the step.
            low, high = 0.0, 1.0
        curve.append(SurvivalPoint(step, at_risk, died, survival, low, high))
    return curve


def _first_at_or_below(curve: list[SurvivalPoint], attribute: str, level: float = 0.5):
    return next((p.step for p in curve if getattr(p, attribute) <= level + 1e-12), None)


def median_with_interval(curve: list[SurvivalPoint]) -> tuple[int | None, int | None, int | None]:
    """The median step to the event and its 95 % interval (None: not reached)."""
    return (
        _first_at_or_below(curve, "survival"),
        _first_at_or_below(curve, "low"),
        _first_at_or_below(curve, "high"),
    )


def wilson_interval(successes: int, n: int) -> tuple[float | None, float | None]:
    """Wilson's 95 % score interval of a proportion successes / n."""
    if n == 0:
        return None, None
    p, z2 = successes / n, Z95**2
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def event_times(runs: list[Run], members: list[int], condition: Condition):
    """(times, observed) of the runs `members`: the event's step, or the run's last step."""
    times, observed = [], []
    for i in members:
        step = condition.first_step(runs[i])
        times.append(last_step(runs[i]) if step is None else step)
        observed.append(step is not None)
    return times, observed


def survival_columns(name: str, times: list[int], observed: list[bool]) -> dict[str, Any]:
    """The `<name> median` columns (with `_ci_low` / `_ci_high`) and the event count."""
    median, low, high = median_with_interval(kaplan_meier(times, observed))
    return {
        f"{name} events": sum(observed),
        f"{name} median": median,
        f"{name} median_ci_low": low,
        f"{name} median_ci_high": high,
    }


def plot_survival(
    curves: list[tuple[str, list[int], list[bool]]], title: str, path: Path
) -> Path | None:
    """One Kaplan-Meier step curve per group (fraction of runs without the event by step),
    its censored runs marked '+'."""
    from lstm_jax.compare.plots import _pyplot, save_figure

    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for number, (label, times, observed) in enumerate(curves):
        color = plt.get_cmap("tab10")(number % 10)
        curve = kaplan_meier(times, observed)
        xs = [0] + [p.step for p in curve]
        ys = [1.0] + [p.survival for p in curve]
        end = max(times, default=0)
        if end > xs[-1]:
            xs, ys = xs + [end], ys + [ys[-1]]
        n = len(times)
        ax.step(xs, ys, where="post", color=color, label=f"{label} ({sum(observed)}/{n})")
        censored = [t for t, e in zip(times, observed, strict=True) if not e]
        at = [next((p.survival for p in reversed(curve) if p.step <= t), 1.0) for t in censored]
        ax.plot(censored, at, "+", color=color, markersize=10, markeredgewidth=1.5)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of runs without the event")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, ax, path)
