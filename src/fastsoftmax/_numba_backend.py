"""The Numba backend: softmax, log_softmax and logsumexp as JIT-compiled loops.

Imported on first use only (``import fastsoftmax`` never imports numba).
Kernels take the 3-D ``(outer, inner, n)`` views of ``_layout`` and reduce
along the last axis; float32 and float64 only. Design notes and measured
accuracy: docs/numba_notes.md.

It shares the design of the compiled backend, not its bits. Shared: three
passes over a row (scan; exp and sum; scale by 1 / sum, or subtract the log
of the sum), an exp written for d = (x - max) / T <= 0 only, and sums taken
in short blocks in the row's dtype and carried across blocks in float64, so
the error does not grow with the row length. Its own:

- The exp (_exp_nonpositive): d = n ln2 + r with |r| <= ln2/2, a polynomial
  for exp(r) (Cephes' minimax coefficients for float32, the degree-13 Taylor
  polynomial for float64), 2^n from exponent bits; at most 1.02 ULP
  (float32, every input) and 0.99 ULP (float64, random inputs) as measured
  in docs/numba_notes.md. Only +, *, compares and bit operations, so LLVM
  vectorizes it; never a libm call.
- The summation order (_SUM_BLOCK, _SLOTS): in a block of _SUM_BLOCK
  elements, element r goes to slot r % _SLOTS; the slots are folded in a
  fixed tree and the block totals added in float64 with Neumaier
  compensation. The order is written out, so a row gives the same bits in
  every layout, tile width and thread count.
- No one-pass (online) or short-row variant: every row takes the passes.
- Every loop runs over a unit-stride 1-D view (_span), so that LLVM
  vectorizes it. A reduction over a non-last axis (strided reduction axis
  beside a contiguous inner axis) runs across column tiles, vectorized over
  neighbouring rows, in the summation order of a row; other strided rows are
  gathered into a buffer.
- Large calls run over threads (prange over blocks of rows or tiles); small
  ones on the calling thread. Kernels are cached on disk (cache=True).

What each part corresponds to in the compiled backend. The values agree
within the accuracy bound, not bit for bit (the compiled backend's summation
order depends on its SIMD level's vector width, and the polynomials differ);
values that are exact by construction (the special rows' NaN / -inf / 0
fills, masked entries) are the same in every backend. tests/test_numba_backend.py
asserts which values agree bit for bit.

=======================================  =====================================
this module                              compiled backend
=======================================  =====================================
_scan_row, _tile_scan                    scan (scan_row; sweep_scan)
_exp_nonpositive, _exp_normal            exp_nonpositive (subnormal-safe /
                                         normal-range form)
_stays_normal                            stays_normal
_exp_store_sum (softmax)                 exp-and-sum pass, y stored (exp_sums)
_log_of_exp_sums (log variants)          exp-and-sum pass, split at the max,
                                         nothing stored; log_of_split_sum
last loop of _softmax_row (softmax)      scale pass (scale_row)
last loops of _softmax_row (log)         log_softmax pass (subtract_row)
_needs_wide, _wide_row                   wide rows (needs_wide,
                                         wide_row_softmax / _logsumexp)
_fill_special_row                        special rows (fill_special_row)
_softmax_row, _logsumexp_row             one row (softmax_row, logsumexp_row)
_softmax_tiles, _logsumexp_tiles,        column sweep (softmax_column_sweep,
_tile_log_sums, _tile_by_rows            logsumexp_column_sweep)
_exp_nonpositive_array                   exp_nonpositive_array
(none)                                   online rows, short rows
=======================================  =====================================
"""

from __future__ import annotations

import math
import threading
from typing import Any

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

name = "numba"

# Sums: a row is summed in blocks of _SUM_BLOCK elements; in a block, element
# r goes to slot r % _SLOTS (running sums in the row's dtype, 16 additions
# each), the slots are folded in a fixed tree, and the block totals are
# added in float64 with Neumaier compensation, so the error does not grow
# with the row length. The blocks are short because a slot holding a term
# near 1 rounds away every term below half an ulp added to it, so it may
# lose (additions - 1) * eps / 2 of the sum: with 64 additions a slot, a row
# of one 0 and 511 logits at log(0.49 eps) broke the accuracy bound; with
# 16 such rows use at most 0.6 of it. The order is written out, not left to
# the compiler (no reassociation), so the column tiles below reproduce it
# exactly and a row gives the same bits whatever its layout.
_SUM_BLOCK = 128
_SLOTS = 8  # written out as eight variables in _add_chunk_sum and _tile_fold_slots
# The exp loops run over chunks of this many elements (a multiple of
# _SUM_BLOCK; the scratch buffers hold one chunk).
_CHUNK = 512
# Below this many elements per thread a call runs on the calling thread
# (starting the threads costs about as much as 10^5 exps).
_PARALLEL_MIN_ELEMENTS = 1 << 17
# Column tiles of a strided reduction: this many neighbouring rows at most
# (each pass over a tile then sweeps whole runs of memory, and the per-row
# state, ~70-110 bytes a row, stays in L2), and at least _TILE_MIN_COLUMNS
# when a call is split over threads.
_TILE_COLUMNS = 2048
_TILE_MIN_COLUMNS = 128
# What _tile_scan finds in a tile, and so how the tile is computed.
_TILE_BY_ROWS = 0  # a row is special or may be wide: row by row (_tile_by_rows)
_TILE_SUBNORMAL = 1  # some exp(d) may be subnormal or 0: _exp_nonpositive
_TILE_NORMAL = 2  # every exp(d) is normal: _exp_normal

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
# Helpers are only called from jitted code: no Python wrappers for them.
_INTERNAL = {
    "nogil": True,
    "error_model": "numpy",
    "no_cpython_wrapper": True,
    "no_cfunc_wrapper": True,
}


# ----------------------------------------------------------------------------
# LLVM-level helpers.


