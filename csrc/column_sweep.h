// Columns: a reduction over a non-last axis whose neighbouring rows are
// adjacent in memory. Element k of column j is at x[k * x_stride + j], so a
// vector holds one element of `lanes` columns and every statistic is per
// lane: nothing is reduced across lanes and nothing is transposed.
//
// A tile of columns is swept whole rows at a time, in address order, with
// the per-column state (max, min, slot partials, lane totals) in arrays:
// rows stream through the cache however far apart they are (rows 4 KiB
// apart share cache sets, so reading a few columns down many rows came from
// memory).
//
// The sum of a column is taken in exactly the order the row passes take a
// row (sums.h): element r of a chunk goes to "slot" (accumulator
// (r / lanes) % 4, lane r % lanes) in the unrolled part, to accumulator 0 in
// the single-vector part and to accumulator 1 in the partial tail; the slots
// fold as ((0 + 1) + (2 + 3)) per lane into a per-lane double total, and
// lanes_total adds the lanes. Here a slot is a vector over columns. So a
// column gives bit for bit what its values give laid out as a row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "exp.h"
#include "kernel_table.h"
#include "row_passes.h"
#include "sums.h"

FS_LEVEL_BEGIN

// A column with a NaN, a +-inf max or a spread that overflows (see
// needs_wide) needs the row path.
template <class T>
bool needs_row_path(bool nan, T max, T min) {
    return nan || !std::isfinite(max) || (std::isfinite(min) && !std::isfinite(max - min));
}

// No exp(d) of the column is subnormal (as stays_normal for a row).
template <class T>
bool column_stays_normal(T max, T min, T scale) {
    return (min - max) * scale >= normal_exp_limit<T>;
}

template <class T>
struct SweepState {
    using S = Simd<T>;
    using Real = typename S::Real;
    static constexpr int64_t L = S::lanes;
    static constexpr int64_t kSlots = 4 * L;
    int64_t vectors;  // the tile's columns in vectors, the last one maybe partial
    std::vector<Real> max, min;
    // Slot rows of `vectors` each, as many as n rows can use (a row's slot is
    // below n + L), left uninitialized: a slot's first add is a copy.
    std::unique_ptr<Real[]> slots;
    std::vector<typename S::Ints> at_count;
    std::vector<LaneTotal<typename S::Doubles, kCompensatedTotals<T>>> totals;  // [vector][lane]
    SweepState(int64_t width, int64_t n)
        : vectors((width + L - 1) / L), max(size_t(vectors)), min(size_t(vectors)),
          slots(new Real[size_t(std::min(kSlots, n + L) * vectors)]), at_count(size_t(vectors)),
          totals(size_t(vectors * L)) {}
};

// Calls body(v, count) for each vector of a `width`-column tile: count lanes real.
template <class T, class Body>
FS_INLINE void for_each_column_vector(int64_t width, const Body& body) {
    constexpr int64_t L = Simd<T>::lanes;
    int64_t v = 0;
    for (; (v + 1) * L <= width; ++v) body(v, L);
    if (v * L < width) body(v, width - v * L);
}

// Per-column max and min; false if a column needs the row path.
template <class T>
bool sweep_scan(const T* x, int64_t x_stride, int64_t width, int64_t n, SweepState<T>& st) {
    using S = Simd<T>;
    using Real = typename S::Real;
    constexpr T inf = std::numeric_limits<T>::infinity();
    std::vector<typename S::Ints> nan(size_t(st.vectors));
    for (int64_t v = 0; v < st.vectors; ++v) {
        st.max[v] = broadcast<Real>(-inf);
        st.min[v] = broadcast<Real>(inf);
    }
    for (int64_t k = 0; k < n; ++k) {
        const T* row = x + k * x_stride;
        for_each_column_vector<T>(width, [&](int64_t v, int64_t count) {
            const Real value = load(row + v * S::lanes, count, T(0));
            st.max[v] = value > st.max[v] ? value : st.max[v];
            st.min[v] = value < st.min[v] ? value : st.min[v];
            nan[v] |= value != value;
        });
    }
    for (int64_t j = 0; j < width; ++j) {
        const int64_t v = j / S::lanes, lane = j % S::lanes;
        if (needs_row_path(nan[v][lane] != 0, st.max[v][lane], st.min[v][lane])) return false;
    }
    return true;
}

