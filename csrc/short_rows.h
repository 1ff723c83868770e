// Rows of at most kShortRowVectors vectors (class scores, short sequences):
// three passes over such a row spend their time waiting on latencies (the
// horizontal max, the exp's FMA chain, the lane totals, a division) with
// the core mostly idle. Here each row is loaded once and stays in registers
// from the scan to the one store (log_softmax reads it again for its store,
// after the log), and a few rows go together so that their dependency chains
// interleave; the logs of log_softmax and logsumexp rows are taken sixteen
// rows at once.
#pragma once

#include <cstring>
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
// softmax rows are written here; log_softmax and logsumexp rows leave their
// max and sums in row_max[g], row_below[g], row_at[g] for their log
// (short_rows_of).
template <class T, int M, int G, ShortOp kOp>
bool short_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t n,
                double temperature, T* row_max, double* row_below, double* row_at) {
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
    Real high[G], low[G];
    Ints nan[G];
    for (int g = 0; g < G; ++g) {
        const Real* row = v + g * M;
        high[g] = live ? row[M - 1] : broadcast<Real>(-inf);
        low[g] = live ? row[M - 1] : broadcast<Real>(inf);
        nan[g] = high[g] != high[g];
        for (int k = 0; k + 1 < M; ++k) {
            high[g] = row[k] > high[g] ? row[k] : high[g];  // NaN never enters: the row leaves below
            low[g] = row[k] < low[g] ? row[k] : low[g];
            nan[g] |= row[k] != row[k];
        }
    }
    // The G rows' lane folds packed together (max and min are exact in any order).
    const Real maxima = fold_lanes_of(high, [](auto a, auto b) { return a > b ? a : b; });
    const Real minima = fold_lanes_of(low, [](auto a, auto b) { return a < b ? a : b; });
    const Ints nans = fold_lanes_of(nan, [](auto a, auto b) { return a | b; });
    for (int g = 0; g < G; ++g) {
        scan[g] = {maxima[g], minima[g], n, nans[g] != 0};
        if (is_special(scan[g]) || needs_wide(scan[g], temperature)) return false;
    }
    const T scale = scale_of<T>(temperature);
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
        SplitSum sums[G];
        typename S::Doubles totals[G];
        Ints at_counts[G];
        // exp_sums' order: blocks of four full vectors into acc[k % 4], the
        // full vectors left into acc[0], a partial one into acc[1]. The count
        // of full vectors is a template argument, so that every index is a
        // constant: with a run-time index the accumulators lived in memory,
        // cleared by a `rep stos` per row.
        const auto add_rows = [&](auto full_vectors) FS_INLINE_LAMBDA {
            constexpr int full = decltype(full_vectors)::value;
            constexpr int blocked = full / 4 * 4;
            for (int g = 0; g < G; ++g) {
                const Real* dg = d + g * M;
                const Real* eg = e + g * M;
                Real acc[4] = {};
                Ints at_count{};
                _Pragma("GCC unroll 4") for (int k = 0; k < M; ++k) {
                    add_exp<kSplit>(acc[k < blocked ? k % 4 : k < full ? 0 : 1], at_count, dg[k],
                                    eg[k]);
                }
                totals[g] = __builtin_convertvector((acc[0] + acc[1]) + (acc[2] + acc[3]),
                                                    typename S::Doubles);
                at_counts[g] = at_count;
            }
        };
        if (tail == L) {
            add_rows(std::integral_constant<int, M>{});
        } else {
            add_rows(std::integral_constant<int, M - 1>{});
        }
        if constexpr (!kCompensatedTotals<T>) {  // float rows: lanes_sum's tree, G rows at once
            const auto below = sum_lanes_of(totals);
            const Ints at = fold_lanes_of(at_counts, [](auto a, auto b) { return a + b; });
            for (int g = 0; g < G; ++g) sums[g] = {below[g], kSplit ? double(at[g]) : 0.0};
        } else {
            for (int g = 0; g < G; ++g) {
                sums[g] = {vector_lanes_total<T>(totals[g], typename S::Doubles{}),
                           kSplit ? double(lanes_sum(at_counts[g])) : 0.0};
            }
        }
        if constexpr (kSplit) {
            for (int g = 0; g < G; ++g) {
                row_max[g] = scan[g].max;
                row_below[g] = sums[g].below_max, row_at[g] = sums[g].at_max;
            }
        } else {
            for (int g = 0; g < G; ++g) {
                T* out = y + g * y_stride;
                const Real* eg = e + g * M;
                const T inverse = static_cast<T>(1.0 / (sums[g].below_max + sums[g].at_max));
                for (int k = 0; k < M; ++k) store(out + k * L, eg[k] * inverse, k + 1 < M ? L : tail);
            }
        }
    });
    return true;
}

