"""Semantics of SPEC.md: special values as scipy.special, axes, dtypes,
empty and 0-d input, where=, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sc
from conftest import assert_matches_oracle, random_logits

import fastsoftmax as fs

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # NumPy 1.22-1.24 (noqa: ruff's NPY201 fix would make it a NameError)
    AxisError = np.AxisError  # noqa: NPY201

INF, NAN = np.inf, np.nan
SPECIAL_ROWS = [
    [INF, 1.0],
    [1.0, INF],
    [-INF, -INF],
    [NAN, 1.0],
    [INF, INF],
    [-INF, 1.0],
    [INF, -INF],
    [INF, NAN],
    [-INF, NAN],
    [1.0, 2.0, -INF, 3.0],
    [-INF, 0.0, -INF],
    [1e308, -1e308],
    [-1e308, 1e308, 0.0],
    [3.4e38, -3.4e38],
    [5.0],
    [-INF],
    [INF],
    [NAN],
]
KINDS = ["softmax", "log_softmax", "logsumexp"]


def scipy_value(kind, x, axis):
    with np.errstate(all="ignore"):
        return getattr(sc, kind)(x, axis=axis)


def _nans_with_payloads(dtype):
    """Quiet and signalling NaNs of both signs, payload bits low and high."""
    bits = np.dtype(dtype).itemsize * 8
    exponent = 0x7F800000 if bits == 32 else 0x7FF0000000000000
    quiet = 1 << (22 if bits == 32 else 51)
    words = [
        exponent | quiet,
        exponent | quiet | 1,
        exponent | 1,
        exponent | 0x1FF,
        exponent | quiet | 0x155,
    ]
    words += [w | (1 << (bits - 1)) for w in words]
    unsigned = np.uint32 if bits == 32 else np.uint64
    return np.array(words, dtype=unsigned).view(dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [8, 16, 100, 1000, 5000])
def test_a_nan_of_any_payload_makes_its_row_nan(backend, dtype, kind, n):
    """A NaN among finite logits makes every value of its row NaN, whatever
    its payload and sign (the exp of a NaN must stay NaN on every path: short
    rows, groups of rows, any position in a vector), and leaves the other
    rows alone."""
    nans = _nans_with_payloads(dtype)
    assert np.isnan(nans).all()
    rng = np.random.default_rng(41)
    x = random_logits(rng, (2 * len(nans), n), dtype)
    for r, value in enumerate(nans):
        x[2 * r, rng.integers(n)] = value
    got = getattr(fs, kind)(x, axis=-1, backend=backend)
    assert np.isnan(got[0::2]).all()
    want = getattr(fs, kind)(x[1::2], axis=-1, backend="numpy")
    np.testing.assert_allclose(got[1::2], want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_at_any_position_of_a_short_row_makes_its_row_nan(backend, dtype, kind):
    """Rows of 1 to 72 elements (every vector count the short-row kernels take,
    at every level's width) with a NaN at each position in turn: the scans
    test vectors for NaN two at a time, and each vector of a pair, the last
    one among them, must count."""
    nans = _nans_with_payloads(dtype)
    rng = np.random.default_rng(43)
    for n in range(1, 73):
        x = random_logits(rng, (n, n), dtype)
        x[np.arange(n), np.arange(n)] = nans[np.arange(n) % len(nans)]
        got = getattr(fs, kind)(x, axis=-1, backend=backend)
        assert np.isnan(got).all(), n


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("row", SPECIAL_ROWS, ids=str)
def test_special_values_match_scipy(backend, dtype, kind, row):
    if dtype == np.float32 and np.max(np.abs(np.nan_to_num(row, posinf=0, neginf=0))) > 3.4e38:
        return  # not a float32 value
    x = np.array(row, dtype=dtype)
    got = getattr(fs, kind)(x, backend=backend)
    want = scipy_value(kind, x, -1)  # in the same dtype: overflow where scipy overflows
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.asarray(got)[~finite], np.asarray(want)[~finite])
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(np.asarray(got)[finite], np.asarray(want)[finite], rtol=rtol)


def test_log_softmax_of_inf_and_one_is_scipys():
    for name in fs.backends():
        np.testing.assert_array_equal(fs.log_softmax([INF, 1.0], backend=name), [NAN, -INF])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, (0, 2), (1, 2), (0, 1, 2), None, ()])
def test_axes_match_scipy(backend, kind, axis):
    x = random_logits(np.random.default_rng(1), (3, 4, 5), np.float64)
    got = getattr(fs, kind)(x, axis=axis, backend=backend)
    np.testing.assert_allclose(got, scipy_value(kind, x, axis), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [0, -1, (0, 2), None, ()])
def test_logsumexp_keepdims(backend, axis, keepdims):
    x = random_logits(np.random.default_rng(2), (3, 4, 5), np.float64)
    got = fs.logsumexp(x, axis=axis, keepdims=keepdims, backend=backend)
    want = sc.logsumexp(x, axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("axis", [-1, None, 0, ()])
def test_logsumexp_keepdims_of_zero_dimensional_input(backend, axis, temperature):
    """Found by the fuzzer: keepdims on a 0-d input raised IndexError. It is
    a NumPy scalar, as np.sum(0-d, keepdims=True) is, and fills a 0-d out."""
    x = np.float64(3.0)
    got = fs.logsumexp(x, axis=axis, keepdims=True, temperature=temperature, backend=backend)
    assert isinstance(got, np.float64)
    assert got == 3.0 / temperature
    out = np.empty(())
    assert fs.logsumexp(x, axis=axis, keepdims=True, out=out, backend=backend) is out
    assert out == 3.0


@pytest.mark.parametrize("shape,axis", [((0,), -1), ((0, 3), None), ((2, 0), (0, 1))])
def test_logsumexp_of_nothing_is_a_scalar(backend, shape, axis):
    """Found by the fuzzer: an empty reduction to a 0-d result gave a 0-d
    array on the general path, a scalar on the one-step path."""
    for kwargs in ({}, {"temperature": 0.5}, {"where": True}):
        got = fs.logsumexp(np.zeros(shape), axis=axis, backend=backend, **kwargs)
        assert isinstance(got, np.float64)
        assert got == -INF


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [3.0, -INF, INF, NAN])
@pytest.mark.parametrize("axis", [-1, None, 0, ()])
def test_zero_dimensional_input(backend, kind, value, axis):
    got = getattr(fs, kind)(np.float64(value), axis=axis, backend=backend)
    want = scipy_value(kind, np.float64(value), None)
    assert np.ndim(got) == 0
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "shape,axis",
    [
        ((0,), -1),
        ((2, 0), -1),
        ((2, 0), 0),
        ((0, 3), -1),
        ((0, 3), 0),
        ((2, 0, 3), (1, 2)),
        ((0,), None),
    ],
)
def test_empty_arrays(backend, kind, shape, axis):
    x = np.zeros(shape, dtype=np.float32)
    got = getattr(fs, kind)(x, axis=axis, backend=backend)
    assert got.dtype == np.float32
    if kind != "logsumexp":
        assert got.shape == shape
        return
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis) % len(shape)
    expected_shape = tuple(s for d, s in enumerate(shape) if d not in set(axes))
    assert np.shape(got) == expected_shape
    assert np.all(np.asarray(got) == -INF)  # an empty sum is 0; its log is -inf


@pytest.mark.parametrize(
    "dtype_in,dtype_out",
    [
        ("float16", "float16"),
        ("float32", "float32"),
        ("float64", "float64"),
        ("int8", "float64"),
        ("int64", "float64"),
        ("uint16", "float64"),
        ("bool", "float64"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_dtype_rules(backend, kind, dtype_in, dtype_out):
    x = np.array([[1, 0, 2], [0, 1, 1]], dtype=dtype_in)
    y = getattr(fs, kind)(x, backend=backend)
    assert y.dtype == np.dtype(dtype_out)
    want = scipy_value(kind, x.astype(np.float64), -1)
    np.testing.assert_allclose(y, want, rtol=2e-3 if dtype_in == "float16" else 1e-6)


def test_bfloat16(backend):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = random_logits(np.random.default_rng(4), (3, 50), ml_dtypes.bfloat16)
    y = fs.softmax(x, backend=backend)
    assert y.dtype == ml_dtypes.bfloat16
    assert_matches_oracle("softmax", y, x.astype(np.float32))


@pytest.mark.parametrize(
    "bad",
    [
        np.array([1 + 1j, 2]),
        np.array(["a", "b"]),
        np.array([1.0, None], dtype=object),
        np.array([1, 2], dtype=np.longdouble),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_unsupported_dtypes_raise_type_error(kind, bad):
    with pytest.raises(TypeError, match="float32"):
        getattr(fs, kind)(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_axis_errors(kind):
    f = getattr(fs, kind)
    x = np.ones((2, 3))
    with pytest.raises(AxisError):
        f(x, axis=2)
    with pytest.raises(AxisError):
        f(x, axis=-3)
    with pytest.raises(AxisError):
        f(np.float64(1.0), axis=1)
    with pytest.raises(ValueError, match="duplicate"):
        f(x, axis=(0, 0))
    with pytest.raises(ValueError, match="duplicate"):
        f(x, axis=(1, -1))
    with pytest.raises(TypeError):
        f(x, axis=1.0)
    # found by the fuzzer: a float axis was taken for 0 on a 0-d input
    for axis in (0.0, -1.0):
        with pytest.raises(TypeError):
            f(np.float64(1.0), axis=axis)
        with pytest.raises(TypeError):
            f(np.float64(1.0), axis=axis, temperature=0.5)
    with pytest.raises(AxisError):
        f(np.float64(1.0), axis=(0,))
    assert f(np.float64(1.0), axis=np.int64(0)) == f(np.float64(1.0))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("temperature", [0, -1.0, INF, NAN, -INF])
def test_bad_temperature(kind, temperature):
    with pytest.raises(ValueError, match="temperature"):
        getattr(fs, kind)([1.0, 2.0], temperature=temperature)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_backend(kind):
    with pytest.raises(ValueError, match="numpy"):
        getattr(fs, kind)([1.0, 2.0], backend="cuda")


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_out_errors(kind):
    f = getattr(fs, kind)
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        f(x, out=np.empty((3, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="dtype"):
        f(x, out=np.empty((2, 3), dtype=np.float64))
    with pytest.raises(TypeError, match="ndarray"):
        f(x, out=[[0.0] * 3] * 2)
    readonly = np.empty((2, 3), dtype=np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(x, out=readonly)


def test_logsumexp_out():
    x = random_logits(np.random.default_rng(9), (4, 6), np.float64)
    out = np.empty(4)
    assert fs.logsumexp(x, out=out) is out
    np.testing.assert_allclose(out, sc.logsumexp(x, axis=-1), rtol=1e-14)
    with pytest.raises(ValueError, match="shape"):
        fs.logsumexp(x, out=np.empty((4, 1)))
    keep = np.empty((4, 1))
    fs.logsumexp(x, keepdims=True, out=keep)
    np.testing.assert_allclose(keep[:, 0], out, rtol=0)


# where= ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_where_ignores_masked_values_whatever_they_hold(backend, dtype, kind):
    rng = np.random.default_rng(12)
    x = random_logits(rng, (6, 40), dtype)
    mask = rng.random((6, 40)) < 0.6
    mask[0] = False  # a row with nothing left
    mask[1] = True
    poisoned = x.copy()
    poisoned[~mask] = rng.choice([INF, -INF, NAN, 1e30], size=int((~mask).sum()))
    got = getattr(fs, kind)(poisoned, where=mask, backend=backend)
    assert_matches_oracle(kind, got, x, where=mask)
    if kind == "softmax":
        assert np.all(got[~mask] == 0) and np.all(got[0] == 0)
    elif kind == "log_softmax":
        assert np.all(got[~mask] == -INF)
    else:
        assert got[0] == -INF


@pytest.mark.parametrize("mask_shape", [(1, 9), (5, 1), (9,), (1, 1), ()])
def test_where_broadcasts(backend, mask_shape):
    rng = np.random.default_rng(13)
    x = random_logits(rng, (5, 9), np.float64)
    mask = rng.random(mask_shape) < 0.7
    got = fs.softmax(x, where=mask, backend=backend)
    assert_matches_oracle("softmax", got, x, where=np.broadcast_to(mask, x.shape))


def test_where_matches_jax_convention(backend):
    """jax.nn.softmax(x, where=m): 0 at masked entries, rows renormalized."""
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    m = np.array([[True, False, True], [False, False, False]])
    got = fs.softmax(x, where=m, backend=backend)
    e = np.exp([1.0 - 3.0, 0.0])
    np.testing.assert_allclose(got[0], [e[0] / e.sum(), 0, e[1] / e.sum()], rtol=1e-15)
    np.testing.assert_array_equal(got[1], 0)


def test_where_errors():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="boolean"):
        fs.softmax(x, where=np.ones((2, 3), dtype=int))
    with pytest.raises(ValueError, match="broadcast"):
        fs.softmax(x, where=np.ones((3, 2), dtype=bool))


# Bugs found by the peer-case suite -------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("n", [2, 3000, 140_000])
@pytest.mark.usefixtures("online_from_1mib")
def test_spread_that_overflows_divides_first(backend, kind, axis, n):
    """[1e308, -1e308] / 1e308 is [1, -1]: x - max overflows, the result does
    not (row kernel, column kernel and the online path for long rows)."""
    row = np.zeros(n)
    row[0], row[1] = 1e308, -1e308
    x = np.stack([row, row[::-1]], axis=-1 if axis == 0 else 0)
    y = getattr(fs, kind)(x, axis=axis, temperature=1e308, backend=backend)
    rows = np.ascontiguousarray(np.moveaxis(x, axis, -1)) / 1e308  # pairwise sums
    want = scipy_value(kind, rows, -1)
    want = want if kind == "logsumexp" else np.moveaxis(want, -1, axis)
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("temperature", [1e-300, 1e-40, 1e39, 1e300])
def test_float32_with_temperature_beyond_its_range(backend, kind, temperature):
    """1/T not a float32: computed in float64, never 0 * inf = NaN."""
    x = np.array([[2.0, 1.0, 0.1], [2.0, 1.0, -np.inf]], dtype=np.float32)
    y = getattr(fs, kind)(x, temperature=temperature, backend=backend)
    assert y.dtype == np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        want = scipy_value(kind, x.astype(np.float64) / temperature, -1).astype(np.float32)
    np.testing.assert_allclose(y, want, rtol=1e-6)
