// Rows of at most kShortRowVectors vectors (class scores, short sequences):
// three passes over such a row spend their time waiting on latencies (the
// horizontal max, the exp's FMA chain, the lane totals, a division) with
// the core mostly idle. Here each row is loaded once and stays in registers
// from the scan to the one store, and a few rows go together so that their
// dependency chains interleave.
#pragma once

#include <limits>

#include "exp.h"
#include "row_passes.h"
#include "sums.h"

FS_LEVEL_BEGIN

// The sums take exp_sums' order exactly (full vectors into accumulator 0 and
// a partial tail into accumulator 1, or one block of four into four
// accumulators), so a short row gets the bits the general passes give.
// Special and wide rows return false (the general path takes them).
constexpr int kShortRowVectors = 4;

enum class ShortOp { softmax, log_softmax, logsumexp };

// G rows of M vectors each (rows g at x + g * x_stride, y likewise): with
// G > 1 the rows' dependency chains (max, exp, sum, division) interleave,
// which a row of one or two vectors needs: alone it waits on latencies.
// logsumexp[g * ls_step] gets row g's logsumexp (kOp == logsumexp).
template <class T, int M, int G, ShortOp kOp>
bool short_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t n,
                double temperature, T* logsumexp, int64_t ls_step) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr int64_t L = S::lanes;
    constexpr int K = M * G;  // vector k of row g is v[g * M + k]
    constexpr T inf = std::numeric_limits<T>::infinity();
    const int64_t tail = n - (M - 1) * L;  // elements in a row's last vector: 1 .. L
    const auto live = lane_indices<Ints>() < typename S::Int(tail);
    const auto last = [](int q) { return q % M == M - 1; };
    Real v[K];
    FS_EACH(q) {
        const T* at = x + (q / M) * x_stride + (q % M) * L;
        v[q] = !last(q) || tail == L ? load(at, L, T(0)) : load_first(at, tail);
    }
    RowScan<T> scan[G];
    bool stays = true;
    for (int g = 0; g < G; ++g) {
        const Real* row = v + g * M;
        Real high = live ? row[M - 1] : broadcast<Real>(-inf);
        Real low = live ? row[M - 1] : broadcast<Real>(inf);
        Ints nan = high != high;
        for (int k = 0; k + 1 < M; ++k) {
            high = row[k] > high ? row[k] : high;  // NaN never enters: the row leaves below
            low = row[k] < low ? row[k] : low;
            nan |= row[k] != row[k];
        }
        scan[g] = {lanes_max(high), lanes_min(low), n, lanes_sum(nan) != 0};
        if (is_special(scan[g]) || needs_wide(scan[g], temperature)) return false;
    }
    const T scale = static_cast<T>(1.0 / temperature);
    for (int g = 0; g < G; ++g) stays = stays && stays_normal(scan[g], scale);
    with_exp_flags(!stays, scale != T(1), [&](auto sub, auto scaled) {
        constexpr bool kSubnormal = decltype(sub)::value;
        constexpr bool kScaled = decltype(scaled)::value;
        constexpr bool kSplit = kOp != ShortOp::softmax;
        Real d[K], e[K];
        FS_EACH(q) {
            d[q] = centred<kScaled>(v[q], scan[q / M].max, scale);
            if (last(q)) d[q] = live ? d[q] : broadcast<Real>(-inf);  // as exp_sums' -inf fill
            e[q] = last(q) ? (live ? d[q] : Real{}) : d[q];
        }
        exp_nonpositive_block<T, kSubnormal, K>(e);
        FS_EACH(q) {
            if (last(q)) e[q] = live ? e[q] : Real{};
        }
        for (int g = 0; g < G; ++g) {
            const Real* dg = d + g * M;
            const Real* eg = e + g * M;
            Real acc[4] = {};
            Ints at_count{};
            if (M == 4 && tail == L) {
                for (int k = 0; k < M; ++k) add_exp<kSplit>(acc[k % 4], at_count, dg[k], eg[k]);
            } else {
                for (int k = 0; k + 1 < M; ++k) add_exp<kSplit>(acc[0], at_count, dg[k], eg[k]);
                add_exp<kSplit>(acc[tail == L ? 0 : 1], at_count, dg[M - 1], eg[M - 1]);
            }
            const Real total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            const SplitSum sums{
                vector_lanes_total<T>(__builtin_convertvector(total, typename S::Doubles),
                                      typename S::Doubles{}),
                kSplit ? double(lanes_sum(at_count)) : 0.0};
            if constexpr (kOp == ShortOp::logsumexp) {
                logsumexp[g * ls_step] = static_cast<T>(static_cast<double>(scan[g].max) / temperature +
                                                        log_of_split_sum(sums));
                continue;
            }
            T* out = y + g * y_stride;
            const Real* vg = v + g * M;
            if constexpr (kOp == ShortOp::softmax) {
                const T inverse = static_cast<T>(1.0 / (sums.below_max + sums.at_max));
                for (int k = 0; k < M; ++k) store(out + k * L, eg[k] * inverse, k + 1 < M ? L : tail);
            } else {  // subtract_row's expression
                const T log_sum = static_cast<T>(log_of_split_sum(sums));
                for (int k = 0; k < M; ++k) {
                    store(out + k * L, log_softmax_of(vg[k], scan[g].max, scale, log_sum),
                          k + 1 < M ? L : tail);
                }
            }
        }
    });
    return true;
}

// Rows of 1 .. kShortRowVectors vectors, `rows` of them, a group at a time;
// a group holding a special or wide row goes row by row through `general`.
template <ShortOp kOp, int M, class T, class General>
void short_rows_of(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                   double temperature, T* logsumexp, int64_t ls_step, const General& general) {
    // Rows per group, the fastest measured: more rows than that run out of
    // registers, fewer leave latencies exposed.
    constexpr int G = M <= 2 ? 4 : 2;
    int64_t r = 0;
    for (; r + G <= rows; r += G) {
        if (!short_rows<T, M, G, kOp>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, logsumexp + r * ls_step, ls_step)) {
            for (int64_t g = r; g < r + G; ++g) general(g);
        }
    }
    for (; r < rows; ++r) {
        if (!short_rows<T, M, 1, kOp>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, logsumexp + r * ls_step, ls_step)) {
            general(r);
        }
    }
}

// True when n suits the short-row kernels (then they did every row).
template <ShortOp kOp, class T, class General>
bool short_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                double temperature, T* logsumexp, int64_t ls_step, const General& general) {
    constexpr int64_t L = Simd<T>::lanes;
    if (n <= 0) return false;
    switch ((n + L - 1) / L) {
        case 1: short_rows_of<kOp, 1>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        case 2: short_rows_of<kOp, 2>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        case 3: short_rows_of<kOp, 3>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        case 4: short_rows_of<kOp, 4>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        default: return false;
    }
}


FS_LEVEL_END
