"""The public functions: validation and layout once, for every backend.

Each call: the input becomes an array of a computing dtype (float32 or
float64); axes, temperature, ``where`` and ``out`` are checked; the arrays
become 3-D ``(outer, inner, n)`` views with the reduction axis last
(``_layout``); and one backend computes in place into the output view.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Union

import numpy as np

from . import _backends, _layout

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    AxisError = AxisError  # type: ignore[attr-defined,misc]

Axis = Union[int, tuple[int, ...], None]

_SUPPORTED = "float16, float32, float64, bfloat16 (ml_dtypes), integer or bool"


def _dtypes(dtype: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(computing dtype, result dtype) for an input dtype, or TypeError."""
    if dtype.kind == "f":
        if dtype.itemsize == 2:  # float16 is computed in float32
            return np.dtype(np.float32), dtype.newbyteorder("=")
        if dtype.itemsize in (4, 8):
            return dtype.newbyteorder("="), dtype.newbyteorder("=")
    elif dtype.kind in "iub":
        return np.dtype(np.float64), np.dtype(np.float64)
    elif dtype.kind == "V" and dtype.name == "bfloat16":  # ml_dtypes
        return np.dtype(np.float32), dtype
    raise TypeError(f"fastsoftmax works on {_SUPPORTED} arrays, not {dtype}")


def _as_input(x: Any) -> tuple[np.ndarray, np.dtype, np.dtype]:
    arr = np.asarray(x)
    compute, result = _dtypes(arr.dtype)
    return arr, compute, result


def _normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """Axes as a tuple of non-negative ints, as scipy.special reads them."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    axes = []
    for item in items:
        index = operator.index(item)  # TypeError for floats
        if not -ndim <= index < ndim:
            raise AxisError(index, ndim)
        axes.append(index % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"duplicate value in 'axis': {axis!r}")
    return tuple(axes)


_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _compute_for(compute: np.dtype, temperature: float) -> np.dtype:
    """float32 work scales by 1/T in float32; a T whose reciprocal is not a
    normal float32 (T < 3e-39 or T > 8e37) is computed in float64 instead."""
    if compute == np.float32 and not (_FLOAT32_TINY <= 1.0 / temperature <= _FLOAT32_MAX):
        return np.dtype(np.float64)
    return compute


def _kernel_dtype(impl: Any, dtype: np.dtype, compute: np.dtype) -> np.dtype:
    """The dtype the backend reads and writes: float16 / bfloat16 as they are
    where the backend widens them row by row itself, else the computing dtype."""
    if (
        dtype.itemsize == 2
        and dtype.kind in "fV"
        and compute == np.float32
        and getattr(impl, "reads_16bit", False)
    ):
        return dtype.newbyteorder("=") if dtype.kind == "f" else dtype
    return compute


def _check_temperature(temperature: Any) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a real number, got {temperature!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    return value


def _check_where(where: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if where is None:
        return None
    mask = np.asarray(where)
    if mask.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {mask.dtype}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"where of shape {mask.shape} does not broadcast to the input shape {shape}"
        ) from None


def _check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}; expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def _well_behaved(a: np.ndarray, dtype: np.dtype) -> bool:
    """Usable by a kernel as it is: computing dtype, native order, aligned."""
    return a.dtype == dtype and a.dtype.isnative and a.flags.aligned


def _is_same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
    )


def _run(
    backend: Any,
    x: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None,
    axis: int,
    temperature: float,
    log: bool | None,
) -> None:
    """Compute along ``axis`` into ``target`` (well-behaved, same shape as x,
    or length 1 along axis for logsumexp; log=None means logsumexp)."""
    operands = [x, target] if mask is None else [x, target, mask]
    views = _layout.rows3(operands, axis)
    if views is None:  # unusual strides: compute on contiguous copies
        moved = [np.ascontiguousarray(np.moveaxis(a, axis, -1)) for a in operands]
        result = moved[1]
        _run(
            backend,
            moved[0],
            result,
            None if mask is None else moved[2],
            -1 % x.ndim,
            temperature,
            log,
        )
        np.moveaxis(target, axis, -1)[...] = result
        return
    mask3 = views[2] if mask is not None else None
    if log is None:
        backend.logsumexp_rows(views[0], views[1][:, :, 0], mask3, temperature)
    else:
        backend.softmax_rows(views[0], views[1], mask3, temperature, log)


def _flatten_axes(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Move ``axes`` to the end and merge them into one (a copy if needed)."""
    moved = np.moveaxis(a, axes, range(-len(axes), 0))
    return moved.reshape((*moved.shape[: a.ndim - len(axes)], -1))


