"""Cases taken from peers' test suites and from the README's contract, run on every backend.

Where the cases come from (translated, not copied):

* SciPy ``scipy/special/tests/test_logsumexp.py`` (TestLogSumExp, TestSoftmax,
  TestLogSoftmax): mpmath fixtures, large inputs, special values, ``b=`` and
  ``return_sign=``, gh-18295, gh-22903, gh-23548, dtypes and shapes.
* JAX ``tests/nn_test.py``: ``testSoftmaxEmptyArray``, ``testSoftmaxEmptyMask``,
  ``testSoftmaxWhereMask`` and the forward half of ``testSoftmaxWhereGrad``.
* PyTorch ``test/test_nn.py``: ``test_softmax_results`` (odd sizes, sliced
  views, both dims), ``test_log_softmax_big`` (a constant offset of 1e7),
  ``test_softmax_double`` (exp(log_softmax) sums to 1), ``test_softmax_cpu`` /
  ``test_log_softmax_cpu`` (float16 / bfloat16) and ``test_softmax_64bit_indexing``
  (identical rows give identical results).
* README (Semantics, Accuracy contract): semantics, errors, the Visualizer numbers
  and the accuracy bounds.

Every value is checked against a reference computed independently: scipy.special
applied to the input converted to float64 (float32/float16/bfloat16 input) or to
np.longdouble (float64, integer and bool input), with the tolerances of the README's
accuracy section. SciPy decides the special values (NaN, +-inf) value for value.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy
import scipy.special as sc

import fastsoftmax as fs

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    AxisError = np.AxisError  # type: ignore[attr-defined,misc]  # noqa: NPY201

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

BACKENDS = fs.backends()
FUNCS = ("softmax", "log_softmax", "logsumexp")
INF = np.inf
NAN = np.nan


@pytest.fixture(params=BACKENDS, ids=[f"backend={b}" for b in BACKENDS])
def backend(request):
    return request.param


def call(kind, x, *args, backend, **kwargs):
    return getattr(fs, kind)(x, *args, backend=backend, **kwargs)


def scipy_call(kind, x, **kwargs):
    """scipy.special with its expected RuntimeWarnings silenced."""
    with np.errstate(all="ignore"):
        return getattr(sc, kind)(x, **kwargs)


# ---------------------------------------------------------------------------
# dtype rules and the reference
# ---------------------------------------------------------------------------


def _is_bfloat16(dtype):
    return dtype.kind == "V" and dtype.name == "bfloat16"


def _dtypes(dtype):
    """(computing dtype, result dtype) as the README states them."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        if dtype.itemsize == 2:
            return np.dtype(np.float32), np.dtype(np.float16)
        return dtype.newbyteorder("="), dtype.newbyteorder("=")
    if _is_bfloat16(dtype):
        return np.dtype(np.float32), dtype
    assert dtype.kind in "biu", dtype
    return np.dtype(np.float64), np.dtype(np.float64)


def _finfo(dtype):
    dtype = np.dtype(dtype)
    if _is_bfloat16(dtype):
        return ml_dtypes.finfo(dtype)
    return np.finfo(dtype)


def _high(a, hp):
    """``a`` converted exactly to the high-precision dtype ``hp``."""
    a = np.asarray(a)
    if _is_bfloat16(a.dtype):
        a = a.astype(np.float32)
    return a.astype(hp)


def _reference(kind, x, axis, temperature=1.0, where=None, keepdims=False):
    """(reference, |x - max| / T, n): scipy on the input in higher precision,
    with where= applied as the README says (masked entries ignored, a row with
    nothing left is 0 / -inf / -inf)."""
    x = np.asarray(x)
    compute, _ = _dtypes(x.dtype)
    hp = np.longdouble if compute == np.float64 else np.float64
    scalar = x.ndim == 0
    if scalar:
        x = x.reshape(1)
        axis = () if axis == () else 0
    xh = _high(x, hp) / hp(temperature)
    mask = None
    if where is not None:
        mask = np.broadcast_to(np.asarray(where), x.shape)
        xh = np.where(mask, xh, hp(-INF))
    with np.errstate(all="ignore"):
        if kind == "logsumexp":
            ref = sc.logsumexp(xh, axis=axis, keepdims=keepdims)
        else:
            ref = getattr(sc, kind)(xh, axis=axis)
        m = np.max(xh, axis=axis, keepdims=True)
        d = np.abs(xh - m)
    d = np.where(np.isfinite(d), d, 0)
    n = max(xh.size // max(m.size, 1), 1)
    ref = np.asarray(ref, dtype=hp)
    if mask is not None:
        keep = kind == "logsumexp" and keepdims
        left = np.any(mask, axis=axis, keepdims=kind != "logsumexp" or keep)
        fill = 0.0 if kind == "softmax" else -INF
        ref = np.where(left, ref, hp(fill))
    if scalar:
        ref, d = ref.reshape(()), d.reshape(())
    return ref, d, n, xh.reshape(()) if scalar else xh


# references of large inputs computed once and shared by the backends (see test_long_float32_row)
_REFERENCES = {}


def assert_spec(
    kind,
    actual,
    x,
    axis=-1,
    *,
    temperature=1.0,
    where=None,
    keepdims=False,
    expected=None,
):
    """``actual`` is ``kind(x, axis, ...)`` within the README's accuracy bounds.

    softmax:     |y - ref| <= 4 eps (1 + |x - max| / T + log n) ref + tiny
    log_softmax: |y - ref| <= 4 eps (1 + |ref|)
    logsumexp:   |y - ref| <= 4 eps (1 + |ref| + log n)
    eps is the computing dtype's; a narrower result dtype (float16, bfloat16)
    adds its rounding (half an ulp). NaN and +-inf must match the reference
    exactly, and a -inf logit must get probability exactly 0.
    """
    x = np.asarray(x)
    compute, result = _dtypes(x.dtype)
    cached = _REFERENCES.get((kind, id(x))) if keepdims is False and where is None else None
    if cached is not None and cached[0] is x and (axis, temperature) == cached[1]:
        ref, d, n, xh = cached[2]
    else:
        ref, d, n, xh = _reference(kind, x, axis, temperature, where, keepdims)
    hp = ref.dtype.type
    if expected is not None:
        ref = np.asarray(expected, dtype=hp)
    # a true value beyond the result dtype's range is correctly rounded to +-inf
    big = float(_finfo(result).max)
    with np.errstate(invalid="ignore"):
        ref = np.where(np.abs(ref) > big, np.copysign(hp(INF), ref), ref)
    actual_arr = np.asarray(actual)
    context = (
        f"{kind}(x, axis={axis!r}, temperature={temperature!r}, keepdims={keepdims}) "
        f"x.dtype={x.dtype} x.shape={x.shape}"
    )
    assert actual_arr.dtype == result, f"{context}: dtype {actual_arr.dtype}, expected {result}"
    assert actual_arr.shape == ref.shape, (
        f"{context}: shape {actual_arr.shape}, expected {ref.shape}"
    )
    a = _high(actual_arr, hp)
    nan_ref = np.isnan(ref)
    if not np.array_equal(np.isnan(a), nan_ref):
        bad = np.argwhere(np.isnan(a) != nan_ref)[:5]
        raise AssertionError(
            f"{context}: NaN where scipy has none, or the reverse, at {bad.tolist()}\n"
            f"x={x!r}\nexpected={ref.astype(np.float64)!r}\nactual={actual_arr!r}"
        )
    inf_ref = np.isinf(ref)
    if not np.array_equal(a[inf_ref], ref[inf_ref]):
        raise AssertionError(
            f"{context}: infinities differ from scipy\n"
            f"x={x!r}\nexpected={ref.astype(np.float64)!r}\nactual={actual_arr!r}"
        )
    finite = ~nan_ref & ~inf_ref
    fi_c, fi_r = _finfo(compute), _finfo(result)
    eps = float(fi_c.eps)
    rounding = float(fi_r.eps) / 2 * 1.01 if fi_r.eps > fi_c.eps else 0.0
    tiny = float(fi_r.smallest_normal)
    absref = np.abs(np.where(finite, ref, 0))
    if kind == "softmax":
        bound = (4 * eps * (1 + d + math.log(n)) + rounding) * absref + tiny
        exact_zero = finite & (ref == 0) & np.isneginf(xh)
        if np.any(a[exact_zero] != 0):
            raise AssertionError(
                f"{context}: a -inf logit did not get probability exactly 0\n"
                f"x={x!r}\nactual={actual_arr!r}"
            )
    elif kind == "log_softmax":
        bound = 4 * eps * (1 + absref) + rounding * absref + tiny
    else:
        bound = 4 * eps * (1 + absref + math.log(n)) + rounding * absref + tiny
    with np.errstate(all="ignore"):
        err = np.abs(a - np.where(finite, ref, 0))
    bad = finite & ~(err <= bound)
    if np.any(bad):
        idx = [tuple(i) for i in np.argwhere(bad)[:5]]
        lines = [
            f"  at {i}: expected {float(ref[i])!r}, actual {float(a[i])!r}, "
            f"|err| {float(err[i]):.3g} > bound {float(bound[i]):.3g}"
            for i in idx
        ]
        raise AssertionError(
            f"{context}: {int(bad.sum())} value(s) outside the accuracy bound\n" + "\n".join(lines)
        )


def check(kind, x, axis=-1, *, backend, temperature=1.0, where=None, keepdims=False):
    """Run fastsoftmax and check it against the reference; return the result."""
    kwargs = {"temperature": temperature, "where": where}
    if kind == "logsumexp":
        kwargs["keepdims"] = keepdims
    before = np.array(x, copy=True)
    actual = call(kind, x, axis, backend=backend, **kwargs)
    assert_spec(kind, actual, x, axis, temperature=temperature, where=where, keepdims=keepdims)
    if isinstance(x, np.ndarray):
        assert_unchanged(x, before)
    return actual


def assert_unchanged(x, before):
    """The input holds the same bits as its copy taken before the call."""
    assert np.ascontiguousarray(x).tobytes() == before.tobytes(), "the input was modified"


def _max_diff(a, b):
    with np.errstate(all="ignore"):
        d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    d = d[np.isfinite(d)]
    return float(d.max()) if d.size else float("nan")


def _seeded(seed):
    return np.random.default_rng(seed)


def run_all(cases, fn):
    """Call ``fn(*case)`` for every case and report every failure together,
    so one broken case does not hide the others."""
    failures = []
    for case in cases:
        args = case if isinstance(case, tuple) else (case,)
        try:
            fn(*args)
        except (Exception, pytest.fail.Exception) as error:
            failures.append(f"--- case {case!r}: {type(error).__name__}: {error}")
    if failures:
        raise AssertionError(
            f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)
        )


