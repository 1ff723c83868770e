// Rows of at most kShortRowVectors vectors (class scores, short sequences):
// three passes over such a row spend their time waiting on latencies (the
// horizontal max, the exp's FMA chain, the lane totals, a division) with
// the core mostly idle. Here each row is loaded once and stays in registers
// from the scan to the one store, and a few rows go together so that their
// dependency chains interleave; the logs of a group's log_softmax or
// logsumexp rows are taken together, a lane a row, in one vector (two
// groups' in one call where there are 16 vector registers).
#pragma once

#include <limits>
#include <type_traits>
#include <utility>

#include "exp.h"
#include "row_ahead.h"
#include "row_passes.h"
#include "sums.h"

FS_LEVEL_BEGIN

// The sums take exp_sums' order exactly (blocks of four full vectors into
// four accumulators, the full vectors left into accumulator 0, a partial
// tail into accumulator 1), so a short row gets the bits the general passes
// give.
// Special and wide rows return false (the general path takes them).
enum class ShortOp { softmax, log_softmax, logsumexp };

// Softmax rows of five to eight vectors fit two to a group where there are
// 32 registers, and ran faster so than through the general passes on an
// Intel core (for rows of eight full vectors on AMD's, see
// block_rows_in_groups() in kernel_table.h); with their log's chain to wait
// on, log_softmax and logsumexp rows did not.
template <ShortOp kOp>
constexpr int kShortRowVectors = kOp == ShortOp::softmax && kVectorRegisters == 32 ? 8 : 4;

// The logs of a group's rows: G lanes of doubles, at least LogLanes' four.
template <int G>
struct GroupLogsOf {
    typedef double type __attribute__((vector_size((G > kLogLanes ? G : kLogLanes) * 8)));
};

// A group's split sums (lane g: row g's), left for a log taken with the next
// group's (`short_rows_of`), and its maxima (logsumexp).
template <int G>
struct PendingLogs {
    using Logs = typename GroupLogsOf<G>::type;
    Logs below{}, at = Logs{} + 1.0, max{};  // log(0 + 1) = 0: a group that left
};

