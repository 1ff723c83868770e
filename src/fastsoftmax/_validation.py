"""Argument checks and the layout driver shared by the public functions, the
losses and the gradients.

Every name here is the module's interface to the rest of the package (hence
no leading underscores); none is exported by ``fastsoftmax`` itself. Error
types and messages are part of the public behaviour: the functions, losses
and gradients raise the same ones for the same mistakes.
"""

from __future__ import annotations

import math
import operator
from types import ModuleType
from typing import Any, Literal, Union

import numpy as np

from . import _backends, _layout

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:
    # NumPy 1.22-1.24 has only the top-level name. The noqa keeps ruff's NPY201
    # fix away: it rewrites this line to `AxisError = AxisError`, a NameError.
    AxisError = np.AxisError  # type: ignore[attr-defined,misc]  # noqa: NPY201

Axis = Union[int, tuple[int, ...], None]
# The backend= names (checked again at run time: a typo raises ValueError).
Backend = Literal["cpp", "numba", "numpy"]

__all__ = [
    "MAX_DIMS",
    "Axis",
    "AxisError",
    "Backend",
    "as_input",
    "check_out",
    "check_temperature",
    "check_where",
    "compute_dtype_for",
    "dtypes_for",
    "flatten_axes",
    "for_kernel",
    "is_same_view",
    "is_unit_temperature",
    "kernel_dtype",
    "normalize_axis",
    "one_step_backend",
    "reduction_axes",
    "run_axes",
    "run_rows",
    "well_behaved",
]

_SUPPORTED = "float16, float32, float64, bfloat16 (ml_dtypes), integer or bool"

# NumPy's limit on dimensions: an int axis outside it takes the general path
# (which raises AxisError) instead of overflowing the extension's int.
MAX_DIMS = 64

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


# --- dtypes ---------------------------------------------------------------


def dtypes_for(dtype: np.dtype) -> tuple[np.dtype, np.dtype]:
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


def as_input(x: Any) -> tuple[np.ndarray, np.dtype, np.dtype]:
    """``x`` as an array, with its computing and result dtypes (TypeError if
    the dtype is not supported)."""
    arr = np.asarray(x)
    compute, result = dtypes_for(arr.dtype)
    return arr, compute, result


def compute_dtype_for(compute: np.dtype, temperature: float) -> np.dtype:
    """float32 work scales by 1/T in float32; a T whose reciprocal is not a
    normal float32 (T < 3e-39 or T > 8e37) is computed in float64 instead."""
    if compute == np.float32 and not (_FLOAT32_TINY <= 1.0 / temperature <= _FLOAT32_MAX):
        return np.dtype(np.float64)
    return compute


def kernel_dtype(backend: Any, dtype: np.dtype, compute: np.dtype) -> np.dtype:
    """The dtype the backend reads and writes: float16 / bfloat16 as they are
    where the backend widens them row by row itself, else the computing dtype."""
    if (
        dtype.itemsize == 2
        and dtype.kind in "fV"
        and compute == np.float32
        and getattr(backend, "reads_16bit", False)
    ):
        return dtype.newbyteorder("=") if dtype.kind == "f" else dtype
    return compute


def well_behaved(a: np.ndarray, dtype: np.dtype) -> bool:
    """Usable by a kernel as it is: computing dtype, native order, aligned."""
    return a.dtype == dtype and a.dtype.isnative and a.flags.aligned


def for_kernel(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` itself if a kernel can read it as it is, else a copy in ``dtype``."""
    return a if well_behaved(a, dtype) else a.astype(dtype)


# --- axes -----------------------------------------------------------------


def normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
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


def reduction_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """The axes to reduce over. A 0-d input is computed as one element of
    shape (1,), so it accepts the axes that name that element (None, 0, -1
    or none at all) and reduces over axis 0."""
    if ndim == 0:
        if axis is None or (isinstance(axis, tuple) and not axis):
            return (0,)
        if isinstance(axis, tuple) or operator.index(axis) not in (-1, 0):  # TypeError: 0.0
            raise AxisError(axis, 0)
        return (0,)
    return normalize_axis(axis, ndim)


def flatten_axes(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Move ``axes`` to the end and merge them into one (a copy if needed)."""
    moved = np.moveaxis(a, axes, range(-len(axes), 0))
    return moved.reshape((*moved.shape[: a.ndim - len(axes)], -1))


# --- other arguments ------------------------------------------------------


def check_temperature(temperature: Any) -> float:
    """The temperature as a float: positive and finite."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a real number, got {temperature!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    return value


def is_unit_temperature(temperature: Any) -> bool:
    """temperature is the plain number 1 (an array or a string takes the
    general path, which validates it)."""
    return type(temperature) in (int, float) and temperature == 1.0


def check_where(where: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """``where`` as a boolean array of ``shape`` (a broadcast view), or None."""
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


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``out`` itself, if it is a writeable ndarray of exactly ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}; expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def is_same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """Same memory, strides and shape: writing one element by element while
    reading the other is safe (in place)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
    )


# --- the fast path --------------------------------------------------------


def one_step_backend(axis: Any, temperature: Any, where: Any, backend: Any) -> ModuleType | None:
    """The compiled backend if this call may try its one-step kernels
    (``softmax_last_axis``, ``logsumexp_last_axis``), else None.

    The rule, for every caller: an int axis within NumPy's dimension limit,
    no mask, the plain number 1 as temperature, and the compiled backend (by
    default or by name) loaded. The kernels check the arrays themselves
    (exact float32/float64 ndarrays, C-contiguous, reduced over the last
    axis) and return None for anything else, when the caller takes the
    general path."""
    if (
        type(axis) is int
        and -MAX_DIMS <= axis < MAX_DIMS
        and where is None
        and type(temperature) in (int, float)  # is_unit_temperature, inline: every call
        and temperature == 1.0  # pays for this function, the 1x3 call most
        and (backend is None or backend == "cpp")
    ):
        return _backends.one_step
    return None


# --- the layout driver ----------------------------------------------------


def run_rows(
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
        run_rows(
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


def run_axes(
    backend: Any,
    x: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None,
    axes: tuple[int, ...],
    temperature: float,
    log: bool | None,
) -> None:
    """Compute over ``axes`` (none, one or several) into ``target``: of x's
    shape, or for logsumexp (log=None) of length 1 along each of ``axes``.
    Several axes are merged into one at the end (through a copy)."""
    if len(axes) == 1:
        run_rows(backend, x, target, mask, axes[0], temperature, log)
    elif not axes:  # reduce over nothing: every element is a row of one
        run_rows(
            backend,
            x[..., None],
            target[..., None],
            None if mask is None else mask[..., None],
            x.ndim,
            temperature,
            log,
        )
    else:
        flat_x = flatten_axes(x, axes)
        flat_shape = flat_x.shape if log is not None else (*flat_x.shape[:-1], 1)
        flat = np.empty(flat_shape, dtype=target.dtype)
        run_rows(
            backend,
            flat_x,
            flat,
            None if mask is None else flatten_axes(mask, axes),
            flat_x.ndim - 1,
            temperature,
            log,
        )
        moved = np.moveaxis(target, axes, range(-len(axes), 0))
        moved[...] = flat.reshape(moved.shape)