# ---------------------------------------------------------------------------
# The API surface
# ---------------------------------------------------------------------------


def test_backends_and_info():
    names = fs.backends()
    assert isinstance(names, tuple)
    assert "numpy" in names
    order = ("cpp", "numba", "numpy")
    assert list(names) == [b for b in order if b in names], names
    info = fs.info()
    assert isinstance(info, dict)
    assert info["version"] == fs.__version__
    assert tuple(info["backends"]) == names
    assert info["threads"] == fs.get_num_threads()
    assert any("simd" in key for key in info), info


def test_default_backend_is_the_first():
    x = _seeded(1).normal(size=(7, 33))
    best = fs.backends()[0]
    for kind in FUNCS:
        assert np.array_equal(getattr(fs, kind)(x), call(kind, x, backend=best))
        assert np.array_equal(getattr(fs, kind)(x, backend=None), call(kind, x, backend=best))


@pytest.mark.parametrize("name", ["cuda", "", "numpy ", "torch"])
def test_unknown_backend_names_the_available_ones(name):
    def one(kind):
        with pytest.raises(ValueError) as info:
            getattr(fs, kind)(np.ones(3), backend=name)
        message = str(info.value)
        for available in fs.backends():
            assert available in message, message

    run_all(FUNCS, one)


def test_num_threads_roundtrip():
    original = fs.get_num_threads()
    assert isinstance(original, int)
    assert original >= 1
    try:
        for n in (1, 2, 3):
            fs.set_num_threads(n)
            assert fs.get_num_threads() == n
            assert fs.info()["threads"] == n
    finally:
        fs.set_num_threads(original)
    assert fs.get_num_threads() == original


# ---------------------------------------------------------------------------
# SciPy: TestSoftmax, TestLogSoftmax
# ---------------------------------------------------------------------------

# mpmath values (dps=200) from scipy's tests
SOFTMAX_ARANGE4 = [
    0.03205860328008499,
    0.08714431874203256,
    0.23688281808991013,
    0.6439142598879722,
]
LOG_SOFTMAX_ARANGE4 = [
    -3.4401896985611953,
    -2.4401896985611953,
    -1.4401896985611953,
    -0.44018969856119533,
]
SOFTMAX_MULTI = [
    [2.678636961770877e-33, 1.9287498479371314e-22, 1.3887943864771144e-11, 0.999999999986112],
    [0.0, 1.9444526359919372e-185, 0.2689414213699951, 0.7310585786300048],
]


def test_scipy_softmax_fixtures(backend):
    e = math.e
    for x, expected in [
        ([1000, 0, 0, 0], [1, 0, 0, 0]),
        ([1.0, 1.0], [0.5, 0.5]),
        ([0.0, 1.0], [1 / (1 + e), e / (1 + e)]),
        (np.arange(4), SOFTMAX_ARANGE4),
        (np.arange(4) + 100, SOFTMAX_ARANGE4),
        (np.arange(4.0) + 100, SOFTMAX_ARANGE4),
    ]:
        x = np.asarray(x)
        got = call("softmax", x, -1, backend=backend)
        assert_spec("softmax", got, x, -1, expected=expected)
    # axis=None works on the whole array and keeps the shape
    x = np.arange(4).reshape(2, 2)
    got = call("softmax", x, None, backend=backend)
    assert_spec("softmax", got, x, None, expected=np.reshape(SOFTMAX_ARANGE4, (2, 2)))
    # scipy: softmax(1000) is 1.0; softmax of a list works
    assert call("softmax", 1000, None, backend=backend) == 1.0
    assert np.array_equal(call("softmax", [1000, 0, 0, 0], -1, backend=backend), [1, 0, 0, 0])


def test_scipy_softmax_multi_axes(backend):
    x = np.array([[1000.0, 0.0], [1000.0, 0.0]])
    assert_spec("softmax", call("softmax", x, 0, backend=backend), x, 0, expected=[[0.5] * 2] * 2)
    assert_spec("softmax", call("softmax", x, 1, backend=backend), x, 1, expected=[[1, 0]] * 2)
    x = np.array([[-25, 0, 25, 50], [1, 325, 749, 750]])
    expected = np.array(SOFTMAX_MULTI)
    assert_spec("softmax", call("softmax", x, 1, backend=backend), x, 1, expected=expected)
    assert_spec("softmax", call("softmax", x.T, 0, backend=backend), x.T, 0, expected=expected.T)
    x3 = x.reshape(2, 2, 2)
    assert_spec(
        "softmax",
        call("softmax", x3, (1, 2), backend=backend),
        x3,
        (1, 2),
        expected=expected.reshape(2, 2, 2),
    )


LOG_SOFTMAX_FIXTURES = [
    ([1000.0, 1.0], -1, [0.0, -999.0]),
    ([1000, 1], -1, [0.0, -999.0]),
    (np.arange(4.0), -1, LOG_SOFTMAX_ARANGE4),
    (np.arange(4.0) + 100, -1, LOG_SOFTMAX_ARANGE4),
    (np.arange(4.0).reshape(2, 2), None, np.reshape(LOG_SOFTMAX_ARANGE4, (2, 2))),
    ([[1000.0, 1.0], [1000.0, 1.0]], 0, np.log(0.5) * np.ones((2, 2))),
    ([[1000.0, 1.0], [1000.0, 1.0]], 1, [[0.0, -999.0], [0.0, -999.0]]),
    (np.arange(8.0).reshape(2, 4), 1, [LOG_SOFTMAX_ARANGE4] * 2),
    (np.arange(8.0).reshape(2, 4).T, 0, np.transpose([LOG_SOFTMAX_ARANGE4] * 2)),
    (np.arange(8.0).reshape(2, 2, 2), (1, 2), np.reshape([LOG_SOFTMAX_ARANGE4] * 2, (2, 2, 2))),
]