// G rows of M vectors each (rows g at x + g * x_stride, y likewise, the
// logsumexp of row g at logsumexp[g * ls_step]): with G > 1 the rows'
// dependency chains (max, exp, sum, division, log) interleave, which a row of
// one or two vectors needs: alone it waits on latencies. With `pending`
// (log_softmax, logsumexp), the group's logs are left to the caller: its
// split sums and maxima go there, and log_softmax stores d (rounded, as
// log_softmax_of) for finish_log_softmax_rows.
template <class T, int M, int G, ShortOp kOp, bool kFull>
bool short_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t n,
                double temperature, T* logsumexp, int64_t ls_step,
                PendingLogs<G>* pending = nullptr) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr int64_t L = S::lanes;
    constexpr int K = M * G;  // vector k of row g is v[g * M + k]
    constexpr T inf = std::numeric_limits<T>::infinity();
    // Elements in a row's last vector: 1 .. L (kFull: L, and `live` every lane,
    // known to the compiler).
    const int64_t tail = kFull ? L : n - (M - 1) * L;
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
    Ints nan[G] = {};
    for (int g = 0; g < G; ++g) {
        const Real* row = v + g * M;
        high[g] = live ? row[M - 1] : broadcast<Real>(-inf);
        low[g] = live ? row[M - 1] : broadcast<Real>(inf);
        if constexpr (!kExpKeepsNaN<T>) {
            // One unordered comparison for two vectors (a scan operation a
            // vector less): the pairs from the front, and the last vector
            // alone or beside the one before it.
            constexpr int kPaired = M % 2 == 0 ? M - 2 : M - 1;  // vectors in front pairs
            if constexpr (M % 2 == 0) {
                nan[g] = unordered(row[M - 2], high[g]);
            } else {
                nan[g] = high[g] != high[g];
            }
            for (int k = 0; k < kPaired; k += 2) nan[g] |= unordered(row[k], row[k + 1]);
        }
        // A NaN enters only from the last vector (its first value), and then
        // the row leaves below, or (kExpKeepsNaN) its sum is NaN.
        for (int k = 0; k + 1 < M; ++k) {
            high[g] = row[k] > high[g] ? row[k] : high[g];
            low[g] = row[k] < low[g] ? row[k] : low[g];
        }
    }
    // The G rows' lane folds packed together (max and min are exact in any order).
    const Real maxima = fold_lanes_of(high, [](auto a, auto b) { return a > b ? a : b; });
    const Real minima = fold_lanes_of(low, [](auto a, auto b) { return a < b ? a : b; });
    // Where the exp keeps NaN, a NaN beside a finite max makes its row's sum,
    // and so every value of the row, NaN (as open_row_scan); rows found
    // special otherwise go to the general path, which looks for NaN.
    Ints nans{};
    if constexpr (!kExpKeepsNaN<T>) nans = fold_lanes_of(nan, [](auto a, auto b) { return a | b; });
    for (int g = 0; g < G; ++g) {
        scan[g] = {maxima[g], minima[g], n, nans[g] != 0};
        if (is_special(scan[g]) || needs_wide(scan[g], temperature)) return false;
    }
    const T scale = scale_of<T>(temperature);
    for (int g = 0; g < G; ++g) stays = stays && stays_normal(scan[g], scale);
    with_exp_flags(!stays, scale != T(1), [&](auto sub, auto scaled) FS_INLINE_LAMBDA {
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
        Real totals[G];  // a row's accumulators added, in the row's type
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
                // (acc[0] + acc[1]) + (acc[2] + acc[3]) without the accumulators
                // that took nothing: an add of +0 to a sum of exps changes no
                // bit, and it is a latency on the row's chain.
                constexpr bool kTook[4] = {full > 0, blocked > 1 || full < M, blocked > 2,
                                           blocked > 3};
                const auto pair = [&](int a, int b) FS_INLINE_LAMBDA {
                    return kTook[a] && kTook[b] ? acc[a] + acc[b] : kTook[b] ? acc[b] : acc[a];
                };
                if constexpr (kTook[2] || kTook[3]) {
                    totals[g] = pair(0, 1) + pair(2, 3);
                } else {
                    totals[g] = pair(0, 1);
                }
                at_counts[g] = at_count;
            }
        };
        if (tail == L) {
            add_rows(std::integral_constant<int, M>{});
        } else {
            add_rows(std::integral_constant<int, M - 1>{});
        }
        // Lane g: row g's SplitSum (below the max, at it).
        const auto [below, at] = [&] {
            if constexpr (!kCompensatedTotals<T>) {  // float rows: lanes_sum's tree, G rows at once
                const auto below = widened_sum_lanes_of(totals);
                using Sums = std::remove_cvref_t<decltype(below)>;
                const Ints at = fold_lanes_of(at_counts, [](auto a, auto b) { return a + b; });
                return std::pair{below, kSplit ? low_lanes_as<Sums>(at) : Sums{}};
            } else {  // double rows: lanes_total's compensated order, G rows at once
                using Sums = typename GroupLogsOf<G>::type;
                CompensatedSums<Sums> below;
                for (int64_t j = 0; j < L; ++j) {
                    Sums lane{};
                    for (int g = 0; g < G; ++g) lane[g] = double(totals[g][j]);
                    below.add(lane);  // (each lane's compensation, 0 here, adds nothing)
                }
                Sums at{};
                for (int g = 0; g < G; ++g) at[g] = kSplit ? double(lanes_sum(at_counts[g])) : 0.0;
                return std::pair{below.value(), at};
            }
        }();
        if constexpr (kSplit) {
            // The general passes' expressions (log_of_split_sum, logsumexp_of,
            // subtract_row), the G rows' logs in one vector no wider than G
            // needs (the divisions cost by the lane), other lanes log 1.
            using Logs = typename GroupLogsOf<G>::type;
            const auto used = lane_indices<typename LogBitsOf<Logs>::type>() < G;
            Logs logs[1] = {used ? low_lanes_as<Logs>(below) : Logs{}};
            const Logs ats[1] = {used ? low_lanes_as<Logs>(at) : Logs{} + 1.0};
            if (pending != nullptr) {
                *pending = {logs[0], ats[0], low_lanes_as<Logs>(maxima)};
                if constexpr (kOp == ShortOp::log_softmax) {
                    FS_EACH(q) {
                        Real centred_q = d[q];
                        if constexpr (kScaled) opaque(centred_q);
                        store(y + (q / M) * y_stride + (q % M) * L, centred_q,
                              last(q) ? tail : L);
                    }
                }
                return;
            }
            log_of_split_sums(logs, ats);
            if constexpr (kOp == ShortOp::logsumexp) {
                const Logs max = low_lanes_as<Logs>(maxima);
                const Logs total = (temperature == 1.0 ? max : max / temperature) + logs[0];
                for (int g = 0; g < G; ++g) logsumexp[g * ls_step] = static_cast<T>(total[g]);
            } else {
                for (int g = 0; g < G; ++g) {
                    const T log_sum = static_cast<T>(logs[0][g]);
                    _Pragma("GCC unroll 8") for (int k = 0; k < M; ++k) {
                        store(y + g * y_stride + k * L,
                              log_softmax_of(v[g * M + k], scan[g].max, scale, log_sum),
                              k + 1 < M ? L : tail);
                    }
                }
            }
        } else {
            // The division in a vector no wider than G needs (as the logs).
            using Narrow = typename GroupLogsOf<G>::type;
            const auto used = lane_indices<typename LogBitsOf<Narrow>::type>() < G;
            const Narrow inverse = 1.0 / (used ? low_lanes_as<Narrow>(below + at) : Narrow{} + 1.0);
            for (int g = 0; g < G; ++g) {
                T* out = y + g * y_stride;
                const Real* eg = e + g * M;
                const T factor = static_cast<T>(inverse[g]);
                _Pragma("GCC unroll 8") for (int k = 0; k < M; ++k) {
                    store(out + k * L, eg[k] * factor, k + 1 < M ? L : tail);
                }
            }
        }
    });
    return true;
}

