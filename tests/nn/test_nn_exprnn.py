"""expRNN's orthogonal RNN (lstm_jax/nn/exprnn.py) against a per-step reference written from
the paper's equations (Lezcano-Casado & Martinez-Rubio 2019), h_t = sigma(W x_t + h_{t-1} B),
B = expm(triu(A, 1) - triu(A, 1)^T), one sequence, layer and direction at a time: outputs,
final states and gradients (against the reference and by finite differences), with variable
lengths, stacked and bidirectional; the Henaff and Cayley initialisations (B orthogonal, its
eigen-angles those drawn), B orthogonal for any A, and B against PyTorch's matrix
exponential.

PyTorch parity of the cell: none. PyPI has no expRNN package (`pip download exprnn` finds
no distribution); the authors' code (Lezcano/expRNN) is a GitHub repository, not an
installable package. geotorch (PyPI, by the same author) parametrises orthogonal matrices
only, by torch.linalg.matrix_exp, which the last test compares B with directly; the rest
of the cell is checked against the per-step reference, written from the paper's equations
and the authors' OrthogonalRNN.forward and modrelu.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_reference import (
    assert_gradients_close,
    check_layer_grads,
    layer_gradients,
    layer_params,
    output_and_state_loss,
    reference_gradients,
    single_state_reference,
    step_loop,
)
from flax import nnx
from jax.scipy.linalg import expm

from lstm_jax.nn import retentions
from lstm_jax.nn.exprnn import ExpRNN

B, T, D, H = 3, 7, 4, 6
LENGTHS = jnp.array([7, 3, 0])


def _layer(num_layers=1, bidirectional=False, init="henaff", activation="modrelu"):
    options = {"init": init, "activation": activation, "rngs": nnx.Rngs(0)}
    return ExpRNN(D, H, num_layers=num_layers, bidirectional=bidirectional, **options)


def _x():
    return jax.random.normal(jax.random.key(1), (B, T, D))


def _with_a_full_matrix(layer):
    """A with every entry nonzero (its lower triangle must not matter), as training makes it."""
    for k in range(layer.num_layers):
        p = getattr(layer, f"layer_{k}")
        p.A[...] = p.A[...] + 0.3 * jax.random.normal(jax.random.key(10 + k), p.A.shape)
    return layer


def _reference(layer, params, x, lengths):
    def sigma(z, b):
        if layer.activation == "tanh":
            return jnp.tanh(z + b)
        return jnp.sign(z) * jnp.maximum(jnp.abs(z) + b, 0.0)  # modReLU

    def direction(p, d, u):
        upper = jnp.triu(p["A"][d], 1)
        b_mat = expm(upper - upper.T)

        def step(h, x_t):
            return sigma(x_t @ p["w_in"][:, d] + h @ b_mat, p["bias"][d])

        return step_loop(step, u, H)

    return single_state_reference(direction, params, x, lengths, layer)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("num_layers", "bidirectional", "init", "activation"),
    [(1, False, "henaff", "modrelu"), (2, True, "cayley", "tanh"), (2, True, "henaff", "modrelu")],
)
def test_exprnn_matches_the_per_step_reference(num_layers, bidirectional, init, activation):
    layer = _with_a_full_matrix(_layer(num_layers, bidirectional, init, activation))
    x = _x()
    y, state, gates = layer.run(x, LENGTHS, return_gates=True)
    y_ref, state_ref = _reference(layer, layer_params(layer), x, LENGTHS)
    np.testing.assert_allclose(y, y_ref, atol=2e-5)
    np.testing.assert_allclose(state, state_ref, atol=2e-5)
    # the one gate is h_t itself (before the top layer, the first layer's h)
    if num_layers == 1:
        np.testing.assert_array_equal(gates["layer_0"]["hidden"], y)


@pytest.mark.slow
def test_exprnn_gradients_match_the_reference_and_finite_differences():
    layer = _with_a_full_matrix(_layer(2, True))
    x = _x()
    w = jax.random.normal(jax.random.key(2), (B, T, 2 * H))
    loss = output_and_state_loss(w)
    reference = lambda p, x: _reference(layer, p, x, LENGTHS)  # noqa: E731
    assert_gradients_close(
        layer_gradients(layer, loss, x, LENGTHS),
        reference_gradients(reference, layer_params(layer), loss, x),
    )
    # finite differences of the layer itself (the expm's gradient included), smooth tanh
    check_layer_grads(_with_a_full_matrix(_layer(1, True, activation="tanh")), x, w, LENGTHS)


def _eigen_angles(b_mat):
    """The nonnegative eigen-angles of a rotation matrix, sorted."""
    return np.sort(np.abs(np.angle(np.linalg.eigvals(np.asarray(b_mat, np.float64)))))


@pytest.mark.parametrize("init", ["henaff", "cayley"])
def test_initial_b_is_orthogonal_with_the_drawn_rotations(init):
    layer = ExpRNN(D, 201, bidirectional=True, init=init, rngs=nnx.Rngs(3))
    p = layer.layer_0
    a = np.asarray(p.A[...])
    b_mat = np.asarray(layer.recurrent_matrix(p))
    k = np.arange(100)
    drawn = a[:, 2 * k, 2 * k + 1]  # the blocks' s_k; nothing else of A is set
    assert np.count_nonzero(a) == drawn.size
    for d in range(2):
        np.testing.assert_allclose(b_mat[d] @ b_mat[d].T, np.eye(201), atol=2e-5)
        assert np.linalg.det(b_mat[d]) == pytest.approx(1.0, abs=1e-4)
        # eigenvalues exp(+-i s_k), and 1 for the odd unit out
        want = np.sort(np.concatenate([np.abs(drawn[d]), np.abs(drawn[d]), [0.0]]))
        np.testing.assert_allclose(_eigen_angles(b_mat[d]), want, atol=1e-3)
    if init == "henaff":  # s_k ~ U[-pi, pi]
        assert drawn.min() < -3.0 and drawn.max() > 3.0 and abs(drawn.mean()) < 0.3
    else:  # s_k = -tan(v / 2), v ~ U[0, pi/2]: in [-1, 0], median -tan(pi / 8)
        assert drawn.min() >= -1.0 and drawn.max() <= 0.0
        np.testing.assert_allclose(np.median(drawn), -np.tan(np.pi / 8), atol=0.05)
    # B stays orthogonal whatever A an optimizer leaves (exp of a skew-symmetric matrix)
    p.A[...] = jax.random.normal(jax.random.key(5), a.shape)
    b_new = np.asarray(layer.recurrent_matrix(p))
    np.testing.assert_allclose(b_new[0] @ b_new[0].T, np.eye(201), atol=5e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"init": "haar"}, "ExpRNN init='haar' is unknown"),
        ({"activation": "relu"}, "ExpRNN activation='relu' is unknown"),
    ],
)
def test_bad_options_are_refused_before_any_work(options, message):
    with pytest.raises(ValueError, match=message):
        ExpRNN(D, H, rngs=nnx.Rngs(0), **options)
    assert retentions(ExpRNN(D, H, rngs=nnx.Rngs(0))) == {}  # orthogonal: nothing decays


@pytest.mark.slow
def test_b_matches_pytorch_matrix_exp():
    torch = pytest.importorskip("torch")
    layer = _with_a_full_matrix(ExpRNN(D, 64, bidirectional=True, rngs=nnx.Rngs(4)))
    a = torch.from_numpy(np.asarray(layer.layer_0.A[...], np.float64))
    upper = torch.triu(a, 1)
    want = torch.linalg.matrix_exp(upper - upper.transpose(-1, -2)).numpy()
    np.testing.assert_allclose(layer.recurrent_matrix(layer.layer_0), want, atol=1e-5)