def test_scipy_log_softmax_fixtures(backend):
    def one(i):
        x, axis, expected = LOG_SOFTMAX_FIXTURES[i]
        x = np.asarray(x)
        got = call("log_softmax", x, axis, backend=backend)
        assert_spec("log_softmax", got, x, axis, expected=expected)

    run_all(range(len(LOG_SOFTMAX_FIXTURES)), one)
    got = call("log_softmax", 1.0, -1, backend=backend)
    assert np.ndim(got) == 0
    assert got == 0.0


# ---------------------------------------------------------------------------
# SciPy: TestLogSumExp
# ---------------------------------------------------------------------------


def test_scipy_logsumexp_large_inputs(backend):
    a = np.arange(200.0)
    check("logsumexp", a, -1, backend=backend)
    got = call("logsumexp", a, -1, backend=backend)
    with np.errstate(all="ignore"):
        naive = np.log(np.sum(np.exp(a.astype(np.longdouble))))
    assert abs(got - naive) <= 4 * np.finfo(np.float64).eps * (1 + abs(naive))
    got = call("logsumexp", [1000.0, 1000.0], -1, backend=backend)
    assert got == pytest.approx(1000.0 + math.log(2.0), rel=1e-15)
    got = call("logsumexp", np.full(1000, 10000.0), -1, backend=backend)
    assert got == pytest.approx(10000.0 + math.log(1000), rel=1e-15)
    got = call("logsumexp", [1000, 1000], -1, backend=backend)  # array-like ints
    assert got == pytest.approx(1000.0 + math.log(2.0), rel=1e-15)


def test_scipy_logsumexp_many_tiny_terms(backend):
    x = np.full(1_000_000, 1e-40)
    logx = np.log(x)
    big_x, log_big_x = np.stack([x, x]), np.stack([logx, logx])
    for axis, total in [
        (None, big_x.sum()),
        ((0, 1), big_x.sum()),
        (0, big_x.sum(axis=0)),
        (1, big_x.sum(axis=1)),
    ]:
        got = call("logsumexp", log_big_x, axis, backend=backend)
        np.testing.assert_allclose(np.exp(got), total, rtol=1e-9)


def test_scipy_logsumexp_special_values(backend):
    for x, expected in [
        (INF, INF),
        (-INF, -INF),
        (NAN, NAN),
        ([INF], INF),
        ([-INF], -INF),
        ([NAN], NAN),
        ([-INF, -INF], -INF),
    ]:
        got = call("logsumexp", np.asarray(x, dtype=float), -1, backend=backend)
        assert np.ndim(got) == 0
        np.testing.assert_equal(got, expected)
    a = np.array([[1e10, 1e-10], [-1e10, -INF]])
    got = call("logsumexp", a, -1, backend=backend)
    np.testing.assert_allclose(got, [1e10, -1e10], rtol=1e-15)
    got = call("logsumexp", a, -1, keepdims=True, backend=backend)
    np.testing.assert_allclose(got, [[1e10], [-1e10]], rtol=1e-15)
    got = call("logsumexp", a, (-1, -2), backend=backend)
    np.testing.assert_allclose(got, 1e10, rtol=1e-15)
    assert np.ndim(got) == 0


def test_scipy_logsumexp_gh18295(backend):
    # scipy gh-18295: the log1p form keeps the tiny correction
    got = call("logsumexp", np.array([0.0, -40.0]), -1, backend=backend)
    assert got == pytest.approx(4.248354255291589e-18, rel=1e-15, abs=0)
    assert got == pytest.approx(np.logaddexp(0.0, -40.0), rel=1e-15, abs=0)
    if tuple(int(v) for v in scipy.__version__.split(".")[:2]) >= (1, 15):
        # scipy's own fix (scipy PR 21597, in 1.15); older releases return 0.0
        assert got == pytest.approx(scipy_call("logsumexp", [0.0, -40.0]), rel=1e-15, abs=0)
    # the same in other spellings: a list, reversed, a column over axis 0
    assert call("logsumexp", [-40.0, 0.0], -1, backend=backend) == pytest.approx(
        4.248354255291589e-18, rel=1e-15, abs=0
    )
    col = call("logsumexp", np.array([[0.0], [-40.0]]), 0, backend=backend)
    np.testing.assert_allclose(col, [4.248354255291589e-18], rtol=1e-15, atol=0)


def test_scipy_logsumexp_dtypes(backend):
    def one(dtype):
        a = np.array([1000.0, 1000.0]).astype(dtype)
        got = call("logsumexp", a, -1, backend=backend)
        expected_dtype = np.float32 if dtype == "float32" else np.float64
        assert np.asarray(got).dtype == expected_dtype
        rel = 4 * float(np.finfo(expected_dtype).eps)
        assert float(got) == pytest.approx(1000.0 + math.log(2.0), rel=rel)

    run_all(["float32", "float64", "int32", "int64"], one)


def test_scipy_logsumexp_b(backend):
    a = np.arange(200.0)
    b = np.arange(200.0, 0.0, -1.0)
    got = call("logsumexp", a, -1, b=b, backend=backend)
    assert got == pytest.approx(scipy_call("logsumexp", a, b=b), rel=1e-14)
    got = call("logsumexp", np.array([1000, 1000]), -1, b=[1.2, 1.2], backend=backend)
    assert got == pytest.approx(1000 + math.log(2 * 1.2), rel=1e-15)
    x = np.full(100_000, 1e-40)
    w = np.linspace(1, 1000, 100_000)
    log_big_x, big_w = np.stack([np.log(x), np.log(x)]), np.stack([w, w])
    big_x = np.stack([x, x])
    for axis, total in [
        (None, (big_w * big_x).sum()),
        (0, (big_w * big_x).sum(axis=0)),
        (1, (big_w * big_x).sum(axis=1)),
    ]:
        got = call("logsumexp", log_big_x, axis, b=big_w, backend=backend)
        np.testing.assert_allclose(np.exp(got), total, rtol=1e-9)


def test_scipy_logsumexp_b_zero_and_broadcast(backend):
    # b == 0 removes the term, even a huge one
    got = call("logsumexp", np.array([1, 10000]), -1, b=[1, 0], backend=backend)
    assert got == pytest.approx(1.0, rel=1e-15)
    # b broadcasting to a
    a = _seeded(3).normal(size=(3, 4, 5))
    for b in (np.arange(1.0, 6.0), np.arange(1.0, 5.0).reshape(4, 1), np.float64(2.5)):
        for axis in (-1, 1, (0, 2), None):
            got = call("logsumexp", a, axis, b=b, backend=backend)
            expected = scipy_call("logsumexp", a, axis=axis, b=np.broadcast_to(b, a.shape))
            np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_scipy_logsumexp_sign(backend):
    r, s = call(
        "logsumexp", np.array([1, 1, 1]), -1, b=[1, -1, -1], return_sign=True, backend=backend
    )
    assert r == pytest.approx(1.0, rel=1e-15)
    assert s == -1.0
    # the sum is exactly zero: log is -inf (not NaN), the sign is 0
    r, s = call("logsumexp", np.array([1, 1]), -1, b=[1, -1], return_sign=True, backend=backend)
    assert not np.isfinite(r)
    assert not np.isnan(r)
    assert r < 0
    assert s == 0


def test_scipy_logsumexp_sign_shapes(backend):
    a = np.ones((1, 2, 3, 4))
    b = np.ones_like(a)
    r, s = call("logsumexp", a, 2, b=b, return_sign=True, backend=backend)
    assert r.shape == s.shape == (1, 2, 4)
    r, s = call("logsumexp", a, (1, 3), b=b, return_sign=True, backend=backend)
    assert r.shape == s.shape == (1, 3)
    assert call("logsumexp", a, 2, b=b, backend=backend).shape == (1, 2, 4)
    assert call("logsumexp", a, (1, 3), b=b, backend=backend).shape == (1, 3)
    r, s = call("logsumexp", a, (1, 3), b=b, return_sign=True, keepdims=True, backend=backend)
    assert r.shape == s.shape == (1, 1, 3, 1)


