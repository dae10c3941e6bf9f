"""The selective SSM cell (Mamba's S6, lstm_jax/nn/selective_ssm.py) against a per-step
reference written from the equations (Gu & Dao 2023), one sequence, layer and direction at a
time: outputs, final states and gradients, with variable lengths, stacked and bidirectional,
by both linear-scan methods; gradients against finite differences; padded steps, a state
carried across calls, Mamba's initialisation and the declared retention.

PyTorch parity: the official `mamba-ssm` builds CUDA kernels and does not install on a CPU
machine; `mambapy` (alxndrTL/mamba.py, pure PyTorch, dev extra) is a line-by-line port of
`mamba_simple.py` whose `MambaBlock.ssm` is the selective-scan core with its x_proj, dt_proj,
A_log and D (parallel `pscan` and sequential `selective_scan_seq`) and `ssm_step` the
recurrent step: the same weights are loaded into it and its outputs and state matched to
1e-5."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_reference import (
    assert_gradients_match_the_reference,
    layer_loss,
    layer_params,
    output_and_state_loss,
    reference_stack,
)
from flax import nnx
from jax.test_util import check_grads

from lstm_jax.nn import Retention, retentions
from lstm_jax.nn.selective_ssm import SelectiveSSM
from lstm_jax.train.diagnostics import gate_stats

B, T, D, H, S, R = 3, 7, 4, 5, 3, 2
LENGTHS = jnp.array([7, 3, 0])


def _reference_direction(p, d, seq, pert=None):
    """Direction d of one layer over one sequence seq (t, D_in), step by step from the
    equations; pert (t, H), if given, is added to each of a channel's state dimensions at
    each step. Returns y (t, H), the final state's parts after y_T (h_T[:, n] for each state
    dimension n) and the decay gate (t, H)."""
    a = -jnp.exp(p["A_log"][d])  # (H, S)
    h = jnp.zeros((H, S))
    ys, decays = [], []
    for t, x_t in enumerate(seq):
        u = x_t @ p["in_proj"][:, d]
        dbc = u @ p["x_proj"][d]
        delta = jax.nn.softplus(dbc[:R] @ p["dt_proj"][d] + p["dt_bias"][d])
        b_t, c_t = dbc[R : R + S], dbc[R + S :]
        h = jnp.exp(delta[:, None] * a) * h + (delta * u)[:, None] * b_t[None, :]
        if pert is not None:
            h = h + pert[t][:, None]
        ys.append(h @ c_t + p["D"][d] * u)
        decays.append(jnp.exp(delta * jnp.max(a, axis=1)))
    if not ys:
        return jnp.zeros((0, H)), tuple(h.T), jnp.zeros((0, H))
    return jnp.stack(ys), tuple(h.T), jnp.stack(decays)


def reference(params, x, lengths, num_layers, bidirectional):
    """y (B, T, N*H) zero past each length, the state (y_T, h_T[..., 0], ..., h_T[..., S-1])
    each (num_layers * N, B, H), and the top layer's decay gate (B, T, N*H)."""
    return reference_stack(_reference_direction, params, x, lengths, num_layers, bidirectional)


def _layer_and_params(num_layers, bidirectional, scan_method="associative"):
    layer = SelectiveSSM(
        D,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        d_state=S,
        dt_rank=R,
        # larger steps than Mamba's default, so the state decays visibly within T steps
        dt_min=0.1,
        dt_max=1.0,
        scan_method=scan_method,
        rngs=nnx.Rngs(0),
    )
    # A_log off its S4D-real init, D off one: a reference that confused the state
    # dimensions or channels would still pass at the symmetric init
    for k in range(num_layers):
        p = getattr(layer, f"layer_{k}")
        keys = jax.random.split(jax.random.key(10 + k))
        p.A_log[...] = p.A_log[...] + 0.3 * jax.random.normal(keys[0], p.A_log.shape)
        p.D[...] = p.D[...] + 0.5 * jax.random.normal(keys[1], p.D.shape)
    return layer, layer_params(layer)


def _x():
    return jax.random.normal(jax.random.key(1), (B, T, D))


