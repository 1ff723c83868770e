"""The NumPy reference backend: the textbook formulas, written for clarity.

Every function works along the last axis of 3-D arrays ``(outer, inner, n)``,
as every backend does (see ``_layout``), and computes in the dtype of ``x``.
Applied to ``x.astype(np.longdouble)`` it is also the test oracle.

Special values follow ``scipy.special``: a row whose max is NaN, +inf or
-inf gives NaN, except that ``log_softmax`` keeps -inf beside +inf and
``logsumexp`` gives +inf / -inf for such rows. Masked entries are ignored,
whatever they hold, and give 0 (softmax) or -inf (log_softmax); a row with
nothing left gives zeros / -inf / -inf.
"""

from __future__ import annotations

import numpy as np

name = "numpy"


def _shifted(x: np.ndarray, mask: np.ndarray | None, temperature: float):
    """The row max ``m`` and ``d = (x - m) / T`` with masked entries at -inf.

    Rows are made contiguous first, so every sum is NumPy's pairwise sum in
    one order whatever the input layout.
    """
    if mask is not None:
        x = np.where(mask, x, -np.inf).astype(x.dtype, copy=False)
    x = np.ascontiguousarray(x)
    m = np.max(x, axis=-1, keepdims=True)
    finite_max = np.where(np.isfinite(m), m, 0).astype(x.dtype, copy=False)
    t = x.dtype.type(temperature)
    d = (x - finite_max) / t
    # Finite logits whose difference overflows: divide first (x / T - max / T).
    overflowed = np.isinf(d) & np.isfinite(x)
    if overflowed.any():
        d = np.where(overflowed, x / t - finite_max / t, d)
    return x, m, d


def _log_sum_split(d: np.ndarray) -> np.ndarray:
    """``log(sum(exp(d)))`` as ``log(c) + log1p(rest / c)``, c = count of d == 0.

    Kept apart so that terms far below the max are not lost against 1
    (scipy gh-18295: logsumexp([0, -40]) is 4.2e-18, not 0).
    """
    e = np.exp(d)
    at_max = np.sum(d == 0, axis=-1, keepdims=True).astype(d.dtype)
    below = np.sum(np.where(d != 0, e, 0), axis=-1, keepdims=True)
    return np.log(at_max) + np.log1p(below / at_max)


def softmax_values(
    x: np.ndarray, mask: np.ndarray | None, temperature: float, log: bool
) -> np.ndarray:
    """softmax (or log_softmax) of ``x / temperature`` along the last axis."""
    with np.errstate(all="ignore"):
        x, m, d = _shifted(x, mask, temperature)
        if log:
            y = d - _log_sum_split(d)
        else:
            e = np.exp(d)
            y = e / np.sum(e, axis=-1, keepdims=True)
        nan = np.array(np.nan, dtype=x.dtype)
        special = ~np.isfinite(m)
        y = np.where(special, nan, y)
        if log:
            keeps_minus_inf = special & (m == np.inf)
            y = np.where(keeps_minus_inf & (x != np.inf), -np.inf, y)
        if mask is not None:
            y = np.where(mask, y, -np.inf if log else 0.0)
    return y.astype(x.dtype, copy=False)


def logsumexp_values(x: np.ndarray, mask: np.ndarray | None, temperature: float) -> np.ndarray:
    """logsumexp of ``x / temperature`` along the last axis (axis removed)."""
    with np.errstate(all="ignore"):
        x, m, d = _shifted(x, mask, temperature)
        result = m / x.dtype.type(temperature) + _log_sum_split(d)
        # +inf, NaN and all -inf rows (masked-out rows included) keep their max.
        result = np.where(np.isfinite(m), result, m)
    return result[..., 0].astype(x.dtype, copy=False)


def softmax_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float, log: bool
) -> None:
    out[...] = softmax_values(x, mask, temperature, log)


def logsumexp_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float
) -> None:
    out[...] = logsumexp_values(x, mask, temperature)