def test_scipy_logsumexp_gh22903(backend):
    # the weight of the largest term is negative but the sum is positive
    a = np.array([3.06409428, 0.37251854, 3.87471931])
    b = np.array([1.88190708, 2.84174795, -0.85016884])
    plain = call("logsumexp", a, -1, b=b, backend=backend)
    value, sign = call("logsumexp", a, -1, b=b, return_sign=True, backend=backend)
    expected = scipy_call("logsumexp", a, b=b)
    assert plain == pytest.approx(expected, rel=1e-14)
    assert value == pytest.approx(expected, rel=1e-14)
    assert sign == 1.0
    # the sum is negative: NaN without return_sign
    b2 = np.array([1.88190708, 2.84174795, -3.85016884])
    assert np.isnan(call("logsumexp", a, -1, b=b2, backend=backend))
    value, sign = call("logsumexp", a, -1, b=b2, return_sign=True, backend=backend)
    ev, es = scipy_call("logsumexp", a, b=b2, return_sign=True)
    assert value == pytest.approx(ev, rel=1e-14)
    assert sign == es == -1.0


def test_scipy_logsumexp_gh23548(backend):
    for b, sign_ref in [(None, 1.0), ([-1.0], -1.0)]:
        value, sign = call("logsumexp", np.array([INF]), -1, b=b, return_sign=True, backend=backend)
        assert np.isinf(value)
        assert sign == sign_ref


def test_scipy_logsumexp_b_random_vs_scipy(backend):
    rng = _seeded(5)
    a = rng.normal(scale=3, size=(4, 6, 5))
    b = rng.normal(size=(4, 6, 5))

    def one(axis, keepdims, temperature):
        value, sign = call(
            "logsumexp",
            a,
            axis,
            b=b,
            return_sign=True,
            keepdims=keepdims,
            temperature=temperature,
            backend=backend,
        )
        ev, es = scipy_call(
            "logsumexp", a / temperature, axis=axis, b=b, return_sign=True, keepdims=keepdims
        )
        assert np.shape(value) == np.shape(ev)
        np.testing.assert_array_equal(sign, es)
        np.testing.assert_allclose(value, ev, rtol=1e-12, atol=1e-12)
        plain = call(
            "logsumexp",
            a,
            axis,
            b=b,
            keepdims=keepdims,
            temperature=temperature,
            backend=backend,
        )
        expected = scipy_call("logsumexp", a / temperature, axis=axis, b=b, keepdims=keepdims)
        np.testing.assert_allclose(plain, expected, rtol=1e-12, atol=1e-12, equal_nan=True)

    run_all(
        [(ax, kd, t) for ax in (-1, 0, (0, 2), None) for kd in (False, True) for t in (1.0, 0.3)],
        one,
    )


def test_scipy_logsumexp_no_writeback(backend):
    a = np.array([5.0, 4.0])
    b = np.array([3.0, 2.0])
    call("logsumexp", a, -1, backend=backend)
    call("logsumexp", a, -1, b=b, backend=backend)
    call("logsumexp", a, -1, b=b, return_sign=True, backend=backend)
    assert np.array_equal(a, [5.0, 4.0])
    assert np.array_equal(b, [3.0, 2.0])


# ---------------------------------------------------------------------------
# Special values, value for value with scipy
# ---------------------------------------------------------------------------

SPECIAL_ROWS = [
    [INF, 1.0],
    [1.0, INF],
    [-INF, -INF],
    [-INF],
    [INF],
    [NAN],
    [NAN, 1.0],
    [INF, INF],
    [INF, -INF],
    [-INF, 1.0],
    [-INF, 1.0, -INF, 2.0],
    [INF, NAN],
    [-INF, NAN],
    [-INF, INF, 1.0],
    [-INF, -INF, INF],
    [1e308, -1e308],
    [-1e308, -INF, -1e308],
    [5e-324, 0.0, -5e-324],
]

FLOAT_DTYPES = [np.float64, np.float32, np.float16]
if ml_dtypes is not None:
    FLOAT_DTYPES.append(ml_dtypes.bfloat16)


@pytest.mark.parametrize("row", SPECIAL_ROWS, ids=lambda r: repr(r).replace(" ", ""))
def test_special_rows_match_scipy(backend, row):
    def one(kind, dtype):
        with np.errstate(over="ignore", under="ignore"):
            x = np.array(row).astype(dtype)
        if not np.array_equal(x.astype(np.float64), np.array(row), equal_nan=True):
            return  # not representable in this dtype
        check(kind, x, -1, backend=backend)
        check(kind, np.stack([x, x[::-1]]), -1, backend=backend)
        check(kind, np.stack([x, x[::-1]]).T, 0, backend=backend)

    run_all([(k, d) for k in FUNCS for d in FLOAT_DTYPES], one)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_specials_in_simd_tails(backend, dtype):
    # every row length around the vector widths, a special value at every position
    def one(n):
        x = _seeded(n).normal(scale=2.0, size=(3 * n, n)).astype(dtype)
        for block, special in enumerate((NAN, INF, -INF)):
            # row i of the block has the special value at position i
            np.fill_diagonal(x[block * n : (block + 1) * n], special)
        # and rows of -inf but for the diagonal: one-hot results
        hot = np.full((n, n), -INF, dtype=dtype)
        np.fill_diagonal(hot, 1.5)
        x = np.concatenate([x, hot])
        for kind in FUNCS:
            check(kind, x, -1, backend=backend)
            check(kind, x.T, 0, backend=backend)

    run_all(list(range(1, 35)), one)


@pytest.mark.parametrize(
    "axis", [-1, 0, 1, -2, (0, 2), (2, 0), (0, 1, 2), None, ()], ids=lambda a: f"axis={a!r}"
)
def test_random_with_specials_match_scipy(backend, axis):
    def one(kind, dtype):
        rng = _seeded(11)
        x = rng.normal(scale=3.0, size=(4, 5, 6))
        u = rng.random(x.shape)
        x[u < 0.15] = -INF
        x[(u > 0.95) & (u < 0.97)] = INF
        x[u > 0.985] = NAN
        x[1, 2, :] = -INF  # a row of only -inf
        x[2, :, 3] = -INF  # a column of only -inf
        x = x.astype(dtype)
        x[3, 0, :] = np.finfo(dtype).max / 4  # equal, large
        check(kind, x, axis, backend=backend)
        if kind == "logsumexp":
            check(kind, x, axis, keepdims=True, backend=backend)

    run_all([(k, d) for k in FUNCS for d in (np.float64, np.float32)], one)


@pytest.mark.parametrize(
    "axis", [-1, 0, 2, -2, (0, 1), (1, 2), (-1, 0), None, ()], ids=lambda a: f"axis={a!r}"
)
def test_axis_variants_vs_scipy(backend, axis):
    def one(kind, dtype):
        x = _seeded(12).normal(scale=4.0, size=(3, 4, 5)).astype(dtype)
        check(kind, x, axis, backend=backend)
        if kind == "logsumexp":
            kept = check(kind, x, axis, keepdims=True, backend=backend)
            assert kept.shape == np.sum(x, axis=axis, keepdims=True).shape

    run_all([(k, d) for k in FUNCS for d in (np.float64, np.float32)], one)


@pytest.mark.parametrize(
    "axis",
    [(0, 2, 4), (1, 3), (-1, -3), (4, 0), np.int64(-2), np.int32(1), (np.int64(0),)],
    ids=lambda a: f"axis={a!r}",
)
def test_axis_variants_5d(backend, axis):
    x = _seeded(13).normal(scale=3.0, size=(2, 3, 2, 3, 4))
    x[1, 2, 0, 1, :] = -INF
    run_all(FUNCS, lambda kind: check(kind, x, axis, backend=backend))


def test_axis_empty_tuple_values(backend):
    x = np.array([[1.0, -2.0, 3.5], [0.0, 7.0, -1.0]])
    assert np.array_equal(call("softmax", x, (), backend=backend), np.ones_like(x))
    assert np.array_equal(call("log_softmax", x, (), backend=backend), np.zeros_like(x))
    assert np.array_equal(call("logsumexp", x, (), backend=backend), x)


