"""metrics.jsonl: value formats, flushing, resume truncation, summary, non-main processes."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.loggers import JsonlLogger, make_loggers, read_metrics
from lstm_jax.loggers.values import downsample, histogram_summary, samples_summary


def test_value_formats(tmp_path):
    logger = JsonlLogger(tmp_path)
    profile = np.linspace(0.0, 1.0, 100) ** 2
    samples = np.random.default_rng(0).normal(size=(50, 4))
    logger.log(
        {
            "train/loss": np.float32(0.5),
            "train/count": 3,
            "jax/scalar": jnp.asarray(2.0),
            "grad_norm/dh_t": profile,
            "short": [1.0, 2.0, 3.0],
            "gates/layer_0/forget": {
                "counts": np.array([0, 2, 2, 0]),
                "edges": np.linspace(0, 1, 5),
            },
            "raw": samples,
            "bad": float("nan"),
            "note": "hello",
            "media/plot": np.zeros((6, 5, 3), np.uint8),
        },
        step=12,
    )
    # flushed line by line: readable before finish()
    (rec,) = read_metrics(tmp_path / "metrics.jsonl")
    assert rec["step"] == 12
    assert rec["train/loss"] == 0.5 and isinstance(rec["train/count"], float)
    assert rec["jax/scalar"] == 2.0
    dh = rec["grad_norm/dh_t"]
    assert len(dh) == 32 and dh[0] == profile[0] and dh[-1] == profile[-1]
    assert rec["short"] == [1.0, 2.0, 3.0]
    hist = rec["gates/layer_0/forget"]
    assert hist["n"] == 4 and hist["mean"] == pytest.approx(0.5)
    assert hist["min"] == 0.25 and hist["max"] == 0.75 and hist["p50"] == pytest.approx(0.5)
    assert rec["raw"]["mean"] == pytest.approx(samples.mean()) and rec["raw"]["n"] == 200
    assert rec["bad"] is None and rec["note"] == "hello"
    assert (tmp_path / rec["media/plot"]).is_file()
    logger.finish()


def test_histogram_summary_close_to_numpy_on_samples():
    x = np.random.default_rng(1).beta(2, 5, size=20000)
    counts, edges = np.histogram(x, bins=100, range=(0, 1))
    s, exact = histogram_summary(counts, edges), samples_summary(x)
    for key in ("mean", "std", "p05", "p50", "p95"):
        assert s[key] == pytest.approx(exact[key], abs=0.01), key
    assert s["min"] <= exact["min"] and s["max"] >= exact["max"]
    empty = histogram_summary(np.zeros(3), np.arange(4))
    assert empty["n"] == 0 and empty["mean"] is None


def test_downsample_keeps_first_and_last():
    x = np.arange(1000)
    d = downsample(x, 32)
    assert len(d) == 32 and d[0] == 0 and d[-1] == 999 and np.all(np.diff(d) > 0)
    assert list(downsample(np.arange(5), 32)) == [0, 1, 2, 3, 4]


def _run(run_dir, steps, *, resume=False, resume_step=None):
    logger = JsonlLogger(run_dir, resume=resume, resume_step=resume_step)
    for s in steps:
        logger.log({"train/loss": 1.0 / s, "grad_norm/dh_t": np.arange(s, s + 40.0)}, step=s)
        if s % 4 == 0:
            logger.log({"val/loss": 2.0 / s}, step=s)
    logger.finish()


def test_resume_truncates_to_an_uninterrupted_file(tmp_path):
    _run(tmp_path / "full", range(1, 13))
    # Interrupted after step 9; the last checkpoint was step 8; the run resumes from it.
    _run(tmp_path / "cut", range(1, 10))
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 10, "train/lo')  # killed mid-write
    _run(tmp_path / "cut", range(9, 13), resume=True, resume_step=8)
    full = (tmp_path / "full" / "metrics.jsonl").read_text()
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == full


def test_truncate_after_and_fresh_run(tmp_path):
    _run(tmp_path, range(1, 9))
    logger = JsonlLogger(tmp_path, resume=True)  # step not known yet
    assert logger.truncate_after(4) == 5  # steps 1..4 + the val line of step 4
    logger.log({"train/loss": 0.0}, step=5)
    logger.finish()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 4, 5]
    JsonlLogger(tmp_path, resume=False).finish()  # a fresh run starts the file anew
    assert read_metrics(tmp_path) == []


def test_summary_and_non_main_process(tmp_path, cfg_factory):
    cfg = cfg_factory(enabled=False)
    loggers = make_loggers(cfg, tmp_path / "run", resume=False)
    loggers.log({"train/loss": 1.0}, step=1)
    loggers.log_summary(
        {"best": {"val/loss": np.float32(0.25), "step": 4}, "num_params": 10, "wall_time_s": 1.5}
    )
    loggers.log_summary({"test": {"acc": 0.9}})
    loggers.finish()
    loggers.finish()  # idempotent
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == {
        "best": {"val/loss": 0.25, "step": 4},
        "num_params": 10,
        "wall_time_s": 1.5,
        "test": {"acc": 0.9},
    }

    other = make_loggers(cfg, tmp_path / "worker", resume=False, is_main_process=False)
    other.log({"train/loss": 1.0}, step=1)
    other.log_summary({"x": 1})
    other.finish()
    assert not (tmp_path / "worker").exists()