template <class T>
bool sweep_stays_normal(const SweepState<T>& st, int64_t width, T scale) {
    for (int64_t j = 0; j < width; ++j) {
        const int64_t v = j / Simd<T>::lanes, lane = j % Simd<T>::lanes;
        if (!column_stays_normal(st.max[v][lane], st.min[v][lane], scale)) return false;
    }
    return true;
}

// The sums of exp(d) per column (sum and at_max as the row kernel has them),
// exp(d) stored to y when kStore.
template <class T, bool kSubnormal, bool kScaled, bool kStore, bool kSplit>
void sweep_exp_sums(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t width,
                    int64_t n, T scale, SweepState<T>& st, double* sum, double* at_max) {
    using S = Simd<T>;
    using Real = typename S::Real;
    constexpr int64_t L = S::lanes;
    constexpr int64_t kSlots = SweepState<T>::kSlots;
    const int64_t vectors = st.vectors;
    const int64_t full_vectors = width / L;
    for (int64_t chunk = 0; chunk < n; chunk += kChunk<T>) {
        const int64_t m = n - chunk < kChunk<T> ? n - chunk : kChunk<T>;
        const int64_t unrolled = m / kSlots * kSlots;
        const int64_t singles = unrolled + (m - unrolled) / L * L;
        // A slot's first add goes to zero: it is a copy, so the slots need no
        // clearing, and a slot no row visits folds in as zero.
        bool visited[kSlots] = {};
        const auto sweep_row = [&](auto first, int64_t r, int64_t slot) {
            Real* acc = st.slots.get() + slot * vectors;
            const T* in = x + (chunk + r) * x_stride;
            T* out = y + (chunk + r) * y_stride;
            const auto add = [&](int64_t v, const Real& d, const Real& e)
                                 __attribute__((always_inline)) {
                if constexpr (decltype(first)::value) {
                    Real a{};
                    add_exp<kSplit>(a, st.at_count[v], d, e);
                    acc[v] = a;
                } else {
                    add_exp<kSplit>(acc[v], st.at_count[v], d, e);
                }
            };
            int64_t v = 0;
            for (; v + 4 <= full_vectors; v += 4) {  // four exps interleaved
                constexpr int K = 4;
                Real d[K], e[K];
                FS_EACH(k) e[k] = d[k] = centred<kScaled>(load(in + (v + k) * L, L, T(0)),
                                                          st.max[v + k], scale);
                exp_nonpositive_block<T, kSubnormal, K>(e);
                FS_EACH(k) {
                    if constexpr (kStore) store(out + (v + k) * L, e[k], L);
                    add(v + k, d[k], e[k]);
                }
            }
            for (; v < vectors; ++v) {
                const int64_t count = v < full_vectors ? L : width - v * L;
                const Real d = centred<kScaled>(load(in + v * L, count, T(0)), st.max[v], scale);
                const Real e = exp_nonpositive<T, kSubnormal>(d);
                if constexpr (kStore) store(out + v * L, e, count);
                add(v, d, e);
            }
        };
        for (int64_t r = 0; r < m; ++r) {
            const int64_t slot = r < unrolled ? r % kSlots
                                              : (r < singles ? (r - unrolled) % L : L + (r - singles));
            if (visited[slot]) {
                sweep_row(std::false_type{}, r, slot);
            } else {
                sweep_row(std::true_type{}, r, slot);
                visited[slot] = true;
            }
        }
        const auto slot = [&](int64_t q, int64_t v) {
            return visited[q] ? st.slots[size_t(q * vectors + v)] : Real{};
        };
        for (int64_t v = 0; v < vectors; ++v) {
            for (int64_t lane = 0; lane < L; ++lane) {
                const Real folded = (slot(lane, v) + slot(L + lane, v)) +
                                    (slot(2 * L + lane, v) + slot(3 * L + lane, v));
                st.totals[v * L + lane].add(widen<typename S::Doubles>(folded));
            }
        }
    }
    for (int64_t j = 0; j < width; ++j) {
        const int64_t v = j / L, column = j % L;
        sum[j] = lanes_total<kCompensatedTotals<T>>(L, [&](int64_t lane) {
            const auto& t = st.totals[v * L + lane];
            return std::pair<double, double>{t.sum[column], t.compensation[column]};
        });
        at_max[j] = double(st.at_count[v][column]);
    }
}

