"""The compiled exp for d <= 0, measured in ULP on every SIMD level
(the contract at the top of csrc/exp.h)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import re
import sys
from pathlib import Path

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


# Measured maxima (csrc/exp.h): levels with FMA round each
# polynomial step once; SSE2 and the generic build round the product and the
# sum apart, which costs about 0.3 ULP.
FMA_LEVELS = {"avx512", "avx2", "avx2_wide", "neon"}
# Levels whose float exp goes through a 2^(j/N) table (exp_table_block), by
# the contract's name for its worst input: 16 entries on AVX-512, 8 on AVX2.
TABLE_LEVELS = {"avx512": "F32_TABLE", "avx2": "F32_TABLE8", "avx2_wide": "F32_TABLE8"}


def ulp_bound(cpp, dtype=np.float32) -> float:
    # float on FMA levels without a table (NEON): the degree-5 polynomial,
    # which takes the contract's 2 ULP; the 8-entry table's cubic stays within
    # 1.15 (csrc/exp.h). double keeps degree 9 everywhere.
    level = cpp.simd_level()
    if level not in FMA_LEVELS:
        return 1.25
    if dtype is not np.float32:
        return 1.0
    return {"F32_TABLE": 1.0, "F32_TABLE8": 1.15}.get(TABLE_LEVELS.get(level, ""), 2.0)


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
    assert err.max() <= ulp_bound(level, np.float64), (err.max(), d[np.argmax(err)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edges(level, dtype):
    d = np.array([0.0, -0.0, -np.inf, -1e6, -np.finfo(dtype).tiny], dtype=dtype)
    got = level.exp_nonpositive(d)
    assert got[0] == 1 and got[1] == 1 and got[2] == 0 and got[3] == 0 and got[4] == 1


def test_table_levels_keep_nan(level):
    """The table form keeps NaN (csrc/exp.h, kExpKeepsNaN: the row scans skip
    their NaN flag on these levels), whatever its sign and payload, beside
    ordinary and tiny arguments in the same vector."""
    if level.simd_level() not in TABLE_LEVELS:
        pytest.skip("the polynomial forms may turn a NaN into a number")
    bits = np.array(
        [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FC00FFF, 0x7FFFFFFF],
        dtype=np.uint32,
    )
    nans = bits.view(np.float32)
    for neighbour in (np.float32(-1.5), np.float32(-100.0)):  # the fast and the careful form
        d = np.tile(np.array([neighbour] * 3 + [np.nan], dtype=np.float32), 8)
        d[3::4] = np.resize(nans, d[3::4].size)
        got = level.exp_nonpositive(d)
        assert np.isnan(got[3::4]).all(), got[3::4]
        exact = np.exp(d[0::4].astype(np.float64))
        assert ulp_error(got[0::4], exact, np.float32).max() <= ulp_bound(level), got[0::4]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_length(level, dtype):
    """Tails of every length give the same values as the vector body."""
    d = -np.linspace(0, 50, 200).astype(dtype)
    full = level.exp_nonpositive(d)
    for n in range(0, 140):
        np.testing.assert_array_equal(level.exp_nonpositive(d[:n]), full[:n])


EXP_HEADER = Path(__file__).resolve().parent.parent / "csrc" / "exp.h"


def _contract_worst_inputs() -> dict[str, float]:
    """The worst inputs named in exp.h's contract, by macro suffix."""
    text = EXP_HEADER.read_text()
    found = re.findall(r'#define FS_EXP_WORST_(\w+) "(\S+) ', text)
    return {name: float.fromhex(value) for name, value in found}


@pytest.mark.skipif(not EXP_HEADER.exists(), reason="run from a checkout: reads csrc/exp.h")
def test_contract_worst_inputs_are_within_the_stated_bounds(level):
    """The inputs exp.h names as the worst stay within the stated maxima, and
    are really near them (so the contract names measured points, not guesses)."""
    worst = _contract_worst_inputs()
    assert set(worst) == {"F32_TABLE", "F32_TABLE8", "F32_FMA", "F32", "F64_FMA", "F64"}
    fma = level.simd_level() in FMA_LEVELS
    stated = {
        "F32_TABLE": 0.9977,
        "F32_TABLE8": 1.1474,
        "F32_FMA": 1.9777,
        "F32": 1.1764,
        "F64_FMA": 0.945,
        "F64": 1.226,
    }
    f32 = TABLE_LEVELS.get(level.simd_level(), "F32_FMA" if fma else "F32")
    for name in (f32, "F64_FMA" if fma else "F64"):
        dtype = np.float32 if name.startswith("F32") else np.float64
        exact_type = np.float64 if dtype is np.float32 else np.longdouble
        d = np.array([worst[name]], dtype=dtype)
        err = float(ulp_error(level.exp_nonpositive(d), np.exp(d.astype(exact_type)), dtype)[0])
        assert err <= stated[name] + 1e-3, (name, err)
        if dtype is np.float32 and level.simd_level() in ("avx2", "avx512", "sse2"):
            assert err >= stated[name] - 1e-3, (name, err)  # the sweep's maximum itself
    for name in ("F32_TABLE", "F32_TABLE8", "F32_FMA", "F32"):
        assert f"{stated[name]} ULP" in EXP_HEADER.read_text()