@pytest.mark.parametrize(
    "value", [3.0, -2.5, 0.0, 1e300, INF, -INF, NAN, 7, True, np.float32(2)], ids=repr
)
def test_zero_d_like_scipy(backend, value):
    def one(kind, axis):
        got = call(kind, value, axis, backend=backend)
        assert np.ndim(got) == 0
        expected = scipy_call(kind, np.float64(value), axis=axis)  # scipy rejects bool
        np.testing.assert_array_equal(np.float64(got), np.asarray(expected).reshape(()))
        assert_spec(kind, got, np.asarray(value), axis)

    run_all([(k, a) for k in FUNCS for a in (-1, None, 0, ())], one)


# ---------------------------------------------------------------------------
# Size-0 arrays (README: size-0 in, size-0 out; logsumexp over nothing is -inf)
# ---------------------------------------------------------------------------

EMPTY_CASES = [
    ((0,), -1),
    ((0,), 0),
    ((0,), None),
    ((0,), ()),
    ((3, 0), -1),
    ((3, 0), 0),
    ((3, 0), None),
    ((0, 3), -1),
    ((0, 3), 0),
    ((0, 3), None),
    ((2, 0, 3), 1),
    ((2, 0, 3), (0, 2)),
    ((2, 0, 3), (1, 2)),
    ((2, 0, 3), None),
]


@pytest.mark.parametrize(("shape", "axis"), EMPTY_CASES, ids=repr)
def test_size_zero(backend, shape, axis):
    def softmax_like(kind, dtype):
        x = np.zeros(shape, dtype=dtype)
        result = _dtypes(dtype)[1]
        got = call(kind, x, axis, backend=backend)
        assert got.shape == shape
        assert got.dtype == result
        got = call(kind, x, axis, out=np.empty(shape, dtype=result), backend=backend)
        assert got.shape == shape

    def lse(keepdims, dtype):
        x = np.zeros(shape, dtype=dtype)
        got = call("logsumexp", x, axis, keepdims=keepdims, backend=backend)
        assert np.shape(got) == np.sum(x, axis=axis, keepdims=keepdims).shape
        assert np.asarray(got).dtype == _dtypes(dtype)[1]
        assert np.all(np.isneginf(got)), got

    dtypes = (np.float64, np.float32, np.float16, np.int64)
    run_all([(k, d) for k in ("softmax", "log_softmax") for d in dtypes], softmax_like)
    run_all([(kd, d) for kd in (False, True) for d in dtypes], lse)


def test_jax_softmax_empty_array(backend):
    x = np.array([], dtype=float)
    for kind in ("softmax", "log_softmax"):
        got = call(kind, x, -1, backend=backend)
        assert got.shape == (0,)
        assert got.dtype == np.float64
    assert call("logsumexp", x, -1, backend=backend) == -INF
    assert call("logsumexp", [], None, backend=backend) == -INF


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

BAD_INPUTS = {
    "complex128": np.array([1 + 1j, 2 - 1j]),
    "complex64": np.array([1, 2], dtype=np.complex64),
    "object": np.array([1.0, None], dtype=object),
    "object-numbers": np.array([1.0, 2.0], dtype=object),
    "str": np.array(["a", "b"]),
    "bytes": np.array([b"a", b"b"]),
    "python-complex": [1j, 2.0],
    "python-str": ["1.0", "2.0"],
}


def test_bad_dtype_raises_type_error(backend):
    def one(kind, name):
        with pytest.raises(TypeError) as info:
            call(kind, BAD_INPUTS[name], -1, backend=backend)
        assert "float" in str(info.value), "the message should say which dtypes work"

    run_all([(k, n) for k in FUNCS for n in BAD_INPUTS], one)


def test_axis_errors(backend):
    def out_of_range(kind, shape, axis):
        with pytest.raises(AxisError):
            call(kind, np.ones(shape), axis, backend=backend)

    def duplicate(kind, axis):
        with pytest.raises(ValueError, match=r"(?i)duplicate"):
            call(kind, np.ones((2, 3)), axis, backend=backend)

    def float_axis(kind, axis):
        with pytest.raises(TypeError):
            call(kind, np.ones((2, 3)), axis, backend=backend)

    bad = [
        ((2, 3), 2),
        ((2, 3), -3),
        ((2, 3), (0, 2)),
        ((2, 3), (-3,)),
        ((4,), 1),
        ((), 1),
        ((), -2),
    ]
    run_all([(k, s, a) for k in FUNCS for s, a in bad], out_of_range)
    run_all([(k, a) for k in FUNCS for a in [(0, 0), (1, -1), (0, 1, 0), (-2, 0)]], duplicate)
    floats = [1.0, -1.0, np.float64(0), (0, 1.0), 0.5]
    run_all([(k, a) for k in FUNCS for a in floats], float_axis)


def test_bad_temperature(backend):
    def one(kind, temperature):
        with pytest.raises(ValueError):
            call(kind, np.ones((2, 3)), -1, temperature=temperature, backend=backend)

    bad = [0, 0.0, -0.0, -1, -0.5, INF, -INF, NAN, np.float32(0)]
    run_all([(k, t) for k in FUNCS for t in bad], one)


def test_where_errors(backend):
    def not_bool(kind, where):
        with pytest.raises(TypeError):
            call(kind, np.ones((2, 3)), -1, where=where, backend=backend)

    def not_broadcasting(kind, shape):
        with pytest.raises(ValueError):
            call(kind, np.ones((2, 3)), -1, where=np.ones(shape, dtype=bool), backend=backend)

    masks = [np.array([1, 0, 1]), np.array([1.0, 0.0, 1.0]), [1, 0, 1], np.array([0.5, 0, 1]), 1]
    run_all([(k, m) for k in FUNCS for m in masks], not_bool)
    shapes = [(4,), (2,), (3, 2), (2, 2, 3), (1, 4)]
    run_all([(k, s) for k in FUNCS for s in shapes], not_broadcasting)


def test_out_wrong_shape_and_dtype(backend):
    x = np.ones((2, 3))

    def softmax_like(kind):
        for shape in [(3, 2), (2, 3, 1), (6,), ()]:
            with pytest.raises(ValueError):
                call(kind, x, -1, out=np.empty(shape), backend=backend)
        for dtype in [np.float32, np.float16, np.int64, np.complex128]:
            with pytest.raises(TypeError):
                call(kind, x, -1, out=np.empty((2, 3), dtype=dtype), backend=backend)
        with pytest.raises(TypeError):
            call(kind, x.astype(np.float32), -1, out=np.empty((2, 3)), backend=backend)
        with pytest.raises(TypeError):
            call(
                kind,
                np.ones((2, 3), dtype=np.int32),
                -1,
                out=np.empty((2, 3), np.int32),
                backend=backend,
            )

    def lse(shape, keepdims):
        with pytest.raises(ValueError):
            call("logsumexp", x, -1, keepdims=keepdims, out=np.empty(shape), backend=backend)

    run_all(["softmax", "log_softmax"], softmax_like)
    run_all([((2, 1), False), ((2,), True), ((3,), False), ((2, 3), False)], lse)
    with pytest.raises(TypeError):
        call("logsumexp", x, -1, out=np.empty((2,), dtype=np.float32), backend=backend)


def test_out_read_only(backend):
    def one(kind):
        x = np.ones((2, 3))
        out = np.empty((2,) if kind == "logsumexp" else (2, 3))
        out.flags.writeable = False
        with pytest.raises((ValueError, TypeError)):
            call(kind, x, -1, out=out, backend=backend)

    run_all(FUNCS, one)


# ---------------------------------------------------------------------------
# where= (jax.nn.softmax semantics)
# ---------------------------------------------------------------------------

JAX_X = np.array([5.5, 1.3, -4.2, 0.9])
JAX_M = np.array([True, False, True, True])


