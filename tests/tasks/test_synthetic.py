"""Synthetic memory tasks: data layout, determinism, baselines, loss/eval of the models."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax.data.synthetic import adding_problem
from lstm_jax.models.core import model_config as configs_model
from lstm_jax.tasks.synthetic import AddingTask, CopyTask, SelectiveCopyTask, VariableCopyTask

MODEL = {"hidden_size": 8, "num_layers": 1, "bidirectional": False, "dropout": 0.0}


def model_config(cell="lstm", **kw):
    return configs_model(cell, **{**MODEL, **kw})


# ---- data ---------------------------------------------------------------------------


def test_variable_copy_scores_the_steps_after_each_delimiter():
    task = VariableCopyTask(seq_len=20, batch_size=16)
    b = task.train_batch(0)
    y = jnp.asarray(b["y"])
    perfect = 50.0 * jax.nn.one_hot(y, task.out_features)
    _, aux = task._forward_loss(perfect, y)
    assert float(aux["acc"]) == 1.0
    # Right everywhere except one symbol of each sequence's copy: acc 9/10. The copy task's
    # rule (the last 10 steps) would score these sequences on the wrong steps.
    first = np.argmax(b["y"] != 0, axis=1)
    wrong = b["y"].copy()
    wrong[np.arange(16), first] = 0
    logits = 50.0 * jax.nn.one_hot(jnp.asarray(wrong), task.out_features)
    _, aux = task._forward_loss(logits, y)
    assert float(aux["acc"]) == pytest.approx(0.9)
    sums = task._eval_sums(logits, y, jnp.ones(16))
    m = task._finish_eval({k: float(v) for k, v in sums.items()}, 16)
    assert m["acc"] == pytest.approx(0.9) and m["seq_acc"] == 0.0 and m["solved"] == 0.0
    assert task.baseline_loss == pytest.approx(10 * math.log(8) / 40)


def test_variable_copy_memoryless_baseline_predictor_scores_the_baseline():
    """Blank everywhere except uniform over the 8 symbols on the 10 steps after the
    delimiter (which a memoryless model sees): 10 ln 8 / (T + 20), as for copy."""
    task = VariableCopyTask(seq_len=30, batch_size=16)
    b = task.train_batch(0)
    logits = np.full(b["y"].shape + (9,), -1e9, np.float32)
    logits[..., 0] = 0.0
    due = b["y"] != 0
    logits[due, 0] = -1e9
    logits[due, 1:] = 0.0
    loss, _ = task._forward_loss(jnp.asarray(logits), jnp.asarray(b["y"]))
    assert float(loss) == pytest.approx(task.baseline_loss, rel=1e-5)


def test_adding_solved_follows_its_threshold():
    task = AddingTask(seq_len=10, batch_size=8, solved_mse=0.01)
    y = jnp.asarray(task.train_batch(0)["y"])
    for offset, solved in ((0.05, 1.0), (0.2, 0.0)):  # mse 0.0025 and 0.04
        sums = task._eval_sums((y + offset)[:, None], y, jnp.ones(8))
        assert task._finish_eval({k: float(v) for k, v in sums.items()}, 8)["solved"] == solved


@pytest.mark.parametrize("cls", [AddingTask, CopyTask, VariableCopyTask, SelectiveCopyTask])
def test_train_batch_is_a_pure_function_of_seed_and_step(cls):
    a = cls(seq_len=12, batch_size=4, seed=3)
    b = cls(seq_len=12, batch_size=4, seed=3)
    for k in a.train_batch(5):
        np.testing.assert_array_equal(a.train_batch(5)[k], b.train_batch(5)[k])
    assert not np.array_equal(a.train_batch(5)["x"], a.train_batch(6)["x"])
    assert not np.array_equal(
        a.train_batch(5)["x"], cls(seq_len=12, batch_size=4, seed=4).train_batch(5)["x"]
    )


def test_eval_sets_fixed_distinct_and_independent_of_training_seed():
    a = AddingTask(seq_len=10, batch_size=4, seed=0, val_size=50, test_size=70)
    b = AddingTask(seq_len=10, batch_size=4, seed=9, val_size=50, test_size=70)
    va, ta = a._split_arrays("val"), a._split_arrays("test")
    assert va[0].shape == (50, 10, 2) and ta[0].shape == (70, 10, 2)
    np.testing.assert_array_equal(va[0], b._split_arrays("val")[0])
    assert not np.array_equal(va[0], ta[0][:50])
    assert not np.array_equal(va[0][:4], a.train_batch(0)["x"])


# ---- baselines ------------------------------------------------------------------------


def test_baselines_match_hand_computation():
    assert CopyTask(seq_len=100, batch_size=2).baseline_loss == pytest.approx(
        10 * math.log(8) / 120
    )
    assert CopyTask(seq_len=500, batch_size=2).baseline_loss == pytest.approx(0.03999, abs=1e-5)
    assert SelectiveCopyTask(seq_len=50, batch_size=2).baseline_loss == pytest.approx(math.log(8))
    # adding: predicting 1 gives Var(U1 + U2) = 1/6
    _, y = adding_problem(np.random.default_rng(0), 200_000, 10)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=3e-3)


def test_copy_memoryless_baseline_predictor_scores_the_baseline():
    """Blank for the first T + 10 steps, uniform over the 8 symbols after: 10 ln 8 / (T + 20)."""
    task = CopyTask(seq_len=30, batch_size=16)
    b = task.train_batch(0)
    logits = np.full(b["y"].shape + (9,), -1e9, np.float32)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:] = 0.0
    loss, _ = task._forward_loss(jnp.asarray(logits), jnp.asarray(b["y"]))
    assert float(loss) == pytest.approx(task.baseline_loss, rel=1e-5)


# ---- perfect predictors -----------------------------------------------------------------


def test_perfect_predictors_have_zero_loss():
    add = AddingTask(seq_len=10, batch_size=8)
    b = add.train_batch(0)
    loss, aux = add._forward_loss(jnp.asarray(b["y"])[:, None], jnp.asarray(b["y"]))
    assert float(loss) == 0.0 and float(aux["mse"]) == 0.0
    for task in (CopyTask(seq_len=10, batch_size=8), SelectiveCopyTask(seq_len=20, batch_size=8)):
        b = task.train_batch(0)
        y = (
            b["y"]
            if isinstance(task, CopyTask)
            else np.concatenate([np.zeros((8, 20), np.int32), b["y"]], axis=1)
        )
        logits = 50.0 * jax.nn.one_hot(y, task.out_features)
        loss, aux = task._forward_loss(logits, jnp.asarray(b["y"]))
        assert float(loss) < 1e-6 and float(aux["acc"]) == 1.0
        sums = task._eval_sums(logits, jnp.asarray(b["y"]), jnp.ones(8))
        m = task._finish_eval({k: float(v) for k, v in sums.items()}, 8)
        assert m["acc"] == 1.0 and m["seq_acc"] == 1.0 and m["solved"] == 1.0 and m["loss"] < 1e-6


# ---- models through the task API ----------------------------------------------------------


@pytest.mark.parametrize(
    "task, cfg, out_shape",
    [
        (
            CopyTask(seq_len=5, batch_size=4, val_size=6, test_size=5, eval_batch_size=4),
            {"cell": "gru"},
            (4, 25, 9),
        ),
        (
            SelectiveCopyTask(seq_len=12, num_tokens=3, batch_size=4, val_size=6, test_size=5),
            {"cell": "rnn", "num_layers": 2},
            (4, 15, 9),
        ),
    ],
)
def test_token_tasks_with_each_cell(task, cfg, out_shape):
    model = task.make_model(model_config(**cfg), rngs=nnx.Rngs(0))
    b = task.train_batch(0)
    out, _ = model(task._inputs(b["x"]))
    assert out.shape == out_shape and out.dtype == jnp.float32
    loss, aux = task.loss(model, b, carry="c")
    assert loss.shape == () and np.isfinite(float(loss))
    assert aux["carry"] == "c" and aux["gates"] is None and set(aux["metrics"]) == {"acc"}
    metrics = task.evaluate(model, "test")
    assert set(metrics) == {"loss", "baseline_loss", "acc", "seq_acc", "solved"}
    assert all(np.isfinite(v) for v in metrics.values())


def test_gates_and_hidden_perturbation_reach_the_core():
    """Bidirectional 2-layer LSTM: the head reads both directions of the top layer; gates and
    the perturbation (B, T, 2H) are forwarded; dL/dp is the per-step gradient profile."""
    task = AddingTask(seq_len=12, batch_size=4)
    mc = model_config(bidirectional=True, num_layers=2)
    model = task.make_model(mc, rngs=nnx.Rngs(0))
    assert model.head.in_features == 2 * mc.hidden_size
    b = task.train_batch(0)
    loss, aux = task.loss(model, b)
    assert aux["gates"] is None and set(aux["metrics"]) == {"mse"}
    p = jnp.zeros((4, 12, 2 * mc.hidden_size))
    loss_p, aux_p = task.loss(model, b, return_gates=True, hidden_perturbation=p)
    assert float(loss_p) == pytest.approx(float(loss), rel=1e-5)
    assert {"layer_0", "layer_1"} <= set(aux_p["gates"])
    assert aux_p["gates"]["layer_1"]["forget"].shape == (4, 12, 2 * mc.hidden_size)
    grad = jax.grad(lambda q: task.loss(model, b, hidden_perturbation=q)[0])(p)
    assert grad.shape == p.shape and float(jnp.abs(grad).sum()) > 0


def test_adding_evaluate_matches_direct_computation():
    task = AddingTask(seq_len=10, batch_size=4, val_size=7, eval_batch_size=3)
    model = task.make_model(model_config(), rngs=nnx.Rngs(1))
    x, y = task._split_arrays("val")
    pred = np.asarray(model(task._inputs(x))[0][:, 0])
    m = task.evaluate(model, "val")
    assert m["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)
    assert m["baseline_mse"] == pytest.approx(float(np.mean((y - 1) ** 2)), rel=1e-5)
    assert m["acc"] == pytest.approx(float(np.mean(np.abs(pred - y) < 0.04)))


def test_a_few_adam_steps_reduce_adding_loss():
    import optax

    task = AddingTask(seq_len=8, batch_size=32)
    model = task.make_model(model_config(hidden_size=16), rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        (loss, _), g = nnx.value_and_grad(lambda m: task.loss(m, batch), has_aux=True)(model)
        opt.update(model, g)
        return loss

    batch = task.train_batch(0)
    first = float(task.loss(model, batch)[0])
    for _ in range(30):
        step(model, opt, batch)
    assert float(task.loss(model, batch)[0]) < 0.5 * first


# ---- configs ----------------------------------------------------------------------------


def compose_train(*overrides):
    import os

    from hydra import compose, initialize_config_dir

    import lstm_jax.cli  # noqa: F401  (registers the config resolvers)

    configs = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
    with initialize_config_dir(config_dir=os.path.abspath(configs), version_base=None):
        return compose("train", overrides=[*overrides, "paths.data_dir=/tmp"])


@pytest.mark.parametrize(
    "experiment, cls, seq_len",
    [
        ("adding_T100", AddingTask, 100),
        ("adding_T400", AddingTask, 400),
        ("copy_T200", CopyTask, 200),
        ("copy_T500_chrono", CopyTask, 500),
        ("variable_copy_T500", VariableCopyTask, 500),
        ("adding_T750", AddingTask, 750),
    ],
)
def test_experiment_presets_compose_and_build_the_task(experiment, cls, seq_len):
    import hydra

    cfg = compose_train(f"experiment={experiment}")
    assert cfg.experiment_name == experiment
    task = hydra.utils.instantiate(cfg.task)
    assert isinstance(task, cls) and task.seq_len == seq_len
    assert task.batch_size == cfg.trainer.batch_size and task.seed == cfg.seed
    if experiment == "copy_T500_chrono":
        assert cfg.model.chrono_max_steps == 750


def test_selective_copy_config_composes():
    import hydra

    task = hydra.utils.instantiate(compose_train("task=selective_copy").task)
    assert isinstance(task, SelectiveCopyTask) and task.train_batch(0)["x"].shape[1] == 110
