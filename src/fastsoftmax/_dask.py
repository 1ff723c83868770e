"""Dask arrays: the public functions on a ``dask.array.Array`` return one, lazily.

Dask is never imported here unless the caller already has (``is_dask``
looks at ``sys.modules``), so ``import fastsoftmax`` does not import it.

Two plans, chosen per call from the chunks along the reduced axes:

* every reduced axis within one chunk: each block is a whole set of rows and
  the compiled kernel computes it as a NumPy array (``map_blocks``); the
  graph has one task per block, no rechunking;
* a reduced axis spans several chunks: pass 1 gives each block's pair
  (``m``: the max of its rows, ``l``: the log of the sum of
  ``exp((x - m) / T)``, by the kernel, in float64), a tree reduction merges
  the pairs by the online-normalizer rule (``M = max m``,
  ``L = log sum exp(l + (m - M) / T)``), and pass 2 normalizes each block:
  ``softmax(block) * exp(l_b - L + (m_b - M) / T)`` (log_softmax: the log of
  it, as a sum). Each task holds about one chunk; the graph grows with the
  number of chunks, not with their product. Rows whose total is not finite
  (a NaN, a +inf, nothing but -inf) take the NumPy reference's values:
  softmax NaN where kept and 0 where masked, log_softmax ``x / T - lse``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._validation import (
    check_temperature,
    compute_dtype_for,
    dtypes_for,
    reduction_axes,
)

__all__ = ["is_dask", "logsumexp", "softmax"]


def is_dask(x: Any) -> bool:
    """Whether ``x`` is a dask array (False without importing dask)."""
    # (getattr: a worker process may be part-way through importing dask.array)
    array_type = getattr(sys.modules.get("dask.array"), "Array", None)
    return array_type is not None and isinstance(x, array_type)


def _mask_like(where: Any, x: Any) -> Any:
    """``where`` as a boolean dask array of x's shape and chunks, or None."""
    if where is None:
        return None
    import dask.array as da

    mask = da.asarray(where)
    if mask.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {mask.dtype}")
    try:
        mask = da.broadcast_to(mask, x.shape)
    except ValueError:
        raise ValueError(
            f"where of shape {mask.shape} does not broadcast to the input shape {x.shape}"
        ) from None
    return mask.rechunk(x.chunks)


def _within_chunks(x: Any, axes: tuple[int, ...]) -> bool:
    return all(x.numblocks[a] == 1 for a in axes)


# --- pass 1, the merge, pass 2: functions of NumPy blocks ---------------------