@intrinsic
def _span(typingctx, array, offset, length):
    """A 1-D C-contiguous view of ``length`` items of ``array``, starting
    ``offset`` bytes into its data. The loops below run over such views from
    index 0, so LLVM sees unit strides and no negative-index wraparound."""
    result = types.Array(array.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        source = make_array(signature.args[0])(context, builder, args[0])
        view = make_array(result)(context, builder)
        item_type = context.get_data_type(result.dtype)
        itemsize = context.get_abi_sizeof(item_type)
        start = builder.gep(
            builder.bitcast(source.data, cgutils.voidptr_t),
            [context.cast(builder, args[1], signature.args[1], types.intp)],
        )
        populate_array(
            view,
            data=builder.bitcast(start, item_type.as_pointer()),
            shape=[context.cast(builder, args[2], signature.args[2], types.intp)],
            strides=[cgutils.intp_t(itemsize)],
            itemsize=cgutils.intp_t(itemsize),
            meminfo=None,
        )
        return view._getvalue()

    return result(array, offset, length), codegen


def _binary_intrinsic(name, fastmath=()):
    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic(name, [ty], llvm_ir.FunctionType(ty, [ty, ty]))
        return builder.call(fn, args, fastmath=fastmath)

    return codegen


@intrinsic
def _max_of_numbers(typingctx, a, b):
    """``llvm.maxnum`` with no-NaN flags, so that a max reduction vectorizes.
    The result is meaningless when an argument is NaN; callers track NaN
    separately and discard the max then."""
    return a(a, b), _binary_intrinsic("llvm.maxnum", ("nnan", "nsz"))


@intrinsic
def _min_of_numbers(typingctx, a, b):
    """``llvm.minnum`` with no-NaN flags (as _max_of_numbers)."""
    return a(a, b), _binary_intrinsic("llvm.minnum", ("nnan", "nsz"))


@intrinsic
def _maxnum(typingctx, a, b):
    """``llvm.maxnum``: the larger, NaN ignored. For elementwise updates
    (``m[j] = max(m[j], v)``): written as ``v if v > m[j] else m[j]`` LLVM
    makes the store conditional and vectorizes it with masked stores,
    which are microcoded (slow) on AMD CPUs."""
    return a(a, b), _binary_intrinsic("llvm.maxnum")


@intrinsic
def _minnum(typingctx, a, b):
    """``llvm.minnum``: the smaller, NaN ignored (as _maxnum)."""
    return a(a, b), _binary_intrinsic("llvm.minnum")


@intrinsic
def _mul_add(typingctx, a, b, c):
    """``a * b + c``, fused where the CPU has FMA (``llvm.fmuladd``)."""

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic(
            "llvm.fmuladd", [ty], llvm_ir.FunctionType(ty, [ty, ty, ty])
        )
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def _float_bits(typingctx, value):
    """The bits of a float32 / float64 as int32 / int64."""
    result = types.int32 if value == types.float32 else types.int64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result))

    return result(value), codegen


@intrinsic
def _float_from_bits(typingctx, value):
    """The float32 / float64 with the bits of an int32 / int64."""
    result = types.float32 if value == types.int32 else types.float64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result))

    return result(value), codegen


# ----------------------------------------------------------------------------
# exp(d) for d <= 0.
#
# d = n ln2 + r with |r| <= ln2/2 (ln2 split in a high part with few bits,
# so n * high is exact), a polynomial for exp(r) (Cephes' minimax
# coefficients for float32, the degree-13 Taylor polynomial for float64),
# then 2^n applied as two power-of-two factors so that a subnormal result is
# rounded once instead of flushed. Only +, *, compares and bit operations:
# LLVM vectorizes it, where math.exp / np.exp would be one call into libm
# per element (numba from the package index has no SVML).
#
# Contract (tests/test_numba_backend.py; measured maxima in
# docs/numba_notes.md):
#   float32: d in [-inf, 0]; at most 1.05 ULP over a dense sweep of [-104, 0]
#   float64: d in [-inf, 0]; at most 1.0 ULP on random points of [-746, 0]
#   exp(0) == 1 and exp(-inf) == 0 exactly. NaN is never passed in.


# _exp_normal_* are the same for d >= _NORMAL_LIMIT (every result normal):
# no clamp, 2^n in one factor. For such d their result is bit for bit that
# of _exp_nonpositive_* (whose second factor is then 1), so a row may take
# either. The exp functions are the bodies of the overloads below, which
# pick one by dtype.
_NORMAL_LIMIT_F32 = -87.0
_NORMAL_LIMIT_F64 = -707.0


@njit(**_INTERNAL)
def _stays_normal(x, m, low, scale):
    """Every exp((v - m) * scale) for v in [low, m] of x's dtype is normal."""
    return (low - m) * scale >= (_NORMAL_LIMIT_F32 if x.itemsize == 4 else _NORMAL_LIMIT_F64)


@njit(**_INTERNAL)
def _exp_parts_f32(d):
    """(p, n) with exp(d) = p * 2^n, for d in [-104, 0]."""
    shifter = np.float32(12582912.0)  # 1.5 * 2^23: adding it rounds to an integer
    t = _mul_add(d, np.float32(1.44269504088896341), shifter)
    n = t - shifter
    n_int = np.int32(_float_bits(t) - np.int32(0x4B400000))
    r = _mul_add(n, np.float32(-0.693359375), d)  # ln2 split: n * high part is exact
    r = _mul_add(n, np.float32(2.12194440e-4), r)
    p = np.float32(1.9875691500e-4)  # Cephes expf minimax coefficients, Horner
    p = _mul_add(p, r, np.float32(1.3981999507e-3))
    p = _mul_add(p, r, np.float32(8.3334519073e-3))
    p = _mul_add(p, r, np.float32(4.1665795894e-2))
    p = _mul_add(p, r, np.float32(1.6666665459e-1))
    p = _mul_add(p, r, np.float32(5.0000001201e-1))
    return _mul_add(p * r, r, r) + np.float32(1.0), n_int


def _exp_nonpositive_f32(d):
    # exp(-104) < 2^-150 rounds to +0, and so does everything below.
    p, n = _exp_parts_f32(d if d >= np.float32(-104.0) else np.float32(-104.0))
    n_low = n if n >= -126 else -126  # a normal power of two
    n_high = n - n_low  # in [-25, 0]
    scale_high = _float_from_bits(np.int32((n_high + 127) << 23))
    scale_low = _float_from_bits(np.int32((n_low + 127) << 23))
    return (p * scale_high) * scale_low


