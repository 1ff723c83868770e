"""The compiled backend: a thin shim over the nanobind module ``_core``."""

from __future__ import annotations

import numpy as np

from . import _core  # ImportError here makes the backend unavailable

name = "cpp"

softmax_last_axis = _core.softmax_last_axis
logsumexp_last_axis = _core.logsumexp_last_axis


# float16 and bfloat16 arrays are read and written as they are (widened to
# float one row at a time in the extension), not converted as a whole.
reads_16bit = True


def softmax_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float, log: bool
) -> None:
    if x.itemsize == 2:
        bfloat = x.dtype != np.float16
        _core.softmax_16bit(x.view(np.uint16), out.view(np.uint16), mask, temperature, log, bfloat)
    else:
        _core.softmax(x, out, mask, temperature, log)


def logsumexp_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float
) -> None:
    if x.itemsize == 2:
        bfloat = x.dtype != np.float16
        _core.logsumexp_16bit(x.view(np.uint16), out.view(np.uint16), mask, temperature, bfloat)
    else:
        _core.logsumexp(x, out, mask, temperature)


def set_num_threads(threads: int) -> None:
    _core.set_num_threads(threads)


def simd_levels() -> tuple[str, ...]:
    """SIMD levels compiled in and supported by this CPU, best first."""
    return tuple(_core.supported_levels())


def simd_level() -> str:
    return str(_core.current_level())


def set_simd_level(level: str) -> None:
    """Use ``level`` for every later call (tests run each level this CPU has)."""
    if not _core.set_level(level):
        raise ValueError(
            f"SIMD level {level!r} is not available here; available: {', '.join(simd_levels())}"
        )


def exp_nonpositive(d: np.ndarray) -> np.ndarray:
    """The kernel's exp(d) for d <= 0, elementwise (for accuracy measurements)."""
    d = np.ascontiguousarray(d)
    out = np.empty_like(d)
    _core.exp_nonpositive(d, out)
    return out
