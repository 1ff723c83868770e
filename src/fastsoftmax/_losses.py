"""cross_entropy from logits, and the warning for logits that are probabilities.

The normalizer of every row is the backend's fused logsumexp pass
(``logsumexp_rows`` on the strided views of ``_layout``: one compiled pass for
"cpp"), never a softmax. The rest costs O(rows) or makes no temporary the size
of the input:

- class-index targets: ``lse - x[target] / T``, the target logit gathered (one
  element per row); label smoothing adds a row sum of the logits
  (``np.add.reduce`` along the axis: no temporary);
- probability targets: ``sum_j p_j (lse - x_j / T) = lse * sum(p) - sum(p x) / T``,
  the two row sums taken over cache-sized blocks of rows (so the temporaries
  stay in cache however large the input). A row where that form meets
  ``0 * inf`` is recomputed term by term, where a zero probability contributes
  nothing (the xlogy convention), and so is every row under ``where=``.

Row values and the reduction are computed in float64 from the float32 (or
float64) logsumexp; the result has the dtype rules of softmax (float16 logits
give a float16 loss computed in float32).
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from . import _backends, _dask, _layout
from ._dask import is_dask
from ._validation import (
    Backend,
    as_input,
    check_temperature,
    check_where,
    compute_dtype_for,
    dtypes_for,
    for_kernel,
    normalize_axis,
    one_step_backend,
    run_rows,
)


class SoftmaxAppliedTwiceWarning(UserWarning):
    """``cross_entropy`` got logits that look like probabilities.

    Every sampled row is non-negative and sums to 1: a softmax was probably
    applied before a loss that applies one itself. Silence it with
    ``cross_entropy(..., check_probabilities=False)`` or
    ``warnings.filterwarnings("ignore", category=fastsoftmax.SoftmaxAppliedTwiceWarning)``.
    """


_REDUCTIONS = ("mean", "sum", "none")

# The check for probabilities among the logits reads a bounded amount of data:
# up to _SAMPLE_ROWS evenly spaced rows, first up to _PROBE_COLUMNS entries of
# each (ordinary logits fail there: an entry < 0), and only then whole rows,
# at most _SUM_BUDGET elements (at least one row).
_SAMPLE_ROWS = 64
_PROBE_COLUMNS = 256
_SUM_BUDGET = 1 << 16
_SMALL = 1 << 12  # elements: below this, every row is checked

# Probability targets: elements per block of the row sums (512 KiB of float32):
# large enough that the Python loop over blocks costs little (measured).
_BLOCK_ELEMENTS = 1 << 17


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    reduction: Literal["mean", "sum", "none"] = "mean",
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    ignore_index: int = -100,
    check_probabilities: bool = True,
    backend: Backend | None = None,
) -> Any:
    """Cross-entropy between ``target`` and ``softmax(logits / temperature)``,
    computed from the logits (logsumexp and the target term), as
    ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    logits : array_like
        Unnormalized scores, the classes along ``axis``; dtypes as :func:`softmax`.
    target : array_like
        Either integer class indices, of the shape of ``logits`` without
        ``axis``, or probabilities (a float dtype), of the shape of ``logits``.
        Told apart by dtype, as PyTorch does. An index outside
        ``[0, classes)`` (other than ``ignore_index``) raises IndexError.
    axis : int, default -1
        The class axis (PyTorch's is 1: pass ``axis=1`` for (N, C, d1, ...) logits).
    reduction : {"mean", "sum", "none"}
        "none": the loss of every row, of the shape of ``logits`` without
        ``axis``. "mean" divides the sum by the number of rows (class indices:
        of rows whose target is not ``ignore_index``); the mean of nothing is NaN.
    label_smoothing : float in [0, 1]
        The target becomes ``(1 - eps) * target + eps / classes``, as PyTorch.
    temperature : float, default 1
        The loss of ``softmax(logits / temperature)``.
    where : array_like of bool, optional
        Broadcastable to ``logits``: False removes a class from its row. Its
        logit is ignored whatever it holds (inf, NaN), its probability is 0,
        and label smoothing spreads over the classes left. Target mass on a
        removed class costs +inf (so does a class-index target there, and a
        row with no class left), as ``-log_softmax(logits, where=where)`` says.
    ignore_index : int, default -100
        Class-index targets equal to it contribute 0 and are not counted by
        "mean" (PyTorch's ``ignore_index``).
    check_probabilities : bool, default True
        Warn (:class:`SoftmaxAppliedTwiceWarning`) when the logits look like
        probabilities: every one of up to 64 sampled rows non-negative and
        summing to 1 (a bounded cost, whatever the input's size).
    backend : {"cpp", "numba", "numpy"}, optional
        Computes the logsumexp pass. Default: the best available.

    Returns
    -------
    A scalar of the result dtype ("mean", "sum"), or an array of the rows' losses.

    Special values follow ``-log_softmax`` (scipy's): a row holding NaN, or
    +inf at the target, gives NaN; -inf at the target (probability 0) gives
    +inf; a probability of 0 contributes 0 whatever its logit.
    """
    impl = _backends.get(backend)
    if is_dask(logits):
        return _dask_cross_entropy(
            logits, target, axis, reduction, label_smoothing, temperature, where,
            ignore_index, backend,
        )  # fmt: skip
    arr, compute, result_dtype = as_input(logits)
    ax, eps, t = _check_options(arr.ndim, axis, reduction, label_smoothing, temperature)
    compute = compute_dtype_for(compute, t)
    mask = check_where(where, arr.shape)
    ignore = operator.index(ignore_index)

    tgt = np.asarray(target)
    _check_target(tgt.dtype, tgt.shape, arr.shape, ax)

    xc = for_kernel(arr, compute)
    if check_probabilities and _looks_like_probabilities(xc, mask, ax, _tolerance(arr.dtype)):
        warnings.warn(
            "cross_entropy: every sampled row of the logits is non-negative and sums to 1; "
            "these look like probabilities, not logits. A softmax was probably applied "
            "before a loss that applies it itself (softmax applied twice): pass the raw "
            "scores instead. If this is intended, pass check_probabilities=False or "
            "silence it with warnings.filterwarnings('ignore', "
            "category=fastsoftmax.SoftmaxAppliedTwiceWarning).",
            SoftmaxAppliedTwiceWarning,
            stacklevel=2,
        )

    if tgt.dtype.kind in "iu":
        losses, count = _index_losses(impl, xc, tgt, mask, ax, t, eps, ignore)
    else:
        losses = _probability_losses(impl, xc, tgt, mask, ax, t, eps)
        count = losses.size

    with np.errstate(all="ignore"):
        if reduction == "none":
            return _to_result(losses, result_dtype)
        total = float(losses.sum())
        if reduction == "mean":
            total = total / count if count else math.nan
        return _to_result(np.float64(total), result_dtype)


def _dask_cross_entropy(
    logits: Any,
    target: Any,
    axis: Any,
    reduction: Any,
    label_smoothing: Any,
    temperature: Any,
    where: Any,
    ignore_index: Any,
    backend: Any,
) -> Any:
    """The checks of :func:`cross_entropy`, then the dask computation (lazily)."""
    dtypes_for(logits.dtype)
    ax, eps, t = _check_options(logits.ndim, axis, reduction, label_smoothing, temperature)
    # (a dask target keeps its dtype without being computed)
    tgt_dtype = np.dtype(target.dtype) if hasattr(target, "dtype") else np.asarray(target).dtype
    _check_target(tgt_dtype, tuple(np.shape(target)), logits.shape, ax)
    return _dask.cross_entropy(
        logits, target, ax, reduction, eps, t, where, operator.index(ignore_index), backend
    )


def _check_options(
    ndim: int, axis: Any, reduction: Any, label_smoothing: Any, temperature: Any
) -> tuple[int, float, float]:
    """(class axis, label smoothing, temperature), checked, for logits of ``ndim`` axes."""
    if ndim == 0:
        raise ValueError("logits must have at least one axis (the classes)")
    if axis is None or isinstance(axis, tuple):
        raise TypeError(f"axis must be an int (the class axis), got {axis!r}")
    (ax,) = normalize_axis(axis, ndim)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, _REDUCTIONS))}")
    return ax, _check_smoothing(label_smoothing), check_temperature(temperature)


def _check_target(
    dtype: np.dtype, shape: tuple[int, ...], logits_shape: tuple[int, ...], ax: int
) -> None:
    """A class-index target has the logits' shape without ``ax``; a probability
    target (a float dtype) the logits' shape."""
    batch_shape = logits_shape[:ax] + logits_shape[ax + 1 :]
    if dtype.kind in "iu":
        if shape != batch_shape:
            raise ValueError(
                f"class-index target must have the shape of logits without axis {ax}, "
                f"{batch_shape}; got {shape}"
            )
    elif dtype.kind == "f" or dtype.name == "bfloat16":
        if shape != logits_shape:
            raise ValueError(
                f"probability target (dtype {dtype}) must have the shape of logits, "
                f"{logits_shape}; got {shape} (class indices need an integer dtype)"
            )
    else:
        raise TypeError(
            f"target must be integer class indices or float probabilities, not dtype {dtype}"
        )


def _check_smoothing(label_smoothing: Any) -> float:
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}") from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0 and 1, got {label_smoothing!r}")
    return eps


def _to_result(values: np.ndarray, dtype: np.dtype) -> Any:
    with np.errstate(over="ignore"):
        result = np.asarray(values).astype(dtype)
    return result[()] if result.ndim == 0 else result


def _tolerance(dtype: np.dtype) -> float:
    """How far from 1 a row of probabilities stored in ``dtype`` may sum."""
    if dtype.itemsize == 2:  # float16: eps 2^-10; bfloat16: eps 2^-7
        return 2.0**-7 if dtype.kind == "V" else 1e-3
    return 1e-3


def _logsumexp_kept(
    impl: Any, xc: np.ndarray, mask: np.ndarray | None, ax: int, t: float
) -> np.ndarray:
    """logsumexp(x / T) along ``ax`` by the backend's fused pass, ``ax`` kept (length 1)."""
    kept = list(xc.shape)
    kept[ax] = 1
    if xc.size == 0:
        return np.full(kept, -np.inf, dtype=xc.dtype)
    # The compiled backend takes the common call in one step (by its name:
    # the rule is that of the public functions).
    compiled = one_step_backend(ax, t, mask, impl.name)
    if compiled is not None:
        plain: np.ndarray | None = compiled.logsumexp_last_axis(xc, ax)
        if plain is not None:
            return np.expand_dims(plain, ax)
    lse = np.empty(kept, dtype=xc.dtype)
    run_rows(impl, xc, lse, mask, ax, t, None)
    return lse


def _in_range(tgt: np.ndarray, classes: int) -> bool:
    """Whether every index is in [0, classes), in one reduction: read as
    unsigned, a negative index is larger than any class count."""
    if not tgt.dtype.isnative:
        tgt = tgt.astype(tgt.dtype.newbyteorder("="))
    return int(tgt.view(np.dtype(f"u{tgt.itemsize}")).max()) < classes


def _row_sum(x: np.ndarray, ax: int) -> np.ndarray:
    """Sum along ``ax`` in float64 accuracy: NumPy's pairwise sum in the input's
    dtype along a contiguous axis (3x faster than casting), float64 otherwise."""
    if ax == x.ndim - 1 and x.strides[-1] == x.itemsize:
        return np.add.reduce(x, axis=ax).astype(np.float64)
    return np.add.reduce(x, axis=ax, dtype=np.float64)


def _index_losses(
    impl: Any,
    xc: np.ndarray,
    tgt: np.ndarray,
    mask: np.ndarray | None,
    ax: int,
    t: float,
    eps: float,
    ignore: int,
) -> tuple[np.ndarray, int]:
    """Rows' losses (float64) for class-index targets, and the rows counted by "mean"."""
    classes = xc.shape[ax]
    if tgt.size and _in_range(tgt, classes):
        ignored = (tgt == ignore) if 0 <= ignore < classes else None
    else:
        ignored = tgt == ignore
        bad = ~ignored & ((tgt < 0) | (tgt >= classes))
        if bad.any():
            value = int(tgt[bad].flat[0])
            raise IndexError(
                f"target class index {value} is out of range for {classes} classes (axis {ax})"
            )
    count = tgt.size if ignored is None else int(tgt.size - np.count_nonzero(ignored))
    if tgt.size == 0 or classes == 0:  # nothing, or every row ignored
        return np.zeros(tgt.shape), count

    lse = np.squeeze(_logsumexp_kept(impl, xc, mask, ax, t), ax)
    safe = tgt if ignored is None else np.where(ignored, 0, tgt)
    if xc.ndim == 2 and ax == 1:
        rows = np.arange(xc.shape[0])
        target_logit = xc[rows, safe]
        target_kept = None if mask is None else mask[rows, safe]
    else:
        index = np.expand_dims(safe.astype(np.intp, copy=False), ax)
        target_logit = np.squeeze(np.take_along_axis(xc, index, ax), ax)
        target_kept = None if mask is None else np.squeeze(np.take_along_axis(mask, index, ax), ax)
    with np.errstate(all="ignore"):
        lse64 = lse.astype(np.float64, copy=False)
        target_logit = target_logit.astype(np.float64, copy=False)
        loss = lse64 - (target_logit if t == 1 else target_logit / t)
        if target_kept is not None:  # a removed target class has probability 0
            loss = np.where(target_kept, loss, np.inf)
        if eps > 0:
            loss = (1 - eps) * loss if eps < 1 else np.zeros_like(loss)
            if mask is None:
                row_sum = _row_sum(xc, ax)
                loss += eps * (lse64 - row_sum / (classes * t))
            else:
                row_sum = np.add.reduce(xc, axis=ax, dtype=np.float64, where=mask, initial=0.0)
                active = np.count_nonzero(mask, axis=ax)
                smooth = lse64 - row_sum / (active * t)
                loss += np.where(active > 0, eps * smooth, 0.0)
        if ignored is not None:
            loss = np.where(ignored, 0.0, loss)
    return loss, count


def _probability_losses(
    impl: Any,
    xc: np.ndarray,
    p: np.ndarray,
    mask: np.ndarray | None,
    ax: int,
    t: float,
    eps: float,
) -> np.ndarray:
    """Rows' losses (float64) for probability targets."""
    classes = xc.shape[ax]
    batch_shape = xc.shape[:ax] + xc.shape[ax + 1 :]
    if xc.size == 0:  # no rows, or rows of no class: sums over nothing
        return np.zeros(batch_shape)
    if p.dtype.itemsize == 2:  # float16 / bfloat16 probabilities: read in float32
        p = p.astype(xc.dtype)
    lse = _logsumexp_kept(impl, xc, mask, ax, t)
    if mask is None:
        active = np.full(lse.shape, classes, dtype=np.float64)
    else:
        active = np.count_nonzero(mask, axis=ax, keepdims=True).astype(np.float64)
    loss = np.empty(lse.shape, dtype=np.float64)
    operands = [xc, p, lse, active, loss] + ([] if mask is None else [mask])
    views = _layout.rows3(operands, ax)
    if views is None:  # unusual strides: contiguous copies, class axis last
        moved = [np.ascontiguousarray(np.moveaxis(a, ax, -1)) for a in operands]
        views = _layout.rows3(moved, -1 % xc.ndim)
        assert views is not None
        _probability_rows(*views[:5], None if mask is None else views[5], t, eps)
        loss = np.moveaxis(moved[4], -1, ax)
    else:
        _probability_rows(*views[:5], None if mask is None else views[5], t, eps)
    return np.squeeze(loss, ax)


def _blocks(shape: tuple[int, int, int]) -> Iterator[tuple[slice, slice, slice]]:
    """Blocks of the (outer, inner, n) views of about _BLOCK_ELEMENTS elements;
    a row longer than that is cut along n."""
    outer, inner, n = shape
    cut = min(n, _BLOCK_ELEMENTS)
    rows = max(1, _BLOCK_ELEMENTS // cut)
    inner_step = min(inner, rows)
    outer_step = max(1, rows // inner_step)
    for o in range(0, outer, outer_step):
        for i in range(0, inner, inner_step):
            for k in range(0, n, cut):
                yield slice(o, o + outer_step), slice(i, i + inner_step), slice(k, k + cut)


def _row_dot_for(x3: np.ndarray, p3: np.ndarray) -> Any:
    """The fastest row dot for these views: np.vecdot (BLAS dot) for contiguous
    rows that are not short, np.einsum (its own loop, no product array) otherwise."""
    contiguous = x3.strides[-1] == x3.itemsize and p3.strides[-1] == p3.itemsize
    if hasattr(np, "vecdot") and contiguous and x3.shape[-1] >= 128 and x3.dtype == p3.dtype:
        return np.vecdot
    return lambda a, b: np.einsum("oik,oik->oi", a, b)


def _probability_rows(
    x3: np.ndarray,
    p3: np.ndarray,
    lse3: np.ndarray,
    active3: np.ndarray,
    loss3: np.ndarray,
    mask3: np.ndarray | None,
    t: float,
    eps: float,
) -> None:
    """loss = sum_j p'_j (lse - x_j / T), p' = (1 - eps) p + eps / active, per row."""
    lse = lse3[:, :, 0].astype(np.float64)
    active = active3[:, :, 0]
    with np.errstate(all="ignore"):
        if mask3 is None:
            # Fast form: lse * sum(p') - sum(p' x) / T from three row sums, each
            # block summed in the input's dtype (SIMD, pairwise) and the blocks in float64.
            dot = _row_dot_for(x3, p3)
            sums = np.zeros((3, *lse.shape))  # sum p, sum p x, sum x
            for o, i, k in _blocks(x3.shape):
                xb, pb = x3[o, i, k], p3[o, i, k]
                sums[0, o, i] += pb.sum(axis=-1)
                sums[1, o, i] += dot(pb, xb)
                if eps > 0:
                    sums[2, o, i] += xb.sum(axis=-1)
            weight = (1 - eps) * sums[0] + eps
            dot = (1 - eps) * sums[1] + eps * sums[2] / active
            loss = lse * weight - dot / t
            redo = np.isnan(loss)  # 0 * inf met on the way: term by term
            if not redo.any():
                loss3[:, :, 0] = loss
                return
        else:
            redo = loss = None
        # Term by term: a zero probability contributes 0; a removed class has
        # -log q = +inf.
        exact = np.zeros(lse.shape)
        for o, i, k in _blocks(x3.shape):
            pb = p3[o, i, k].astype(np.float64) * (1 - eps)
            q = lse[o, i, None] - x3[o, i, k].astype(np.float64) / t
            if mask3 is None:
                pb += eps / active[o, i, None]
            else:
                mb = mask3[o, i, k]
                a = active[o, i, None]
                pb += np.where(mb & (a > 0), eps / a, 0.0)
                q = np.where(mb, q, np.inf)
            exact[o, i] += np.where(pb == 0, 0.0, pb * q).sum(axis=-1)
        loss3[:, :, 0] = exact if redo is None else np.where(redo, exact, loss)


def _looks_like_probabilities(
    x: np.ndarray, mask: np.ndarray | None, ax: int, tolerance: float
) -> bool:
    """Whether every sampled row is non-negative and sums to 1 within ``tolerance``.

    Up to _SAMPLE_ROWS rows at even steps, taken as a strided view (no copy):
    first their leading _PROBE_COLUMNS entries (ordinary logits stop here, on
    a negative entry), then whole rows, as many as _SUM_BUDGET elements allow
    (at least one). Rows with fewer than two classes left prove nothing.
    """
    n = x.shape[ax]
    if n < 2 or x.size == 0:
        return False
    if mask is None:  # the first entries of the first row: where ordinary logits stop
        first = [0] * x.ndim
        first[ax] = slice(0, 32)
        with np.errstate(invalid="ignore"):
            if not x[tuple(first)].min() >= 0:
                return False
    if mask is None and x.size <= _SMALL:  # small: every row
        with np.errstate(invalid="ignore"):
            if not x.min() >= 0:  # False for NaN too
                return False
        sums = np.add.reduce(x, axis=ax, dtype=np.float64)
        return bool((np.abs(sums - 1) <= tolerance).all())
    operands = [x] if mask is None else [x, mask]
    views = _layout.rows3(operands, ax)
    if views is None:  # unusual strides: the rows of the first other axis only
        views = []
        for a in operands:
            moved = np.moveaxis(a, ax, -1)
            views.append(moved[(0,) * (moved.ndim - 2)][None] if moved.ndim > 1 else moved)
        views = [v.reshape(1, 1, n) if v.ndim == 1 else v for v in views]
    outer, inner = views[0].shape[:2]
    keep_outer = min(outer, _SAMPLE_ROWS)
    keep_inner = min(inner, max(1, _SAMPLE_ROWS // keep_outer))
    picked = (
        slice(0, outer, outer // keep_outer),
        slice(0, inner, inner // keep_inner),
    )
    sample = [v[picked][:keep_outer, :keep_inner] for v in views]
    sampled_outer, sampled_inner = sample[0].shape[:2]
    if sampled_outer * sampled_inner * n > _SUM_BUDGET:  # whole rows: within the budget
        budget_rows = max(1, _SUM_BUDGET // n)
        rows_outer = min(sampled_outer, max(1, budget_rows // sampled_inner))
        rows_inner = sampled_inner if rows_outer > 1 else min(sampled_inner, budget_rows)
        whole = [v[:rows_outer, :rows_inner] for v in sample]
    else:
        whole = sample
    with np.errstate(invalid="ignore"):
        if mask is None:
            # min() >= 0 is False for NaN too.
            if not (sample[0][:, :, :_PROBE_COLUMNS].min() >= 0 and whole[0].min() >= 0):
                return False
            sums = np.add.reduce(whole[0], axis=-1, dtype=np.float64)
            return bool((np.abs(sums - 1) <= tolerance).all())
        probe = np.min(
            sample[0][:, :, :_PROBE_COLUMNS],
            where=sample[1][:, :, :_PROBE_COLUMNS],
            initial=np.inf,
        )
        if not (probe >= 0 and np.min(whole[0], where=whole[1], initial=np.inf) >= 0):
            return False
        useful = np.count_nonzero(whole[1], axis=-1) >= 2
        if not useful.any():
            return False
        sums = np.add.reduce(whole[0], axis=-1, dtype=np.float64, where=whole[1], initial=0.0)
        return bool((np.abs(sums[useful] - 1) <= tolerance).all())