def _exp_normal_f32(d):
    p, n = _exp_parts_f32(d)
    return p * _float_from_bits(np.int32((n + 127) << 23))


@njit(**_INTERNAL)
def _exp_parts_f64(d):
    """(p, n) with exp(d) = p * 2^n, for d in [-746, 0]. The degree-13
    Taylor polynomial (truncation error below 0.05 ULP on |r| <= ln2/2) is
    evaluated by Estrin's scheme: a dependency chain of 5 operations instead
    of Horner's 13 (the float64 loop is latency-bound)."""
    shifter = 6755399441055744.0  # 1.5 * 2^52
    t = _mul_add(d, 1.4426950408889634074, shifter)
    n = t - shifter
    n_int = _float_bits(t) - np.int64(0x4338000000000000)
    r = _mul_add(n, -6.93145751953125e-1, d)
    r = _mul_add(n, -1.42860682030941723212e-6, r)
    r2 = r * r
    r4 = r2 * r2
    # q = sum of r^(k-2) / k! for k = 2 .. 13, and exp(r) = 1 + r + r^2 q
    a0 = _mul_add(1.0 / 6.0, r, 0.5)
    a1 = _mul_add(1.0 / 120.0, r, 1.0 / 24.0)
    a2 = _mul_add(1.0 / 5040.0, r, 1.0 / 720.0)
    a3 = _mul_add(1.0 / 362880.0, r, 1.0 / 40320.0)
    a4 = _mul_add(1.0 / 39916800.0, r, 1.0 / 3628800.0)
    a5 = _mul_add(1.0 / 6227020800.0, r, 1.0 / 479001600.0)
    b0 = _mul_add(a1, r2, a0)
    b1 = _mul_add(a3, r2, a2)
    b2 = _mul_add(a5, r2, a4)
    q = _mul_add(_mul_add(b2, r4, b1), r4, b0)
    return _mul_add(r2, q, r) + 1.0, n_int


def _exp_nonpositive_f64(d):
    # exp(-746) < 2^-1075 rounds to +0, and so does everything below.
    p, n = _exp_parts_f64(d if d >= -746.0 else -746.0)
    n_low = n if n >= -1022 else np.int64(-1022)
    n_high = n - n_low  # in [-55, 0]
    scale_high = _float_from_bits(np.int64((n_high + 1023) << 52))
    scale_low = _float_from_bits(np.int64((n_low + 1023) << 52))
    return (p * scale_high) * scale_low


def _exp_normal_f64(d):
    p, n = _exp_parts_f64(d)
    return p * _float_from_bits(np.int64((n + 1023) << 52))


def _exp_nonpositive(d):
    """exp(d) for d <= 0 in d's own precision (in jitted code)."""
    raise NotImplementedError("jitted code only")


@overload(_exp_nonpositive)
def _exp_nonpositive_overload(d):
    return {types.float32: _exp_nonpositive_f32, types.float64: _exp_nonpositive_f64}.get(d)


def _exp_normal(d):
    """exp(d) for _NORMAL_LIMIT <= d <= 0 (in jitted code)."""
    raise NotImplementedError("jitted code only")


@overload(_exp_normal)
def _exp_normal_overload(d):
    return {types.float32: _exp_normal_f32, types.float64: _exp_normal_f64}.get(d)


@njit(**_JIT)
def _exp_nonpositive_array(d, out, normal):
    """out = exp(d) elementwise, d <= 0 (normal: d >= _NORMAL_LIMIT); for
    the accuracy tests."""
    if normal:
        for k in range(d.shape[0]):
            out[k] = _exp_normal(d[k])
    else:
        for k in range(d.shape[0]):
            out[k] = _exp_nonpositive(d[k])


# ----------------------------------------------------------------------------
# One contiguous row: x, y 1-D C arrays (spans), mask None or a 1-D C bool
# array, scratch a buffer of _CHUNK elements. x may be y (in place). A loop
# that reads one array and writes another is guarded by LLVM with an overlap
# check, which fails for identical arrays and runs the scalar loop instead,
# so in place a loop either reads and writes one array or reads a copy.


@njit(**_INTERNAL)
def _scan_row(x, mask):
    """(max ignoring NaN, min ignoring NaN, active count, NaN seen) over the
    active elements (masked ones count as -inf for both)."""
    minus_inf = x.dtype.type(-np.inf)
    m = minus_inf
    low = x.dtype.type(np.inf)
    has_nan = False
    active = x.shape[0]
    if mask is None:
        for k in range(x.shape[0]):
            v = x[k]
            m = _max_of_numbers(m, v)
            low = _min_of_numbers(low, v)
            has_nan |= v != v
    else:
        active = 0
        for k in range(x.shape[0]):
            on = mask[k]
            v = x[k] if on else minus_inf
            m = _max_of_numbers(m, v)
            low = _min_of_numbers(low, v)
            has_nan |= v != v
            active += on
    if has_nan:  # max and min mean nothing then (see _max_of_numbers)
        m = minus_inf
        low = minus_inf
    return m, low, active, has_nan


@njit(**_INTERNAL)
def _add_chunk_sum(c, total, compensation):
    """Add the values of a chunk (>= 0, starting at a multiple of _SUM_BLOCK
    in its row) to the compensated float64 sum (total, compensation), block
    by block: in a block, value r into slot r % _SLOTS in the chunk's dtype,
    slots folded as ((0+1)+(2+3))+((4+5)+(6+7)). Eight independent sums also
    let LLVM keep them in a vector."""
    zero = c.dtype.type(0.0)
    n = c.shape[0]
    for start in range(0, n, _SUM_BLOCK):
        block = _span(c, start * c.itemsize, min(_SUM_BLOCK, n - start))
        m = block.shape[0]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
        full = m - m % 8
        for b in range(0, full, 8):
            a0 += block[b]
            a1 += block[b + 1]
            a2 += block[b + 2]
            a3 += block[b + 3]
            a4 += block[b + 4]
            a5 += block[b + 5]
            a6 += block[b + 6]
            a7 += block[b + 7]
        if full < m:  # the last values; adding +0 to a slot changes nothing
            left = m - full
            a0 += block[full]
            a1 += block[full + 1] if left > 1 else zero
            a2 += block[full + 2] if left > 2 else zero
            a3 += block[full + 3] if left > 3 else zero
            a4 += block[full + 4] if left > 4 else zero
            a5 += block[full + 5] if left > 5 else zero
            a6 += block[full + 6] if left > 6 else zero
        folded = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
        total, compensation = _neumaier_add(total, compensation, np.float64(folded))
    return total, compensation


