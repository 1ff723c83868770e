"""The Numba backend: the row passes of the C++ kernel as JIT-compiled loops.

Imported on first use only (``import fastsoftmax`` never imports numba).
Kernels take the 3-D ``(outer, inner, n)`` views of ``_layout`` and work along
the last axis. Each row: a scan (max, NaN, active count), then exp and sum,
then a scale or a subtraction. Arithmetic is in float64 whatever the input
dtype, and sums use Neumaier compensation, so the error does not grow with
the row length. Special values are those of ``_reference``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

name = "numba"

_NO_MASK = np.ones((1, 1, 1), dtype=np.bool_)


@numba.njit(cache=True, nogil=True)
def _scan(x, mask, has_mask, o, i):
    """Max over active entries (NaN ignored), active count, NaN seen."""
    n = x.shape[2]
    m = -math.inf
    active = 0
    has_nan = False
    for k in range(n):
        if has_mask and not mask[o, i, k]:
            continue
        active += 1
        v = x[o, i, k]
        if v != v:
            has_nan = True
        elif v > m:
            m = v
    return float(m), active, has_nan


@numba.njit(cache=True, nogil=True)
def _split_sum(x, mask, has_mask, o, i, m, scale):
    """log(sum(exp(d))) as log(count at max) + log1p(rest / count)."""
    below = 0.0
    compensation = 0.0
    at_max = 0.0
    for k in range(x.shape[2]):
        if has_mask and not mask[o, i, k]:
            continue
        d = (x[o, i, k] - m) * scale
        if d == 0.0:
            at_max += 1.0
        else:
            e = math.exp(d)
            t = below + e
            if abs(below) >= e:
                compensation += (below - t) + e
            else:
                compensation += (e - t) + below
            below = t
    return math.log(at_max) + math.log1p((below + compensation) / at_max)


@numba.njit(cache=True, nogil=True)
def _special_row(x, out, mask, has_mask, o, i, m, active, has_nan, log):
    """Fill a row whose max is not finite or that has nothing active."""
    masked_value = -math.inf if log else 0.0
    keeps_minus_inf = log and active > 0 and not has_nan and m == math.inf
    for k in range(x.shape[2]):
        if has_mask and not mask[o, i, k]:
            out[o, i, k] = masked_value
        elif keeps_minus_inf:
            out[o, i, k] = math.nan if x[o, i, k] == math.inf else -math.inf
        else:
            out[o, i, k] = math.nan


@numba.njit(cache=True, nogil=True)
def _softmax3(x, out, mask, has_mask, temperature, log):
    outer, inner, n = x.shape
    scale = 1.0 / temperature
    for o in range(outer):
        for i in range(inner):
            m, active, has_nan = _scan(x, mask, has_mask, o, i)
            if active == 0 or has_nan or not math.isfinite(m):
                _special_row(x, out, mask, has_mask, o, i, m, active, has_nan, log)
                continue
            if log:
                log_sum = _split_sum(x, mask, has_mask, o, i, m, scale)
                for k in range(n):
                    if has_mask and not mask[o, i, k]:
                        out[o, i, k] = -math.inf
                    else:
                        out[o, i, k] = (x[o, i, k] - m) * scale - log_sum
                continue
            total = 0.0
            compensation = 0.0
            for k in range(n):
                e = 0.0
                if not has_mask or mask[o, i, k]:
                    e = math.exp((x[o, i, k] - m) * scale)
                out[o, i, k] = e
                t = total + e
                if abs(total) >= e:
                    compensation += (total - t) + e
                else:
                    compensation += (e - t) + total
                total = t
            inverse = 1.0 / (total + compensation)
            for k in range(n):
                out[o, i, k] = out[o, i, k] * inverse


@numba.njit(cache=True, nogil=True)
def _logsumexp3(x, out, mask, has_mask, temperature):
    outer, inner, _ = x.shape
    scale = 1.0 / temperature
    for o in range(outer):
        for i in range(inner):
            m, active, has_nan = _scan(x, mask, has_mask, o, i)
            if active == 0:
                out[o, i] = -math.inf
            elif has_nan:
                out[o, i] = math.nan
            elif not math.isfinite(m):
                out[o, i] = m
            else:
                out[o, i] = m / temperature + _split_sum(x, mask, has_mask, o, i, m, scale)


def softmax_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float, log: bool
) -> None:
    has_mask = mask is not None
    _softmax3(x, out, mask if has_mask else _NO_MASK, has_mask, float(temperature), log)


def logsumexp_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float
) -> None:
    has_mask = mask is not None
    _logsumexp3(x, out, mask if has_mask else _NO_MASK, has_mask, float(temperature))


def set_num_threads(threads: int) -> None:
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
