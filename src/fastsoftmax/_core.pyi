"""Types of the nanobind extension ``fastsoftmax._core`` (csrc/binding.cpp).

The batch kernels take 3-D strided views ``(outer, inner, n)`` of native,
aligned arrays, reduction axis last, without conversion: a wrong dtype raises
TypeError. ``softmax``, ``logsumexp`` and ``exp_nonpositive`` are bound once
for float32 and once for float64; both arrays of a call share one dtype.
"""

from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

_Float32 = NDArray[np.float32]
_Float64 = NDArray[np.float64]
_Bits16 = NDArray[np.uint16]  # float16 / bfloat16 data viewed as uint16
_Mask = NDArray[np.bool_]

# --- batch kernels on (outer, inner, n) views --------------------------------

@overload
def softmax(
    x: _Float32, out: _Float32, mask: _Mask | None, temperature: float, log: bool
) -> None: ...
@overload
def softmax(
    x: _Float64, out: _Float64, mask: _Mask | None, temperature: float, log: bool
) -> None: ...

# out: (outer, inner), one value per row.
@overload
def logsumexp(x: _Float32, out: _Float32, mask: _Mask | None, temperature: float) -> None: ...
@overload
def logsumexp(x: _Float64, out: _Float64, mask: _Mask | None, temperature: float) -> None: ...

# 1-D, C-contiguous; exact for d <= 0 only.
@overload
def exp_nonpositive(d: _Float32, out: _Float32) -> None: ...
@overload
def exp_nonpositive(d: _Float64, out: _Float64) -> None: ...
def softmax_16bit(
    x: _Bits16,
    out: _Bits16,
    mask: _Mask | None,
    temperature: float,
    log: bool,
    bfloat: bool,
) -> None: ...
def logsumexp_16bit(
    x: _Bits16, out: _Bits16, mask: _Mask | None, temperature: float, bfloat: bool
) -> None: ...

# --- the common call in one step ---------------------------------------------
# Any object is accepted; None means "not a case handled here" (not an exact,
# C-contiguous, aligned, non-empty float32/float64 ndarray reduced over its
# last axis, or an out that is not x or apart from it): take the general path.

def softmax_last_axis(
    x: object, axis: int, log: bool, out: object | None = None
) -> NDArray[Any] | None: ...
def logsumexp_last_axis(x: object, axis: int, out: object | None = None) -> NDArray[Any] | None: ...

# --- settings ----------------------------------------------------------------

def reused_output_bytes() -> int: ...
def release_reused_output() -> int: ...
def supported_levels() -> list[str]: ...
def current_level() -> str: ...
def set_level(name: str) -> bool: ...
def set_num_threads(threads: int) -> None: ...
def get_num_threads() -> int: ...
def online_row_bytes() -> int: ...
def set_online_row_bytes(bytes: int) -> None: ...
def group_bytes() -> int: ...
def set_group_bytes(bytes: int) -> None: ...