// y -= log_sum over a short row whose d is stored (the bits of log_softmax_of).
template <class T>
FS_INLINE void subtract_short_row(T* y, int64_t n, T log_sum) {
    for (int64_t i = 0; i < n; i += Simd<T>::lanes) {
        const int64_t count = n - i < Simd<T>::lanes ? n - i : Simd<T>::lanes;
        store(y + i, load(y + i, count, T(0)) - log_sum, count);
    }
}

// Rows of M <= kShortRowVectors vectors, `rows` of them, a group at a time;
// a group holding a special or wide row goes row by row through `general`.
template <ShortOp kOp, int M, bool kFull, class T, class General>
void short_rows_of(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                   double temperature, T* logsumexp, int64_t ls_step, const General& general) {
    // Rows per group, the fastest measured: more rows than that run out of
    // registers, fewer leave latencies exposed (the group's log above all,
    // whose chain one group alone waits on). Eight rows of up to two vectors
    // where there are 32 registers, else four; two of five to eight vectors.
    // The packed lane folds take at most one row a lane.
    constexpr int kRows = kVectorRegisters == 32 && M <= 2 ? 8 : M <= 4 ? 4 : 2;
    constexpr int G = kRows < Simd<T>::lanes ? kRows : int(Simd<T>::lanes);
    // The rows whose x is 4 KiB of row data ahead (short_rows' prefetch).
    const int64_t row_bytes = n * int64_t(sizeof(T));
    const bool prefetch = row_bytes > kShortPrefetchRowBytes;
    const int64_t ahead = (kShortAheadBytes + row_bytes - 1) / row_bytes;
    int64_t r = 0;
    if constexpr (kOp != ShortOp::softmax && kVectorRegisters <= 16) {
        // Two groups' logs in one call, their chains interleaved: a group's
        // log is a long chain (log1p in double, two divisions), which one
        // group alone waits on, and eight rows in one group ran out of
        // registers.
        for (; r + 2 * G <= rows; r += 2 * G) {
            if (prefetch && r + ahead + 2 * G <= rows) {
                prefetch_rows(x + (r + ahead) * x_stride, x_stride, 2 * G, n);
            }
            PendingLogs<G> pending[2];
            bool done[2];
            for (int h = 0; h < 2; ++h) {
                const int64_t first = r + h * G;
                done[h] = short_rows<T, M, G, kOp, kFull>(x + first * x_stride, x_stride,
                                                   y + first * y_stride, y_stride, n, temperature,
                                                   logsumexp + first * ls_step, ls_step,
                                                   &pending[h]);
                if (!done[h]) pending[h] = {};
            }
            typename PendingLogs<G>::Logs logs[2] = {pending[0].below, pending[1].below};
            const typename PendingLogs<G>::Logs ats[2] = {pending[0].at, pending[1].at};
            log_of_split_sums(logs, ats);
            for (int h = 0; h < 2; ++h) {
                const int64_t first = r + h * G;
                if (!done[h]) {
                    for (int64_t g = first; g < first + G; ++g) general(g);
                    continue;
                }
                for (int g = 0; g < G; ++g) {
                    if constexpr (kOp == ShortOp::logsumexp) {
                        const double max = pending[h].max[g];
                        const double total = (temperature == 1.0 ? max : max / temperature) +
                                             logs[h][g];
                        logsumexp[(first + g) * ls_step] = static_cast<T>(total);
                    } else {
                        subtract_short_row<T>(y + (first + g) * y_stride, n,
                                              static_cast<T>(logs[h][g]));
                    }
                }
            }
        }
    }
    for (; r + G <= rows; r += G) {
        if (prefetch && r + ahead + G <= rows) {
            prefetch_rows(x + (r + ahead) * x_stride, x_stride, G, n);
        }
        if (!short_rows<T, M, G, kOp, kFull>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, logsumexp + r * ls_step, ls_step)) {
            for (int64_t g = r; g < r + G; ++g) general(g);
        }
    }
    for (; r < rows; ++r) {
        if (!short_rows<T, M, 1, kOp, kFull>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, logsumexp + r * ls_step, ls_step)) {
            general(r);
        }
    }
}

