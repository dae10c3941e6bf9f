"""The trainer's own behaviour, in process on tiny configs: early stopping in max mode,
the best checkpoint behind the test metrics, learning-rate schedules, gradient clipping,
keep_checkpoints, and resuming a language model with its carried state mid-epoch."""

from __future__ import annotations

import json
import logging

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR
from lstm_jax.run import build_trainer, load_run
from lstm_jax.train.checkpoint import Checkpointer
from lstm_jax.train.optim import make_optimizer, make_schedule
from lstm_jax.train.trainer import Trainer, TrainerConfig

COMMON = [
    "model.hidden_size=8",
    "trainer.batch_size=8",
    "trainer.progress_bar=false",
    "logger=none",
    "logger.diagnostics_every=null",
]
ADDING = ["task.seq_len=8", "task.val_size=32", "task.test_size=32", "task.eval_batch_size=32"]


def config(*overrides, task=ADDING):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[*COMMON, *task, *overrides, "paths.data_dir=/tmp"])


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_trainer_built_in_code_needs_no_config_and_trains_as_the_cli_would(tmp_path):
    """The entry point only builds objects and hands them in: the same task, model,
    optimizer and settings built by hand train to the same parameters, bit for bit."""
    cfg = config("trainer.max_steps=12", "trainer.eval_every=6", "trainer.log_every=3")
    from_config = build_trainer(cfg, tmp_path / "cli")
    from_config.fit()

    task = hydra.utils.instantiate(cfg.task)  # a plain AddingTask(...) with these values
    model = task.make_model(cfg.model, rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1))
    schedule = optax.constant_schedule(cfg.optim.lr)
    by_hand = Trainer(
        task,
        model,
        optax.chain(optax.clip_by_global_norm(cfg.optim.clip_grad_norm), optax.adam(schedule)),
        config=TrainerConfig(
            max_steps=12,
            batch_size=cfg.trainer.batch_size,
            eval_every=6,
            log_every=3,
            checkpoint_every=6,
            progress_bar=False,
        ),
        run_dir=tmp_path / "code",
    )
    summary = by_hand.fit()
    assert summary["steps"] == 12
    for a, b in zip(
        jax.tree.leaves(from_config.state["params"]),
        jax.tree.leaves(by_hand.state["params"]),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Without loggers it still writes metrics.jsonl and summary.json.
    assert [r["step"] for r in records(tmp_path / "code") if "val/loss" in r] == [6, 12]
    assert (tmp_path / "code" / "summary.json").is_file()


def test_early_stopping_in_max_mode_keeps_the_best_and_tests_it(tmp_path):
    cfg = config(
        "task._target_=fault_tasks.ScriptedMonitorTask",
        "trainer.max_steps=40",
        "trainer.eval_every=4",
        "trainer.log_every=4",
        "trainer.checkpoint_every=4",
        "trainer.early_stopping_patience=3",
        "optim.lr=0.01",
    )
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    summary = build_trainer(cfg, tmp_path).fit()
    # val/acc per evaluation: 0.1, 0.5 (best, step 8), 0.4, 0.3, 0.2 -> three without
    # improvement: stop at the fifth evaluation (step 20), not at max_steps.
    assert summary["best"] == {"val/acc": 0.5, "step": 8}
    assert summary["stopped_early"] and summary["steps"] == 20
    # the newest two (16, 20) and the best (8), which orbax ranks by its saved val/acc
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [8, 16, 20]
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=2, monitor="val/acc")
    assert checkpointer.latest_step("best") == 8
    checkpointer.close()
    # The test metrics are those of the best checkpoint, not of the final parameters.
    _, task, best_model = load_run(tmp_path, "best")
    _, _, last_model = load_run(tmp_path, "last")
    best_test = task.evaluate(best_model, "test")["mse"]
    assert summary["test"]["test/mse"] == pytest.approx(best_test, rel=1e-6)
    assert task.evaluate(last_model, "test")["mse"] != pytest.approx(best_test, rel=1e-6)


def test_logged_lr_follows_the_schedule_and_keep_checkpoints_holds(tmp_path):
    cfg = config(
        "optim.schedule.name=warmup_cosine",
        "optim.schedule.warmup_steps=3",
        "optim.schedule.end_lr_fraction=0.1",
        "trainer.max_steps=12",
        "trainer.eval_every=6",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        "trainer.keep_checkpoints=2",
    )
    build_trainer(cfg, tmp_path).fit()
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.optim.lr, 3, 12, cfg.optim.lr * 0.1)
    logged = {r["step"]: r["train/lr"] for r in records(tmp_path) if "train/lr" in r}
    assert sorted(logged) == list(range(1, 13))
    for step, lr in logged.items():
        assert lr == pytest.approx(float(schedule(step)), rel=1e-6)
    assert logged[3] == pytest.approx(cfg.optim.lr) and logged[12] == pytest.approx(
        cfg.optim.lr * 0.1
    )
    # the newest two; the best (an evaluation at 6 or 12) is one of them or kept beside
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert kept[-2:] == [10, 12] and set(kept) <= {6, 10, 12}