def _softmax_like(
    x: Any,
    axis: Axis,
    temperature: float,
    where: Any,
    out: np.ndarray | None,
    backend: str | None,
    log: bool,
) -> Any:
    impl = _backends.get(backend)
    arr, compute, result_dtype = _as_input(x)
    scalar_input = arr.ndim == 0
    if scalar_input:
        if axis not in (None, -1, 0, ()):
            raise AxisError(axis, 0)
        arr, axes = arr.reshape(1), (0,)
    else:
        axes = _normalize_axis(axis, arr.ndim)
    t = _check_temperature(temperature)
    compute = _kernel_dtype(impl, arr.dtype, _compute_for(compute, t))
    mask = _check_where(where, arr.shape)
    if out is not None:
        result = _check_out(out, () if scalar_input else arr.shape, result_dtype)
    else:
        result = np.empty_like(arr.reshape(()) if scalar_input else arr, dtype=result_dtype)
    result_view = result.reshape(arr.shape)  # a view: only 0-d gains an axis
    if arr.size == 0:
        return result

    xc = arr if _well_behaved(arr, compute) else arr.astype(compute)
    direct = _well_behaved(result_view, compute)
    target = result_view if direct else np.empty_like(xc)
    if direct and np.may_share_memory(xc, target) and not _is_same_view(xc, target):
        xc = xc.copy()  # partial overlap with out: read from a copy
    if mask is not None and np.may_share_memory(mask, target):
        mask = mask.copy()

    if len(axes) == 1:
        _run(impl, xc, target, mask, axes[0], t, log)
    elif len(axes) == 0:  # reduce over nothing: every element is a row of one
        _run(
            impl,
            xc[..., None],
            target[..., None],
            None if mask is None else mask[..., None],
            xc.ndim,
            t,
            log,
        )
    else:
        flat = np.empty(_flatten_axes(xc, axes).shape, dtype=compute)
        _run(
            impl,
            _flatten_axes(xc, axes),
            flat,
            None if mask is None else _flatten_axes(mask, axes),
            xc.ndim - len(axes),
            t,
            log,
        )
        moved = np.moveaxis(target, axes, range(-len(axes), 0))
        moved[...] = flat.reshape(moved.shape)
    if target is not result_view:
        with np.errstate(over="ignore"):  # rounding to a narrower dtype: +-inf is right
            np.copyto(result_view, target, casting="unsafe")
    if scalar_input and out is None:
        return result[()]
    return result


def _try_plain(
    x: Any, axis: Axis, temperature: Any, where: Any, out: Any, backend: Any, log: bool
) -> np.ndarray | None:
    """The common call in one step: no options but out=, an int axis, the
    compiled backend (by default or by name). The extension checks the arrays
    itself (exact float32/float64 ndarrays, C-contiguous, reduced over the
    last axis; out of x's dtype and shape, x itself or apart from it) and
    returns None for anything else."""
    if (
        type(axis) is int
        and -_MAX_DIMS <= axis < _MAX_DIMS
        and where is None
        and _is_unit_temperature(temperature)
        and (backend is None or backend == "cpp")
        and _backends.plain_kernel is not None
    ):
        return _backends.plain_kernel(x, axis, log, out)
    return None


# NumPy's limit on dimensions: an int axis outside it takes the general path
# (which raises AxisError) instead of overflowing the extension's int.
_MAX_DIMS = 64


def _is_unit_temperature(temperature: Any) -> bool:
    """temperature is the plain number 1 (an array or a string takes the
    general path, which validates it)."""
    return type(temperature) in (int, float) and temperature == 1.0


