"""The diagnostics step: gradient norms against autodiff / optax, dL/dh_t against an
autodiff reference and finite differences, gate statistics against numpy on the gates the
real core returns, padding excluded."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lstm_jax.loggers import JsonlLogger, read_metrics
from lstm_jax.nn import GRU, LSTM
from lstm_jax.tasks.base import Task
from lstm_jax.train.diagnostics import (
    grad_norms,
    lower_upper_median,
    make_diagnostics_step,
    param_paths,
    to_host,
)

B, T, D, H = 4, 12, 3, 5


class ToyModel(nnx.Module):
    def __init__(self, cell, num_layers, bidirectional, rngs):
        cls = {"lstm": LSTM, "gru": GRU}[cell]
        self.core = cls(D, H, num_layers=num_layers, bidirectional=bidirectional, rngs=rngs)
        self.head = nnx.Linear(H * (2 if bidirectional else 1), 1, rngs=rngs)


class LastStepRegression(Task):
    """Predict the sum of the first input channel from the core's output at the last valid step."""

    def __init__(
        self, *, cell="lstm", num_layers=2, bidirectional=False, lengths=None, batch_size=B, seed=0
    ):
        super().__init__(batch_size=batch_size, seed=seed)
        self.cell, self.num_layers, self.bidirectional = cell, num_layers, bidirectional
        self.lengths = lengths

    def make_model(self, model_config=None, *, rngs):
        return ToyModel(self.cell, self.num_layers, self.bidirectional, rngs)

    def train_batch(self, step):
        rng = np.random.default_rng((self.seed, step))
        x = rng.normal(size=(self.batch_size, T, D)).astype(np.float32) * 2.0
        batch = {"x": x}
        if self.lengths is not None:
            lengths = np.asarray(self.lengths, np.int32)
            x *= (np.arange(T)[None, :] < lengths[:, None])[..., None]
            batch["seq_lengths"] = lengths
        batch["y"] = x[..., 0].sum(1).astype(np.float32)
        return batch

    def loss(self, model, batch, carry=None, *, return_gates=False, hidden_perturbation=None):
        lengths = batch.get("seq_lengths")
        out = model.core(
            batch["x"], lengths, return_gates=return_gates, hidden_perturbation=hidden_perturbation
        )
        y = out[0]
        last = (
            (jnp.asarray(lengths) - 1)
            if lengths is not None
            else jnp.full((y.shape[0],), y.shape[1] - 1)
        )
        h_last = jnp.take_along_axis(y, last[:, None, None], axis=1)[:, 0]
        pred = model.head(h_last)[:, 0]
        loss = jnp.mean((pred - batch["y"]) ** 2)
        return loss, {"metrics": {}, "carry": carry, "gates": out[2] if return_gates else None}

    def evaluate(self, model, split):
        return {}