def test_gradient_clipping_bounds_the_update():
    cfg = config("optim=sgd", "optim.lr=1.0", "optim.optimizer.momentum=null")
    cfg.optim.clip_grad_norm = 0.5
    params = {"w": jnp.zeros(4)}
    grads = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}  # norm 50
    optimizer = make_optimizer(
        hydra.utils.instantiate(cfg.optim.optimizer), make_schedule(cfg.optim), 0.5
    )
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.3, -0.4, 0.0, 0.0], rtol=1e-6)
    assert float(make_schedule(cfg.optim)(0)) == 1.0


def _write_corpus(path):
    rng = np.random.default_rng(0)
    path.write_text("".join(rng.choice(list("abcdefgh \n"), 4000)))
    return path


def test_language_model_resumes_mid_epoch_with_its_carried_state(tmp_path, caplog):
    corpus = _write_corpus(tmp_path / "corpus.txt")
    lm = ["task=char_lm", f"task.path={corpus}", "task.seq_len=16", "task.eval_seq_len=64"]
    common = [
        "trainer.batch_size=4",
        "trainer.eval_every=10",
        "trainer.log_every=5",
        "trainer.checkpoint_every=10",
        "trainer.evaluate_test=false",
    ]
    # About 56 steps an epoch (3600 training characters / (4 streams x 16)): step 20 is
    # mid-epoch, with a carried state that is not the initial one.
    reference = tmp_path / "reference"
    build_trainer(config(*common, "trainer.max_steps=30", task=lm), reference).fit()
    resumed = tmp_path / "resumed"
    build_trainer(config(*common, "trainer.max_steps=20", task=lm), resumed).fit()
    state, _ = Checkpointer(resumed / "checkpoints", keep=2).restore(
        "last",
        build_trainer(config(*common, "trainer.max_steps=30", task=lm), tmp_path / "x").state,
    )
    assert any(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(state["carry"]))
    with caplog.at_level(logging.INFO, logger="lstm_jax.train.trainer"):
        build_trainer(
            config(*common, "trainer.max_steps=30", "trainer.resume=true", task=lm), resumed
        ).fit()
    assert "Resuming from step 20" in caplog.text
    ref_curve = [r for r in records(reference) if "train/loss" in r or "val/loss" in r]
    res_curve = [r for r in records(resumed) if "train/loss" in r or "val/loss" in r]

    def values(rows):
        return [(r["step"], r.get("train/loss"), r.get("val/loss")) for r in rows]

    assert values(res_curve) == values(ref_curve)
    a = Checkpointer(reference / "checkpoints", keep=2)
    b = Checkpointer(resumed / "checkpoints", keep=2)
    template = build_trainer(config(*common, "trainer.max_steps=30", task=lm), tmp_path / "y").state
    state_a, state_b = a.restore("last", template)[0], b.restore("last", template)[0]
    for key in ("params", "opt_state", "carry"):
        for x, y in zip(jax.tree.leaves(state_a[key]), jax.tree.leaves(state_b[key]), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _dropout_modes(model) -> list[bool]:
    from flax import nnx

    return [m.deterministic for _, m in model.iter_modules() if isinstance(m, nnx.Dropout)]


def test_trainer_owns_the_mode_and_hands_loss_the_step_key(tmp_path, monkeypatch):
    """Tasks never switch modes: the trainer evaluates an eval-mode model and trains a
    train-mode one, and hands `loss` the key step_key(seed, k) for train_batch(k)."""
    from lstm_jax.tasks.base import step_key

    cfg = config(
        "trainer.max_steps=3",
        "trainer.eval_every=3",
        "trainer.log_every=3",
        "model.num_layers=2",
        "model.dropout=0.5",
        "seed=5",
    )
    trainer = build_trainer(cfg, tmp_path)
    task = trainer.task
    eval_modes, train_modes, keys = [], [], []
    evaluate, loss = task.evaluate, task.loss

    def spy_evaluate(model, split):
        eval_modes.append(_dropout_modes(model))
        return evaluate(model, split)

    def spy_loss(model, batch, carry=None, **kw):
        train_modes.append(_dropout_modes(model))
        jax.debug.callback(lambda k: keys.append(np.asarray(k)), jax.random.key_data(kw["key"]))
        return loss(model, batch, carry, **kw)

    monkeypatch.setattr(task, "evaluate", spy_evaluate)
    monkeypatch.setattr(task, "loss", spy_loss)
    trainer._train_step = jax.jit(trainer._make_train_step())  # traced with the spy
    trainer.fit()
    assert eval_modes and all(m == [True] for m in eval_modes)  # one Dropout, eval mode
    assert train_modes and all(m == [False] for m in train_modes)
    want = [np.asarray(jax.random.key_data(step_key(5, k))) for k in range(3)]
    assert len(keys) == 3
    for got, ref in zip(keys, want, strict=True):
        np.testing.assert_array_equal(got, ref)