@pytest.mark.slow
@pytest.mark.parametrize("scan_method", ["associative", "scan"])
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_selective_ssm_matches_the_per_step_reference(num_layers, bidirectional, scan_method):
    layer, params = _layer_and_params(num_layers, bidirectional, scan_method)
    x = _x()
    y, state, gates = layer.run(x, LENGTHS, return_gates=True)
    y_ref, state_ref, gates_ref = reference(params, x, LENGTHS, num_layers, bidirectional)
    np.testing.assert_allclose(y, y_ref, atol=2e-5)
    assert len(state) == 1 + S
    for part, (got, want) in enumerate(zip(state, state_ref, strict=True)):
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"state part {part}")
    np.testing.assert_allclose(gates[f"layer_{num_layers - 1}"]["decay"], gates_ref, atol=1e-6)
    # the last output at each true length is what a "last" pooling head reads
    top_forward = layer.hidden_of(state)[-layer.num_directions]
    np.testing.assert_allclose(top_forward[1], y[1, 2, :H], atol=1e-6)
    np.testing.assert_array_equal(top_forward[2], 0.0)  # an empty sequence keeps y0


@pytest.mark.slow
def test_selective_ssm_gradients_match_the_reference_by_both_scan_methods():
    w = jax.random.normal(jax.random.key(2), (B, T, 2 * H))
    assert_gradients_match_the_reference(
        lambda method: _layer_and_params(2, True, method)[0],
        lambda params, x: reference(params, x, LENGTHS, 2, True)[:2],
        _x(),
        w,
        LENGTHS,
    )


@pytest.mark.slow
def test_the_hidden_perturbations_gradient_reaches_every_state_dimension_through_later_steps():
    """The diagnostics' dL/dh_t: the perturbation is added to each of a channel's N state
    dimensions inside the recurrence, so its gradient sums dL/dh_t[:, n] over them."""
    layer, params = _layer_and_params(1, False)
    x = _x()
    # step 0's output left out of the loss: its perturbation counts only through later steps
    w = jax.random.normal(jax.random.key(4), (B, T, H)).at[:, 0].set(0.0)

    def loss(pert):
        y, _, _ = layer.run(x, hidden_perturbation=pert)
        return jnp.sum(w * jnp.sin(y))

    def reference_loss(pert):
        ys = [_reference_direction(params["layer_0"], 0, x[b], pert[b])[0] for b in range(B)]
        return jnp.sum(w * jnp.sin(jnp.stack(ys)))

    zero = jnp.zeros((B, T, H))
    got, want = jax.grad(loss)(zero), jax.grad(reference_loss)(zero)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.all(np.abs(np.asarray(got[:, 0])) > 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("scan_method", ["associative", "scan"])
def test_selective_ssm_gradients_match_finite_differences(scan_method):
    layer, _ = _layer_and_params(1, True, scan_method)
    w = jax.random.normal(jax.random.key(3), (B, T, 2 * H))
    loss = layer_loss(layer, output_and_state_loss(w), LENGTHS)
    # float32: central differences with a step large enough for the roundoff, in a few
    # random directions (check_grads draws one per call)
    for seed in range(3):
        np.random.seed(seed)
        check_grads(
            loss, (nnx.state(layer, nnx.Param), _x()), order=1, modes=("rev",), eps=1e-2, rtol=2e-2
        )


@pytest.mark.slow
def test_padded_steps_leave_the_state_at_the_true_length_and_a_carried_state_continues():
    layer, _ = _layer_and_params(2, True)
    x = _x()
    lengths = jnp.array([7, 3, 5])
    y, state = layer(x, lengths)
    garbage = jnp.where((jnp.arange(T)[None, :, None] < lengths[:, None, None]), x, 100.0)
    y_g, state_g = layer(garbage, lengths)
    np.testing.assert_array_equal(y_g, y)
    for got, want in zip(state_g, state, strict=True):
        np.testing.assert_array_equal(got, want)
    # forward only: running T steps as 4 + 3 with the state carried is one run of 7
    layer, _ = _layer_and_params(2, False)
    y_full, s_full = layer(x)
    y_a, s_a = layer(x[:, :4])
    y_b, s_b = layer(x[:, 4:], initial_state=s_a)
    np.testing.assert_allclose(jnp.concatenate([y_a, y_b], axis=1), y_full, atol=1e-5)
    for got, want in zip(s_b, s_full, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_mamba_initialisation():
    layer = SelectiveSSM(D, 4000, d_state=4, dt_min=0.002, dt_max=0.2, rngs=nnx.Rngs(3))
    p = layer.layer_0
    np.testing.assert_allclose(
        -np.exp(p.A_log[...]), np.broadcast_to([-1, -2, -3, -4], (1, 4000, 4))
    )
    np.testing.assert_array_equal(p.D[...], 1.0)
    assert p.dt_proj.shape == (1, 250, 4000)  # dt_rank "auto": ceil(4000 / 16)
    # the initial step softplus(dt_bias) is log-uniform in [dt_min, dt_max]
    log_dt = np.log(np.asarray(jax.nn.softplus(p.dt_bias[...])))
    assert log_dt.min() >= np.log(0.002) - 1e-4 and log_dt.max() <= np.log(0.2) + 1e-4
    np.testing.assert_allclose(np.median(log_dt), np.log(0.002 * 0.2) / 2, atol=0.1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"d_state": 0}, "needs d_state >= 1"),
        ({"dt_min": 0.1, "dt_max": 0.01}, "needs 0 < dt_min <= dt_max"),
        ({"dt_rank": 0}, "needs dt_rank >= 1 or 'auto'"),
        ({"scan_method": "parallel"}, "scan_method='parallel' is unknown"),
    ],
)
def test_bad_options_are_refused_before_any_work(options, message):
    with pytest.raises(ValueError, match=message):
        SelectiveSSM(D, H, rngs=nnx.Rngs(0), **options)