// The outputs of `rows` log_softmax or logsumexp rows from their logs: y =
// d - log(sum), d from x again (subtract_row's expression), or logsumexp[g *
// ls_step] = max / T + log(sum). x may be y: each vector is read before it
// is written.
template <ShortOp kOp, int M, class T>
FS_INLINE void short_rows_finish(const T* x, int64_t x_stride, T* y, int64_t y_stride,
                                 int64_t rows, int64_t n, double temperature, T* logsumexp,
                                 int64_t ls_step, const T* max, const double* log_sums) {
    constexpr int64_t L = Simd<T>::lanes;
    const int64_t tail = n - (M - 1) * L;
    const T scale = scale_of<T>(temperature);
    for (int64_t g = 0; g < rows; ++g) {
        if constexpr (kOp == ShortOp::logsumexp) {
            logsumexp[g * ls_step] =
                static_cast<T>(static_cast<double>(max[g]) / temperature + log_sums[g]);
        } else {
            const T log_sum = static_cast<T>(log_sums[g]);
            const T* in = x + g * x_stride;
            T* out = y + g * y_stride;
            for (int k = 0; k < M; ++k) {
                const int64_t count = k + 1 < M ? L : tail;
                const auto v = count == L ? load(in + k * L, L, T(0)) : load_first(in + k * L, count);
                store(out + k * L, log_softmax_of(v, max[g], scale, log_sum), count);
            }
        }
    }
}

// Rows of 1 .. kShortRowVectors vectors, `rows` of them, a group at a time;
// a group holding a special or wide row goes row by row through `general`.
template <ShortOp kOp, int M, class T, class General>
void short_rows_of(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                   double temperature, T* logsumexp, int64_t ls_step, const General& general) {
    // Rows per group, the fastest measured: more rows than that run out of
    // registers, fewer leave latencies exposed (eight rows of one vector
    // where there are 32 registers). The packed lane folds take at most one
    // row a lane.
    constexpr int kRows = M == 1 && kVectorRegisters == 32 ? 8 : M <= 2 ? 4 : 2;
    constexpr int G = kRows < Simd<T>::lanes ? kRows : int(Simd<T>::lanes);
    // log_softmax and logsumexp groups wait for their logs in a batch of
    // kBatchRows rows (the waiting groups' rows start at first[...]), whose
    // logs are taken together (log_of_split_sums on kBatchVectors vectors).
    constexpr int kBatchVectors = 4, kBatchRows = kBatchVectors * kLogLanes;
    constexpr int kGroups = kBatchRows / G;
    static_assert(kGroups >= 1 && kGroups * G == kBatchRows);
    alignas(32) double below[kBatchRows], at[kBatchRows];
    T max[kBatchRows];
    int64_t first[kGroups];
    int waiting = 0;
    const auto finish_waiting = [&] {
        for (int j = waiting * G; j < kBatchRows; ++j) below[j] = 0.0, at[j] = 1.0;  // log 0
        LogLanes logs[kBatchVectors], at_vectors[kBatchVectors];
        std::memcpy(logs, below, sizeof logs);
        std::memcpy(at_vectors, at, sizeof at_vectors);
        log_of_split_sums(logs, at_vectors);
        double log_sums[kBatchRows];
        std::memcpy(log_sums, logs, sizeof log_sums);
        for (int i = 0; i < waiting; ++i) {
            const int64_t r = first[i];
            short_rows_finish<kOp, M>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, G, n,
                                      temperature, logsumexp + r * ls_step, ls_step, max + i * G,
                                      log_sums + i * G);
        }
        waiting = 0;
    };
    int64_t r = 0;
    for (; r + G <= rows; r += G) {
        const int j = waiting * G;
        if (!short_rows<T, M, G, kOp>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, max + j, below + j, at + j)) {
            for (int64_t g = r; g < r + G; ++g) general(g);
        } else if constexpr (kOp != ShortOp::softmax) {
            first[waiting++] = r;
            if (waiting == kGroups) finish_waiting();
        }
    }
    if (waiting > 0) finish_waiting();
    for (; r < rows; ++r) {
        T row_max;
        double row_below, row_at;
        if (!short_rows<T, M, 1, kOp>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, &row_max, &row_below, &row_at)) {
            general(r);
        } else if constexpr (kOp != ShortOp::softmax) {
            const double log_sum = log_of_split_sum({row_below, row_at});
            short_rows_finish<kOp, M>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, 1, n,
                                      temperature, logsumexp + r * ls_step, ls_step, &row_max,
                                      &log_sum);
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
