"""The LSTM's backend selection as it runs on a CUDA GPU, tested on CPU (tests/fake_cuda.py:
the platform check says CUDA, and the stand-in for cuDNN's kernel fails where the real one
does): what cuDNN cannot take makes backend="auto" run the scan kernel and an explicit
backend="cudnn" refuse in one line; and the record of which kernel each step kind runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_cuda import install
from flax import nnx
from jax.experimental import rnn

from lstm_jax.nn import GRU, LSTM, cudnn
from lstm_jax.nn.backend_record import step_backends

B, T, D, H = 3, 6, 5, 4
X = jax.random.normal(jax.random.PRNGKey(0), (B, T, D))
LENGTHS = jnp.array([6, 2, 4], jnp.int32)

# Every name jax_default_matmul_precision accepts, plus dot-algorithm names.
ACCEPTED = [None, "highest", "float32", "high", "tensorfloat32"]
BLOCKED = ["bfloat16", "default", "F32_F32_F32", "BF16_BF16_F32", "TF32_TF32_F32"]
BLOCKED_XLA_CPU_RUNS = BLOCKED[:4]  # XLA:CPU has no TF32 dot


def _first_in_default_suite(values):
    """The first value runs in the default suite, the others (a compile each, about 9 s on 2
    cores) in .ci/run's slow step: the default suite stays under its 10 minutes."""
    return [values[0]] + [pytest.param(v, marks=pytest.mark.slow) for v in values[1:]]


@pytest.fixture
def fake_cuda(monkeypatch):
    install(monkeypatch)


def _lstm(**kw):
    return LSTM(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0), **kw)


def _scan_result(**kw):
    return _lstm(backend="scan", **kw)(X, LENGTHS)[0]


@pytest.mark.parametrize("precision", _first_in_default_suite(BLOCKED_XLA_CPU_RUNS))
def test_a_precision_cudnn_cannot_take_runs_auto_on_the_scan_kernel(fake_cuda, precision):
    layer = _lstm()
    with jax.default_matmul_precision(precision):
        assert not layer.uses_cudnn()
        y = jax.jit(lambda x: layer(x, LENGTHS)[0])(X)  # the real kernel would raise here
        expected = _scan_result()
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("precision", _first_in_default_suite(ACCEPTED))
def test_precisions_cudnn_takes_run_on_cudnn(fake_cuda, precision):
    with jax.default_matmul_precision(precision):
        layer = _lstm(backend="cudnn")
        assert layer.uses_cudnn()
        y = layer(X, LENGTHS)[0]
    np.testing.assert_allclose(y, _scan_result(), atol=1e-5)


def test_explicit_cudnn_refuses_a_precision_it_cannot_take_in_one_line(fake_cuda):
    with jax.default_matmul_precision("bfloat16"):
        with pytest.raises(ValueError, match=r"^backend='cudnn' cannot be used: ") as err:
            _lstm(backend="cudnn")
    assert "jax_default_matmul_precision is 'bfloat16'" in str(err.value)
    assert "\n" not in str(err.value)
    layer = _lstm(backend="cudnn")  # built first, then called under the precision
    with jax.default_matmul_precision("default"):
        with pytest.raises(ValueError, match="jax_default_matmul_precision is 'default'"):
            layer(X, LENGTHS)


def test_the_blocked_precisions_include_every_one_jax_refuses():
    """JAX's own check (the first step of the cuDNN call) raises for these: each is a
    blocker, and each precision accepted here passes it."""
    check = rnn._lstm_cudnn_allow_tf32
    for precision in ACCEPTED + BLOCKED:
        with jax.default_matmul_precision(precision):
            try:
                check(None)
                jax_refuses = False
            except (NotImplementedError, ValueError):
                jax_refuses = True
            blocked = cudnn.precision_blocker() is not None
        assert blocked or not jax_refuses, precision
        assert blocked == (precision not in ACCEPTED), precision


def test_bfloat16_dtype_runs_auto_on_scan_and_is_refused_by_explicit_cudnn(fake_cuda):
    assert not _lstm(dtype=jnp.bfloat16).uses_cudnn()
    with pytest.raises(ValueError, match="cannot be used: the compute dtype is bfloat16"):
        _lstm(backend="cudnn", dtype="bfloat16")


def test_stacked_dropout_trains_on_scan_evaluates_on_cudnn_and_explicit_cudnn_refuses(fake_cuda):
    layer = _lstm(dropout=0.3)
    layer.train()
    assert not layer.uses_cudnn()
    layer.eval()
    assert layer.uses_cudnn()
    with pytest.raises(ValueError, match="cannot be used: dropout between layers"):
        _lstm(backend="cudnn", dropout=0.3)


def test_vmap_runs_auto_on_the_scan_kernel_and_explicit_cudnn_refuses(fake_cuda):
    xs = jnp.stack([X, 2 * X])
    layer = _lstm()
    assert layer.uses_cudnn()  # outside vmap
    ys = jax.vmap(lambda x: layer(x, LENGTHS)[0])(xs)  # the real kernel has no batching rule
    np.testing.assert_allclose(ys[1], _lstm(backend="scan")(2 * X, LENGTHS)[0], atol=1e-6)
    explicit = _lstm(backend="cudnn")
    with pytest.raises(ValueError, match="cannot be used: the call runs under jax.vmap"):
        jax.vmap(lambda x: explicit(x, LENGTHS)[0])(xs)


def test_record_names_the_kernel_of_each_step_kind_and_why(fake_cuda):
    model = _lstm(dropout=0.3)
    eval_model = _lstm(dropout=0.3)
    eval_model.eval()
    with pytest.warns(UserWarning, match="backend='auto' trains on the scan kernel") as caught:
        record = step_backends(model, eval_model, diagnostics=True)
    assert len(caught) == 1
    assert record == {
        "train": "scan",
        "eval": "cudnn",
        "diagnostics": "scan",
        "why_scan": {
            "train": "dropout between layers is active (cuDNN draws its own masks)",
            "diagnostics": "the gates were requested; dropout between layers is active "
            "(cuDNN draws its own masks)",
        },
    }


def test_record_without_a_gpu_or_with_another_cell_says_so_without_warning(recwarn):
    lstm, gru = _lstm(), GRU(D, H, rngs=nnx.Rngs(0))
    record = step_backends(lstm, lstm, diagnostics=False)
    assert record == {
        "train": "scan",
        "eval": "scan",
        "why_scan": {
            "train": "no CUDA GPU (JAX's default backend is 'cpu')",
            "eval": "no CUDA GPU (JAX's default backend is 'cpu')",
        },
    }
    assert step_backends(gru, gru, diagnostics=False)["why_scan"]["train"] == (
        "the gru cell has no cuDNN kernel"
    )
    assert not recwarn.list
