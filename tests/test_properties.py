"""Property tests (hypothesis): rows sum to 1, shift invariance, temperature,
log_softmax against the log of softmax, logsumexp against log_softmax."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compute_dtype
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastsoftmax as fs

BACKENDS = fs.backends()


def logits(dtype, max_side=40, bound=80.0):
    return hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=max_side),
        elements=st.floats(-bound, bound, width=np.dtype(dtype).itemsize * 8),
    )


SETTINGS = settings(max_examples=60, deadline=None)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_sum_to_one(backend_name, dtype):
    @SETTINGS
    @given(logits(dtype), st.integers(-3, 2))
    def check(x, axis):
        axis = axis % x.ndim
        y = fs.softmax(x, axis=axis, backend=backend_name)
        assert np.all((y >= 0) & (y <= 1))
        eps = np.finfo(compute_dtype(dtype)).eps
        assert np.all(np.abs(y.astype(np.longdouble).sum(axis) - 1) <= 8 * eps)

    check()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_shift_invariance(backend_name):
    @SETTINGS
    @given(logits(np.float64), st.floats(-1e3, 1e3))
    def check(x, shift):
        a = fs.softmax(x, backend=backend_name)
        b = fs.softmax(x + shift, backend=backend_name)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-300)

    check()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_temperature_is_division(backend_name):
    @SETTINGS
    @given(logits(np.float64), st.floats(0.05, 20.0))
    def check(x, temperature):
        a = fs.softmax(x, temperature=temperature, backend=backend_name)
        b = fs.softmax(x / temperature, backend=backend_name)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-300)

    check()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_log_softmax_is_log_of_softmax_where_safe(backend_name):
    @SETTINGS
    @given(logits(np.float64, bound=20.0))
    def check(x):
        y = fs.softmax(x, backend=backend_name)
        np.testing.assert_allclose(
            fs.log_softmax(x, backend=backend_name), np.log(y), rtol=1e-12, atol=1e-13
        )

    check()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_log_softmax_is_x_minus_logsumexp(backend_name):
    @SETTINGS
    @given(logits(np.float64), st.floats(0.1, 10.0))
    def check(x, temperature):
        lse = fs.logsumexp(x, keepdims=True, temperature=temperature, backend=backend_name)
        got = fs.log_softmax(x, temperature=temperature, backend=backend_name)
        np.testing.assert_allclose(got, x / temperature - lse, rtol=1e-12, atol=1e-12)

    check()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_order_of_a_row_does_not_matter(backend_name):
    @SETTINGS
    @given(logits(np.float64), st.randoms(use_true_random=False))
    def check(x, random):
        order = list(range(x.shape[-1]))
        random.shuffle(order)
        a = fs.softmax(x, backend=backend_name)[..., order]
        b = fs.softmax(x[..., order], backend=backend_name)
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)

    check()
