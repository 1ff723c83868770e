"""softmax_grad and log_softmax_grad: central finite differences, the analytic
Jacobian, PyTorch's backward where installed, axes, dtypes, out= / in place,
where=, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_logits

import fastsoftmax as fs
from fastsoftmax import _gradients

try:
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    AxisError = np.AxisError  # noqa: NPY201

FORWARD = {"softmax": fs.softmax, "log_softmax": fs.log_softmax}
BACKWARD = {"softmax": fs.softmax_grad, "log_softmax": fs.log_softmax_grad}
KINDS = list(FORWARD)


def numeric_gradient(function, x, h=1e-6):
    """Central differences of the scalar ``function`` at every element of ``x``."""
    gradient = np.zeros_like(x)
    for at in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[at] = h
        gradient[at] = (function(x + step) - function(x - step)) / (2 * h)
    return gradient


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("shape", "axis"), [((3, 5), -1), ((4, 3), 0), ((2, 3, 4), (0, 2))])
def test_finite_differences(backend, kind, shape, axis):
    rng = np.random.default_rng(len(shape))
    x = random_logits(rng, shape, np.float64, scale=1.5)
    weights = rng.standard_normal(shape)

    def loss(z):  # a scalar of the forward output, whose gradient wrt the output is weights
        return float(np.sum(weights * FORWARD[kind](z, axis=axis, backend="numpy")))

    y = FORWARD[kind](x, axis=axis, backend=backend)
    got = BACKWARD[kind](y, weights, axis=axis, backend=backend)
    np.testing.assert_allclose(got, numeric_gradient(loss, x), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 5, 17])
def test_analytic_jacobian(backend, dtype, n):
    """Row k of the Jacobian is the gradient for grad = e_k:
    softmax diag(y) - y y^T, log_softmax I - 1 y^T (y = softmax)."""
    rng = np.random.default_rng(n)
    x = random_logits(rng, n, dtype)
    y = fs.softmax(x, backend=backend)
    log_y = fs.log_softmax(x, backend=backend)
    y64 = y.astype(np.float64)
    jacobian = np.diag(y64) - np.outer(y64, y64)
    log_jacobian = np.eye(n) - np.outer(np.ones(n), y64)
    eye = np.eye(n, dtype=dtype)
    rows = np.array([fs.softmax_grad(y, eye[k], backend=backend) for k in range(n)])
    log_rows = np.array([fs.log_softmax_grad(log_y, eye[k], backend=backend) for k in range(n)])
    assert rows.dtype == dtype and log_rows.dtype == dtype
    tol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(rows, jacobian, rtol=tol * n, atol=tol)
    np.testing.assert_allclose(log_rows, log_jacobian, rtol=tol * n, atol=tol)
    # batched: every row at once, along axis 0 as well
    batched = fs.softmax_grad(np.tile(y, (n, 1)), eye, backend=backend)
    np.testing.assert_allclose(batched, jacobian, rtol=tol * n, atol=tol)
    along0 = fs.log_softmax_grad(np.tile(log_y, (n, 1)).T, eye.T, axis=0, backend=backend)
    np.testing.assert_allclose(along0.T, log_jacobian, rtol=tol * n, atol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch_backward(backend, dtype, kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    for shape, axis in [((6, 9), -1), ((3, 4, 5), 1)]:
        x = random_logits(rng, shape, dtype)
        g = rng.standard_normal(shape).astype(dtype)
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        forward = torch.softmax if kind == "softmax" else torch.log_softmax
        forward(xt, axis).backward(torch.from_numpy(g.astype(np.float64)))
        y = FORWARD[kind](x, axis=axis, backend=backend)
        got = BACKWARD[kind](y, g, axis=axis, backend=backend)
        assert got.dtype == dtype
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_axes_and_layouts(backend, kind):
    rng = np.random.default_rng(6)
    x = random_logits(rng, (4, 5, 6), np.float64)
    g = rng.standard_normal((4, 5, 6))
    for axis in (0, 1, -1, (0, 2), None):
        y = FORWARD[kind](x, axis=axis)
        want = _formula(kind, y, g, axis)
        np.testing.assert_allclose(
            BACKWARD[kind](y, g, axis=axis, backend=backend), want, rtol=1e-13, atol=1e-15
        )
        got = BACKWARD[kind](np.asfortranarray(y), g[::-1][::-1], axis=axis, backend=backend)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    y = FORWARD[kind](x[:, ::2, ::-1], axis=1)
    np.testing.assert_allclose(
        BACKWARD[kind](y, g[:, ::2, ::-1], axis=1, backend=backend),
        _formula(kind, y, g[:, ::2, ::-1], 1),
        rtol=1e-13,
        atol=1e-15,
    )


def _formula(kind, y, g, axis):
    if kind == "softmax":
        return y * (g - np.sum(g * y, axis=axis, keepdims=True))
    return g - np.exp(y) * np.sum(g, axis=axis, keepdims=True)


@pytest.mark.parametrize("small_blocks", [False, True], ids=["blocks", "small-blocks"])
@pytest.mark.parametrize("kind", KINDS)
def test_large_inputs_every_path(backend, kind, small_blocks, monkeypatch):
    """Inputs larger than one buffer: blocks of rows (one axis), the general path
    (several axes, long rows), y > 0 and NaN (np.exp instead of the kernel's);
    with small blocks, many of them and rows longer than one."""
    if small_blocks:
        monkeypatch.setattr(_gradients, "_FUSED_BLOCK", 120)
        monkeypatch.setattr(_gradients, "_BUFFER_ELEMENTS", 1000)
    rng = np.random.default_rng(15)
    x = random_logits(rng, (30, 40, 50), np.float32)
    g = rng.standard_normal((30, 40, 50)).astype(np.float32)
    for axis in (-1, 1, 0, (0, 2)):
        y = FORWARD[kind](x, axis=axis)
        want = _formula(kind, y.astype(np.float64), g.astype(np.float64), axis)
        bound = _error_bound(kind, y, g, axis)
        got = BACKWARD[kind](y, g, axis=axis, backend=backend)
        assert (np.abs(got - want) <= bound).all()
        got = BACKWARD[kind](y[:, ::-1], g[:, ::-1], axis=axis, backend=backend)
        assert (np.abs(got - want[:, ::-1]) <= bound[:, ::-1]).all()
    y16 = FORWARD[kind](x).astype(np.float16)  # float16: cast in buffers, computed in float32
    got = BACKWARD[kind](y16, g.astype(np.float16), backend=backend)
    assert got.dtype == np.float16
    want = _formula(kind, y16.astype(np.float64), g.astype(np.float16).astype(np.float64), -1)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    y = x * 0.1  # not a forward output, some entries > 0: still the formula
    y[3, 4, 5] = np.nan
    with np.errstate(invalid="ignore"):
        want = _formula(kind, y.astype(np.float64), g.astype(np.float64), -1)
    got = BACKWARD[kind](y, g, backend=backend)
    with np.errstate(invalid="ignore"):
        bound = _error_bound(kind, y, g, -1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    assert (np.abs(got - want)[finite] <= bound[finite]).all()


def _error_bound(kind, y, g, axis):
    """float32 rounding of the formula: 8 eps times the magnitudes it adds up
    (it cancels, so the bound is absolute, not relative to the result)."""
    y, g = y.astype(np.float64), g.astype(np.float64)
    eps = float(np.finfo(np.float32).eps)
    if kind == "softmax":
        row = np.sum(np.abs(g * y), axis=axis, keepdims=True)
        return 8 * eps * np.abs(y) * (np.abs(g) + row) + 1e-30
    row = np.sum(np.abs(g), axis=axis, keepdims=True)
    return 8 * eps * (np.abs(g) + np.exp(y) * row) + 1e-30


@pytest.mark.parametrize("shape", [(5, 40_000), (40, 2000)], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_out_and_in_place(backend, kind, shape):
    rng = np.random.default_rng(7)
    x = random_logits(rng, shape, np.float32)  # larger than one buffer
    g = rng.standard_normal(shape).astype(np.float32)
    y = FORWARD[kind](x)
    want = BACKWARD[kind](y, g, backend=backend)
    out = np.empty_like(g)
    assert BACKWARD[kind](y, g, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)
    g2 = g.copy()
    assert BACKWARD[kind](y, g2, out=g2, backend=backend) is g2  # in place on grad
    np.testing.assert_array_equal(g2, want)
    y2 = y.copy()
    BACKWARD[kind](y2, g, out=y2, backend=backend)  # in place on y
    np.testing.assert_array_equal(y2, want)
    # a partial overlap with grad: still right
    buffer = np.concatenate([g.ravel(), np.zeros(7, np.float32)])
    shifted_out = buffer[7:].reshape(g.shape)
    grad_view = buffer[:-7].reshape(g.shape)
    BACKWARD[kind](y, grad_view, out=shifted_out, backend=backend)
    assert (np.abs(shifted_out - want) <= _error_bound(kind, y, g, -1)).all()  # another path
    with pytest.raises(ValueError, match="shape"):
        BACKWARD[kind](y, g, out=np.empty((5, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        BACKWARD[kind](y, g, out=np.empty_like(g, dtype=np.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_dtypes(kind):
    rng = np.random.default_rng(12)
    x = random_logits(rng, (3, 7), np.float32)
    g = rng.standard_normal((3, 7)).astype(np.float32)
    y = FORWARD[kind](x)
    want = BACKWARD[kind](y.astype(np.float64), g.astype(np.float64))
    half = BACKWARD[kind](y.astype(np.float16), g.astype(np.float16))
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, want, rtol=5e-3, atol=5e-3)
    assert BACKWARD[kind](y, g.astype(np.float64)).dtype == np.float64  # promoted
    out16 = np.empty((3, 7), np.float16)
    BACKWARD[kind](y.astype(np.float16), g.astype(np.float16), out=out16)
    np.testing.assert_array_equal(out16, half)
    assert BACKWARD[kind]([0.5, 0.5], [1, 0]).dtype == np.float64
    scalar = BACKWARD[kind](np.float64(1.0 if kind == "softmax" else 0.0), 2.0)
    assert np.ndim(scalar) == 0 and scalar == 0.0
    empty = BACKWARD[kind](np.zeros((0, 3)), np.zeros((0, 3)))
    assert empty.shape == (0, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_where(backend, dtype, kind):
    """The gradient of the masked forward: masked entries get 0 and are left out of
    the sum whatever they hold; it equals the gradient of the row without them."""
    rng = np.random.default_rng(13)
    x = random_logits(rng, (4, 6), dtype)
    keep = rng.random((4, 6)) > 0.3
    keep[0] = False  # a row with nothing left
    keep[1] = True
    g = rng.standard_normal((4, 6)).astype(dtype)
    y = FORWARD[kind](x, where=keep)
    g[~keep] = np.array([np.nan, np.inf, -np.inf, 1e30])[np.arange((~keep).sum()) % 4]
    got = BACKWARD[kind](y, g, where=keep, backend=backend)
    assert (got[~keep] == 0).all()
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for r in range(1, 4):
        sub_y = FORWARD[kind](x[r][keep[r]])
        want = BACKWARD[kind](sub_y, g[r][keep[r]])
        np.testing.assert_allclose(got[r][keep[r]], want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", KINDS)
def test_where_on_16_bit_sums_in_float32(backend, kind, dtype):
    """Found by the fuzzer: with where=, softmax_grad's row sum multiplied
    16-bit y and grad in their own dtype, so each product was rounded to 8
    or 11 bits before the float32 sum (1e-2 relative error after cancellation)."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4000)).astype(np.float32)
    keep = rng.random(x.shape) < 0.7
    y = FORWARD[kind](x, where=keep).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    got = BACKWARD[kind](y, g, where=keep, backend=backend)
    assert got.dtype == dtype
    want = BACKWARD[kind](y.astype(np.float64), g.astype(np.float64), where=keep)
    # the result's own rounding (8 bits for bfloat16; float16's subnormals
    # below 6e-5), nothing more
    half_ulp, half_subnormal = (2.0**-8, 0.0) if dtype != np.float16 else (2.0**-11, 2.0**-25)
    tol = half_ulp * np.abs(want) + half_subnormal + 1e-6 * np.abs(want).max()
    assert (np.abs(got.astype(np.float64) - want) <= tol).all()


@pytest.mark.parametrize("kind", KINDS)
def test_errors(kind):
    y = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shape"):
        BACKWARD[kind](y, np.zeros((3, 2)))
    with pytest.raises(TypeError):
        BACKWARD[kind](y.astype(complex), y)
    with pytest.raises(TypeError):
        BACKWARD[kind](y, y, axis=1.5)
    with pytest.raises(AxisError):
        BACKWARD[kind](y, y, axis=2)
    with pytest.raises(ValueError, match="backend"):
        BACKWARD[kind](y, y, backend="gpu")
    with pytest.raises(TypeError):
        BACKWARD[kind](y, y, where=np.ones((2, 3)))


@pytest.mark.parametrize("kind", KINDS)
def test_input_not_modified(backend, kind):
    rng = np.random.default_rng(14)
    y = FORWARD[kind](random_logits(rng, (3, 4), np.float64))
    g = rng.standard_normal((3, 4))
    keep = rng.random((3, 4)) > 0.2
    copies = [a.copy() for a in (y, g, keep)]
    BACKWARD[kind](y, g, backend=backend)
    BACKWARD[kind](y, g, where=keep, backend=backend)
    for a, b in zip((y, g, keep), copies):
        np.testing.assert_array_equal(a, b)