def test_log_of_the_sum_is_within_two_ulp(level):
    # logsumexp([0, d]) = log1p(exp(d)): the kernel's exp and its inline log1p
    # (csrc/sums.h, log1p_nonnegative) in float64, against NumPy's logaddexp,
    # over d from -700 (a sum of 1 + 1e-304) to 0 (log 2), in single rows and in
    # groups of rows (the log of four rows at once).
    d = -np.concatenate([np.geomspace(1e-18, 700, 4000), [0.0, 1e-300, 36.0, 37.5]])
    x = np.stack([np.zeros_like(d), d], axis=1)
    want = np.logaddexp(0.0, d)
    grouped = fs.logsumexp(x, axis=1)
    single = np.array([fs.logsumexp(row) for row in x[:64]])
    for got, exact in ((grouped, want), (single, want[:64])):
        err = np.abs(got - exact) / np.spacing(exact)
        assert err.max() <= 2.0, (err.max(), d[np.argmax(err)])
    assert fs.logsumexp([0.0, -40.0]) == pytest.approx(4.248354255291589e-18, rel=1e-15)
    # Several elements at the max: log(count) + log1p(rest / count).
    assert fs.logsumexp([0.0, 0.0, 0.0, -1.0]) == pytest.approx(np.log(3 + np.exp(-1.0)), rel=4e-16)


# The underflow flag of the calling thread (C99 <fenv.h> through libm). An
# operation whose result is tiny (subnormal, or zero from below the smallest
# normal) and inexact raises it; on Intel cores each such vector operation is
# finished in microcode, exact tiny results included, so the
# flag is a proxy that catches the inexact ones. The exp makes its tiny results
# without such an operation (csrc/exp.h, descale_tiny).
_FE_UNDERFLOW = {"x86_64": 0x10, "AMD64": 0x10, "aarch64": 0x08, "arm64": 0x08}.get(
    platform.machine()
)
_LIBM = ctypes.util.find_library("m") if sys.platform == "linux" else None


def _underflow_raised(call) -> bool:
    libm = ctypes.CDLL(_LIBM)
    libm.feclearexcept(_FE_UNDERFLOW)
    call()
    return bool(libm.fetestexcept(_FE_UNDERFLOW))


needs_fenv = pytest.mark.skipif(
    _FE_UNDERFLOW is None or _LIBM is None, reason="the underflow flag read through glibc"
)


@needs_fenv
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_results_raise_no_underflow(level, dtype):
    """Results that are subnormal or round to zero (below -87 / -708, -inf) come
    out with their right values and without an operation that underflows."""
    low = -110.0 if dtype is np.float32 else -750.0
    d = np.concatenate([np.linspace(low, low / 1.3, 5001), [-np.inf, -1e30, -1e4]]).astype(dtype)
    got = []
    assert not _underflow_raised(lambda: got.append(level.exp_nonpositive(d)))
    assert (got[0] > 0).any() and (got[0] == 0).any()
    assert (got[0] < np.finfo(dtype).smallest_normal).any() and got[0][-3:].max() == 0
    exact = np.exp(d.astype(np.float64 if dtype is np.float32 else np.longdouble))
    err = ulp_error(got[0], exact, dtype)
    assert err.max() <= ulp_bound(level, dtype), (err.max(), d[np.argmax(err)])


@needs_fenv
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masking", ["values", "where"])
@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("shape", [(16, 8), (16, 40), (8, 300), (2, 5000)], ids=str)
@pytest.mark.parametrize("axis", [-1, 0])
def test_masked_rows_raise_no_underflow(level, dtype, masking, function, shape, axis):
    """Attention-style masked rows through every path (short rows, groups, a
    single row, the column sweep): entries at -inf, -1e4 or finfo.min, or left
    out by `where`, are made without an underflowing operation. Every row and
    column keeps finite entries, so none goes to the special-value path; small
    enough to run on the calling thread."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    masked = np.zeros(shape, dtype=bool)
    masked[1::2, 1::3] = masked[::2, 2::5] = masked[1::2, 4::7] = True
    kwargs = {}
    if masking == "where":
        kwargs["where"] = ~masked
    else:
        x[1::2, 1::3] = -np.inf
        x[::2, 2::5] = -1e4
        x[1::2, 4::7] = np.finfo(dtype).min
    f = getattr(fs, function)
    got = []
    assert not _underflow_raised(lambda: got.append(f(x, axis=axis, **kwargs)))
    want = f(x, axis=axis, backend="numpy", **kwargs)
    tol = 1e-5 if dtype is np.float32 else 1e-12
    np.testing.assert_allclose(got[0], want, rtol=tol, atol=tol)
