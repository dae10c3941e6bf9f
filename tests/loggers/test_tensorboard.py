"""The TensorBoard logger: event files read back with TensorBoard's own reader (its
EventAccumulator, as `tensorboard --logdir` loads them): scalars, the gate histograms with
their true extremes, a profile over t as a histogram, and a resume that drops the events
after its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import (
    HISTOGRAMS,
    SCALARS,
    EventAccumulator,
)

from lstm_jax.loggers import TensorBoardLogger, make_loggers
from lstm_jax.loggers.tensorboard_logger import events_dir

# 12 gate values in [0.3, 0.8]: bins of 0.1 over [0, 1], the true extremes inside the bins.
GATE = {
    "counts": np.array([0, 0, 0, 2, 4, 0, 3, 3, 0, 0], np.int32),
    "edges": np.linspace(0.0, 1.0, 11),
    "min": 0.31,
    "max": 0.77,
}
# tau over log-spaced bins up to 1e4, the values between 1 and 100 steps
TAU = {"counts": np.array([0, 3, 1, 0, 0]), "edges": np.array([0.1, 1, 10, 100, 1e3, 1e4])}
PROFILE = np.array([0.0, 0.5, 1.0, 4.0])  # ||dL/dh_t|| over t = 0..3


@pytest.fixture
def tb_cfg(cfg_factory):
    """The test config (tests/loggers/conftest.py) without W&B, TensorBoard on or off."""

    def make(tensorboard: bool = True):
        cfg = cfg_factory(enabled=False)
        cfg.logger.tensorboard = OmegaConf.create({"enabled": tensorboard})
        return cfg

    return make


def _read(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={HISTOGRAMS: 0, SCALARS: 0})
    acc.Reload()
    return acc


def test_scalars_histograms_and_profiles_read_back(tmp_path, tb_cfg):
    logger = TensorBoardLogger(tb_cfg(), tmp_path)
    for step in (2, 4):
        logger.log(
            {
                "train/loss": 1.0 / step,
                "gates/layer_0/forget": GATE,
                "gates/layer_0/forget_tau": TAU,
                "gates/layer_0/forget_tau_median": 3.5,
                "grad_norm/dh_t": PROFILE * step,
            },
            step,
        )
    logger.finish()
    assert logger.log_dir == tmp_path / "tensorboard" / "unit"  # named as W&B names the run
    acc = _read(logger.log_dir)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(2, 0.5), (4, 0.25)]
    assert acc.Scalars("gates/layer_0/forget_tau_median")[0].value == 3.5

    (first, _) = acc.Histograms("gates/layer_0/forget")
    hist = first.histogram_value
    # the occupied bins only, from the true min to the true max
    assert (hist.min, hist.max) == pytest.approx((0.31, 0.77))
    assert list(hist.bucket) == [2, 4, 0, 3, 3]
    assert list(hist.bucket_limit) == pytest.approx([0.4, 0.5, 0.6, 0.7, 0.77])
    assert hist.num == 12

    # without the extremes: the occupied bins' edges (TensorBoard's axis is linear: 1 to 100
    # steps, not 0.1 to 1e4)
    tau = acc.Histograms("gates/layer_0/forget_tau")[0].histogram_value
    assert (tau.min, tau.max, list(tau.bucket_limit), list(tau.bucket)) == (
        1,
        100,
        [10, 100],
        [3, 1],
    )

    # the profile: one bucket per time step, its height the value at that step
    (_, last) = acc.Histograms("grad_norm/dh_t")
    assert last.step == 4
    assert list(last.histogram_value.bucket) == pytest.approx(list(PROFILE * 4))
    assert list(last.histogram_value.bucket_limit) == [1, 2, 3, 4]


def test_a_resumed_run_drops_the_events_after_its_checkpoint(tmp_path, tb_cfg):
    first = TensorBoardLogger(tb_cfg(), tmp_path)
    for step in (1, 2, 3, 4):
        first.log({"train/loss": float(step)}, step)
    first.finish()  # killed after step 4; the last checkpoint is step 2
    resumed = TensorBoardLogger(tb_cfg(), tmp_path, resume_step=2)
    resumed.log({"train/loss": 30.0}, 3)
    resumed.finish()
    acc = _read(events_dir(tb_cfg(), tmp_path))
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1), (2, 2), (3, 30)]


def test_make_loggers_adds_tensorboard_only_when_enabled(tmp_path, tb_cfg):
    on = make_loggers(tb_cfg(True), tmp_path / "on", resume=False)
    off = make_loggers(tb_cfg(False), tmp_path / "off", resume=False)
    assert on.get(TensorBoardLogger) is not None and off.get(TensorBoardLogger) is None
    on.finish()
    off.finish()
    assert (tmp_path / "on" / "tensorboard" / "unit").is_dir()
    assert not (tmp_path / "off" / "tensorboard").exists()
