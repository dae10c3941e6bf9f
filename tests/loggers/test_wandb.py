"""The W&B logger, offline: a run written and read back with W&B's own reader (`wandb leet
inspect --json`), two runs in one process, resume with the same run id, disabled W&B, and
mode resolution."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lstm_jax.loggers import make_loggers, read_metrics, read_wandb_run, resolve_mode
from lstm_jax.loggers.wandb_logger import RUN_ID_FILE, WandbLogger, default_run_name
from lstm_jax.loggers.wandb_reader import find_wandb_files, inspect_records

PROFILE = np.linspace(2.0, 0.1, 50)
HIST = {"counts": np.array([1, 0, 5, 2], np.int32), "edges": np.linspace(0.0, 1.0, 5)}


def _log_run(cfg, run_dir, steps=(10, 20, 30), **kwargs):
    loggers = make_loggers(cfg, run_dir, **kwargs)
    for i, s in enumerate(steps):
        loggers.log({"train/loss": 1.0 / s}, step=s)
        loggers.log(
            {"grad_norm/global": 0.5, "grad_norm/dh_t": PROFILE * s, "gates/layer_0/forget": HIST},
            step=s,
        )
        loggers.log({"val/loss": [3.0, 1.0, 2.0][i % 3], "val/acc": [0.5, 0.7, 0.6][i % 3]}, step=s)
    loggers.log_summary({"num_params": 123, "monitor": "val/acc"})
    loggers.finish()
    return loggers


def test_offline_run_written_and_read_back(tmp_path, cfg_factory):
    run_dir = tmp_path / "run"
    _log_run(cfg_factory(), run_dir, resume=False, monitor="val/acc", monitor_mode="max")
    (wandb_file,) = find_wandb_files(run_dir / "wandb")
    run = read_wandb_run(run_dir)
    assert run["run_id"] == (run_dir / RUN_ID_FILE).read_text().strip()
    assert run["exit_code"] == 0
    assert run["project"] == "lstm-jax-test" and run["group"] == "unit"
    assert run["name"] == "unit" and run["tags"] == ["test"] and run["job_type"] == "train"
    assert run["config"]["model"] == {"cell": "lstm", "hidden_size": 8}
    assert run["config"]["logger"]["wandb"]["group"] == "unit"  # resolved

    rows = run["history"]
    train = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train] == [10, 20, 30]
    assert train[1]["train/loss"] == pytest.approx(1 / 20)
    diag = [r for r in rows if "grad_norm/dh_t" in r]
    assert len(diag) == 3
    hist = diag[0]["gates/layer_0/forget"]
    assert hist["_type"] == "histogram" and hist["values"] == [1, 0, 5, 2]
    assert hist["bins"] == pytest.approx(list(HIST["edges"]))
    dh = diag[2]["grad_norm/dh_t"]  # the profile as a histogram over t ...
    assert dh["_type"] == "histogram" and dh["values"] == pytest.approx(list(PROFILE * 30))
    assert dh["bins"] == list(range(51))
    assert diag[2]["grad_norm/dh_t_line_table"]["_type"] == "table-file"  # ... and a line plot
    assert diag[0]["grad_norm/global"] == 0.5

    # val metrics report their best; the step metric is the training step
    assert run["summary"]["val/loss"] == {"min": 1.0, "last": 2.0}
    assert run["summary"]["val/acc"] == {"max": 0.7, "last": 0.6}
    assert run["summary"]["num_params"] == 123
    assert run["metrics"]["val/acc"]["summary"] == ["max", "last"]
    assert run["metrics"]["val/loss"]["summary"] == ["min", "last"]
    assert {run["metrics"][k]["step_metric"] for k in ("train/loss", "gates/layer_0/forget")} == {
        "step"
    }
    # histograms and profiles stay out of the summary (W&B would hold each of their bins)
    assert not {"gates/layer_0/forget", "grad_norm/dh_t", "grad_norm/dh_t_line_table"} & set(
        run["summary"]
    )
    assert run["metrics"]["gates/layer_0/forget.*"]["summary"] == ["none"]
    # metrics.jsonl has the same names
    names = set().union(*read_metrics(run_dir))
    assert {"train/loss", "val/acc", "grad_norm/dh_t", "gates/layer_0/forget"} <= names
    assert wandb_file.parent.parent == run_dir / "wandb"


def test_two_runs_in_one_process(tmp_path, cfg_factory):
    """A Hydra multirun in one process: each job its own run, each finished cleanly."""
    a, b = tmp_path / "0", tmp_path / "1"
    _log_run(cfg_factory(), a, resume=False)
    _log_run(cfg_factory(name="second"), b, steps=(5,), resume=False)
    ra, rb = read_wandb_run(a), read_wandb_run(b)
    assert len(find_wandb_files(a)) == len(find_wandb_files(b)) == 1
    assert ra["run_id"] != rb["run_id"]
    assert ra["exit_code"] == rb["exit_code"] == 0
    assert rb["name"] == "second"
    assert [r["step"] for r in rb["history"] if "train/loss" in r] == [5]
    assert len([r for r in ra["history"] if "train/loss" in r]) == 3


def test_resume_reuses_the_run_id(tmp_path, cfg_factory):
    run_dir = tmp_path / "run"
    _log_run(cfg_factory(), run_dir, steps=(10, 20, 30), resume=False)
    run_id = (run_dir / RUN_ID_FILE).read_text().strip()
    _log_run(cfg_factory(), run_dir, steps=(30, 40), resume=True, resume_step=20)
    assert (run_dir / RUN_ID_FILE).read_text().strip() == run_id
    assert read_wandb_run(run_dir)["run_id"] == run_id  # the newest file: the resumed run
    steps = [r["step"] for r in read_metrics(run_dir) if "train/loss" in r]
    assert steps == [10, 20, 30, 40]
    # a fresh (non-resumed) run in the same dir gets a new id
    _log_run(cfg_factory(), run_dir, steps=(1,), resume=False)
    assert (run_dir / RUN_ID_FILE).read_text().strip() != run_id


@pytest.mark.parametrize("how", ["enabled_false", "mode_disabled", "env_disabled"])
def test_disabled_wandb_writes_only_metrics_jsonl(tmp_path, cfg_factory, monkeypatch, how):
    cfg = cfg_factory(
        **{"enabled_false": {"enabled": False}, "mode_disabled": {"mode": "disabled"}}.get(how, {})
    )
    if how == "env_disabled":
        monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = make_loggers(cfg, tmp_path / "run", resume=False)
    assert not any(isinstance(lg, WandbLogger) for lg in loggers)
    loggers.log({"train/loss": 1.0}, step=1)
    loggers.finish()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.jsonl"]
    assert not list(tmp_path.rglob("*.wandb"))


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode(None) == "offline"  # no key anywhere: offline, never a prompt
    assert resolve_mode("online") == "online"  # the config wins
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "disabled"
    assert resolve_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode(None) == "offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(None) == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    os.chmod(netrc, 0o600)
    assert resolve_mode(None) == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert resolve_mode(None) == "offline"  # the key is for another host
    with pytest.raises(ValueError, match="mode"):
        resolve_mode("sometimes")


def test_default_name_from_hydra_overrides(monkeypatch, cfg_factory):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    cfg = cfg_factory()
    assert default_run_name(cfg) == "unit"  # outside a Hydra app
    fake = OmegaConf.create(
        {
            "job": {"config": {"override_dirname": {"exclude_keys": ["seed"]}}},
            "overrides": {
                "task": ["experiment=adding", "model.hidden_size=64", "seed=3", "+optim.lr=0.1"]
            },
        }
    )
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: fake))
    assert default_run_name(cfg) == "unit:model.hidden_size=64,+optim.lr=0.1"


def test_reader_handles_a_torn_tail_and_rejects_corruption(tmp_path, cfg_factory):
    """A run killed mid-write reads up to the tear, without an exit code; a file that is
    not a W&B run is a clear error; corrupt chunks are skipped and reported."""
    _log_run(cfg_factory(), tmp_path, steps=(1,), resume=False)
    (path,) = find_wandb_files(tmp_path)
    full = read_wandb_run(path)
    assert full["exit_code"] == 0 and full["problems"] == []
    data = path.read_bytes()
    torn = tmp_path / "torn" / "run-torn.wandb"
    torn.parent.mkdir()
    torn.write_bytes(data[: len(data) // 2])
    run = read_wandb_run(torn, wait=0)
    assert run["exit_code"] is None and run["run_id"] == full["run_id"]
    assert 0 < sum(run["record_counts"].values()) < sum(full["record_counts"].values())
    assert any("incomplete" in p for p in run["problems"])
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF
    torn.write_bytes(bytes(bad))
    assert any("corrupt" in p for p in inspect_records(torn)[1])
    torn.write_bytes(b"not a wandb file")
    with pytest.raises(ValueError, match="wandb leet inspect .*bad header"):
        read_wandb_run(torn)


def test_images_and_large_records(tmp_path, cfg_factory):
    """Images (arrays and matplotlib figures) become wandb.Image; records larger than a
    32 KiB block (a big config) are reassembled from their pieces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = cfg_factory()
    cfg.model.notes = "n" * 70000
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    loggers = make_loggers(cfg, tmp_path, resume=False)
    loggers.log({"media/forecast": fig, "media/spec": np.zeros((8, 9, 3), np.uint8)}, step=3)
    loggers.finish()
    plt.close(fig)
    run = read_wandb_run(tmp_path)
    assert len(run["config"]["model"]["notes"]) == 70000
    (row,) = [r for r in run["history"] if "media/spec" in r]
    assert row["media/spec"]["_type"] == "image-file" and row["media/spec"]["width"] == 9
    assert row["media/forecast"]["_type"] == "image-file"
    (rec,) = read_metrics(tmp_path)
    assert (tmp_path / rec["media/spec"]).is_file() and (tmp_path / rec["media/forecast"]).is_file()


