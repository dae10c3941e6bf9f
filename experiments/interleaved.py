"""Timing helpers shared by the one-process experiments (kernel_ab, lstm_time_breakdown,
stack_schedules): every function is timed once per round, round after round, so a slow
phase of a shared machine hits all of them alike; results are medians with their IQR."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_interleaved(
    calls: dict[str, Callable[[], object]], repeats: int, gap_s: float = 0.03
) -> dict[str, list[float]]:
    """Seconds per call of each function over `repeats` rounds, `gap_s` idle before each
    call (lets the previous call's threads go to sleep). Each call must block until done."""
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            time.sleep(gap_s)
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def print_medians(times: dict[str, list[float]], header: str, width: int = 24) -> None:
    """One line per function: median and IQR in ms."""
    print(f"# {header}; median [IQR] of {len(next(iter(times.values())))}, ms")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        print(f"{name:<{width}} {1e3 * statistics.median(ts):8.2f}  [{1e3 * (q[2] - q[0]):.2f}]")