// Whether rows of n elements suit the short-row kernels of kOp.
template <ShortOp kOp, class T>
constexpr bool short_rows_hold(int64_t n) {
    return n > 0 && (n + Simd<T>::lanes - 1) / Simd<T>::lanes <= kShortRowVectors<kOp>;
}

// True when n suits the short-row kernels (short_rows_hold; then they did
// every row), false having done nothing.
template <ShortOp kOp, class T, class General>
bool short_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                double temperature, T* logsumexp, int64_t ls_step, const General& general) {
    const int64_t vectors = (n + Simd<T>::lanes - 1) / Simd<T>::lanes;
    if (!short_rows_hold<kOp, T>(n)) return false;
    [&]<int... m>(std::integer_sequence<int, m...>) {
        // Rows whose last vector is full take a kernel compiled for that:
        // otherwise the lanes of the last vector are picked by blends, on
        // every chain of the row.
        (void)((vectors == m + 1 &&
                (n == (m + 1) * Simd<T>::lanes
                     ? short_rows_of<kOp, m + 1, true>(x, x_stride, y, y_stride, rows, n,
                                                       temperature, logsumexp, ls_step, general)
                     : short_rows_of<kOp, m + 1, false>(x, x_stride, y, y_stride, rows, n,
                                                        temperature, logsumexp, ls_step, general),
                 true)) ||
               ...);
    }(std::make_integer_sequence<int, kShortRowVectors<kOp>>{});
    return true;
}


FS_LEVEL_END