def test_jax_where_mask(backend):
    for kind in ("softmax", "log_softmax"):
        out = call(kind, JAX_X, -1, where=JAX_M, backend=backend)
        assert_spec(kind, out[JAX_M], JAX_X[JAX_M], expected=scipy_call(kind, JAX_X[JAX_M]))
        assert np.all(out[~JAX_M] == (0.0 if kind == "softmax" else -INF))
        probs = out if kind == "softmax" else np.exp(out)
        assert abs(probs.sum() - 1.0) <= 8 * np.finfo(np.float64).eps
        check(kind, JAX_X, -1, where=JAX_M, backend=backend)
    lse = call("logsumexp", JAX_X, -1, where=JAX_M, backend=backend)
    assert lse == pytest.approx(scipy_call("logsumexp", JAX_X[JAX_M]), rel=1e-15)


def test_jax_empty_mask(backend):
    def one(kind, dtype, mask):
        got = call(kind, JAX_X.astype(dtype), -1, where=mask, backend=backend)
        fill = {"softmax": 0.0, "log_softmax": -INF, "logsumexp": -INF}[kind]
        assert np.all(np.asarray(got) == fill), got
        assert np.shape(got) == (() if kind == "logsumexp" else JAX_X.shape)
        assert np.asarray(got).dtype == dtype

    masks = [np.zeros_like(JAX_X, dtype=bool), np.bool_(False), False, [False] * 4]
    run_all([(k, d, m) for k in FUNCS for d in (np.float64, np.float32) for m in masks], one)


def test_jax_where_ignores_large_masked_value(backend):
    # forward half of jax's testSoftmaxWhereGrad (jax issue 19490)
    x = np.array([36.0, 10000.0])
    assert np.array_equal(call("softmax", x, -1, where=x < 1000, backend=backend), [1.0, 0.0])
    assert np.array_equal(call("log_softmax", x, -1, where=x < 1000, backend=backend), [0.0, -INF])
    assert call("logsumexp", x, -1, where=x < 1000, backend=backend) == 36.0


def test_where_ignores_inf_and_nan(backend):
    x64 = np.array([[1.0, INF, NAN, 2.0, -INF], [NAN, 0.5, INF, -1.0, 3.0]])
    m = np.array([[True, False, False, True, True], [False, True, False, True, True]])

    def one(kind, dtype):
        x = x64.astype(dtype)
        got = check(kind, x, -1, where=m, backend=backend)
        if kind != "logsumexp":
            fill = 0.0 if kind == "softmax" else -INF
            assert np.all(got[~m] == fill)
        check(kind, x.T, 0, where=m.T, backend=backend)

    run_all([(k, d) for k in FUNCS for d in FLOAT_DTYPES], one)


WHERE_CASES = [
    ((6,), -1),
    ((5, 1), -1),
    ((5, 6), -1),
    ((1, 6), 0),
    ((5, 1), 0),
    ((4, 1, 6), -1),
    ((1, 5, 1), (0, 2)),
    ((5, 6), None),
    ((), -1),
    ((6,), ()),
]


@pytest.mark.parametrize(("mask_shape", "axis"), WHERE_CASES, ids=repr)
def test_where_broadcasting(backend, mask_shape, axis):
    rng = _seeded(21)
    x = rng.normal(scale=2.0, size=(4, 5, 6))
    mask = rng.random(mask_shape) < 0.6
    if mask.ndim:
        mask.flat[0] = False  # at least one masked-out entry ...
        if mask.size > 1:
            mask.flat[-1] = True  # ... and one kept
    # masked-out entries hold inf / NaN: they must not matter
    full = np.broadcast_to(mask, x.shape)
    x[~full & (rng.random(x.shape) < 0.3)] = INF
    x[~full & (rng.random(x.shape) < 0.3)] = NAN

    def one(kind):
        got = check(kind, x, axis, where=mask, backend=backend)
        if kind == "logsumexp":
            check(kind, x, axis, where=mask, keepdims=True, backend=backend)
        else:
            fill = 0.0 if kind == "softmax" else -INF
            assert np.all(got[~full] == fill)
        check(kind, x.astype(np.float32), axis, where=mask, backend=backend)
        if mask.ndim == 1:  # a python list of bools works too
            check(kind, x, axis, where=mask.tolist(), backend=backend)

    run_all(FUNCS, one)


def test_where_mask_layouts(backend):
    # the mask itself non-contiguous, Fortran ordered, reversed or broadcast
    rng = _seeded(24)
    x = rng.normal(size=(6, 7))
    big = rng.random((12, 21)) < 0.6
    masks = {
        "strided": big[::2, ::3],
        "fortran": np.asfortranarray(big[:6, :7]),
        "reversed": big[:6, :7][::-1, ::-1],
        "broadcast-row": np.broadcast_to(big[0, :7], (6, 7)),
    }

    def one(kind, name, axis):
        check(kind, x, axis, where=masks[name], backend=backend)
        check(kind, np.asfortranarray(x), axis, where=masks[name], backend=backend)

    run_all([(k, m, a) for k in FUNCS for m in masks for a in (-1, 0, None)], one)


def test_where_on_size_zero(backend):
    def one(kind, shape, axis):
        x = np.zeros(shape)
        got = call(kind, x, axis, where=np.ones(shape, dtype=bool), backend=backend)
        expected_shape = np.sum(x, axis=axis).shape if kind == "logsumexp" else shape
        assert np.shape(got) == expected_shape
        assert np.all(np.isneginf(got)) if kind == "logsumexp" else np.size(got) == 0

    run_all([(k, s, a) for k in FUNCS for s, a in [((3, 0), -1), ((0, 3), -1), ((3, 0), 0)]], one)


def test_where_fully_masked_rows(backend):
    x = _seeded(22).normal(size=(3, 4))
    x[1] = [INF, NAN, -INF, 1e300]
    m = np.array([[True], [False], [True]])
    s = call("softmax", x, -1, where=m, backend=backend)
    ls = call("log_softmax", x, -1, where=m, backend=backend)
    lse = call("logsumexp", x, -1, where=m, backend=backend)
    assert np.array_equal(s[1], np.zeros(4))
    assert np.array_equal(ls[1], np.full(4, -INF))
    assert lse[1] == -INF
    assert np.all(np.isfinite(s[[0, 2]]))
    for kind in FUNCS:
        check(kind, x, -1, where=m, backend=backend)


def test_where_with_temperature_and_out(backend):
    rng = _seeded(23)
    x = rng.normal(size=(5, 7))
    m = rng.random((5, 7)) < 0.5
    m[:, 0] = True
    for kind in ("softmax", "log_softmax"):
        out = np.full_like(x, 123.0)
        got = call(kind, x, -1, where=m, temperature=0.7, out=out, backend=backend)
        assert_spec(kind, out, x, -1, temperature=0.7, where=m)
        assert np.array_equal(np.asarray(got), out)
    out = np.empty(5)
    call("logsumexp", x, -1, where=m, temperature=0.7, out=out, backend=backend)
    assert_spec("logsumexp", out, x, -1, temperature=0.7, where=m)


# ---------------------------------------------------------------------------
# temperature and the Softmax Visualizer numbers (README)
# ---------------------------------------------------------------------------

VISUALIZER = [
    ([2.0, 1.0, 0.1], 1.0, [0.659, 0.242, 0.099]),
    ([2.0, 1.0, 0.1], 0.5, [0.864, 0.117, 0.019]),
    ([2.0, 1.0, 0.1], 2.0, [0.502, 0.304, 0.194]),
    ([10, 9, 9], 1.0, [0.576, 0.212, 0.212]),
    ([10.0, 9.0, 9.0], 1.0, [0.576, 0.212, 0.212]),
]


def test_visualizer_numbers(backend):
    def one(i, dtype):
        x, temperature, expected = VISUALIZER[i]
        arr = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
        got = np.asarray(
            call("softmax", arr, -1, temperature=temperature, backend=backend), np.float64
        )
        assert np.all(np.abs(got - expected) <= 5e-4), got
        assert np.array_equal(np.round(got, 3), expected), got
        # the often-quoted wrong numbers are not what it gives
        assert not np.allclose(got, [0.65, 0.24, 0.11], atol=1e-3)
        assert not np.allclose(got, [0.84, 0.08, 0.08], atol=1e-3)

    run_all([(i, d) for i in range(len(VISUALIZER)) for d in (np.float64, np.float32, None)], one)