// Fills sum and at_max per column; false (nothing written) if a column is special.
template <class T, bool kStore, bool kSplit>
bool sweep_sums(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t width, int64_t n,
                T scale, SweepState<T>& st, double* sum, double* at_max) {
    if (!sweep_scan(x, x_stride, width, n, st)) return false;
    with_exp_flags(!sweep_stays_normal(st, width, scale), scale != T(1), [&](auto sub, auto scaled) {
        sweep_exp_sums<T, decltype(sub)::value, decltype(scaled)::value, kStore, kSplit>(
            x, x_stride, y, y_stride, width, n, scale, st, sum, at_max);
    });
    return true;
}

template <class T>
bool softmax_column_sweep(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t width,
                          int64_t n, double temperature, RowOp op) {
    using S = Simd<T>;
    using Real = typename S::Real;
    constexpr int64_t L = S::lanes;
    const T scale = scale_of<T>(temperature);
    SweepState<T> st(width, n);
    std::vector<double> sum(static_cast<size_t>(width)), at_max(static_cast<size_t>(width));
    std::vector<Real> factor(size_t(st.vectors));  // softmax: 1 / sum; log_softmax: log(sum)
    const bool softmax = op == RowOp::softmax;
    const bool done = softmax ? sweep_sums<T, true, false>(x, x_stride, y, y_stride, width, n,
                                                           scale, st, sum.data(), at_max.data())
                              : sweep_sums<T, false, true>(x, x_stride, y, y_stride, width, n,
                                                           scale, st, sum.data(), at_max.data());
    if (!done) return false;
    for (int64_t j = 0; j < width; ++j) {
        factor[j / L][j % L] = softmax ? static_cast<T>(1.0 / (sum[j] + at_max[j]))
                                       : static_cast<T>(log_of_split_sum({sum[j], at_max[j]}));
    }
    const int64_t full_vectors = width / L;
    for (int64_t k = 0; k < n; ++k) {
        const T* in = x + k * x_stride;
        T* out = y + k * y_stride;
        if (softmax) {
            int64_t v = 0;
            for (; v + 4 <= full_vectors; v += 4) {  // loads before stores: a load behind a store to an address 4 KiB apart waits on it
                Real block[4];
                FS_EACH4(q) block[q] = load(out + (v + q) * L, L, T(0));
                FS_EACH4(q) store(out + (v + q) * L, block[q] * factor[v + q], L);
            }
            for (; v < st.vectors; ++v) {
                const int64_t count = v < full_vectors ? L : width - v * L;
                store(out + v * L, load(out + v * L, count, T(0)) * factor[v], count);
            }
        } else {
            for_each_column_vector<T>(width, [&](int64_t v, int64_t count) {
                const Real value = load(in + v * L, count, T(0));
                store(out + v * L, log_softmax_of(value, st.max[v], scale, factor[v]), count);
            });
        }
    }
    return true;
}

template <class T>
bool logsumexp_column_sweep(const T* x, int64_t x_stride, T* y, int64_t y_step, int64_t width,
                            int64_t n, double temperature) {
    const T scale = scale_of<T>(temperature);
    SweepState<T> st(width, n);
    std::vector<double> sum(static_cast<size_t>(width)), at_max(static_cast<size_t>(width));
    if (!sweep_sums<T, false, true>(x, x_stride, nullptr, 0, width, n, scale, st, sum.data(),
                                    at_max.data())) {
        return false;
    }
    for (int64_t j = 0; j < width; ++j) {
        y[j * y_step] = static_cast<T>(double(st.max[j / Simd<T>::lanes][j % Simd<T>::lanes]) /
                                           temperature +
                                       log_of_split_sum({sum[j], at_max[j]}));
    }
    return true;
}

FS_LEVEL_END
