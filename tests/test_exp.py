"""The compiled exp for d <= 0, measured in ULP on every SIMD level
(the contract written above exp_nonpositive in csrc/row_kernels.cpp)."""

from __future__ import annotations

import numpy as np
import pytest

import fastsoftmax as fs

pytestmark = pytest.mark.skipif("cpp" not in fs.backends(), reason="no compiled extension")


def ulp_error(got: np.ndarray, exact: np.ndarray, dtype) -> np.ndarray:
    """|got - exact| in units of the spacing of dtype at the exact value
    (the subnormal spacing below the smallest normal)."""
    rounded = exact.astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(exact.dtype)
    return np.abs(got.astype(exact.dtype) - exact) / spacing


# Measured maxima (csrc/row_kernels.cpp, README): levels with FMA round each
# polynomial step once; SSE2 and the generic build round the product and the
# sum apart, which costs about 0.3 ULP.
FMA_LEVELS = {"avx512", "avx2", "avx2_wide", "neon"}


def ulp_bound(cpp) -> float:
    return 1.0 if cpp.simd_level() in FMA_LEVELS else 1.25


@pytest.fixture(params=fs.info()["simd_levels"] or [None])
def level(request):
    from fastsoftmax import _backends

    cpp = _backends.get("cpp")
    previous = cpp.simd_level()
    cpp.set_simd_level(request.param)
    yield cpp
    cpp.set_simd_level(previous)


def test_float32_within_its_ulp_bound_on_a_dense_sweep(level):
    d = -np.linspace(0, 104, 4_000_001, dtype=np.float32)
    d = np.concatenate([d, -(np.float32(2.0) ** -np.arange(1, 40, dtype=np.float32))])
    err = ulp_error(level.exp_nonpositive(d), np.exp(d.astype(np.float64)), np.float32)
    assert err.max() <= ulp_bound(level), (err.max(), d[np.argmax(err)])


def test_float64_within_its_ulp_bound(level):
    rng = np.random.default_rng(41)
    d = np.concatenate(
        [
            -rng.uniform(0, 746, 1_000_000),
            -rng.uniform(0, 1, 100_000),
            -np.exp2(-np.arange(1.0, 60.0)),
            [-745.0, -708.4, -708.39],
        ]
    )
    exact = np.exp(d.astype(np.longdouble))
    err = ulp_error(level.exp_nonpositive(d), exact, np.float64)
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("long double is double here: no higher-precision reference")
    assert err.max() <= ulp_bound(level), (err.max(), d[np.argmax(err)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edges(level, dtype):
    d = np.array([0.0, -0.0, -np.inf, -1e6, -np.finfo(dtype).tiny], dtype=dtype)
    got = level.exp_nonpositive(d)
    assert got[0] == 1 and got[1] == 1 and got[2] == 0 and got[3] == 0 and got[4] == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_length(level, dtype):
    """Tails of every length give the same values as the vector body."""
    d = -np.linspace(0, 50, 200).astype(dtype)
    full = level.exp_nonpositive(d)
    for n in range(0, 140):
        np.testing.assert_array_equal(level.exp_nonpositive(d[:n]), full[:n])