@pytest.mark.parametrize("temperature", [0.05, 0.3, 0.5, 1.0, 2.0, 7.5, 1e3], ids=repr)
def test_temperature_is_division(backend, temperature):
    x = _seeded(31).normal(scale=3.0, size=(6, 40))

    def one(kind):
        got = check(kind, x, -1, temperature=temperature, backend=backend)
        divided = call(kind, x / temperature, -1, backend=backend)
        np.testing.assert_allclose(got, divided, rtol=1e-11, atol=1e-300)
        check(kind, x.astype(np.float32), -1, temperature=temperature, backend=backend)
        check(kind, x, 0, temperature=temperature, backend=backend)

    run_all(FUNCS, one)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0, 1e-3, 1e-30, 1e30], ids=repr)
def test_large_logits_never_overflow(backend, temperature):
    x64 = np.array([[1000.0, 999.0, 998.0], [-1000.0, -999.0, -998.0], [80.0, 88.0, 89.0]])

    def one(kind, dtype):
        got = check(kind, x64.astype(dtype), -1, temperature=temperature, backend=backend)
        if kind == "softmax":
            assert np.all(np.isfinite(got))

    run_all([(k, d) for k in FUNCS for d in (np.float64, np.float32)], one)


@pytest.mark.parametrize("temperature", [1e-300, 1e300], ids=repr)
def test_temperature_outside_float32_range(backend, temperature):
    # a positive finite T is valid even when float32 cannot hold it
    x = np.array([[2.0, 1.0, 0.1], [2.0, 1.0, -INF]], dtype=np.float32)
    run_all(FUNCS, lambda kind: check(kind, x, -1, temperature=temperature, backend=backend))


def test_temperature_huge_range_of_logits(backend):
    # x / T is [1, -1]; (x - max) = -2e308 overflows if formed before dividing
    x = np.array([1e308, -1e308])
    run_all(FUNCS, lambda kind: check(kind, x, -1, temperature=1e308, backend=backend))


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtype_rules(backend, dtype):
    rng = _seeded(41)
    if np.dtype(dtype).kind == "b":
        x = rng.random((5, 9)) < 0.5
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        x = rng.integers(max(info.min, -50), min(info.max, 50), size=(5, 9), endpoint=True)
        x = x.astype(dtype)
        x[0, 0], x[1, 1] = info.max, info.min
    else:
        x = rng.normal(scale=3.0, size=(5, 9)).astype(dtype)

    def one(kind):
        got = check(kind, x, -1, backend=backend)
        assert np.asarray(got).dtype == _dtypes(dtype)[1]
        check(kind, x, 0, backend=backend)
        check(kind, x, None, backend=backend)
        check(kind, x, -1, temperature=0.5, backend=backend)

    run_all(FUNCS, one)


def test_python_inputs(backend):
    def one(kind, x):
        got = check(kind, np.asarray(x), -1, backend=backend)
        assert np.array_equal(got, call(kind, x, -1, backend=backend), equal_nan=True)
        assert np.asarray(got).dtype == np.float64

    inputs = [[1, 2, 3], [1.0, 2.0, 3.0], [True, False], [[1, 2], [3, 4]], (0.5, -0.5)]
    run_all([(k, x) for k in FUNCS for x in inputs], one)


@pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes not installed")
def test_bfloat16(backend):
    x = _seeded(42).normal(scale=3.0, size=(6, 50)).astype(ml_dtypes.bfloat16)
    x[0, 3] = -INF

    def one(kind):
        got = check(kind, x, -1, backend=backend)
        assert np.asarray(got).dtype == np.dtype(ml_dtypes.bfloat16)
        check(kind, x, 0, backend=backend)
        check(kind, x, -1, temperature=0.5, backend=backend)

    run_all(FUNCS, one)


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_torch_low_precision_cpu(backend, low):
    # torch test_softmax_cpu / test_log_softmax_cpu: rand(200, 200) in a low
    # precision dtype against float32 (atol 1e-3 / 0.1), plus the README's own bound
    if low == "bfloat16":
        if ml_dtypes is None:
            pytest.skip("ml_dtypes not installed")
        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = np.dtype(np.float16)
    xf = _seeded(43).random((200, 200)).astype(np.float32)
    x = xf.astype(dtype)

    def one(kind, axis):
        got = check(kind, x, axis, backend=backend)
        outf = scipy_call(kind, xf.astype(np.float64), axis=axis)
        atol = 1e-3 if kind == "softmax" else 0.1
        np.testing.assert_allclose(np.asarray(got).astype(np.float64), outf, atol=atol, rtol=0)

    run_all([(k, a) for k in ("softmax", "log_softmax") for a in (0, 1)], one)


# ---------------------------------------------------------------------------
# Layouts, input untouched, out= and in place
# ---------------------------------------------------------------------------


def _unaligned(a):
    buf = np.empty(a.nbytes + a.itemsize, dtype=np.uint8)
    view = np.ndarray(a.shape, dtype=a.dtype, buffer=buf, offset=1)
    view[...] = a
    assert not view.flags.aligned
    return view


def _layouts(dtype):
    rng = _seeded(51)
    base = rng.normal(scale=3.0, size=(6, 8, 9)).astype(dtype)
    base.flat[::17] = -INF
    big = rng.normal(scale=3.0, size=(13, 25, 19)).astype(dtype)
    swapped_dtype = np.dtype(dtype).newbyteorder("S")
    row = rng.normal(size=9).astype(dtype)
    return {
        "C": base,
        "F": np.asfortranarray(base),
        "negative-strides": base[::-1, :, ::-1],
        "all-negative": base[::-1, ::-1, ::-1],
        "sliced": big[1::2, 3:19:2, ::2],
        "transposed": base.transpose(2, 0, 1),
        "byteswapped": base.astype(swapped_dtype),
        "byteswapped-F": np.asfortranarray(base.astype(swapped_dtype)),
        "unaligned": _unaligned(base),
        "unaligned-byteswapped": _unaligned(base.astype(swapped_dtype)),
        "broadcast-readonly": np.broadcast_to(row, (6, 8, 9)),
        "readonly": np.frombuffer(base.tobytes(), dtype=dtype).reshape(base.shape),
    }


LAYOUT_NAMES = list(_layouts(np.float64))


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_layouts_match_contiguous_copy(backend, dtype, layout):
    x = _layouts(dtype)[layout]
    before = np.array(x, copy=True)
    contiguous = np.ascontiguousarray(x).astype(np.dtype(x.dtype).newbyteorder("="))
    mask = _seeded(55).random(x.shape[1:]) < 0.7

    def one(kind, axis, extra):
        got = call(kind, x, axis, backend=backend, **extra)
        ref = call(kind, contiguous, axis, backend=backend, **extra)
        if not np.array_equal(got, ref, equal_nan=True):
            raise AssertionError(
                f"differs from the contiguous copy (max abs diff {_max_diff(got, ref):.3g})"
            )
        assert np.asarray(got).dtype == _dtypes(dtype)[1]
        assert_spec(kind, got, contiguous, axis, **extra)
        assert_unchanged(x, before)

    extras = [{}, {"where": mask, "temperature": 0.6}]
    axes = (-1, 0, 1, (0, 2))
    run_all([(k, a, e) for k in FUNCS for a in axes for e in extras], one)


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_in_place(backend, dtype, order):
    x0 = _seeded(52).normal(scale=2.0, size=(7, 12)).astype(dtype)

    def one(kind, axis):
        expected = call(kind, x0, axis, backend=backend)
        if order == "F":
            x = np.asfortranarray(x0.copy())
        elif order == "strided":
            holder = np.zeros((7, 24), dtype=dtype)
            x = holder[:, ::2]
            x[...] = x0
        else:
            x = x0.copy()
        got = call(kind, x, axis, out=x, backend=backend)
        if not np.array_equal(x, expected):
            raise AssertionError(
                f"in place differs from out-of-place (max abs diff {_max_diff(x, expected):.3g})"
            )
        assert np.array_equal(np.asarray(got), expected)
        if order == "strided":
            assert np.all(holder[:, 1::2] == 0), "out= wrote outside its view"

    run_all([(k, a) for k in ("softmax", "log_softmax") for a in (-1, 0, None)], one)