@njit(**_INTERNAL)
def _neumaier_add(total, compensation, value):
    t = total + value
    if abs(total) >= abs(value):
        compensation += (total - t) + value
    else:
        compensation += (value - t) + total
    return t, compensation


@njit(**_INTERNAL)
def _log_of_split_sum(below, at_max):
    """log(at_max + below) as log(at_max) + log1p(below / at_max): at_max
    counts the elements at the max, below sums the others, kept apart so
    that the digits scipy keeps are kept (logsumexp([0, -40]) is 4.2e-18)."""
    return math.log(at_max) + math.log1p(below / at_max)


@njit(**_INTERNAL)
def _log_of_exp_sums(x, mask, m, scale, normal, scratch):
    """log(sum(exp((x - m) * scale))) of a row with finite max m, the
    exp-and-sum pass of the log variants (nothing stored; the terms at the
    max counted apart, see _log_of_split_sum); normal: every exp is normal
    (see _exp_normal)."""
    minus_inf = x.dtype.type(-np.inf)
    zero = x.dtype.type(0.0)
    n = x.shape[0]
    below = 0.0
    compensation = 0.0
    at_max = 0
    for start in range(0, n, _CHUNK):
        length = min(_CHUNK, n - start)
        xc = _span(x, start * x.itemsize, length)
        sc = _span(scratch, 0, length)
        count = np.int32(0)  # int32: 8 lanes a vector, as the float32 exps
        if mask is not None:
            mc = _span(mask, start, length)
            for k in range(length):
                d = ((xc[k] if mc[k] else minus_inf) - m) * scale
                is_max = d == zero
                sc[k] = zero if is_max else _exp_nonpositive(d)
                count = np.int32(count + np.int32(is_max))
        elif normal:
            for k in range(length):
                d = (xc[k] - m) * scale
                is_max = d == zero
                sc[k] = zero if is_max else _exp_normal(d)
                count = np.int32(count + np.int32(is_max))
        else:
            for k in range(length):
                d = (xc[k] - m) * scale
                is_max = d == zero
                sc[k] = zero if is_max else _exp_nonpositive(d)
                count = np.int32(count + np.int32(is_max))
        at_max += count
        below, compensation = _add_chunk_sum(sc, below, compensation)
    return _log_of_split_sum(below + compensation, np.float64(at_max))


@njit(**_INTERNAL)
def _needs_wide(x, mask, m, temperature):
    """Finite logits whose difference overflows the dtype, with T > 1:
    (x - max) / T would be -inf where the exact value is finite, so such
    rows divide first, x / T - max / T, in float64 (as _reference). With
    T <= 1 the exact value is beyond the dtype's range anyway. An overflow
    needs max above half an ulp of the largest float (2^103 / 2^970), so
    only such rows are looked at again."""
    if temperature <= 1.0 or m < (2.0**103 if x.itemsize == 4 else 2.0**970):
        return False
    low = np.inf
    for k in range(x.shape[0]):
        v = x[k]
        if (mask is None or mask[k]) and v != -np.inf and v < low:
            low = v
    return np.isfinite(low) and not np.isfinite(m - x.dtype.type(low))


@njit(**_INTERNAL)
def _wide_row(x, y, mask, m, temperature, log):
    """softmax / log_softmax into y (None: logsumexp only) of a wide row,
    scalar, in float64 (such rows are rare). Returns the logsumexp. d <= 0
    here too, so the exp is ours (the kernels never call libm's exp)."""
    top = np.float64(m) / temperature
    below = 0.0
    compensation = 0.0
    at_max = 0.0
    for k in range(x.shape[0]):
        if mask is not None and not mask[k]:
            continue
        d = np.float64(x[k]) / temperature - top
        if d == 0.0:
            at_max += 1.0
        else:
            below, compensation = _neumaier_add(below, compensation, _exp_nonpositive(d))
    below += compensation
    log_sum = _log_of_split_sum(below, at_max)
    if y is None:
        return top + log_sum
    inverse = 1.0 / (below + at_max)
    for k in range(x.shape[0]):
        d = np.float64(x[k]) / temperature - top
        if mask is not None and not mask[k]:
            y[k] = -np.inf if log else 0.0
        elif log:
            y[k] = d - log_sum
        else:
            y[k] = _exp_nonpositive(d) * inverse
    return top + log_sum


@njit(**_INTERNAL)
def _fill_special_row(x, y, mask, m, active, has_nan, log):
    """A row whose max is NaN, +inf or -inf, or with nothing active: the
    scipy.special values (as _reference); masked elements 0 or -inf."""
    keeps_minus_inf = log and active > 0 and not has_nan and m == np.inf
    for k in range(x.shape[0]):
        if mask is not None and not mask[k]:
            y[k] = -np.inf if log else 0.0
        elif keeps_minus_inf:
            y[k] = np.nan if x[k] == np.inf else -np.inf
        else:
            y[k] = np.nan


@njit(**_INTERNAL)
def _exp_store_sum(x, y, mask, m, scale, normal, scratch):
    """The exp-and-sum pass of softmax: y = exp((x - m) * scale), masked
    elements 0; returns sum(y) in float64. x may be y: each chunk is then
    read from a copy in scratch, so that the loops see two arrays that do
    not overlap."""
    minus_inf = x.dtype.type(-np.inf)
    n = x.shape[0]
    in_place = x.ctypes.data == y.ctypes.data
    total = 0.0
    compensation = 0.0
    for start in range(0, n, _CHUNK):
        length = min(_CHUNK, n - start)
        yc = _span(y, start * y.itemsize, length)
        if in_place:
            xc = _span(scratch, 0, length)
            for k in range(length):
                xc[k] = yc[k]
        else:
            xc = _span(x, start * x.itemsize, length)
        if mask is not None:
            mc = _span(mask, start, length)
            for k in range(length):
                yc[k] = _exp_nonpositive(((xc[k] if mc[k] else minus_inf) - m) * scale)
        elif normal:
            for k in range(length):
                yc[k] = _exp_normal((xc[k] - m) * scale)
        else:
            for k in range(length):
                yc[k] = _exp_nonpositive((xc[k] - m) * scale)
        total, compensation = _add_chunk_sum(yc, total, compensation)
    return total + compensation


