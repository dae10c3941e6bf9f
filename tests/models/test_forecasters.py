"""The forecasters' own parts (lstm_jax.models.forecasters); the forecasters trained on
real windows are tested with their task in tests/tasks/test_timeseries.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax.models import DirectForecaster, SegmentForecaster, Seq2SeqForecaster, model_config
from lstm_jax.models.forecasters import RevIN


def test_revin_round_trip():
    revin = RevIN(3)
    revin.weight[...] = jnp.array([2.0, 0.5, 1.0])
    revin.bias[...] = jnp.array([0.1, -1.0, 0.0])
    x = jax.random.normal(jax.random.key(0), (4, 10, 3)) * 5 + 3
    z, stats = revin.normalize(x)
    np.testing.assert_allclose(revin.denormalize(z, stats, [0, 1, 2]), x, atol=1e-4)
    np.testing.assert_allclose(revin.denormalize(z[..., [2]], stats, [2]), x[..., [2]], atol=1e-4)
    # before the affine map each window and channel has mean 0 and std 1
    plain = RevIN(3, affine=False)
    z, _ = plain.normalize(x)
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(1), 1, atol=1e-3)


def ts_forecasters():
    from lstm_jax.tasks import forecasters

    return forecasters


@pytest.mark.parametrize("cls", [DirectForecaster, Seq2SeqForecaster, SegmentForecaster])
def test_every_forecaster_takes_the_data_sizes_in_one_form(cls):
    # the task passes the same keyword sizes to every variant; options have defaults
    own = {"segment_len": 12} if cls is SegmentForecaster else {}
    model = cls(
        model_config("gru", hidden_size=8),
        in_channels=3,
        outputs=[0, 2],
        input_len=24,
        horizon=10,
        num_marks=0,
        rngs=nnx.Rngs(0),
        **own,
    )
    y, gates = model(jax.random.normal(jax.random.key(0), (2, 24, 3)), return_gates=True)
    assert y.shape == (2, 10, 2) and y.dtype == jnp.float32
    assert list(gates["layer_0"]) == ["reset", "update", "candidate"]
    assert np.all(np.isfinite(np.asarray(y)))