def test_out_strided_and_returned(backend):
    x = _seeded(53).normal(size=(5, 8))

    def one(kind):
        if kind == "logsumexp":
            holder = np.zeros(10)
            out = holder[::2]
        else:
            holder = np.zeros((5, 16))
            out = holder[:, ::2]
        got = call(kind, x, -1, out=out, backend=backend)
        expected = call(kind, x, -1, backend=backend)
        assert np.array_equal(out, expected)
        assert np.array_equal(np.asarray(got), expected)
        assert np.all(holder[..., 1::2] == 0), "out= wrote outside its view"

    run_all(FUNCS, one)


def test_out_partial_overlap(backend):
    # README: a partial overlap is handled correctly or refused, never silently wrong
    def one(kind, axis, shift):
        buf = _seeded(54).normal(size=(6, 7))
        x = buf[:4]
        out = buf[shift : 4 + shift]
        expected = call(kind, x.copy(), axis, backend=backend)
        try:
            call(kind, x, axis, out=out, backend=backend)
        except (ValueError, TypeError):
            return  # refused
        assert np.array_equal(out, expected)

    run_all([(k, a, s) for k in ("softmax", "log_softmax") for a in (-1, 0) for s in (1, 2)], one)


def test_out_for_zero_d_and_int_input(backend):
    out = np.empty(())
    call("softmax", np.float64(4.0), -1, out=out, backend=backend)
    assert out[()] == 1.0
    out = np.empty((2, 3))
    x = np.arange(6).reshape(2, 3)
    call("softmax", x, -1, out=out, backend=backend)
    assert_spec("softmax", out, x, -1)
    out16 = np.empty((2, 3), dtype=np.float16)
    x16 = x.astype(np.float16)
    call("log_softmax", x16, -1, out=out16, backend=backend)
    assert_spec("log_softmax", out16, x16, -1)


# ---------------------------------------------------------------------------
# PyTorch test_nn.py
# ---------------------------------------------------------------------------

TORCH_SIZES = [
    (0, 10),
    (32, 20),
    (10, 0),
    (31, 20),
    (32, 21),
    (31, 23),
    (32, 1536),
    (31, 2048),
    (33, 2049),
    (16, 30576),
]


@pytest.mark.parametrize("size", TORCH_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_torch_softmax_results(backend, size):
    base = _seeded(61).random(size).astype(np.float32)

    def one(kind, shift, axis):
        x = base[shift[0] :, shift[1] :]
        if x.size == 0:
            got = call(kind, x, axis, backend=backend)
            assert got.shape == x.shape
            return
        check(kind, x, axis, backend=backend)

    shifts = [(0, 0), (1, 1)]  # torch also uses (1, 0) and (0, 1)
    run_all([(k, s, a) for k in ("softmax", "log_softmax") for s in shifts for a in (0, 1)], one)


def test_torch_log_softmax_big(backend):
    # integers plus 1e7 are exact in float32; subtracting the max removes the offset
    def one(kind, shape):
        x_small = _seeded(62).integers(0, 100, size=shape).astype(np.float32)
        x_big = x_small + np.float32(1e7)
        assert np.array_equal(x_big - np.float32(1e7), x_small)
        small = check(kind, x_small, -1, backend=backend)
        big = check(kind, x_big, -1, backend=backend)
        np.testing.assert_allclose(big, small, rtol=1.3e-6, atol=1e-5)
        check(kind, x_big, -1, temperature=2.0, backend=backend)

    run_all([(k, s) for k in ("softmax", "log_softmax") for s in [(16, 4), (4, 1536)]], one)


def test_torch_softmax_double_sums_to_one(backend):
    logits = _seeded(63).normal(size=(5, 513))
    ones = np.exp(call("log_softmax", logits, 1, backend=backend)).sum(axis=1)
    np.testing.assert_allclose(ones, np.ones(5), rtol=0, atol=16 * np.finfo(np.float64).eps)
    sums = call("softmax", logits, 1, backend=backend).astype(np.longdouble).sum(axis=1)
    assert np.all(np.abs(sums - 1) <= 8 * np.finfo(np.float64).eps)


def test_torch_identical_rows(backend):
    # torch test_softmax_64bit_indexing, scaled down: every row is the same
    def one(dtype):
        x = np.ones((257, 8192), dtype=dtype)
        y = call("log_softmax", x, -1, backend=backend)
        assert np.array_equal(y[0], y[-1])
        assert np.all(y == y[0, 0])
        assert_spec("log_softmax", y[:2], x[:2], -1)
        s = call("softmax", x, -1, backend=backend)
        assert np.all(s == s[0, 0])
        assert_spec("softmax", s[:2], x[:2], -1)

    run_all([np.float64, np.float32, np.float16], one)


# ---------------------------------------------------------------------------
# Accuracy, threads
# ---------------------------------------------------------------------------


_LONG_ROWS = {
    n: _seeded(71).normal(scale=3.0, size=n).astype(np.float32) for n in (1000, 4_000_000)
}


@pytest.mark.parametrize("n", sorted(_LONG_ROWS), ids=lambda n: f"n={n}")
def test_long_float32_row(backend, n):
    # README: the error does not grow with the row length (4M float32 as exact as 1000)
    x = _LONG_ROWS[n]
    kinds = FUNCS if n < 10_000 else ("softmax", "logsumexp")
    for kind in kinds:
        if (kind, id(x)) not in _REFERENCES:
            _REFERENCES[kind, id(x)] = (x, (-1, 1.0), _reference(kind, x, -1))

    def one(kind):
        got = check(kind, x, -1, backend=backend)
        if kind == "softmax":
            total = np.asarray(got, dtype=np.float64).sum()
            assert abs(total - 1) <= 8 * np.finfo(np.float32).eps, total

    run_all(kinds, one)


def test_rows_sum_to_one(backend):
    def one(dtype, n):
        x = _seeded(72).normal(scale=5.0, size=(20, n)).astype(dtype)
        eps = np.finfo(dtype).eps
        y = call("softmax", x, -1, backend=backend)
        sums = y.astype(np.longdouble).sum(axis=-1)
        assert np.all(np.abs(sums - 1) <= 8 * eps), sums
        ly = call("log_softmax", x, -1, backend=backend)
        assert_spec("log_softmax", ly, x, -1)
        y0 = call("softmax", x.T.copy(), 0, backend=backend)
        assert np.all(np.abs(y0.astype(np.longdouble).sum(axis=0) - 1) <= 8 * eps)

    sizes = [1, 2, 3, 7, 16, 17, 100, 1023, 5000]
    run_all([(d, n) for d in (np.float64, np.float32) for n in sizes], one)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_threads_do_not_change_results(backend, dtype):
    # 601k elements: enough for four threads of at least 2**17 elements each,
    # and rows that do not split evenly
    x = _seeded(73).normal(scale=3.0, size=(601, 1000)).astype(dtype)
    x[::7, 3] = -INF
    mask = np.ones(1000, dtype=bool)
    mask[::5] = False
    original = fs.get_num_threads()
    results = {}
    try:
        for n in (1, 3, 4):
            fs.set_num_threads(n)
            results[n] = [
                call(kind, x, axis, backend=backend, **extra)
                for kind in FUNCS
                for axis in (-1, 0)
                for extra in ({}, {"where": mask, "temperature": 0.7})
            ]
    finally:
        fs.set_num_threads(original)
    for n in (3, 4):
        for a, b in zip(results[1], results[n]):
            assert np.array_equal(a, b, equal_nan=True), f"{n} threads differ from 1"


def test_concurrent_calls_from_python_threads(backend):
    rng = _seeded(74)
    inputs = [rng.normal(size=(300, 257)).astype(dt) for dt in (np.float32, np.float64) * 6]

    def work(x):
        return [call(kind, x, axis, backend=backend) for kind in FUNCS for axis in (-1, 0)]

    serial = [work(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(work, inputs))
    for s, p in zip(serial, parallel):
        for a, b in zip(s, p):
            assert np.array_equal(a, b)
