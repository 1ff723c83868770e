// Rows too long to stay in cache between passes (from their online threshold:
// kernel_table.h): the online normalizer (Milakov & Gimelshein 2018), by chunks.
// Pass 1 reads each chunk from memory once (scan) and again from L1 (exp
// and split sum relative to the chunk's max), merging (max, sums) into the
// row's as it goes; pass 2 writes y. softmax and log_softmax read x twice
// and write y once; logsumexp reads x once. Each chunk is summed by the row
// passes' code, so the sums keep their bound.
#pragma once

#include <cmath>
#include <limits>

#include "kernel_table.h"
#include "row_passes.h"

FS_LEVEL_BEGIN

// Elements an online chunk scans from memory and sums again from L1.
constexpr int64_t kOnlineChunk = 2048;

template <class T>
struct OnlineRow {
    RowScan<T> scan;  // over the whole row
    SplitSum sums;    // relative to scan.max
};

template <class T>
OnlineRow<T> online_row(const T* x, const uint8_t* mask, int64_t n, T scale) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    RowScan<T> row{-inf, inf, 0, false};
    CompensatedSum below;
    double at = 0.0;
    for (int64_t start = 0; start < n; start += kOnlineChunk) {
        const int64_t m = n - start < kOnlineChunk ? n - start : kOnlineChunk;
        const uint8_t* chunk_mask = mask == nullptr ? nullptr : mask + start;
        const RowScan<T> chunk = scan_row(x + start, chunk_mask, m);
        row.active += chunk.active;
        row.has_nan = row.has_nan || chunk.has_nan;
        row.min = chunk.min < row.min ? chunk.min : row.min;
        if (row.has_nan || chunk.max == inf || row.max == inf) {  // the row is special
            row.max = chunk.max > row.max ? chunk.max : row.max;
            continue;
        }
        if (chunk.active == 0 || chunk.max == -inf) continue;  // adds nothing
        // The next chunk comes into L1 while this one's exps run, so that its
        // scan does not wait on memory.
        const RowAhead<T> next{start + 2 * kOnlineChunk <= n ? x + start + kOnlineChunk : nullptr};
        const SplitSum s = row_exp_sums<T, Stored::nothing, true>(x + start, nullptr, chunk_mask, m,
                                                        chunk.max, scale,
                                                        !stays_normal(chunk, scale), next);
        if (chunk.max > row.max) {  // rescale what was summed to the new max
            const double factor =
                row.max == -inf ? 0.0
                                : std::exp((double(row.max) - double(chunk.max)) * double(scale));
            const double previous = (below.value() + at) * factor;
            below = CompensatedSum{};
            below.add(previous);
            below.add(s.below_max);
            at = s.at_max;
            row.max = chunk.max;
        } else if (chunk.max == row.max) {
            below.add(s.below_max);
            at += s.at_max;
        } else {
            const double factor = std::exp((double(chunk.max) - double(row.max)) * double(scale));
            below.add((s.below_max + s.at_max) * factor);
        }
    }
    return {row, {below.value(), at}};
}

// Online pass 2 of softmax: y = exp((x - max) * scale) * inverse_sum, y
// streamed past the caches if `stream`.
template <class T, bool kSubnormal, bool kScaled>
void exp_scale_store(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale,
                     T inverse_sum, bool stream) {
    using Real = typename Simd<T>::Real;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const auto visit = [&](int64_t i, int64_t count, auto streaming) FS_INLINE_LAMBDA {
        Real v = load(x + i, count, neg_inf);
        if (mask != nullptr) v = load_mask<T>(mask + i, count) ? v : broadcast<Real>(neg_inf);
        const Real d = centred<kScaled>(v, max, scale);
        const Real e = mask != nullptr ? exp_nonpositive<T, true>(d)
                                       : exp_of_lanes<T, kSubnormal>(d, count);
        store_output(y + i, e * inverse_sum, count, streaming);
    };
    visit_output_vectors<T>(y, n, stream, visit);
}

template <class T>
void softmax_row_online(const T* x, T* y, const uint8_t* mask, int64_t n, double temperature,
                        RowOp op, bool stream = false) {
    const T scale = scale_of<T>(temperature);
    const OnlineRow<T> row = online_row(x, mask, n, scale);
    if (is_special(row.scan)) {
        fill_special_row(x, y, mask, n, row.scan, op);
        return;
    }
    if (needs_wide(row.scan, temperature)) {
        wide_row_softmax(x, y, mask, n, row.scan.max, temperature, op);
        return;
    }
    if (op == RowOp::log_softmax) {
        subtract_row(x, y, mask, n, row.scan.max, scale, static_cast<T>(log_of_split_sum(row.sums)),
                     stream);
        return;
    }
    const T inverse = static_cast<T>(1.0 / (row.sums.below_max + row.sums.at_max));
    with_exp_flags(!stays_normal(row.scan, scale), scale != T(1), [&](auto sub, auto scaled) {
        exp_scale_store<T, decltype(sub)::value, decltype(scaled)::value>(x, y, mask, n,
                                                                          row.scan.max, scale,
                                                                          inverse, stream);
    });
}

template <class T>
double logsumexp_row_online(const T* x, const uint8_t* mask, int64_t n, double temperature) {
    const OnlineRow<T> row = online_row(x, mask, n, scale_of<T>(temperature));
    double special;
    if (special_logsumexp(row.scan, special)) return special;
    if (needs_wide(row.scan, temperature)) {
        return wide_row_logsumexp(x, mask, n, row.scan.max, temperature);
    }
    return static_cast<double>(row.scan.max) / temperature + log_of_split_sum(row.sums);
}

FS_LEVEL_END