def setup(task):
    model = task.make_model(rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = task.train_batch(0)
    return graphdef, params, rest, batch


def reference(task, graphdef, rest):
    """Jitted plain-autodiff references: (grads of params, dL/dp at p, gates), and the
    loss at a stack of perturbations (for finite differences)."""

    def loss(params, batch, p):
        model = nnx.merge(graphdef, params, rest)
        return task.loss(model, batch, None, hidden_perturbation=p)[0]

    def grads_and_gates(params, batch, p):
        g_params, g_p = jax.grad(loss, argnums=(0, 2))(params, batch, p)
        model = nnx.merge(graphdef, params, rest)
        gates = task.loss(model, batch, None, return_gates=True)[1]["gates"]
        return g_params, g_p, gates

    losses = jax.jit(jax.vmap(loss, in_axes=(None, None, 0)))
    return jax.jit(grads_and_gates), losses


def valid_mask(batch):
    lengths = batch.get("seq_lengths")
    return (
        np.ones((B, T), bool)
        if lengths is None
        else np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    )


LENGTHS = [10, 9, 5, 9]  # t = 10, 11 are padding in every sequence


@pytest.fixture(scope="module")
def lstm_case():
    task = LastStepRegression(num_layers=2, lengths=LENGTHS)
    graphdef, params, rest, batch = setup(task)
    diag = make_diagnostics_step(task, graphdef)
    out = to_host(diag(params, rest, batch, None))
    grads_and_gates, losses = reference(task, graphdef, rest)
    g_params, g_p, gates = jax.device_get(grads_and_gates(params, batch, jnp.zeros((B, T, H))))
    return {
        "params": params,
        "rest": rest,
        "batch": batch,
        "diag": diag,
        "out": out,
        "g_params": g_params,
        "g_p": np.asarray(g_p),
        "gates": gates,
        "losses": losses,
    }


def test_grad_norms_match_autodiff_and_optax(lstm_case):
    out, grads = lstm_case["out"], lstm_case["g_params"]
    np.testing.assert_allclose(out["grad_norm/global"], float(optax.global_norm(grads)), rtol=1e-4)
    leaves = param_paths(grads)
    names = {"/".join(parts) for parts, _ in leaves}
    assert {"core/layer_0/w_hh", "core/layer_1/w_ih", "head/kernel"} <= names
    for parts, g in leaves:
        np.testing.assert_allclose(
            out["grad_norm/" + "/".join(parts)], np.linalg.norm(np.asarray(g).ravel()), rtol=1e-4
        )
    layer0 = [np.asarray(g).ravel() for parts, g in leaves if parts[:2] == ("core", "layer_0")]
    np.testing.assert_allclose(
        out["grad_norm/core/layer_0"], np.linalg.norm(np.concatenate(layer0)), rtol=1e-4
    )
    np.testing.assert_allclose(
        out["grad_norm/core"] ** 2 + out["grad_norm/head"] ** 2,
        out["grad_norm/global"] ** 2,
        rtol=1e-4,
    )


def test_dh_t_matches_autodiff_and_finite_differences(lstm_case):
    out, g = lstm_case["out"], lstm_case["g_p"]
    dh_t = out["grad_norm/dh_t"]
    assert dh_t.shape == (T,)
    np.testing.assert_allclose(dh_t, np.sqrt((g**2).sum(axis=(0, 2))), rtol=1e-4, atol=1e-7)
    # Steps past every sequence's length get no gradient; the last valid steps do.
    assert np.all(dh_t[max(LENGTHS) :] == 0)
    assert dh_t[max(LENGTHS) - 1] > 0 and dh_t[0] > 0
    # Finite differences along the gradient direction of a few time steps:
    # d/de L(p + e u_t) = ||dL/dh_t|| for u_t = g_t / ||g_t||.
    steps, eps = (0, 3, 6, 9), 1e-2
    us = np.zeros((len(steps), B, T, H), np.float32)
    for i, t in enumerate(steps):
        us[i, :, t] = g[:, t] / np.linalg.norm(g[:, t])
    perts = jnp.asarray(np.concatenate([eps * us, -eps * us]))
    values = np.asarray(
        lstm_case["losses"](lstm_case["params"], lstm_case["batch"], perts), np.float64
    )
    fd = (values[: len(steps)] - values[len(steps) :]) / (2 * eps)
    np.testing.assert_allclose(fd, dh_t[list(steps)], rtol=3e-2)


def test_gate_statistics_match_numpy_on_valid_positions(lstm_case):
    out, gates = lstm_case["out"], lstm_case["gates"]
    mask = valid_mask(lstm_case["batch"])
    assert set(gates) == {"layer_0", "layer_1"}
    n_valid = mask.sum() * H
    for layer, layer_gates in gates.items():
        assert set(layer_gates) == {"input", "forget", "cell", "output"}
        for name, v in layer_gates.items():
            valid = np.asarray(v)[mask]  # (n, H): padded positions dropped
            hist = out[f"gates/{layer}/{name}"]
            lo = -1.0 if name == "cell" else 0.0
            np.testing.assert_allclose(hist["edges"], np.linspace(lo, 1.0, 21), atol=1e-6)
            expected, _ = np.histogram(valid, bins=hist["edges"])
            assert hist["counts"].sum() == n_valid
            np.testing.assert_array_equal(hist["counts"], expected)
            if name == "cell":
                sat = np.mean(np.abs(valid) > 0.95)
            else:
                sat = np.mean((valid < 0.05) | (valid > 0.95))
            np.testing.assert_allclose(out[f"gates/{layer}/{name}_saturation"], sat, atol=1e-6)
        f = np.asarray(layer_gates["forget"])
        per_t = out[f"gates/{layer}/forget_mean_per_t"]
        assert per_t.shape == (T,)
        for t in range(T):
            rows = mask[:, t]
            if rows.any():
                np.testing.assert_allclose(per_t[t], f[rows, t].mean(), rtol=1e-5)
            else:
                assert np.isnan(per_t[t])
        tau = -1.0 / np.log(f[mask].astype(np.float64))
        np.testing.assert_allclose(
            out[f"gates/{layer}/forget_tau_median"], np.median(tau), rtol=1e-5
        )
        tau_hist = out[f"gates/{layer}/forget_tau"]
        assert tau_hist["counts"].sum() == n_valid
        np.testing.assert_allclose(tau_hist["edges"][[0, -1]], [0.1, 1e4], rtol=1e-5)
        expected, _ = np.histogram(np.clip(tau, 0.1, 1e4 * 0.999), bins=tau_hist["edges"])
        np.testing.assert_array_equal(tau_hist["counts"], expected)


def test_padded_inputs_do_not_change_any_statistic(lstm_case):
    """Garbage at padded positions changes the gates computed there, but no diagnostic."""
    batch = dict(lstm_case["batch"])
    x = batch["x"].copy()
    pad = ~valid_mask(batch)
    x[pad] = np.random.default_rng(1).normal(size=(pad.sum(), D)) * 50.0
    batch["x"] = x
    out2 = to_host(lstm_case["diag"](lstm_case["params"], lstm_case["rest"], batch, None))
    out = lstm_case["out"]
    assert out2.keys() == out.keys()
    for key, value in out.items():
        if isinstance(value, dict):
            np.testing.assert_array_equal(out2[key]["counts"], value["counts"], err_msg=key)
        else:
            np.testing.assert_allclose(out2[key], value, rtol=1e-5, atol=1e-8, err_msg=key)


def test_gru_bidirectional_and_logging_round_trip(tmp_path):
    task = LastStepRegression(cell="gru", num_layers=1, bidirectional=True)
    graphdef, params, rest, batch = setup(task)
    out = to_host(make_diagnostics_step(task, graphdef)(params, rest, batch, None))
    gates = jax.jit(
        lambda params: task.loss(nnx.merge(graphdef, params, rest), batch, return_gates=True)[1][
            "gates"
        ]
    )(params)
    gates = jax.device_get(gates)
    assert set(gates["layer_0"]) == {"reset", "update", "candidate"}
    assert out["grad_norm/dh_t"].shape == (T,)
    cand = gates["layer_0"]["candidate"]
    assert cand.shape == (B, T, 2 * H)
    np.testing.assert_allclose(
        out["gates/layer_0/candidate_saturation"], np.mean(np.abs(cand) > 0.95), atol=1e-6
    )
    assert out["gates/layer_0/candidate"]["edges"][0] == -1.0
    assert "gates/layer_0/forget_tau" not in out
    # The GRU keeps z of its state each step (h = (1 - z) n + z h_prev): its memory time
    # constants are those of the update gate, over both directions' units.
    z = np.asarray(gates["layer_0"]["update"])[valid_mask(batch)].astype(np.float64)
    np.testing.assert_allclose(
        out["gates/layer_0/update_tau_median"], np.median(-1.0 / np.log(z)), rtol=1e-5
    )
    assert out["gates/layer_0/update_tau"]["counts"].sum() == z.size
    assert "gates/layer_0/reset_tau" not in out
    assert isinstance(out["grad_norm/global"], float)

    logger = JsonlLogger(tmp_path)
    logger.log(out, step=7)
    logger.finish()
    (record,) = read_metrics(tmp_path)
    assert record["step"] == 7
    assert len(record["grad_norm/dh_t"]) == T
    assert set(record["gates/layer_0/update"]) >= {"mean", "std", "min", "max", "p50"}
    json.dumps(record, allow_nan=False)


def test_grad_norms_on_plain_dict_and_task_without_gates():
    grads = {
        "a": {"layer_0": {"w": jnp.ones((2, 2))}, "layer_1": {"w": jnp.ones(3)}},
        "b": jnp.full((1,), 2.0),
    }
    out = grad_norms(grads)
    np.testing.assert_allclose(out["grad_norm/global"], np.sqrt(4 + 3 + 4), rtol=1e-6)
    np.testing.assert_allclose(out["grad_norm/a"], np.sqrt(7), rtol=1e-6)
    np.testing.assert_allclose(out["grad_norm/a/layer_0"], 2.0, rtol=1e-6)
    assert "grad_norm/a/layer_0/w" in out and "grad_norm/b" in out

    class NoGates(LastStepRegression):
        def loss(self, model, batch, carry=None, **kw):
            loss, aux = super().loss(model, batch, carry)
            return loss, aux

    task = NoGates(num_layers=1)
    graphdef, params, rest, batch = setup(task)
    with pytest.raises(ValueError, match="return_gates"):
        make_diagnostics_step(task, graphdef)(params, rest, batch, None)


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 4097])
def test_median_without_sort_is_exact(n):
    rng = np.random.default_rng(n)
    x = rng.uniform(0.0, 1.0, size=n).astype(np.float32)
    x[: n // 3] = x[0]  # ties
    w = (rng.uniform(size=n) < 0.6).astype(np.int32)
    w[-1] = 1
    lo, hi = lower_upper_median(jnp.asarray(x), jnp.asarray(w))
    v = np.sort(x[w > 0])
    assert float(lo) == v[(len(v) - 1) // 2] and float(hi) == v[len(v) // 2]
    assert np.isnan(lower_upper_median(jnp.asarray(x), jnp.zeros(n, jnp.int32))[0])