@njit(**_INTERNAL)
def _softmax_row(x, y, mask, temperature, scale, log, scratch):
    """softmax or log_softmax of one row (x may be y): the scan, then
    special and wide rows apart; else the exp-and-sum pass and the scale
    pass (softmax), or the split sum and the subtract pass (log_softmax)."""
    n = x.shape[0]
    m, low, active, has_nan = _scan_row(x, mask)
    if active == 0 or has_nan or not np.isfinite(m):
        _fill_special_row(x, y, mask, m, active, has_nan, log)
        return
    if _needs_wide(x, mask, m, temperature):
        _wide_row(x, y, mask, m, temperature, log)
        return
    normal = _stays_normal(x, m, low, scale)
    if not log:
        factor = y.dtype.type(1.0 / _exp_store_sum(x, y, mask, m, scale, normal, scratch))
        for k in range(n):  # the scale pass
            y[k] = y[k] * factor
        return
    log_sum = x.dtype.type(_log_of_exp_sums(x, mask, m, scale, normal, scratch))
    minus_inf = x.dtype.type(-np.inf)
    # The subtract pass, y = d - log(sum). In place, x is y: one array, so
    # the loop needs no overlap check. (The mask is a select, not an "if":
    # LLVM would make a conditional store.)
    if mask is not None:
        for k in range(n):
            y[k] = (x[k] - m) * scale - log_sum if mask[k] else minus_inf
    elif x.ctypes.data == y.ctypes.data:
        for k in range(n):
            y[k] = (y[k] - m) * scale - log_sum
    else:
        for k in range(n):
            y[k] = (x[k] - m) * scale - log_sum


@njit(**_INTERNAL)
def _logsumexp_row(x, mask, temperature, scale, scratch):
    m, low, active, has_nan = _scan_row(x, mask)
    if active == 0:
        return -np.inf
    if has_nan:
        return np.nan
    if not np.isfinite(m):
        return np.float64(m)  # +inf, or all -inf
    if _needs_wide(x, mask, m, temperature):
        return _wide_row(x, None, mask, m, temperature, False)
    normal = _stays_normal(x, m, low, scale)
    log_sum = _log_of_exp_sums(x, mask, m, scale, normal, scratch)
    return np.float64(m) / temperature + log_sum


# ----------------------------------------------------------------------------
# The 3-D views. Each kernel computes block `block` of `blocks` (a share of
# the rows, or of the column tiles); the serial call is block 0 of 1, the
# parallel kernels run the blocks over prange. A row is computed by the same
# compiled code whatever block it falls in, so results do not depend on the
# thread count.


@njit(**_INTERNAL)
def _block_range(units, block, blocks):
    return units * block // blocks, units * (block + 1) // blocks


@njit(**_JIT)
def _softmax_rows(x, y, mask, temperature, log, block, blocks):
    """Row by row: a contiguous row is used where it is, a strided one is
    gathered into a buffer (and its result scattered back)."""
    outer, inner, n = x.shape
    scale = x.dtype.type(1.0 / temperature)
    first, last = _block_range(outer * inner, block, blocks)
    x_contiguous = x.strides[2] == x.itemsize or n == 1
    y_contiguous = y.strides[2] == y.itemsize or n == 1
    buffer = np.empty(0 if x_contiguous and y_contiguous else n, x.dtype)
    scratch = np.empty(min(n, _CHUNK), x.dtype)
    if mask is not None:
        mask_contiguous = mask.strides[2] == 1 or n == 1
        mask_buffer = np.empty(0 if mask_contiguous else n, np.bool_)
    for row in range(first, last):
        o = row // inner
        i = row - o * inner
        if x_contiguous:
            xr = _span(x, o * x.strides[0] + i * x.strides[1], n)
        else:
            for k in range(n):
                buffer[k] = x[o, i, k]
            xr = buffer
        yr = _span(y, o * y.strides[0] + i * y.strides[1], n) if y_contiguous else buffer
        if mask is None:
            _softmax_row(xr, yr, None, temperature, scale, log, scratch)
        else:
            if mask_contiguous:
                mr = _span(mask, o * mask.strides[0] + i * mask.strides[1], n)
            else:
                for k in range(n):
                    mask_buffer[k] = mask[o, i, k]
                mr = mask_buffer
            _softmax_row(xr, yr, mr, temperature, scale, log, scratch)
        if not y_contiguous:
            for k in range(n):
                y[o, i, k] = buffer[k]


@njit(**_JIT)
def _logsumexp_rows(x, out, mask, temperature, block, blocks):
    """logsumexp row by row into out (2-D), strided rows gathered."""
    outer, inner, n = x.shape
    scale = x.dtype.type(1.0 / temperature)
    first, last = _block_range(outer * inner, block, blocks)
    x_contiguous = x.strides[2] == x.itemsize or n == 1
    buffer = np.empty(0 if x_contiguous else n, x.dtype)
    scratch = np.empty(min(n, _CHUNK), x.dtype)
    if mask is not None:
        mask_contiguous = mask.strides[2] == 1 or n == 1
        mask_buffer = np.empty(0 if mask_contiguous else n, np.bool_)
    for row in range(first, last):
        o = row // inner
        i = row - o * inner
        if x_contiguous:
            xr = _span(x, o * x.strides[0] + i * x.strides[1], n)
        else:
            for k in range(n):
                buffer[k] = x[o, i, k]
            xr = buffer
        if mask is None:
            out[o, i] = _logsumexp_row(xr, None, temperature, scale, scratch)
        else:
            if mask_contiguous:
                mr = _span(mask, o * mask.strides[0] + i * mask.strides[1], n)
            else:
                for k in range(n):
                    mask_buffer[k] = mask[o, i, k]
                mr = mask_buffer
            out[o, i] = _logsumexp_row(xr, mr, temperature, scale, scratch)


