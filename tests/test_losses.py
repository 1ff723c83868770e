"""cross_entropy: values (hard-coded float64 cases, an independent row-by-row
reference, PyTorch where installed), reductions, label smoothing, probability
targets, special values, where=, errors, and the double-softmax warning."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import random_logits

import fastsoftmax as fs
from fastsoftmax import _losses

try:
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    AxisError = np.AxisError  # noqa: NPY201

INF, NAN = np.inf, np.nan
SPEC_LOGITS = [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]]


def reference_losses(
    x, target, axis=-1, eps=0.0, temperature=1.0, where=None, ignore_index=-100
) -> np.ndarray:
    """Row by row in float64, from the definition: sum_j p'_j * -log softmax_j, where
    p' = (1 - eps) p + eps / (classes left), a zero p'_j contributing 0 and a removed
    class having -log q = inf. Independent of the package."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1) / temperature
    target = np.asarray(target)
    index = target.dtype.kind in "iu"
    if not index:
        target = np.moveaxis(target.astype(np.float64), axis, -1)
    mask = np.ones(x.shape, bool) if where is None else np.moveaxis(where, axis, -1)
    mask = np.broadcast_to(mask, x.shape)
    losses = np.zeros(x.shape[:-1])
    for at in np.ndindex(*x.shape[:-1]):
        row, keep = x[at], mask[at]
        classes = row.size
        if index and target[at] == ignore_index:
            continue
        if index:
            p = np.zeros(classes)
            p[target[at]] = 1.0
        else:
            p = target[at].copy()
        active = int(keep.sum())
        p = (1 - eps) * p + np.where(keep, eps / active if active else 0.0, 0.0)
        kept = row[keep]
        if kept.size:
            m = kept.max()
            lse = m + math.log(math.fsum(np.exp(kept - m))) if np.isfinite(m) else m
        else:
            lse = -INF
        with np.errstate(all="ignore"):
            neg_log_q = np.where(keep, lse - row, INF)
            terms = np.where(p == 0, 0.0, p * neg_log_q)
        losses[at] = math.fsum(terms) if np.isfinite(terms).all() else terms.sum()
    return losses


def rtol_for(dtype) -> float:
    return 2e-6 if np.dtype(dtype) == np.float32 else 1e-10


def assert_close(got, want, dtype, atol=0.0):
    got = np.asarray(got, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol_for(dtype), atol=atol)


# --- hard-coded cases, computed independently in float64 (math.fsum, row by row) ---


def test_spec_case(backend, dtype):
    x = np.array(SPEC_LOGITS, dtype=dtype)
    t = np.array([0, 1])
    rows = fs.cross_entropy(x, t, reduction="none", backend=backend)
    assert rows.dtype == dtype and rows.shape == (2,)
    assert_close(rows, [0.41703002, 0.15317821], dtype, atol=5e-9)
    assert_close(fs.cross_entropy(x, t, backend=backend), 0.285104111700, dtype)
    assert_close(fs.cross_entropy(x, t, reduction="sum", backend=backend), 0.5702082234, dtype)
    assert isinstance(fs.cross_entropy(x, t, backend=backend), np.generic)


HARD_CODED = [
    # (name, target, kwargs, per-row losses)
    ("smoothing", [0, 1], {"label_smoothing": 0.1}, [0.513696682945, 0.336511540456]),
    ("temperature", [0, 1], {"temperature": 2.0}, [0.689777350639, 0.432855466879]),
    ("probabilities", [[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]], {}, [0.807030016278, 3.65317820712]),
    (
        "probabilities-smoothing-temperature",
        [[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]],
        {"label_smoothing": 0.2, "temperature": 0.5},
        [1.15710717516, 6.35237834121],
    ),
]


@pytest.mark.parametrize(
    ("target", "kwargs", "expected"), [c[1:] for c in HARD_CODED], ids=[c[0] for c in HARD_CODED]
)
def test_hard_coded_cases(backend, dtype, target, kwargs, expected):
    x = np.array(SPEC_LOGITS, dtype=dtype)
    t = np.array(target, dtype=None if isinstance(target[0], int) else dtype)
    got = fs.cross_entropy(x, t, reduction="none", backend=backend, **kwargs)
    assert_close(got, expected, dtype)