def _block_pair(block: np.ndarray, mask: np.ndarray | None, axes, temperature, backend):
    """(m, l) of each row of one block, axes kept, float64, stacked on a new
    first axis: m the max (of the kept entries), l = log sum exp((x - m) / T)."""
    from . import _api

    compute = compute_dtype_for(dtypes_for(block.dtype)[0], temperature)
    x = block.astype(compute, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        if mask is None:
            m = np.max(x, axis=axes, keepdims=True) if x.size else None
        else:
            m = np.max(x, axis=axes, keepdims=True, where=mask, initial=-np.inf)
        if m is None:
            shape = tuple(1 if d in axes else s for d, s in enumerate(block.shape))
            return np.stack([np.full(shape, -np.inf), np.full(shape, -np.inf)])
        finite = np.isfinite(m)
        # x - m, the kernel's own first step, done here (in one pass; rows
        # without a finite max subtract 0 and are fixed below)
        shifted = x - np.where(finite, m, 0).astype(x.dtype)
        log_sum = _api.logsumexp(
            shifted, axis=axes, keepdims=True, temperature=temperature, where=mask,
            backend=backend,
        ).astype(np.float64)  # fmt: skip
    log_sum = np.where(finite, log_sum, np.where(m == -np.inf, -np.inf, np.nan))
    return np.stack([m.astype(np.float64), log_sum])


def _merge_pairs(pairs: np.ndarray, axis, keepdims, temperature):
    """Pairs of blocks (stacked on axis 0) merged along ``axis``: the online
    normalizer rule, the sum of exponentials in log form (the kernel's
    logsumexp, float64)."""
    from . import _api

    axes = tuple(a + 1 for a in (axis if isinstance(axis, tuple) else (axis,)))
    m, log_sum = pairs[0:1], pairs[1:2]
    with np.errstate(invalid="ignore", over="ignore"):
        big = np.max(m, axis=axes, keepdims=True)
        has_nan = np.isnan(big)
        safe_big = np.where(np.isfinite(big), big, 0.0)
        terms = log_sum + (m - safe_big) / temperature
        terms = np.where(m == -np.inf, -np.inf, terms)  # an empty block adds nothing
        total = _api.logsumexp(terms, axis=axes, keepdims=True)
        # a NaN or +inf anywhere wins; a row of nothing stays -inf
        total = np.where(has_nan | np.isnan(total), np.nan, total)
        big = np.where(has_nan, np.nan, big)
        merged = np.concatenate([big, total], axis=0)
    if not keepdims:
        merged = merged.squeeze(axis=axes)
    return merged


def _row_lse(pair: np.ndarray, temperature: float) -> np.ndarray:
    """logsumexp of each row from its merged pair (NumPy's special values)."""
    m, log_sum = pair[0], pair[1]
    with np.errstate(invalid="ignore", over="ignore"):
        value = m / temperature + log_sum
    value = np.where(m == np.inf, np.inf, value)
    value = np.where(m == -np.inf, -np.inf, value)
    return np.where(np.isnan(m) | np.isnan(log_sum) & np.isfinite(m), np.nan, value)


def _normalize_block(block, mask, m_b, l_b, big, total_log, axes, temperature, log, backend, dtype):
    """Pass 2 on one block: its rows' share of the whole row (m_b, l_b: the
    block's pair; big, total_log: the row's merged pair). The block's own
    softmax times exp(shift) (log_softmax: plus shift), shift per row."""
    from . import _api

    kernel = _api.log_softmax if log else _api.softmax
    if block.dtype.itemsize == 2:  # 16-bit: the local result in float32, rounded once at the end
        block = block.astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        local = kernel(block, axis=axes, temperature=temperature, where=mask, backend=backend)
        shift = l_b - total_log + (m_b - np.where(np.isfinite(big), big, 0)) / temperature
        if log:
            np.add(local, shift, out=local, casting="unsafe")
        else:
            np.multiply(local, np.exp(shift), out=local, casting="unsafe")
        lse = _row_lse(np.stack([big, total_log]), temperature)
        empty = m_b == -np.inf  # rows of this block with nothing but -inf (or masked)
        special = ~np.isfinite(lse)
        if empty.any() or special.any():  # NumPy's values there
            x = block.astype(np.float64)
            kept = np.ones(block.shape, bool) if mask is None else mask
            if log:
                y = np.where(empty | special, x / temperature - lse, local)
                local = np.where(kept, y, -np.inf)
            else:
                y = np.where(empty, 0.0, local)
                y = np.where(special, np.nan, y)
                local = np.where(kept, y, 0.0)
    return local.astype(dtype, copy=False)


# --- the public entry points ----------------------------------------------------


def softmax(
    x: Any, axis: Any, temperature: Any, where: Any, out: Any, backend: Any, log: bool
) -> Any:
    import dask.array as da

    from . import _api

    if out is not None:
        raise TypeError("out= is not supported for dask arrays (dask arrays are immutable)")
    compute, result_dtype = dtypes_for(x.dtype)
    axes = reduction_axes(axis, x.ndim)
    t = check_temperature(temperature)
    compute = compute_dtype_for(compute, t)
    mask = _mask_like(where, x)
    kernel = _api.log_softmax if log else _api.softmax
    if x.ndim == 0 or x.size == 0 or _within_chunks(x, axes):
        kwargs = {"axis": axis, "temperature": temperature, "backend": backend}
        if mask is None:
            return x.map_blocks(kernel, dtype=result_dtype, **kwargs)
        return da.map_blocks(lambda b, w: kernel(b, where=w, **kwargs), x, mask, dtype=result_dtype)
    pairs, total = _pairs_and_total(x, mask, axes, t, backend)
    operands = [x, pairs[0], pairs[1], total[0], total[1]]
    operands += [] if mask is None else [mask]

    def normalize(block, m_b, l_b, big, total_log, w=None):
        return _normalize_block(
            block, w, m_b, l_b, big, total_log, axes, t, log, backend, result_dtype
        )

    meta = np.empty((0,) * x.ndim, result_dtype)
    return da.map_blocks(normalize, *operands, dtype=result_dtype, meta=meta)


def _pairs_and_total(x: Any, mask: Any, axes: tuple[int, ...], t: float, backend: Any):
    """Pass 1 (a pair per block, the pairs stacked on a new axis 0) and the
    tree reduction of the pairs (one per row, reduced axes kept)."""
    import dask.array as da

    def pair_of(block, w=None):
        return _block_pair(block, w, axes, t, backend)

    pair_chunks = (
        (2,),
        *((1,) * x.numblocks[d] if d in axes else c for d, c in enumerate(x.chunks)),
    )
    operands = [x] if mask is None else [x, mask]
    pairs = da.map_blocks(
        pair_of, *operands, chunks=pair_chunks, new_axis=0, dtype=np.float64,
        meta=np.empty((0,) * (x.ndim + 1), np.float64),
    )  # fmt: skip
    shifted = tuple(a + 1 for a in axes)

    def merge(block, axis, keepdims):
        return _merge_pairs(block, tuple(a - 1 for a in axis), keepdims, t)

    total = da.reduction(
        pairs, chunk=lambda b, axis, keepdims: b, combine=merge, aggregate=merge,
        axis=shifted, keepdims=True, dtype=np.float64, concatenate=True,
        meta=np.empty((0,) * (x.ndim + 1), np.float64),
    )  # fmt: skip
    return pairs, total


def logsumexp(
    x: Any, axis: Any, keepdims: bool, temperature: Any, where: Any, out: Any, backend: Any
) -> Any:
    import dask.array as da

    from . import _api

    if out is not None:
        raise TypeError("out= is not supported for dask arrays (dask arrays are immutable)")
    result_dtype = dtypes_for(x.dtype)[1]
    axes = reduction_axes(axis, x.ndim)
    t = check_temperature(temperature)
    mask = _mask_like(where, x)
    if x.ndim == 0:
        return x.map_blocks(
            _api.logsumexp, keepdims=keepdims, temperature=t, backend=backend, dtype=result_dtype
        )
    if x.size == 0:  # nothing to compute: one chunk along the reduced axes costs nothing
        x = x.rechunk({a: -1 for a in axes})
        mask = None if mask is None else mask.rechunk(x.chunks)
    kept_chunks = tuple((1,) if d in axes else c for d, c in enumerate(x.chunks))
    if x.size == 0 or _within_chunks(x, axes):
        kwargs = {"axis": axes, "keepdims": True, "temperature": t, "backend": backend}

        def block_lse(b, w=None):
            return np.asarray(_api.logsumexp(b, where=w, **kwargs)).astype(result_dtype)

        operands = [x] if mask is None else [x, mask]
        result = da.map_blocks(block_lse, *operands, chunks=kept_chunks, dtype=result_dtype)
    else:
        _, total = _pairs_and_total(x, mask, axes, t, backend)
        result = total.map_blocks(
            lambda p: _row_lse(p, t).astype(result_dtype), drop_axis=0, dtype=result_dtype,
            meta=np.empty((0,) * x.ndim, result_dtype),
        )  # fmt: skip
    if not keepdims:
        result = result.squeeze(axis=axes)
    return result


def _aligned(a: Any, like: Any, drop: int | None = None) -> Any:
    """``a`` as a dask array with like's chunks (without axis ``drop``)."""
    import dask.array as da

    chunks = like.chunks if drop is None else like.chunks[:drop] + like.chunks[drop + 1 :]
    return da.asarray(a).rechunk(chunks)


def gradient(y: Any, grad: Any, axis: Any, where: Any, out: Any, backend: Any, log: bool) -> Any:
    """softmax_grad / log_softmax_grad of dask arrays."""
    import dask.array as da

    from . import _gradients

    if out is not None:
        raise TypeError("out= is not supported for dask arrays (dask arrays are immutable)")
    y, grad = da.asarray(y), da.asarray(grad)
    dtypes_for(y.dtype)
    dtypes_for(grad.dtype)
    if y.shape != grad.shape:
        raise ValueError(f"y has shape {y.shape} but grad has shape {grad.shape}; they must match")
    compute, result_dtype = dtypes_for(np.promote_types(y.dtype, grad.dtype))
    axes = reduction_axes(axis, y.ndim)
    grad = _aligned(grad, y)
    mask = _mask_like(where, y)
    function = _gradients.log_softmax_grad if log else _gradients.softmax_grad
    if y.ndim == 0 or y.size == 0 or _within_chunks(y, axes):
        kwargs = {"axis": axis, "backend": backend}
        operands = [y, grad] if mask is None else [y, grad, mask]
        return da.map_blocks(
            lambda yb, gb, w=None: function(yb, gb, where=w, **kwargs),
            *operands,
            dtype=result_dtype,
        )
    # across chunks: the row sum by dask's tree reduction (float64 for 16-bit and
    # float32 work, as NumPy's pairwise sum is), the rest elementwise
    yc, gc = y.astype(compute), grad.astype(compute)
    keep = True if mask is None else mask
    with np.errstate(all="ignore"):
        if log:
            total = da.where(keep, gc, 0).sum(axis=axes, keepdims=True, dtype=np.float64)
            value = gc - da.exp(yc) * total.astype(compute)
        else:
            products = da.where(keep, gc.astype(np.float64) * yc, 0)
            total = products.sum(axis=axes, keepdims=True)
            value = yc * (gc - total.astype(compute))
        value = da.where(keep, value, 0)
    return value.astype(result_dtype)


def cross_entropy(
    logits: Any,
    target: Any,
    ax: int,
    reduction: str,
    eps: float,
    t: float,
    where: Any,
    ignore: int,
    backend: Any,
) -> Any:
    """cross_entropy of dask logits (checked arguments); lazily."""
    import dask.array as da

    from . import _losses

    result_dtype = dtypes_for(logits.dtype)[1]
    target = da.asarray(target)
    mask = _mask_like(where, logits)
    index_target = target.dtype.kind in "iu"
    classes = logits.shape[ax]
    if index_target:
        target = _aligned(target, logits, drop=ax)
        counted = target.size - (target == ignore).sum() if target.size else 0
    else:
        target = _aligned(target, logits)
        counted = target.size // max(classes, 1)
    if logits.size == 0 or _within_chunks(logits, (ax,)):
        kwargs = {
            "axis": ax, "reduction": "none", "label_smoothing": eps, "temperature": t,
            "ignore_index": ignore, "check_probabilities": False, "backend": backend,
        }  # fmt: skip

        def block_losses(xb, tb, w=None):
            tb = np.squeeze(tb, ax) if index_target else tb
            return np.asarray(_losses.cross_entropy(xb, tb, where=w, **kwargs), np.float64)

        # (class indices gain the class axis, of length 1: blocks pair by position)
        aligned = da.expand_dims(target, ax) if index_target else target
        operands = [logits, aligned] if mask is None else [logits, aligned, mask]
        meta = np.empty((0,) * (logits.ndim - 1), np.float64)
        losses = da.map_blocks(block_losses, *operands, drop_axis=ax, dtype=np.float64, meta=meta)
    else:
        losses = _cross_chunk_losses(logits, target, mask, ax, eps, t, ignore, backend)
    if reduction == "none":
        return losses.astype(result_dtype)
    total = losses.sum()
    if reduction == "mean":
        total = da.where(counted > 0, total / da.maximum(counted, 1), np.nan)
    return total.astype(result_dtype)


def _cross_chunk_losses(logits, target, mask, ax, eps, t, ignore, backend):
    """Rows' losses (float64) when the class axis spans chunks: the formulas of
    the NumPy path, on dask's logsumexp and row sums."""
    import dask.array as da

    from . import _api

    classes = logits.shape[ax]
    x = logits.astype(np.float64)
    lse = _api.logsumexp(logits, axis=ax, temperature=t, where=mask, backend=backend)
    lse = lse.astype(np.float64)
    keep = da.ones_like(x, dtype=bool) if mask is None else mask
    active = keep.sum(axis=ax)
    with np.errstate(all="ignore"):
        if target.dtype.kind in "iu":
            target = target.map_blocks(_checked_indices, classes, ignore, dtype=target.dtype)
            shape = [1] * x.ndim
            shape[ax] = classes
            classes_along = da.arange(classes, chunks=(logits.chunks[ax],)).reshape(shape)
            hit = classes_along == da.expand_dims(target, ax)
            target_logit = da.where(hit, x, 0).sum(axis=ax)
            loss = lse - target_logit / t
            if mask is not None:
                loss = da.where(da.where(hit, mask, False).any(axis=ax), loss, np.inf)
            if eps > 0:
                row_sum = da.where(keep, x, 0).sum(axis=ax)
                smooth = da.where(active > 0, eps * (lse - row_sum / (active * t)), 0.0)
                loss = (1 - eps) * loss + smooth if eps < 1 else smooth
            return da.where(target == ignore, 0.0, loss)
        p = target.astype(np.float64) * (1 - eps)
        p = p + da.where(keep, eps / da.maximum(da.expand_dims(active, ax), 1), 0.0) * (
            da.expand_dims(active, ax) > 0
        )
        q = da.expand_dims(lse, ax) - x / t
        q = da.where(keep, q, np.inf)
        return da.where(p == 0, 0.0, p * q).sum(axis=ax)


def _checked_indices(block: np.ndarray, classes: int, ignore: int) -> np.ndarray:
    bad = (block != ignore) & ((block < 0) | (block >= classes))
    if bad.any():
        value = int(block[bad].flat[0])
        raise IndexError(f"target class index {value} is out of range for {classes} classes")
    return block
