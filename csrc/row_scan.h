// A row's scan (max, min, NaN, active count) and what it decides: a special
// row's values (fill_special_row), the exp form (stays_normal). The exp
// passes that follow are in row_passes.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "exp.h"
#include "kernel_table.h"
#include "row_ahead.h"
#include "simd.h"

FS_LEVEL_BEGIN

template <class T>
struct RowScan {
    T max;           // over active elements, NaN ignored
    T min;           // over active elements, NaN ignored
    int64_t active;  // elements not masked out
    bool has_nan;    // an active element is NaN
};

// scan_row without a mask: accumulators in registers; a partial tail is read
// as the row's last full vector (lanes seen twice change no max, min or NaN
// flag), so only rows shorter than a vector take a masked load. Without
// kNanFlag, has_nan is false whatever the row holds (for callers that find
// NaN in the exp pass's sum, open_row_scan).
template <class T, bool kNanFlag = true>
FS_INLINE RowScan<T> scan_unmasked_row(const T* x, int64_t n) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr int64_t L = S::lanes;
    constexpr T inf = std::numeric_limits<T>::infinity();
    Real max[4], min[4];
    Ints nan[4];
    FS_EACH4(k) {
        max[k] = broadcast<Real>(-inf);
        min[k] = broadcast<Real>(inf);
        nan[k] = Ints{};
    }
    const auto add = [&](int k, Real high, Real low) FS_INLINE_LAMBDA {
        max[k] = high > max[k] ? high : max[k];
        min[k] = low < min[k] ? low : min[k];
        if constexpr (kNanFlag) nan[k] |= high != high;
    };
    int64_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
        Real v[4];
        FS_EACH4(k) {
            v[k] = load(x + i + k * L, L, T(0));
            max[k] = v[k] > max[k] ? v[k] : max[k];
            min[k] = v[k] < min[k] ? v[k] : min[k];
        }
        if constexpr (kNanFlag) {  // one comparison for two vectors
            nan[0] |= unordered(v[0], v[1]);
            nan[2] |= unordered(v[2], v[3]);
        }
    }
    for (; i + L <= n; i += L) {
        const Real v = load(x + i, L, T(0));
        add(1, v, v);
    }
    if (i < n) {
        if (n >= L) {
            const Real v = load(x + n - L, L, T(0));
            add(2, v, v);
        } else {
            const Real v = load_first(x, n);
            const auto live = lane_indices<Ints>() < typename S::Int(n);
            add(2, live ? v : broadcast<Real>(-inf), live ? v : broadcast<Real>(inf));
        }
    }
    _Pragma("GCC unroll 4") for (int k = 1; k < 4; ++k) add(0, max[k], min[k]), nan[0] |= nan[k];
    // NaN lanes never entered: max and min ignore NaN.
    return {lanes_max(max[0]), lanes_min(min[0]), n, lanes_sum(nan[0]) != 0};
}

// The lanes of an unmasked row of at least four vectors that an exp loop
// began (ScanLanes: its whole blocks of four vectors), with the vectors after
// the last whole block added, the partial one read as the last full vector,
// as scan_unmasked_row reads it. Their max and min are those of
// scan_unmasked_row<T, false>, but for the sign of a zero max or min (+0 or
// -0, whichever the order met first). The min only feeds tests of its value;
// softmax's values never show the max's: d is then +-0 for the zeros and
// exp(+-0) is 1. log_softmax's (the groups that carry y from x) show it only
// in d - log(sum) for the zeros at the max, and the sign is in doubt only
// where +0 and -0 are both there: two terms of 1, log(sum) >= log 2, and
// +-0 - log(sum) is the same value. Its groups that store d scan on their own.
template <class T>
FS_INLINE ScanLanes<T> scan_rest(ScanLanes<T> lanes, const T* x, int64_t n) {
    constexpr int64_t L = Simd<T>::lanes;
    int64_t i = n - n % (4 * L);
    for (; i + L <= n; i += L) lanes.add(load(x + i, L, T(0)));
    if (i < n) lanes.add(load(x + n - L, L, T(0)));
    return lanes;
}

template <class T>
RowScan<T> scan_row(const T* x, const uint8_t* mask, int64_t n) {
    if (mask == nullptr) return scan_unmasked_row(x, n);
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr T inf = std::numeric_limits<T>::infinity();
    struct Acc {
        Real max;
        Real min;
        Ints nan;
        Ints active;  // minus the count: comparisons give -1
    };
    Acc acc[4];
    for (Acc& a : acc) a = {broadcast<Real>(-inf), broadcast<Real>(inf), Ints{}, Ints{}};
    visit_vectors<T>(0, n, acc, [&](int64_t i, int64_t count, Acc& a) FS_INLINE_LAMBDA {
        const Ints on = load_mask<T>(mask + i, count);
        const Real v = load(x + i, count, -inf);
        const Real high = on ? v : broadcast<Real>(-inf);
        const Real low = on ? v : broadcast<Real>(inf);
        a.max = high > a.max ? high : a.max;
        a.min = low < a.min ? low : a.min;
        a.nan |= high != high;
        a.active += on;
    });
    for (int k = 1; k < 4; ++k) {  // fold the accumulators, then the lanes
        acc[0].max = acc[k].max > acc[0].max ? acc[k].max : acc[0].max;
        acc[0].min = acc[k].min < acc[0].min ? acc[k].min : acc[0].min;
        acc[0].nan |= acc[k].nan;
        acc[0].active += acc[k].active;
    }
    // NaN lanes never entered: max and min ignore NaN.
    return {lanes_max(acc[0].max), lanes_min(acc[0].min), -int64_t(lanes_sum(acc[0].active)),
            lanes_sum(acc[0].nan) != 0};
}

// Rows whose max is not finite, or with nothing active, take the
// scipy.special values: NaN for a NaN, +inf or all -inf row, except that
// log_softmax keeps -inf beside +inf; a row masked out entirely is 0
// (softmax) or -inf (log_softmax). Masked elements are 0 or -inf.
template <class T>
void fill_special_row(const T* x, T* y, const uint8_t* mask, int64_t n, const RowScan<T>& scan,
                      RowOp op) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr T nan = std::numeric_limits<T>::quiet_NaN();
    const T masked_value = op == RowOp::softmax ? T(0) : -inf;
    const bool keeps_minus_inf = op == RowOp::log_softmax && !scan.has_nan && scan.max == inf;
    for (int64_t i = 0; i < n; ++i) {
        if (mask != nullptr && mask[i] == 0) {
            y[i] = masked_value;
        } else if (keeps_minus_inf) {
            y[i] = x[i] == inf ? nan : -inf;
        } else {
            y[i] = nan;
        }
    }
}

// Every exp((x - max) * scale) of the row is a normal number: rounding is
// monotonic, so the smallest x gives the smallest d.
template <class T>
bool stays_normal(const RowScan<T>& scan, T scale) {
    return (scan.min - scan.max) * scale >= normal_exp_limit<T>;
}

template <class T>
bool is_special(const RowScan<T>& scan) {
    return scan.active == 0 || scan.has_nan || !std::isfinite(scan.max);
}

FS_LEVEL_END