# Column tiles: a strided reduction axis beside a contiguous inner axis (a
# reduction over a non-last axis). The vector loops run across the w
# neighbouring rows i0 .. i0 + w of a tile, one k at a time, with each row's
# state (max, slot sums) in small arrays. Wide tiles rather than tiles that
# fit in L2: the loop overheads are per k, and a pass then sweeps memory in
# long runs. Each row's sum is taken in exactly the order of the row path
# (_add_chunk_sum: slots, blocks, compensation), so a row gives the same
# bits either way, whatever the tile width. A tile holding a special or
# wide row is done row by row through a gathered copy instead.


@njit(**_INTERNAL)
def _tile_width(x, blocks):
    """Rows per tile: up to _TILE_COLUMNS, fewer so that `blocks` threads
    each get a tile."""
    outer, inner = x.shape[0], x.shape[1]
    per_outer = max(1, -(-blocks // outer))
    return min(inner, _TILE_COLUMNS, max(_TILE_MIN_COLUMNS, -(-inner // per_outer)))


@njit(**_INTERNAL)
def _mask_segment(mask, o, i0, k, w, buffer):
    """mask[o, i0:i0 + w, k] as a contiguous bool array."""
    if mask.strides[1] == 1:
        return _span(mask, o * mask.strides[0] + i0 + k * mask.strides[2], w)
    for j in range(w):
        buffer[j] = mask[o, i0 + j, k]
    return _span(buffer, 0, w)


@njit(**_INTERNAL)
def _tile_scan(x, mask, o, i0, w, temperature, scale, m, mask_buffer):
    """The max of each row of a tile into m. Returns _TILE_BY_ROWS if a row
    of the tile is special or may be wide (see _needs_wide), _TILE_NORMAL if
    every exp of the tile is normal (see _stays_normal), else
    _TILE_SUBNORMAL."""
    n = x.shape[2]
    minus_inf = x.dtype.type(-np.inf)
    base = o * x.strides[0] + i0 * x.itemsize
    low = np.empty(w, x.dtype)
    active = np.empty(w, np.int64)
    nan = np.zeros(w, np.bool_)
    for j in range(w):
        m[j] = minus_inf
        low[j] = np.inf
        active[j] = n
    for k in range(n):
        xs = _span(x, base + k * x.strides[2], w)
        if mask is None:
            for j in range(w):
                v = xs[j]
                nan[j] |= v != v
                m[j] = _maxnum(m[j], v)
                low[j] = _minnum(low[j], v)
        else:
            ms = _mask_segment(mask, o, i0, k, w, mask_buffer)
            for j in range(w):
                on = ms[j]
                v = xs[j] if on else minus_inf
                active[j] -= not on
                nan[j] |= v != v
                m[j] = _maxnum(m[j], v)
                low[j] = _minnum(low[j], v)
    wide_limit = 2.0**103 if x.itemsize == 4 else 2.0**970
    normal = True
    for j in range(w):
        if active[j] == 0 or nan[j] or not np.isfinite(m[j]):
            return _TILE_BY_ROWS
        if temperature > 1.0 and m[j] >= wide_limit:
            return _TILE_BY_ROWS
        normal = normal and _stays_normal(x, m[j], low[j], scale)
    return _TILE_NORMAL if normal else _TILE_SUBNORMAL


@njit(**_INTERNAL)
def _tile_fold_slots(slots, width, w, total, compensation):
    """Fold the slots of each row as _add_chunk_sum does, add the result to the
    row's compensated float64 total, and clear the slots (and what follows
    them in the array)."""
    size = slots.itemsize * width
    a0 = _span(slots, 0, w)
    a1 = _span(slots, size, w)
    a2 = _span(slots, 2 * size, w)
    a3 = _span(slots, 3 * size, w)
    a4 = _span(slots, 4 * size, w)
    a5 = _span(slots, 5 * size, w)
    a6 = _span(slots, 6 * size, w)
    a7 = _span(slots, 7 * size, w)
    for j in range(w):
        block = np.float64(
            ((a0[j] + a1[j]) + (a2[j] + a3[j])) + ((a4[j] + a5[j]) + (a6[j] + a7[j]))
        )
        s = total[j]
        t = s + block
        if abs(s) >= abs(block):
            compensation[j] += (s - t) + block
        else:
            compensation[j] += (block - t) + s
        total[j] = t
    slots[:] = 0


@njit(**_INTERNAL)
def _tile_log_sums(
    x, mask, o, i0, w, scale, normal, m, slots, total, compensation, at_max, mask_buffer
):
    """log(sum(exp(d))) of each row of a scanned tile into total, as
    _log_of_exp_sums computes it for a row. The elements at the max are
    counted in the dtype within a block (in the row of slots after the
    _SLOTS sums; exact, and a quarter of the memory traffic of int64 for
    float32), then in float64 (at_max) across blocks."""
    n = x.shape[2]
    width = m.shape[0]
    minus_inf = x.dtype.type(-np.inf)
    zero = x.dtype.type(0.0)
    one = x.dtype.type(1.0)
    base = o * x.strides[0] + i0 * x.itemsize
    counts = _span(slots, _SLOTS * width * slots.itemsize, w)
    slots[:] = 0
    for j in range(w):
        total[j] = 0.0
        compensation[j] = 0.0
        at_max[j] = 0.0
    for k in range(n):
        xs = _span(x, base + k * x.strides[2], w)
        r = k % _SUM_BLOCK
        slot = _span(slots, (r % _SLOTS) * width * slots.itemsize, w)
        if mask is not None:
            ms = _mask_segment(mask, o, i0, k, w, mask_buffer)
            for j in range(w):
                d = ((xs[j] if ms[j] else minus_inf) - m[j]) * scale
                is_max = d == zero
                slot[j] += zero if is_max else _exp_nonpositive(d)
                counts[j] += one if is_max else zero
        elif normal:
            for j in range(w):
                d = (xs[j] - m[j]) * scale
                is_max = d == zero
                slot[j] += zero if is_max else _exp_normal(d)
                counts[j] += one if is_max else zero
        else:
            for j in range(w):
                d = (xs[j] - m[j]) * scale
                is_max = d == zero
                slot[j] += zero if is_max else _exp_nonpositive(d)
                counts[j] += one if is_max else zero
        if r == _SUM_BLOCK - 1 or k == n - 1:
            for j in range(w):
                at_max[j] += np.float64(counts[j])
            _tile_fold_slots(slots, width, w, total, compensation)  # clears counts too
    for j in range(w):
        total[j] = _log_of_split_sum(total[j] + compensation[j], at_max[j])


@njit(**_INTERNAL)
def _tile_by_rows(x, y, mask, o, i0, w, temperature, scale, log, buffer, mask_buffer, scratch):
    """The rows of a tile one at a time, each through a gathered copy in
    buffer (tiles holding a special or wide row)."""
    n = x.shape[2]
    for j in range(w):
        for k in range(n):
            buffer[k] = x[o, i0 + j, k]
        if mask is not None:
            for k in range(n):
                mask_buffer[k] = mask[o, i0 + j, k]
            _softmax_row(buffer, buffer, _span(mask_buffer, 0, n), temperature, scale, log, scratch)
        else:
            _softmax_row(buffer, buffer, None, temperature, scale, log, scratch)
        for k in range(n):
            y[o, i0 + j, k] = buffer[k]


@njit(**_JIT)
def _softmax_tiles(x, y, mask, temperature, log, block, blocks):
    """softmax / log_softmax by column tiles: scan, then exp + store + slot
    sums and a scale pass (softmax), or split sums and a subtract pass."""
    outer, inner, n = x.shape
    scale = x.dtype.type(1.0 / temperature)
    minus_inf = x.dtype.type(-np.inf)
    width = _tile_width(x, blocks)
    tiles = (inner + width - 1) // width
    first, last = _block_range(outer * tiles, block, blocks)
    m = np.empty(width, x.dtype)
    factor = np.empty(width, x.dtype)
    slots = np.zeros((_SLOTS + 1) * width, x.dtype)  # and the counts at the max
    total = np.empty(width, np.float64)
    compensation = np.empty(width, np.float64)
    at_max = np.empty(width, np.float64)
    buffer = np.empty(n, x.dtype)
    scratch = np.empty(min(n, _CHUNK), x.dtype)
    mask_buffer = np.empty(max(width, n) if mask is not None else 0, np.bool_)
    for unit in range(first, last):
        o = unit // tiles
        i0 = (unit - o * tiles) * width
        w = min(width, inner - i0)
        kind = _tile_scan(x, mask, o, i0, w, temperature, scale, m, mask_buffer)
        if kind == _TILE_BY_ROWS:
            _tile_by_rows(
                x, y, mask, o, i0, w, temperature, scale, log, buffer, mask_buffer, scratch
            )
            continue
        x_base = o * x.strides[0] + i0 * x.itemsize
        y_base = o * y.strides[0] + i0 * y.itemsize
        in_place = x.ctypes.data + x_base == y.ctypes.data + y_base
        if log:
            _tile_log_sums(
                x,
                mask,
                o,
                i0,
                w,
                scale,
                kind == _TILE_NORMAL,
                m,
                slots,
                total,
                compensation,
                at_max,
                mask_buffer,
            )
            for j in range(w):
                factor[j] = total[j]  # the log of the sum, in the dtype
            for k in range(n):
                ys = _span(y, y_base + k * y.strides[2], w)
                xs = _span(x, x_base + k * x.strides[2], w)
                if mask is not None:
                    ms = _mask_segment(mask, o, i0, k, w, mask_buffer)
                    for j in range(w):
                        d = (xs[j] - m[j]) * scale - factor[j]
                        ys[j] = d if ms[j] else minus_inf
                elif in_place:
                    for j in range(w):
                        ys[j] = (ys[j] - m[j]) * scale - factor[j]
                else:
                    for j in range(w):
                        ys[j] = (xs[j] - m[j]) * scale - factor[j]
            continue
        slots[:] = 0
        for j in range(w):
            total[j] = 0.0
            compensation[j] = 0.0
        for k in range(n):
            ys = _span(y, y_base + k * y.strides[2], w)
            xs = _span(x, x_base + k * x.strides[2], w)
            r = k % _SUM_BLOCK
            slot = _span(slots, (r % _SLOTS) * width * slots.itemsize, w)
            if mask is not None:
                ms = _mask_segment(mask, o, i0, k, w, mask_buffer)
                for j in range(w):
                    e = _exp_nonpositive(((xs[j] if ms[j] else minus_inf) - m[j]) * scale)
                    ys[j] = e
                    slot[j] += e
            elif in_place and kind == _TILE_NORMAL:
                for j in range(w):
                    e = _exp_normal((ys[j] - m[j]) * scale)
                    ys[j] = e
                    slot[j] += e
            elif in_place:
                for j in range(w):
                    e = _exp_nonpositive((ys[j] - m[j]) * scale)
                    ys[j] = e
                    slot[j] += e
            elif kind == _TILE_NORMAL:
                for j in range(w):
                    e = _exp_normal((xs[j] - m[j]) * scale)
                    ys[j] = e
                    slot[j] += e
            else:
                for j in range(w):
                    e = _exp_nonpositive((xs[j] - m[j]) * scale)
                    ys[j] = e
                    slot[j] += e
            if r == _SUM_BLOCK - 1 or k == n - 1:
                _tile_fold_slots(slots, width, w, total, compensation)
        for j in range(w):
            factor[j] = 1.0 / (total[j] + compensation[j])
        for k in range(n):
            ys = _span(y, y_base + k * y.strides[2], w)
            for j in range(w):
                ys[j] = ys[j] * factor[j]


@njit(**_JIT)
def _logsumexp_tiles(x, out, mask, temperature, block, blocks):
    """logsumexp by column tiles: scan, then split sums."""
    outer, inner, n = x.shape
    scale = x.dtype.type(1.0 / temperature)
    width = _tile_width(x, blocks)
    tiles = (inner + width - 1) // width
    first, last = _block_range(outer * tiles, block, blocks)
    m = np.empty(width, x.dtype)
    slots = np.zeros((_SLOTS + 1) * width, x.dtype)  # and the counts at the max
    total = np.empty(width, np.float64)
    compensation = np.empty(width, np.float64)
    at_max = np.empty(width, np.float64)
    buffer = np.empty(n, x.dtype)
    scratch = np.empty(min(n, _CHUNK), x.dtype)
    mask_buffer = np.empty(max(width, n) if mask is not None else 0, np.bool_)
    for unit in range(first, last):
        o = unit // tiles
        i0 = (unit - o * tiles) * width
        w = min(width, inner - i0)
        kind = _tile_scan(x, mask, o, i0, w, temperature, scale, m, mask_buffer)
        if kind != _TILE_BY_ROWS:
            _tile_log_sums(
                x,
                mask,
                o,
                i0,
                w,
                scale,
                kind == _TILE_NORMAL,
                m,
                slots,
                total,
                compensation,
                at_max,
                mask_buffer,
            )
            for j in range(w):
                out[o, i0 + j] = np.float64(m[j]) / temperature + total[j]
            continue
        for j in range(w):  # a special or wide row in the tile: row by row
            for k in range(n):
                buffer[k] = x[o, i0 + j, k]
            if mask is None:
                out[o, i0 + j] = _logsumexp_row(buffer, None, temperature, scale, scratch)
            else:
                for k in range(n):
                    mask_buffer[k] = mask[o, i0 + j, k]
                out[o, i0 + j] = _logsumexp_row(
                    buffer, _span(mask_buffer, 0, n), temperature, scale, scratch
                )


@njit(parallel=True, **_JIT)
def _softmax_rows_parallel(x, y, mask, temperature, log, blocks):
    for block in prange(blocks):
        _softmax_rows(x, y, mask, temperature, log, block, blocks)


@njit(parallel=True, **_JIT)
def _softmax_tiles_parallel(x, y, mask, temperature, log, blocks):
    for block in prange(blocks):
        _softmax_tiles(x, y, mask, temperature, log, block, blocks)


@njit(parallel=True, **_JIT)
def _logsumexp_rows_parallel(x, out, mask, temperature, blocks):
    for block in prange(blocks):
        _logsumexp_rows(x, out, mask, temperature, block, blocks)


@njit(parallel=True, **_JIT)
def _logsumexp_tiles_parallel(x, out, mask, temperature, blocks):
    for block in prange(blocks):
        _logsumexp_tiles(x, out, mask, temperature, block, blocks)


# ----------------------------------------------------------------------------
# The backend interface.

_threads = 1
# The parallel kernels run one call at a time (numba's workqueue threading
# layer must not be entered from two threads at once); a call that finds
# them busy runs serially, with the same results.
_parallel_lock = threading.Lock()


def _blocks(size: int) -> int:
    if _threads <= 1 or size < _PARALLEL_MIN_ELEMENTS:
        return 1
    return min(_threads, size // _PARALLEL_MIN_ELEMENTS)


def _on_threads(threads: int, kernel: Any, *args: Any) -> None:
    """Run a parallel kernel on `threads` threads, and leave numba's setting
    of the calling thread as it was."""
    previous = numba.get_num_threads()
    if previous != threads:
        numba.set_num_threads(threads)
    try:
        kernel(*args)
    finally:
        if previous != threads:
            numba.set_num_threads(previous)


def _by_columns(x: np.ndarray) -> bool:
    """A strided reduction axis beside a contiguous inner axis of at least 8
    rows: column tiles (fewer rows gather better)."""
    strides = x.strides
    return strides[2] != x.itemsize and strides[1] == x.itemsize and x.shape[1] >= 8


def softmax_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float, log: bool
) -> None:
    """softmax (log=False) or log_softmax of x / temperature along the last
    axis of the 3-D views into out (which may be x)."""
    tiles = _by_columns(x) and out.strides[1] == out.itemsize
    blocks = _blocks(x.size)
    if blocks > 1 and _parallel_lock.acquire(blocking=False):
        kernel = _softmax_tiles_parallel if tiles else _softmax_rows_parallel
        try:
            _on_threads(blocks, kernel, x, out, mask, temperature, log, blocks)
        finally:
            _parallel_lock.release()
    elif tiles:
        _softmax_tiles(x, out, mask, temperature, log, 0, 1)
    else:
        _softmax_rows(x, out, mask, temperature, log, 0, 1)


def logsumexp_rows(
    x: np.ndarray, out: np.ndarray, mask: np.ndarray | None, temperature: float
) -> None:
    """logsumexp of x / temperature along the last axis of the 3-D view x
    into the 2-D out."""
    tiles = _by_columns(x)
    blocks = _blocks(x.size)
    if blocks > 1 and _parallel_lock.acquire(blocking=False):
        kernel = _logsumexp_tiles_parallel if tiles else _logsumexp_rows_parallel
        try:
            _on_threads(blocks, kernel, x, out, mask, temperature, blocks)
        finally:
            _parallel_lock.release()
    elif tiles:
        _logsumexp_tiles(x, out, mask, temperature, 0, 1)
    else:
        _logsumexp_rows(x, out, mask, temperature, 0, 1)


def set_num_threads(threads: int) -> None:
    """Threads for large inputs, at most numba's pool (NUMBA_NUM_THREADS);
    called by fastsoftmax.set_num_threads. Also sets numba's count, which is
    per calling thread: each parallel call sets it for its own duration."""
    global _threads
    _threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(_threads)


def exp_nonpositive(d: np.ndarray, normal: bool = False) -> np.ndarray:
    """The kernels' exp(d) for d <= 0 (float32 or float64), elementwise, for
    accuracy measurements; normal=True: the variant for d >= -87 (float32) /
    -707 (float64), used for rows whose every exp is normal."""
    d = np.ascontiguousarray(d)
    out = np.empty_like(d)
    _exp_nonpositive_array(d.reshape(-1), out.reshape(-1), bool(normal))
    return out