@pytest.mark.slow
def test_selective_ssm_declares_its_slowest_modes_decay_as_its_retention():
    layer, params = _layer_and_params(1, True)
    assert retentions(layer) == {"decay": Retention("decay", "gate")}
    lengths = jnp.array([7, 3, 5])
    _, _, gates = layer.run(_x(), lengths, return_gates=True)
    decay = gates["layer_0"]["decay"]
    mask = (jnp.arange(T)[None, :] < lengths[:, None]).astype(jnp.float32)
    valid = np.asarray(decay)[np.asarray(mask) > 0]
    assert valid.min() > 0.0 and valid.max() < 1.0
    stats = gate_stats(gates, mask, activations=layer.GATE_ACTIVATIONS, retain=retentions(layer))
    np.testing.assert_allclose(
        stats["gates/layer_0/decay_tau_median"], np.median(-1.0 / np.log(valid)), rtol=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("pscan", [True, False], ids=["pscan", "selective_scan_seq"])
def test_selective_ssm_matches_mambapy(pscan):
    torch = pytest.importorskip("torch")
    mamba = pytest.importorskip("mambapy.mamba")
    layer, params = _layer_and_params(1, False)
    p = {
        name: np.array(v[:, 0] if name == "in_proj" else v[0])
        for name, v in params["layer_0"].items()
    }
    config = mamba.MambaConfig(
        d_model=H, n_layers=1, expand_factor=1, d_state=S, dt_rank=R, pscan=pscan
    )
    block = mamba.MambaBlock(config)
    with torch.no_grad():
        block.x_proj.weight.copy_(torch.from_numpy(p["x_proj"].T.copy()))
        block.dt_proj.weight.copy_(torch.from_numpy(p["dt_proj"].T.copy()))
        block.dt_proj.bias.copy_(torch.from_numpy(p["dt_bias"]))
        block.A_log.copy_(torch.from_numpy(p["A_log"]))
        block.D.copy_(torch.from_numpy(p["D"]))
        x = _x()
        u = torch.from_numpy(np.asarray(x) @ p["in_proj"])  # Mamba's SSM input
        y_torch = block.ssm(u, None).numpy()
        h = None
        for t in range(T):
            _, h = block.ssm_step(u[:, t], h)
    y, state = layer(x)
    np.testing.assert_allclose(y, y_torch, atol=1e-5)
    np.testing.assert_allclose(jnp.stack(state[1:], axis=-1)[0], h.numpy(), atol=1e-5)
