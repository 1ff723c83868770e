"""Strided 3-D views ``(outer, inner, n)`` of N-d arrays, reduction axis last.

Kernels of every backend see only these views. The axes other than the
reduction axis are ordered by the first operand's strides (largest first),
size-1 axes dropped, and neighbours merged where every operand allows it
without a copy; a C- or Fortran-ordered array, any single axis, always fits
in two groups. The reduction axis keeps its own stride, so a non-last axis
costs no transpose copy. When more than two groups remain (unusual strided
views) the caller copies to contiguous memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided


def rows3(arrays: Sequence[np.ndarray], axis: int) -> list[np.ndarray] | None:
    """3-D views of ``arrays`` along ``axis``, or None if they need a copy.

    All arrays share one shape except along ``axis`` (an output of logsumexp
    has length 1 there). Strides must be whole multiples of the item size.
    """
    shape = arrays[0].shape
    fast = _contiguous_rows3(arrays, axis)
    if fast is not None:
        return fast
    for a in arrays:
        if any(s % a.itemsize for s in a.strides):
            return None
    batch = [d for d in range(len(shape)) if d != axis and shape[d] != 1]
    first = arrays[0].strides
    batch.sort(key=lambda d: -abs(first[d]))
    groups: list[list[int]] = []
    for d in batch:
        if groups and all(a.strides[groups[-1][-1]] == shape[d] * a.strides[d] for a in arrays):
            groups[-1].append(d)
        else:
            groups.append([d])
    if len(groups) > 2:
        return None
    while len(groups) < 2:
        groups.insert(0, [])
    views = []
    sizes = [math.prod(shape[d] for d in g) for g in groups]
    for a in arrays:
        strides = [a.strides[g[-1]] if g else 0 for g in groups]
        views.append(
            as_strided(
                a,
                shape=(sizes[0], sizes[1], a.shape[axis]),
                strides=(strides[0], strides[1], a.strides[axis]),
                writeable=a.flags.writeable,
            )
        )
    return views


def _contiguous_rows3(arrays: Sequence[np.ndarray], axis: int) -> list[np.ndarray] | None:
    """The common case, by reshape: every operand C-contiguous (or every one
    Fortran-contiguous, read as the C-contiguous transpose)."""
    if all(a.flags.c_contiguous for a in arrays):
        pass
    elif all(a.flags.f_contiguous for a in arrays):
        arrays = [a.T for a in arrays]
        axis = arrays[0].ndim - 1 - axis
    else:
        return None
    shape = arrays[0].shape
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1 :])
    return [a.reshape(outer, a.shape[axis], inner).transpose(0, 2, 1) for a in arrays]
