"""The public functions: validation and layout once, for every backend.

Each call: the input becomes an array of a computing dtype (float32 or
float64); axes, temperature, ``where`` and ``out`` are checked; the arrays
become 3-D ``(outer, inner, n)`` views with the reduction axis last
(``_layout``); and one backend computes in place into the output view. The
checks and the layout driver live in ``_validation``, shared with the losses
and the gradients; the common call (see ``_validation.one_step_backend``)
goes to the compiled kernel in one step, before any of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _backends, _dask
from ._dask import is_dask
from ._validation import (
    Axis,
    Backend,
    as_input,
    check_out,
    check_temperature,
    check_where,
    compute_dtype_for,
    dtypes_for,
    for_kernel,
    is_same_view,
    kernel_dtype,
    one_step_backend,
    reduction_axes,
    run_axes,
    well_behaved,
)

__all__ = ["log_softmax", "logsumexp", "softmax"]


def _softmax_like(
    x: Any,
    axis: Axis,
    temperature: Any,
    where: Any,
    out: np.ndarray | None,
    backend: Backend | None,
    log: bool,
) -> Any:
    impl = _backends.get(backend)
    if is_dask(x):
        return _dask.softmax(x, axis, temperature, where, out, backend, log)
    arr, compute, result_dtype = as_input(x)
    scalar_input = arr.ndim == 0
    axes = reduction_axes(axis, arr.ndim)
    if scalar_input:
        arr = arr.reshape(1)
    t = check_temperature(temperature)
    compute = kernel_dtype(impl, arr.dtype, compute_dtype_for(compute, t))
    mask = check_where(where, arr.shape)
    if out is not None:
        result = check_out(out, () if scalar_input else arr.shape, result_dtype)
    else:
        result = np.empty_like(arr.reshape(()) if scalar_input else arr, dtype=result_dtype)
    result_view = result.reshape(arr.shape)  # a view: only 0-d gains an axis
    if arr.size == 0:
        return result

    xc = for_kernel(arr, compute)
    direct = well_behaved(result_view, compute)
    target = result_view if direct else np.empty_like(xc)
    if direct and np.may_share_memory(xc, target) and not is_same_view(xc, target):
        xc = xc.copy()  # partial overlap with out: read from a copy
    if mask is not None and np.may_share_memory(mask, target):
        mask = mask.copy()

    run_axes(impl, xc, target, mask, axes, t, log)
    if target is not result_view:
        with np.errstate(over="ignore"):  # rounding to a narrower dtype: +-inf is right
            np.copyto(result_view, target, casting="unsafe")
    if scalar_input and out is None:
        return result[()]
    return result


def softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: np.ndarray | None = None,
    backend: Backend | None = None,
) -> Any:
    """Softmax of ``x / temperature`` along ``axis``: ``exp(x - max) / sum``.

    Parameters
    ----------
    x : array_like
        Logits: float16/float32/float64 (float16 and bfloat16 computed in
        float32), integers and bools (computed as float64).
    axis : int, tuple of ints or None, default -1
        Axis or axes of the distribution. scipy.special.softmax defaults to
        None (all axes); the default here is the last axis, as in PyTorch/JAX.
    temperature : float, default 1
        Positive and finite; logits are divided by it after the max is
        subtracted, so no finite result overflows.
    where : array_like of bool, optional
        Broadcastable to ``x``; False entries are ignored whatever they hold
        and get probability 0. A row with nothing left is all zeros.
    out : ndarray, optional
        Result array of the exact shape and dtype; may be ``x`` (in place).
    backend : {"cpp", "numba", "numpy"}, optional
        Default: the best available (see ``backends()``).

    Returns
    -------
    ndarray of the input's shape; a NumPy scalar for 0-d input.
    """
    compiled = one_step_backend(axis, temperature, where, backend)
    if compiled is not None:  # the common call in one step (None: not that case)
        result = compiled.softmax_last_axis(x, axis, False, out)
        if result is not None:
            return result
    return _softmax_like(x, axis, temperature, where, out, backend, log=False)


def log_softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: np.ndarray | None = None,
    backend: Backend | None = None,
) -> Any:
    """``log(softmax(x / temperature))`` along ``axis``, computed without the
    cancellation of taking the log of a probability. Masked entries (and rows
    masked out entirely) are -inf. Parameters as in :func:`softmax`."""
    compiled = one_step_backend(axis, temperature, where, backend)
    if compiled is not None:  # the common call in one step (None: not that case)
        result = compiled.softmax_last_axis(x, axis, True, out)
        if result is not None:
            return result
    return _softmax_like(x, axis, temperature, where, out, backend, log=True)


def logsumexp(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: np.ndarray | None = None,
    backend: Backend | None = None,
    b: ArrayLike | None = None,
    return_sign: bool = False,
) -> Any:
    """``log(sum(exp(x / temperature)))`` along ``axis``, without overflow.

    As exact as scipy.special.logsumexp (its log1p form: logsumexp([0, -40])
    is 4.2e-18). ``b`` (weights broadcastable to ``x``) and ``return_sign``
    are scipy's; they run the NumPy reference formulas whatever the backend.
    An empty reduction, or a row masked out entirely, gives -inf. Other
    parameters as in :func:`softmax`.
    """
    # The common call in one step, when none of logsumexp's own options is used.
    compiled = one_step_backend(axis, temperature, where, backend)
    if compiled is not None and not keepdims and b is None and return_sign is False:
        plain = compiled.logsumexp_last_axis(x, axis, out)
        if plain is not None:
            return plain[()] if plain.ndim == 0 and out is None else plain
    impl = _backends.get(backend)
    if is_dask(x):
        if b is not None or return_sign:
            raise TypeError("b= and return_sign= are not supported for dask arrays")
        return _dask.logsumexp(x, axis, keepdims, temperature, where, out, backend)
    arr, compute, result_dtype = as_input(x)
    axes = reduction_axes(axis, arr.ndim)
    if arr.ndim == 0:
        arr = arr.reshape(1)
        kept_shape: tuple[int, ...] = (1,)
        result_shape: tuple[int, ...] = ()
    else:
        kept_shape = tuple(1 if d in axes else s for d, s in enumerate(arr.shape))
        result_shape = (
            kept_shape if keepdims else tuple(s for d, s in enumerate(arr.shape) if d not in axes)
        )
    t = check_temperature(temperature)
    compute = compute_dtype_for(compute, t)
    mask = check_where(where, arr.shape)
    if b is not None or return_sign:
        return _logsumexp_weighted(
            arr, axes, kept_shape, result_shape, t, mask, b, return_sign, out, result_dtype
        )
    compute = kernel_dtype(impl, arr.dtype, compute)
    if out is not None:
        result = check_out(out, result_shape, result_dtype)
    else:
        result = np.empty(result_shape, dtype=result_dtype)
    # (a 0-d input is computed as shape (1,): its result gains that axis back)
    kept = result if keepdims and result.ndim else np.expand_dims(result, axes)
    if kept.size == 0:
        return result
    if arr.size == 0:  # empty reduction
        kept[...] = -np.inf
    else:
        xc = for_kernel(arr, compute)
        target = kept if well_behaved(kept, compute) else np.empty(kept_shape, dtype=compute)
        if np.may_share_memory(xc, target):  # out= overlaps x: read from a copy
            xc = xc.copy()
        if mask is not None and np.may_share_memory(mask, target):
            mask = mask.copy()
        run_axes(impl, xc, target, mask, axes, t, None)
        if target is not kept:
            with np.errstate(over="ignore"):
                np.copyto(kept, target, casting="unsafe")
    if out is None and result.ndim == 0:
        return result[()]
    return result


def _logsumexp_weighted(
    arr: np.ndarray,
    axes: tuple[int, ...],
    kept_shape: tuple[int, ...],
    result_shape: tuple[int, ...],
    temperature: float,
    mask: np.ndarray | None,
    b: Any,
    return_sign: bool,
    out: np.ndarray | None,
    result_dtype: np.dtype,
) -> Any:
    """scipy's weighted / signed logsumexp, in NumPy (the slower path), in
    float64 at least: float32 weights times exp(x - max) lose their digits
    where the product is subnormal."""
    compute = np.promote_types(compute_dtype_for(dtypes_for(arr.dtype)[0], temperature), np.float64)
    x = arr.astype(compute) / compute.type(temperature)
    weights = np.ones_like(x) if b is None else np.broadcast_to(np.asarray(b, compute), x.shape)
    if mask is not None:
        weights = np.where(mask, weights, 0)
    with np.errstate(all="ignore"):
        x = np.where(weights == 0, -np.inf, x)
        m = np.max(x, axis=axes, keepdims=True) if x.size else np.full(kept_shape, -np.inf)
        at_max = x == m
        count = np.sum(np.where(at_max, weights, 0), axis=axes, keepdims=True)
        rest = np.sum(np.where(at_max, 0, weights * np.exp(x - m)), axis=axes, keepdims=True)
        s = np.where(rest == 0, rest, rest / count)
        sign = np.sign(s + 1) * np.sign(count)
        s = np.where(s < -1, -s - 2, s)
        value = np.log1p(s) + np.log(np.abs(count)) + m
        # Rows where the stable form fails (inf or NaN max): the naive formula.
        naive_sum = np.sum(weights * np.exp(x), axis=axes, keepdims=True)
        finite = np.isfinite(value)
        value = np.where(finite, value, np.log(np.abs(naive_sum)))
        sign = np.where(finite, sign, np.sign(naive_sum))
        if not return_sign:
            value = np.where(sign < 0, np.nan, value)
    with np.errstate(over="ignore"):
        value = value.reshape(result_shape).astype(result_dtype)
    sign = sign.reshape(result_shape).astype(result_dtype)
    if out is not None:
        check_out(out, result_shape, result_dtype)[...] = value
        value = out
    elif value.ndim == 0:
        value, sign = value[()], sign[()]
    return (value, sign) if return_sign else value
