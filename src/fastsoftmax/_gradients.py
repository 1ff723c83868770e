"""Backward passes of softmax and log_softmax, for hand-written backprop in NumPy.

Given the forward output ``y`` and the gradient ``g`` of a loss with respect to
it, the gradient with respect to the logits is

- softmax:     ``y * (g - sum(g * y))``     (Jacobian ``diag(y) - y y^T``)
- log_softmax: ``g - exp(y) * sum(g)``      (Jacobian ``I - 1 softmax^T``)

with the sums along ``axis``. Three paths, none making a temporary the size of
the input (except the masked softmax_grad, which makes one product array):

- small inputs (one buffer): the formula on temporaries, fewest calls;
- one axis, float32/float64: blocks of whole rows, each read from memory once
  for its row sum and again from cache for the elementwise part
  (``_fused_rows``);
- anything else (several axes, long rows, float16, overlaps, ``where=``): the
  row sum (``np.einsum`` / ``np.add.reduce``, no product array), then the
  elementwise part over ``np.nditer`` buffers (which casts float16 and copes
  with overlap).

Every backend name runs this NumPy code, except that on the compiled backend
``log_softmax_grad`` takes ``exp(y)`` from the extension's ``exp_nonpositive``
kernel where a block's ``y`` is <= 0 (as log_softmax outputs are). A faster
gradient needs a one-pass C++ kernel; none was written here.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _backends, _dask, _layout
from ._dask import is_dask
from ._validation import (
    Axis,
    Backend,
    check_out,
    check_where,
    dtypes_for,
    is_same_view,
    reduction_axes,
)

# Elements per buffer of the elementwise pass (4 operands of float64: 1 MiB);
# also the size under which an input is computed on plain temporaries.
_BUFFER_ELEMENTS = 1 << 15
# Elements per block of rows in the one-pass path: large enough that the Python
# loop costs little (measured best from 2^15 to 2^18 on a 512 KiB L2).
_FUSED_BLOCK = 1 << 17


def softmax_grad(
    y: ArrayLike,
    grad: ArrayLike,
    axis: Axis = -1,
    *,
    where: ArrayLike | None = None,
    out: np.ndarray | None = None,
    backend: Backend | None = None,
) -> Any:
    """Gradient with respect to the logits of a loss, given ``y = softmax(x, axis)``
    and ``grad``, its gradient with respect to ``y``: ``y * (grad - sum(grad * y))``.

    Parameters
    ----------
    y : array_like
        The softmax output.
    grad : array_like
        Of the shape of ``y``.
    axis : int, tuple of ints or None, default -1
        The axis (or axes) the softmax was taken along.
    where : array_like of bool, optional
        The mask the softmax was taken with: masked entries are left out of
        the sum whatever they hold, and get gradient 0.
    out : ndarray, optional
        Of the exact shape and result dtype; may be ``grad`` (in place) or ``y``.
    backend : {"cpp", "numba", "numpy"}, optional
        Checked as in :func:`softmax`. Every backend runs the same NumPy code
        (log_softmax_grad on "cpp" takes exp from the compiled kernel).

    Dtypes follow :func:`softmax` (float16 computed in float32), from the
    promoted dtype of ``y`` and ``grad``.
    """
    return _backward(y, grad, axis, where, out, backend, log=False)


def log_softmax_grad(
    y: ArrayLike,
    grad: ArrayLike,
    axis: Axis = -1,
    *,
    where: ArrayLike | None = None,
    out: np.ndarray | None = None,
    backend: Backend | None = None,
) -> Any:
    """Gradient with respect to the logits of a loss, given ``y = log_softmax(x, axis)``
    and ``grad``, its gradient with respect to ``y``: ``grad - exp(y) * sum(grad)``.

    Parameters as in :func:`softmax_grad`. With ``where``, the sum leaves out
    the masked entries (whose -inf outputs do not depend on the logits), and
    they get gradient 0.
    """
    return _backward(y, grad, axis, where, out, backend, log=True)


def _backward(
    y: Any,
    grad: Any,
    axis: Axis,
    where: Any,
    out: np.ndarray | None,
    backend: Backend | None,
    log: bool,
) -> Any:
    impl = _backends.get(backend)
    if is_dask(y) or is_dask(grad):
        return _dask.gradient(y, grad, axis, where, out, backend, log)
    ya, gy = np.asarray(y), np.asarray(grad)
    dtypes_for(ya.dtype)  # TypeError for complex, object, ...
    dtypes_for(gy.dtype)
    if ya.shape != gy.shape:
        raise ValueError(f"y has shape {ya.shape} but grad has shape {gy.shape}; they must match")
    try:
        joint = ya.dtype if ya.dtype == gy.dtype else np.promote_types(ya.dtype, gy.dtype)
    except TypeError:
        raise TypeError(f"y ({ya.dtype}) and grad ({gy.dtype}) have no common dtype") from None
    compute, result_dtype = dtypes_for(joint)

    scalar_input = ya.ndim == 0
    axes = reduction_axes(axis, ya.ndim)
    if scalar_input:
        ya, gy = ya.reshape(1), gy.reshape(1)
    mask = check_where(where, ya.shape)
    if out is not None:
        result = check_out(out, () if scalar_input else ya.shape, result_dtype)
    else:
        result = np.empty(() if scalar_input else ya.shape, dtype=result_dtype)
    result_view = result.reshape(ya.shape)
    if ya.size == 0:
        return result
    if mask is not None and np.may_share_memory(mask, result_view):
        mask = mask.copy()

    with np.errstate(all="ignore"):
        if mask is None:
            if ya.size <= _BUFFER_ELEMENTS:
                done = _small(ya, gy, result_view, axes, compute, log)
            else:
                done = len(axes) == 1 and _fused_rows(impl, ya, gy, result_view, axes[0], log)
        else:
            done = False
        if done:
            return result[()] if scalar_input and out is None else result
        # The row sum, axes kept (read before anything is written: out may be grad or y).
        if log:
            total = np.add.reduce(
                gy,
                axis=axes,
                dtype=compute,
                keepdims=True,
                **({} if mask is None else {"where": mask, "initial": 0}),
            )
        elif mask is None:
            total = np.expand_dims(_row_dot(ya, gy, axes, compute), axes)
        else:  # masked entries may hold inf or NaN: a product that leaves them out
            product = np.zeros(ya.shape, dtype=compute)
            np.multiply(ya, gy, out=product, where=mask, casting="unsafe", dtype=compute)
            total = np.add.reduce(product, axis=axes, keepdims=True)
            del product
        total = total.astype(compute, copy=False)
        _elementwise(ya, gy, total, mask, result_view, compute, log)
    if scalar_input and out is None:
        return result[()]
    return result


def _small(
    y: np.ndarray,
    g: np.ndarray,
    result: np.ndarray,
    axes: tuple[int, ...],
    compute: np.dtype,
    log: bool,
) -> bool:
    """Small input (one buffer at most): the formula on temporaries, fewest calls."""
    y = y.astype(compute, copy=False)
    g = g.astype(compute, copy=False)
    if log:
        value = g - np.exp(y) * np.add.reduce(g, axis=axes, keepdims=True)
    else:
        value = (g - np.add.reduce(g * y, axis=axes, keepdims=True)) * y
    np.copyto(result, value, casting="unsafe")
    return True


def _fused_rows(
    impl: Any, y: np.ndarray, g: np.ndarray, result: np.ndarray, axis: int, log: bool
) -> bool:
    """The common case in one pass over memory: blocks of whole rows that fit in
    cache, each read once for its row sums and again, from cache, for the
    elementwise part (through a block-sized scratch buffer, so ``out`` may be
    ``grad`` or ``y``). Says False (nothing done) for anything else: other
    dtypes, partial overlaps, rows longer than a block, unusual strides."""
    n = y.shape[axis]
    dtype = result.dtype
    if not (
        dtype in (np.float32, np.float64)
        and y.dtype == dtype
        and g.dtype == dtype
        and dtype.isnative
        and n <= _FUSED_BLOCK
        and all(a.flags.aligned for a in (y, g, result))
    ):
        return False
    for a in (y, g):
        if np.may_share_memory(a, result) and not is_same_view(a, result):
            return False
    views = _layout.rows3([y, g, result], axis)
    if views is None:
        return False
    outer, inner = views[0].shape[:2]
    rows = max(1, _FUSED_BLOCK // max(n, 1))
    inner_step = min(inner, rows)
    outer_step = max(1, rows // inner_step)
    contiguous = all(v.strides[-1] == dtype.itemsize for v in views)
    use_vecdot = hasattr(np, "vecdot") and contiguous and n >= 128
    scratch = np.empty(outer_step * inner_step * n, dtype=dtype)
    # The compiled backend's exp (for d <= 0, 1 ULP) where the block allows it:
    # log_softmax outputs are <= 0.
    core = getattr(impl, "_core", None) if log else None
    for o in range(0, outer, outer_step):
        for i in range(0, inner, inner_step):
            yb, gb, rb = (v[o : o + outer_step, i : i + inner_step] for v in views)
            tb = scratch[: yb.size].reshape(yb.shape)
            if log:
                total = np.add.reduce(gb, axis=-1, keepdims=True)
                if core is not None and yb.flags.c_contiguous and yb.max() <= 0:
                    core.exp_nonpositive(yb.reshape(-1), tb.reshape(-1))
                else:  # NaN, or a y > 0 that is not a log_softmax output
                    np.exp(yb, out=tb)
                np.multiply(tb, total, out=tb)
                np.subtract(gb, tb, out=rb)
            else:
                if use_vecdot:
                    total = np.vecdot(yb, gb)[..., None]
                else:
                    total = np.einsum("oik,oik->oi", yb, gb)[..., None]
                np.subtract(gb, total, out=tb)
                np.multiply(tb, yb, out=rb)
    return True


def _row_dot(y: np.ndarray, g: np.ndarray, axes: tuple[int, ...], compute: np.dtype) -> np.ndarray:
    """sum(y * g) over ``axes`` with no product array (einsum's fused loop)."""
    letters = string.ascii_letters[: y.ndim]
    kept = "".join(c for d, c in enumerate(letters) if d not in axes)
    return np.einsum(
        f"{letters},{letters}->{kept}", y, g, dtype=compute, casting="unsafe", optimize=False
    )


def _elementwise(
    y: np.ndarray,
    g: np.ndarray,
    total: np.ndarray,
    mask: np.ndarray | None,
    result: np.ndarray,
    compute: np.dtype,
    log: bool,
) -> None:
    """result = y * (g - total) (or g - exp(y) * total), 0 where masked, in buffers."""
    operands = [y, g, total, result] + ([] if mask is None else [mask])
    read = ["readonly", "overlap_assume_elementwise"]
    op_flags = [read, read, ["readonly"], ["writeonly"]] + ([] if mask is None else [read])
    op_dtypes = [compute] * 4 + ([] if mask is None else [np.bool_])
    iterator = np.nditer(
        operands,
        flags=["external_loop", "buffered", "copy_if_overlap", "zerosize_ok"],
        op_flags=op_flags,
        op_dtypes=op_dtypes,
        casting="unsafe",
        buffersize=_BUFFER_ELEMENTS,
    )
    with iterator:
        for chunk in iterator:
            yb, gb, tb, rb = chunk[:4]
            if log:
                np.exp(yb, out=rb)
                np.multiply(rb, tb, out=rb)
                np.subtract(gb, rb, out=rb)
            else:
                np.subtract(gb, tb, out=rb)
                np.multiply(rb, yb, out=rb)
            if mask is not None:
                np.copyto(rb, 0, where=~chunk[4])
