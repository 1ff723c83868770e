"""Accuracy against a higher-precision reference (README, Accuracy contract)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_matches_oracle, compute_dtype, random_logits

import fastsoftmax as fs

# Every width up to 130, so each vector width (2..16 lanes), its unrolled
# step (4 vectors) and their neighbours get tails of every length.
WIDTHS = list(range(1, 131))


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
def test_every_row_width(backend, dtype, kind):
    rng = np.random.default_rng(7)
    func = getattr(fs, kind)
    for n in WIDTHS:
        x = random_logits(rng, (3, n), dtype)
        assert_matches_oracle(kind, func(x, backend=backend), x)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("scale", [0.01, 3.0, 30.0, 300.0])
def test_spread_of_logits(backend, dtype, kind, scale):
    """From nearly uniform rows to rows whose smallest terms underflow."""
    rng = np.random.default_rng(int(scale * 100))
    x = random_logits(rng, (16, 1000), dtype, scale)
    assert_matches_oracle(kind, getattr(fs, kind)(x, backend=backend), x)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0, 10.0])
@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
def test_temperature_accuracy(backend, dtype, kind, temperature):
    x = random_logits(np.random.default_rng(3), (8, 257), dtype)
    y = getattr(fs, kind)(x, temperature=temperature, backend=backend)
    assert_matches_oracle(kind, y, x, temperature=temperature)


def test_rows_sum_to_one(backend, dtype):
    x = random_logits(np.random.default_rng(11), (64, 999), dtype, 5.0)
    y = fs.softmax(x, backend=backend)
    eps = np.finfo(compute_dtype(dtype)).eps
    assert np.all(np.abs(y.astype(np.longdouble).sum(-1) - 1) <= 8 * eps)


def test_subnormal_results_are_kept(backend, dtype):
    """Probabilities far below the largest are rounded, not flushed to zero."""
    tiny = np.finfo(dtype).tiny
    gap = float(np.log(1 / tiny)) + 3.0  # exp(-gap) is subnormal
    x = np.array([[0.0, -gap, -gap - 1.0, -gap - 5.0]], dtype=dtype)
    y = fs.softmax(x, backend=backend)
    assert 0 < y[0, 1] < tiny
    assert_matches_oracle("softmax", y, x)


def test_exact_values():
    """Worked values of the README and scipy gh-18295."""
    assert np.allclose(fs.softmax([2.0, 1.0, 0.1]), [0.659, 0.242, 0.099], atol=5e-4)
    assert np.allclose(fs.softmax([10.0, 9, 9]), [0.576, 0.212, 0.212], atol=5e-4)
    assert np.allclose(
        fs.softmax([2.0, 1.0, 0.1], temperature=0.5), [0.864, 0.117, 0.019], atol=5e-4
    )
    assert np.allclose(
        fs.softmax([2.0, 1.0, 0.1], temperature=2.0), [0.502, 0.304, 0.194], atol=5e-4
    )
    for name in fs.backends():
        assert fs.logsumexp([0.0, -40.0], backend=name) == 4.248354255291589e-18


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
def test_long_row_error_does_not_grow(backend, kind):
    """A row of 4,000,000 float32 values is as exact as a row of 1,000
    (PyTorch and ONNX Runtime lose three digits here)."""
    x = random_logits(np.random.default_rng(5), (1, 4_000_000), np.float32)
    assert_matches_oracle(kind, getattr(fs, kind)(x, backend=backend), x)
    if kind == "softmax":
        y = fs.softmax(x, backend=backend)
        assert abs(float(y.astype(np.float64).sum()) - 1) <= 8 * np.finfo(np.float32).eps


def test_float16_computed_in_float32(backend):
    x = random_logits(np.random.default_rng(2), (4, 300), np.float16)
    for kind in ("softmax", "log_softmax", "logsumexp"):
        y = getattr(fs, kind)(x, backend=backend)
        assert y.dtype == np.float16
        assert_matches_oracle(kind, y, x)


@pytest.fixture(params=["online", "three_passes"])
def long_row_path(request):
    """Rows of 1 MiB through each of the compiled kernel's paths for long rows:
    the online algorithm (the threshold set below the rows, for every function)
    and the three passes (the threshold set past the rows)."""
    if "cpp" not in fs.backends():
        yield request.param
        return
    from fastsoftmax import _core

    previous = _core.online_row_bytes()
    _core.set_online_row_bytes(1 << 18 if request.param == "online" else 1 << 40)
    try:
        yield request.param
    finally:
        _core.set_online_row_bytes(previous)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize(
    "case", ["rising", "masked", "nan", "inf", "all_minus_inf", "spread", "temperature"]
)
@pytest.mark.usefixtures("long_row_path")
def test_rows_beyond_the_cache(backend, dtype, kind, case):
    """Rows of 1 MiB and more, through the online algorithm in the compiled
    kernel (max and sum merged chunk by chunk) and through its three passes:
    same bounds, same specials."""
    n = (1 << 20) // np.dtype(dtype).itemsize + 77
    rng = np.random.default_rng(51)
    x = random_logits(rng, (2, n), dtype)
    where, temperature = None, 1.0
    if case == "rising":  # the max moves up chunk after chunk: every merge rescales
        x = (x + np.linspace(0, 60, n)).astype(dtype)
    elif case == "masked":
        where = rng.random((2, n)) < 0.5
        where[1] = False
        x[~where] = np.nan
    elif case == "nan":
        x[0, n // 2] = np.nan
    elif case == "inf":
        x[0, n - 3] = np.inf
        x[1, 5] = np.inf
    elif case == "all_minus_inf":
        x[0] = -np.inf
    elif case == "spread":
        x = (x * 100).astype(dtype)
    elif case == "temperature":
        temperature = 0.3
    with np.errstate(invalid="ignore"):
        y = getattr(fs, kind)(x, where=where, temperature=temperature, backend=backend)
    assert_matches_oracle(kind, y, x, where=where, temperature=temperature)


@pytest.mark.parametrize("n", [100, 1000, 5000])
def test_one_large_term_and_many_below_half_an_ulp(backend, dtype, n):
    """A row of one 0 and n - 1 logits whose exps are just under half an ULP of
    1: added into the lane that holds the 1 they would all be rounded away
    (found by `fastsoftmax accuracy` on SSE2 float64: 1.8x the bound)."""
    eps = np.finfo(dtype).eps
    x = np.full((2, n), np.log(eps / 2 * 0.99), dtype=dtype)
    x[0, 0] = 0
    x[1, n // 2] = 0
    for kind in ("softmax", "log_softmax", "logsumexp"):
        assert_matches_oracle(kind, getattr(fs, kind)(x, backend=backend), x)
