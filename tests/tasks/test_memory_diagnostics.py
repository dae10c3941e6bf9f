"""The diagnostics that tell storing from reading out (issue 27): the memory layout each
memory task reports, the recall-only gradient and the probe of the stored items, and the
trainer logging them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from omegaconf import OmegaConf

from lstm_jax.loggers.jsonl import read_metrics
from lstm_jax.tasks.synthetic import AddingTask, CopyTask, SelectiveCopyTask, VariableCopyTask
from lstm_jax.train.trainer import Trainer, TrainerConfig

C = 8  # categories of the token tasks


def model_config(cell="lstm", hidden_size=32):
    target = {"lstm": "lstm_jax.nn.LSTM", "rnn": "lstm_jax.nn.SimpleRNN"}[cell]
    return OmegaConf.create({"_target_": target, "cell": cell, "hidden_size": hidden_size})


def small(cls, **kwargs):
    return cls(batch_size=8, probe_size=400, eval_batch_size=200, **kwargs)


@pytest.mark.parametrize(
    "task",
    [
        small(CopyTask, seq_len=7),
        small(VariableCopyTask, seq_len=9),
        small(SelectiveCopyTask, seq_len=20, num_tokens=4),
    ],
    ids=["copy", "variable_copy", "selective_copy"],
)
def test_the_layout_points_at_the_generated_symbols_and_the_delimiter(task):
    x, y = task._generate(np.random.default_rng(0), 64)
    layout = task._memory_layout(x)
    rows = np.arange(len(x))[:, None]
    np.testing.assert_array_equal(x[rows, layout.stored_steps], layout.stored + 1)
    # The stored symbols are what the recall asks for, in order.
    np.testing.assert_array_equal(task._recall(y[..., None], y)[1], layout.stored + 1)
    # Nothing after the recall step is still to be stored; the recall step is the last one
    # before the first recalled output.
    assert np.all(layout.stored_steps.max(axis=1) <= layout.recall_step)
    first_output = np.argmax(y != 0, axis=1) if y.shape == x.shape else x.shape[1] - y.shape[1]
    np.testing.assert_array_equal(layout.recall_step + 1, first_output)


def test_the_adding_layout_is_the_two_marked_values_and_the_last_step():
    task = small(AddingTask, seq_len=12)
    x, y = task._generate(np.random.default_rng(0), 64)
    layout = task._memory_layout(x)
    rows = np.arange(len(x))[:, None]
    assert np.all(x[rows, layout.stored_steps, 1] == 1.0)
    assert np.all(layout.stored_steps[:, 0] < layout.stored_steps[:, 1])
    np.testing.assert_allclose(layout.stored.sum(axis=1), y, rtol=1e-6)
    assert np.all(layout.recall_step == 11)


def zero_recurrence(model):
    model.core.layer_0.w_hh.value = jnp.zeros_like(model.core.layer_0.w_hh.value)
    return model


@pytest.mark.slow  # 22 s of training: .ci/run's slow step
def test_recall_gradient_is_the_recalls_alone_not_the_blank_outputs():
    """With no recurrence in h (w_hh = 0, tanh-RNN: h_t = tanh(W x_t + b)), nothing before
    the recalled outputs reaches the recall, so its gradient there is exactly 0, while the
    training loss's dL/dh_t, which scores the blank outputs, is not."""
    task = small(CopyTask, seq_len=7)
    model = zero_recurrence(task.make_model(model_config("rnn"), rngs=nnx.Rngs(0)))
    out = task.memory_diagnostics(model)
    k, length = task.num_symbols, task.seq_len + 2 * task.num_symbols
    profile = out["memory/recall_dh_t"]
    assert profile.shape == (length,)
    assert np.all(profile[: length - k] == 0.0) and np.all(profile[-k:] > 0.0)
    assert out["memory/recall_grad_ratio"] == 0.0
    x, y = task._probe_set(4)
    batch = {"x": x[:50], "y": y[:50]}
    shape = (50, length, model.core.output_width)
    dh = jax.grad(lambda p: task.loss(model, batch, hidden_perturbation=p)[0])(jnp.zeros(shape))
    assert float(jnp.linalg.norm(dh[:, 0])) > 0.0  # the blank loss's own gradient
    # ... and the state at the delimiter holds nothing of the symbols: the probe is at chance.
    assert out["memory/probe_acc"] < 0.2


def test_a_cell_that_keeps_its_state_stores_symbols_the_probe_reads():
    """An LSTM at its initialisation already carries the last symbols a few steps (its cell
    state integrates them), and the recall's gradient reaches them: both well above the
    memoryless model's."""
    task = small(CopyTask, seq_len=3)
    out = task.memory_diagnostics(task.make_model(model_config("lstm"), rngs=nnx.Rngs(0)))
    assert out["memory/probe_acc"] > 0.25
    assert out["memory/recall_grad_ratio"] > 0.0


def test_adding_reports_r2_of_the_marked_values_and_of_their_sum():
    task = small(AddingTask, seq_len=10)
    out = task.memory_diagnostics(task.make_model(model_config("lstm"), rngs=nnx.Rngs(0)))
    assert set(out) == {
        "memory/probe_r2",
        "memory/probe_r2_sum",
        "memory/recall_dh_t",
        "memory/recall_grad_ratio",
    }
    assert 0.0 < out["memory/probe_r2"] <= 1.0 and 0.0 < out["memory/probe_r2_sum"] <= 1.0
    assert out["memory/recall_grad_ratio"] > 0.0


def test_the_trainer_logs_the_memory_diagnostics_at_each_diagnostics_step(tmp_path):
    task = small(CopyTask, seq_len=5)
    model = task.make_model(model_config("lstm", hidden_size=16), rngs=nnx.Rngs(0))
    config = TrainerConfig(max_steps=4, log_every=2, eval_every=4, progress_bar=False)
    Trainer(
        task, model, optax.adam(1e-3), config=config, run_dir=tmp_path, diagnostics_every=2
    ).fit()
    logged = [r for r in read_metrics(tmp_path) if "memory/probe_acc" in r]
    assert [r["step"] for r in logged] == [2, 4]
    for record in logged:
        assert 0.0 <= record["memory/probe_acc"] <= 1.0
        assert record["memory/recall_grad_ratio"] >= 0.0
        assert len(record["memory/recall_dh_t"]) == task.seq_len + 2 * task.num_symbols