def test_k_dimensional_case(backend):
    """PyTorch's (N, C, d1) layout: classes along axis 1, target (N, d1)."""
    x = np.array([[[1.0, -2.0], [0.0, 3.0], [-1.0, 0.5]]])
    got = fs.cross_entropy(x, np.array([[2, 1]]), axis=1, reduction="none", backend=backend)
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got, [[2.40760596444, 0.0850972463643]], rtol=1e-11)


def test_zero_probability_at_minus_inf(backend, dtype):
    """0 * -inf contributes 0 (xlogy); mass at -inf costs +inf."""
    x = np.array([[0.0, -INF, 1.0], [0.0, -INF, 1.0]], dtype=dtype)
    p = np.array([[0.5, 0.0, 0.5], [0.5, 0.25, 0.25]], dtype=dtype)
    got = fs.cross_entropy(x, p, reduction="none", backend=backend)
    assert_close(got[0], 0.813261687518, dtype)
    assert got[1] == INF
    # Label smoothing puts mass on the -inf class: +inf, as PyTorch.
    assert fs.cross_entropy(x[:1], p[:1], label_smoothing=0.1, backend=backend) == INF
    assert fs.cross_entropy(x[:1], np.array([0]), label_smoothing=0.1, backend=backend) == INF
    assert_close(fs.cross_entropy(x[:1], np.array([2]), backend=backend), 0.313261687518, dtype)


# --- against the independent reference and PyTorch ---

SHAPES = [((5, 7), -1), ((4, 3, 6), 1), ((6, 4), 0), ((2, 3, 4, 5), 2), ((9,), -1), ((1, 1), -1)]


def make_case(rng, shape, axis, dtype, index, scale=3.0):
    x = random_logits(rng, shape, dtype, scale)
    classes = shape[axis]
    batch = tuple(s for d, s in enumerate(shape) if d != axis % len(shape))
    if index:
        return x, rng.integers(0, classes, size=batch)
    p = rng.random(shape)
    p[p < 0.3] = 0
    return x, p.astype(dtype)


@pytest.mark.parametrize("index", [True, False], ids=["index", "probabilities"])
@pytest.mark.parametrize(("shape", "axis"), SHAPES, ids=[str(s) for s in SHAPES])
def test_matches_reference(backend, dtype, shape, axis, index):
    rng = np.random.default_rng(sum(shape) + 7 * index)
    x, t = make_case(rng, shape, axis, dtype, index)
    for eps, temperature in [(0.0, 1.0), (0.3, 0.7)]:
        want = reference_losses(x, t, axis, eps, temperature)
        got = fs.cross_entropy(
            x,
            t,
            axis=axis,
            reduction="none",
            label_smoothing=eps,
            temperature=temperature,
            backend=backend,
        )
        assert got.dtype == dtype and got.shape == want.shape
        # float32: the logsumexp is rounded once, eps * |lse|.
        assert_close(got, want, dtype, atol=4 * np.finfo(dtype).eps * (1 + np.abs(x).max()))
        total = fs.cross_entropy(
            x,
            t,
            axis=axis,
            reduction="sum",
            label_smoothing=eps,
            temperature=temperature,
            backend=backend,
        )
        assert_close(total, want.sum(), dtype, atol=1e-5 * want.size)