def test_monitor_reports_its_best(tmp_path, cfg_factory):
    """The task's monitor gets its goal even when its name says nothing about it."""
    loggers = make_loggers(
        cfg_factory(), tmp_path, resume=False, monitor="val/score", monitor_mode="max"
    )
    loggers.log({"val/score": 0.2}, step=1)
    loggers.log({"val/score": 0.9}, step=2)
    loggers.log({"val/score": 0.4}, step=3)
    loggers.log({"val/weird": 5.0}, step=3)
    loggers.finish()
    run = read_wandb_run(tmp_path)
    assert run["summary"]["val/score"] == {"max": 0.9, "last": 0.4}
    assert run["summary"]["val/weird"] == 5.0  # no goal known: the last value


def test_unreachable_server_with_a_key_falls_back_to_offline(tmp_path, cfg_factory, monkeypatch):
    """Online only because a key exists, but no server: the run is kept, offline."""
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    logger = WandbLogger(cfg_factory(), tmp_path, init_timeout=2)
    assert logger.mode == "offline"
    logger.log({"train/loss": 0.5}, step=1)
    logger.finish()
    assert [r["train/loss"] for r in read_wandb_run(tmp_path)["history"]] == [0.5]


def test_lost_wandb_service_stops_wandb_not_the_run(tmp_path, cfg_factory, monkeypatch, caplog):
    """SLURM's SIGTERM to a requeued job can take W&B's service process down first: W&B
    logging then stops with one warning, and metrics.jsonl and the run go on."""
    loggers = make_loggers(cfg_factory(), tmp_path, resume=False)
    wandb_logger = loggers.get(WandbLogger)
    loggers.log({"train/loss": 0.5}, step=1)

    def gone(*args, **kwargs):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(wandb_logger.run, "log", gone)
    monkeypatch.setattr(wandb_logger.run, "finish", gone)
    loggers.log({"train/loss": 0.4}, step=2)
    loggers.log({"train/loss": 0.3}, step=3)
    loggers.log_summary({"num_params": 1})
    loggers.finish()  # does not raise
    warnings = [r for r in caplog.records if "W&B logging stops" in r.getMessage()]
    assert len(warnings) == 1 and "ConnectionResetError" in warnings[0].getMessage()
    assert [r["step"] for r in read_metrics(tmp_path) if "train/loss" in r] == [1, 2, 3]