def softmax(
    x: Any,
    axis: Axis = -1,
    *,
    temperature: float = 1.0,
    where: Any = None,
    out: np.ndarray | None = None,
    backend: str | None = None,
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
    plain = _try_plain(x, axis, temperature, where, out, backend, False)
    if plain is not None:
        return plain
    return _softmax_like(x, axis, temperature, where, out, backend, log=False)


def log_softmax(
    x: Any,
    axis: Axis = -1,
    *,
    temperature: float = 1.0,
    where: Any = None,
    out: np.ndarray | None = None,
    backend: str | None = None,
) -> Any:
    """``log(softmax(x / temperature))`` along ``axis``, computed without the
    cancellation of taking the log of a probability. Masked entries (and rows
    masked out entirely) are -inf. Parameters as in :func:`softmax`."""
    plain = _try_plain(x, axis, temperature, where, out, backend, True)
    if plain is not None:
        return plain
    return _softmax_like(x, axis, temperature, where, out, backend, log=True)


def logsumexp(
    x: Any,
    axis: Axis = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
    where: Any = None,
    out: np.ndarray | None = None,
    backend: str | None = None,
    b: Any = None,
    return_sign: bool = False,
) -> Any:
    """``log(sum(exp(x / temperature)))`` along ``axis``, without overflow.

    As exact as scipy.special.logsumexp (its log1p form: logsumexp([0, -40])
    is 4.2e-18). ``b`` (weights broadcastable to ``x``) and ``return_sign``
    are scipy's; they run the NumPy reference formulas whatever the backend.
    An empty reduction, or a row masked out entirely, gives -inf. Other
    parameters as in :func:`softmax`.
    """
    if (
        type(axis) is int
        and -_MAX_DIMS <= axis < _MAX_DIMS
        and not keepdims
        and where is None
        and out is None
        and b is None
        and return_sign is False
        and _is_unit_temperature(temperature)
        and (backend is None or backend == "cpp")
        and _backends.plain_logsumexp is not None
    ):
        plain = _backends.plain_logsumexp(x, axis)
        if plain is not None:
            return plain[()] if plain.ndim == 0 else plain
    impl = _backends.get(backend)
    arr, compute, result_dtype = _as_input(x)
    if arr.ndim == 0:
        if axis not in (None, -1, 0, ()):
            raise AxisError(axis, 0)
        arr, axes, kept_shape, result_shape = arr.reshape(1), (0,), (1,), ()
    else:
        axes = _normalize_axis(axis, arr.ndim)
        kept_shape = tuple(1 if d in axes else s for d, s in enumerate(arr.shape))
        result_shape = (
            kept_shape if keepdims else tuple(s for d, s in enumerate(arr.shape) if d not in axes)
        )
    t = _check_temperature(temperature)
    compute = _compute_for(compute, t)
    mask = _check_where(where, arr.shape)
    if b is None and not return_sign:
        compute = _kernel_dtype(impl, arr.dtype, compute)
    if b is not None or return_sign:
        return _logsumexp_weighted(
            arr, axes, kept_shape, result_shape, t, mask, b, return_sign, out, result_dtype
        )
    if out is not None:
        result = _check_out(out, result_shape, result_dtype)
    else:
        result = np.empty(result_shape, dtype=result_dtype)
    kept = result if keepdims and arr.ndim else np.expand_dims(result, axes)
    if kept.size == 0:
        return result
    if arr.size == 0:  # empty reduction
        kept[...] = -np.inf
        return result

    xc = arr if _well_behaved(arr, compute) else arr.astype(compute)
    target = kept if _well_behaved(kept, compute) else np.empty(kept_shape, dtype=compute)
    if len(axes) == 1:
        _run(impl, xc, target, mask, axes[0], t, None)
    elif len(axes) == 0:
        _run(
            impl,
            xc[..., None],
            target[..., None],
            None if mask is None else mask[..., None],
            xc.ndim,
            t,
            None,
        )
    else:
        flat_x = _flatten_axes(xc, axes)
        flat = np.empty((*flat_x.shape[:-1], 1), dtype=compute)
        _run(
            impl,
            flat_x,
            flat,
            None if mask is None else _flatten_axes(mask, axes),
            flat_x.ndim - 1,
            t,
            None,
        )
        target[...] = flat.reshape(kept_shape)
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
    """scipy's weighted / signed logsumexp, in NumPy (the slower path)."""
    compute = _compute_for(_dtypes(arr.dtype)[0], temperature)
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
        _check_out(out, result_shape, result_dtype)[...] = value
        value = out
    elif value.ndim == 0:
        value, sign = value[()], sign[()]
    return (value, sign) if return_sign else value