def test_layouts_give_the_same_values(backend):
    rng = np.random.default_rng(5)
    base = random_logits(rng, (12, 10), np.float64)
    t = rng.integers(0, 10, size=12)
    want = fs.cross_entropy(base, t, reduction="none", backend=backend)
    fortran = np.asfortranarray(base)
    np.testing.assert_array_equal(
        fs.cross_entropy(fortran, t, reduction="none", backend=backend), want
    )
    np.testing.assert_array_equal(
        fs.cross_entropy(base.T, t, axis=0, reduction="none", backend=backend), want
    )
    strided = np.zeros((24, 20))
    strided[::2, ::2] = base
    np.testing.assert_array_equal(
        fs.cross_entropy(strided[::2, ::2], t, reduction="none", backend=backend), want
    )
    reversed_rows = base[::-1, ::-1]
    np.testing.assert_allclose(
        fs.cross_entropy(reversed_rows, 9 - t[::-1], reduction="none", backend=backend),
        want[::-1],
        rtol=1e-14,
    )
    p = fs.softmax(random_logits(rng, (12, 10), np.float64))
    want_p = fs.cross_entropy(base, p, reduction="none", backend=backend)
    np.testing.assert_allclose(
        fs.cross_entropy(base.T, p.T, axis=0, reduction="none", backend=backend),
        want_p,
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        fs.cross_entropy(base[::-1], np.asfortranarray(p[::-1]), reduction="none", backend=backend),
        want_p[::-1],
        rtol=1e-14,
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_matches_torch(backend, dtype, reduction, eps):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(11)
    for shape, axis in [((6, 5), -1), ((3, 4, 5), 1), ((7,), -1)]:
        for index in (True, False):
            x, t = make_case(rng, shape, axis, dtype, index)
            if index and t.ndim and t.size > 1:
                t.flat[1] = -100  # PyTorch's default ignore_index
            got = fs.cross_entropy(
                x, t, axis=axis, reduction=reduction, label_smoothing=eps, backend=backend
            )
            # PyTorch's class axis is 1 (or 0 unbatched): move ours there.
            xt = torch.from_numpy(np.moveaxis(x, axis, min(1, x.ndim - 1)).astype(np.float64))
            tt = torch.from_numpy(
                t if index else np.moveaxis(t, axis, min(1, x.ndim - 1)).astype(np.float64)
            )
            want = functional.cross_entropy(xt, tt, reduction=reduction, label_smoothing=eps)
            assert_close(got, want.numpy(), dtype, atol=1e-6 if dtype == np.float32 else 0)


# --- reductions, empty batches, ignore_index ---


def test_reductions_and_ignore_index(backend):
    x = np.array(SPEC_LOGITS * 2)
    t = np.array([0, 1, -100, 1])
    rows = fs.cross_entropy(x, t, reduction="none", backend=backend)
    np.testing.assert_allclose(rows, [0.417030016278, 0.153178207122, 0, 0.153178207122])
    assert fs.cross_entropy(x, t, reduction="sum", backend=backend) == pytest.approx(rows.sum())
    # mean over the three rows that count, as PyTorch
    assert fs.cross_entropy(x, t, backend=backend) == pytest.approx(rows.sum() / 3)
    # an ignore_index inside the class range ignores that class's rows
    got = fs.cross_entropy(x, t.clip(0), ignore_index=1, reduction="none", backend=backend)
    np.testing.assert_allclose(got, [0.417030016278, 0, 0.417030016278, 0])
    assert np.isnan(fs.cross_entropy(x, np.full(4, -100), backend=backend))


@pytest.mark.parametrize("index", [True, False])
def test_empty_batch(backend, dtype, index):
    for shape, axis in [((0, 4), -1), ((2, 0, 3), 0), ((0,), -1)]:
        x = np.zeros(shape, dtype=dtype)
        batch = tuple(s for d, s in enumerate(shape) if d != axis % len(shape))
        t = np.zeros(batch, dtype=np.int64) if index else np.zeros(shape, dtype=dtype)
        if index and x.shape[axis] == 0 and t.size:
            continue  # no class to point at: IndexError, tested below
        rows = fs.cross_entropy(x, t, axis=axis, reduction="none", backend=backend)
        assert rows.shape == batch and rows.dtype == dtype
        assert fs.cross_entropy(x, t, axis=axis, reduction="sum", backend=backend) == 0
        mean = fs.cross_entropy(x, t, axis=axis, backend=backend)
        assert np.isnan(mean) if rows.size == 0 else mean == 0


def test_unbatched_row(backend):
    x = np.array(SPEC_LOGITS[0])
    assert fs.cross_entropy(x, np.array(0), reduction="none", backend=backend) == pytest.approx(
        0.417030016278
    )
    assert fs.cross_entropy(x, 0, backend=backend) == pytest.approx(0.417030016278)


# --- special values: those of -log_softmax (scipy's) ---

SPECIAL = [
    ([NAN, 1.0, 2.0], 1, NAN),
    ([INF, 1.0], 0, NAN),
    ([INF, 1.0], 1, INF),
    ([-INF, 1.0], 0, INF),
    ([-INF, 1.0], 1, 0.0),
    ([-INF, -INF], 0, NAN),
    ([1e30, -1e30], 0, 0.0),
]


@pytest.mark.parametrize(("row", "target", "expected"), SPECIAL, ids=str)
def test_special_values(backend, dtype, row, target, expected):
    x = np.array([row], dtype=dtype)
    with np.errstate(all="ignore"):
        got = fs.cross_entropy(x, np.array([target]), backend=backend)
        # one-hot probabilities give the same value as the index
        onehot = np.eye(len(row), dtype=dtype)[[target]]
        got_p = fs.cross_entropy(x, onehot, backend=backend)
    for value in (got, got_p):
        if np.isnan(expected):
            assert np.isnan(value)
        else:
            assert value == expected


# --- where= ---


@pytest.mark.parametrize("index", [True, False])
def test_where_removes_classes(backend, dtype, index):
    """A masked class is gone: the same as deleting it from the row, whatever it holds."""
    rng = np.random.default_rng(3)
    x = random_logits(rng, (6, 5), dtype)
    keep = np.ones((6, 5), bool)
    keep[np.arange(6), rng.integers(0, 5, size=6)] = False
    keep[0, 1:3] = False
    x[~keep] = rng.choice([INF, -INF, NAN], size=int((~keep).sum()))
    if index:
        t = np.array([int(np.flatnonzero(k)[-1]) for k in keep])
    else:
        t = (rng.random((6, 5)) * keep).astype(dtype)
    for eps in (0.0, 0.2):
        got = fs.cross_entropy(
            x, t, where=keep, label_smoothing=eps, reduction="none", backend=backend
        )
        for r in range(6):
            sub = x[r][keep[r]][None]
            sub_t = np.array([int(keep[r][: t[r]].sum())]) if index else t[r][keep[r]][None]
            want = fs.cross_entropy(sub, sub_t, label_smoothing=eps, backend=backend)
            assert_close(got[r], want, dtype, atol=1e-6 if dtype == np.float32 else 1e-14)
        want_ref = reference_losses(x, t, -1, eps, 1.0, keep)
        assert_close(got, want_ref, dtype, atol=1e-5 if dtype == np.float32 else 1e-13)


def test_where_target_removed_and_rows_with_nothing_left(backend):
    x = np.array([[1.0, NAN, 2.0], [INF, NAN, -INF]])
    keep = np.array([[True, False, True], [False, False, False]])
    got = fs.cross_entropy(x, np.array([1, 0]), where=keep, reduction="none", backend=backend)
    assert got[0] == INF and got[1] == INF  # target class removed: probability 0
    # probability targets: no mass on removed classes costs nothing more
    p = np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
    got = fs.cross_entropy(x, p, where=keep, reduction="none", backend=backend)
    np.testing.assert_allclose(got, reference_losses(x, p, where=keep))
    assert got[1] == 0
    p[0, 1] = 0.25
    assert fs.cross_entropy(x, p, where=keep, reduction="none", backend=backend)[0] == INF
    # broadcast mask and ignore_index together
    got = fs.cross_entropy(
        x[:1], np.array([-100]), where=np.array([True, False, True]), backend=backend
    )
    assert np.isnan(got)  # the mean of no counted row


def test_where_errors():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError):
        fs.cross_entropy(x, [0, 1], where=np.ones((2, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        fs.cross_entropy(x, [0, 1], where=np.ones((3, 2), bool))


# --- errors ---


def test_index_error(backend):
    x = np.array(SPEC_LOGITS)
    for bad in ([0, 3], [-1, 0], [0, -101], [0, 2**40]):
        with pytest.raises(IndexError, match="out of range"):
            fs.cross_entropy(x, np.array(bad), backend=backend)
    with pytest.raises(IndexError):
        fs.cross_entropy(np.zeros((2, 3, 4)), np.full((2, 4), 3), axis=1, backend=backend)
    with pytest.raises(IndexError):
        fs.cross_entropy(np.zeros((2, 0)), np.zeros(2, dtype=np.int64), backend=backend)
    for dtype in (np.uint8, np.int8, np.int32, np.uint64, ">i4"):
        with pytest.raises(IndexError):
            fs.cross_entropy(x, np.array([0, 3], dtype=dtype), backend=backend)
        got = fs.cross_entropy(x, np.array([0, 1], dtype=dtype), backend=backend)
        assert got == pytest.approx(0.2851041117)


def test_argument_errors():
    x = np.array(SPEC_LOGITS)
    t = np.array([0, 1])
    with pytest.raises(ValueError, match="reduction"):
        fs.cross_entropy(x, t, reduction="avg")
    for eps in (-0.1, 1.5):
        with pytest.raises(ValueError, match="label_smoothing"):
            fs.cross_entropy(x, t, label_smoothing=eps)
    with pytest.raises(ValueError, match="temperature"):
        fs.cross_entropy(x, t, temperature=0)
    with pytest.raises(ValueError, match="shape"):
        fs.cross_entropy(x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer dtype"):
        fs.cross_entropy(x, np.array([0.0, 1.0]))
    with pytest.raises(TypeError):
        fs.cross_entropy(x, np.array([True, False]))
    with pytest.raises(TypeError):
        fs.cross_entropy(x.astype(complex), t)
    with pytest.raises(TypeError):
        fs.cross_entropy(x, t, axis=(0, 1))
    with pytest.raises(TypeError):
        fs.cross_entropy(x, t, axis=1.0)
    with pytest.raises(AxisError):
        fs.cross_entropy(x, t, axis=2)
    with pytest.raises(ValueError, match="backend"):
        fs.cross_entropy(x, t, backend="cuda")
    with pytest.raises(ValueError, match="axis"):
        fs.cross_entropy(np.float64(1.0), 0)


def test_dtypes():
    x16 = np.array(SPEC_LOGITS, dtype=np.float16)
    got = fs.cross_entropy(x16, np.array([0, 1]), reduction="none")
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, [0.417, 0.1532], rtol=2e-3)
    p16 = np.array([[0.7, 0.2, 0.1], [0, 0, 1.0]], dtype=np.float16)
    got = fs.cross_entropy(x16, p16, reduction="none")
    assert got.dtype == np.float16
    want = reference_losses(x16, p16)
    np.testing.assert_allclose(got, want, rtol=2e-3)
    got = fs.cross_entropy(np.array([[2, 1, 0]]), np.array([0]))
    assert got.dtype == np.float64
    # probability targets of another float dtype are read in the logits' dtype
    got = fs.cross_entropy(
        np.array(SPEC_LOGITS, np.float32), np.array([[0.7, 0.2, 0.1], [0, 0, 1.0]])
    )
    assert got.dtype == np.float32


def test_input_not_modified(backend):
    rng = np.random.default_rng(1)
    x = random_logits(rng, (5, 4), np.float32)
    p = fs.softmax(random_logits(rng, (5, 4), np.float32))
    t = np.array([0, 1, 2, 3, -100])
    keep = rng.random((5, 4)) > 0.2
    copies = [a.copy() for a in (x, p, t, keep)]
    fs.cross_entropy(x, t, where=keep, label_smoothing=0.1, backend=backend)
    fs.cross_entropy(x, p, where=keep, label_smoothing=0.1, backend=backend)
    for a, b in zip((x, p, t, keep), copies):
        np.testing.assert_array_equal(a, b)


def test_long_rows_and_many_rows_use_blocks(backend, monkeypatch):
    """Probability targets are summed in blocks: rows longer than a block, and
    more rows than a block, give the reference's values."""
    monkeypatch.setattr(_losses, "_BLOCK_ELEMENTS", 1000)
    rng = np.random.default_rng(8)
    for shape in [(2, 2500), (3000, 13), (5, 7, 300)]:
        x = random_logits(rng, shape, np.float64)
        p = fs.softmax(random_logits(rng, shape, np.float64))
        got = fs.cross_entropy(x, p, label_smoothing=0.05, reduction="none", backend=backend)
        np.testing.assert_allclose(got[:3], reference_losses(x[:3], p[:3], eps=0.05), rtol=1e-10)
        p[0, :5] = 0
        x[0, :3] = -INF  # zero mass at -inf: the term-by-term path for that row
        got = fs.cross_entropy(x, p, reduction="none", backend=backend)
        np.testing.assert_allclose(got[:3], reference_losses(x[:3], p[:3]), rtol=1e-10)
        assert np.isfinite(got).all()


# --- the double-softmax warning ---


def test_warns_when_softmax_was_applied_first(backend, dtype):
    rng = np.random.default_rng(2)
    for shape, axis in [((8, 10), -1), ((3, 5, 4), 1), ((2000, 100), -1), ((3, 40_000), -1)]:
        x = random_logits(rng, shape, dtype)
        t = np.zeros(tuple(s for d, s in enumerate(shape) if d != axis % x.ndim), np.int64)
        probabilities = fs.softmax(x, axis=axis)
        with pytest.warns(fs.SoftmaxAppliedTwiceWarning) as record:
            fs.cross_entropy(probabilities, t, axis=axis, backend=backend)
        message = str(record[0].message)
        assert "softmax" in message and "check_probabilities=False" in message
        assert record[0].filename == __file__  # points at the caller
        # silenced by the keyword
        fs.cross_entropy(probabilities, t, axis=axis, check_probabilities=False, backend=backend)


def test_warning_class_and_filter():
    assert issubclass(fs.SoftmaxAppliedTwiceWarning, UserWarning)
    p = fs.softmax(np.array(SPEC_LOGITS))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=fs.SoftmaxAppliedTwiceWarning)
        fs.cross_entropy(p, np.array([0, 1]))
    with pytest.warns(fs.SoftmaxAppliedTwiceWarning):
        fs.cross_entropy(p, p)  # probability targets too
    with pytest.warns(fs.SoftmaxAppliedTwiceWarning):
        keep = np.array([True, True, False])
        fs.cross_entropy(
            np.where(keep, fs.softmax(np.array(SPEC_LOGITS), where=keep), NAN), [0, 1], where=keep
        )


def test_no_warning_for_logits(backend):
    """pytest turns any warning into an error here: none of these may warn."""
    rng = np.random.default_rng(4)
    cases = [
        random_logits(rng, (64, 10), np.float32),
        np.abs(random_logits(rng, (64, 10), np.float64)),  # non-negative, not summing to 1
        fs.log_softmax(random_logits(rng, (8, 5), np.float64)),  # log-probabilities are fine
        np.full((4, 3), 0.25),  # sums to 0.75
        np.array([[1.0], [1.0]]),  # one class: proves nothing
        np.abs(random_logits(rng, (3, 50_000), np.float32)),
    ]
    for x in cases:
        fs.cross_entropy(x, np.zeros(x.shape[0], np.int64), backend=backend)
    # Only sampled rows are read: one row of logits among many probability rows may pass.
    x = fs.softmax(random_logits(rng, (20_000, 10), np.float64))
    x[1] = random_logits(rng, 10, np.float64)
    with pytest.warns(fs.SoftmaxAppliedTwiceWarning):
        fs.cross_entropy(x, np.zeros(20_000, np.int64), backend=backend)
    x[0] = -1.0  # a sampled row that is not a probability row: no warning
    fs.cross_entropy(x, np.zeros(20_000, np.int64), backend=backend)


def test_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.array(SPEC_LOGITS, dtype=ml_dtypes.bfloat16)
    got = fs.cross_entropy(x, np.array([0, 1]), reduction="none")
    assert got.dtype == x.dtype
    np.testing.assert_allclose(got.astype(np.float64), [0.41703002, 0.15317821], rtol=2e-2)
    # probabilities rounded to bfloat16 sum to 1 only within its eps: still caught
    p = fs.softmax(np.random.default_rng(0).standard_normal((4, 50))).astype(x.dtype)
    with pytest.warns(fs.SoftmaxAppliedTwiceWarning):
        fs.cross_entropy(p, np.zeros(4, np.int64))
