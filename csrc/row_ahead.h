// The next group's rows, fetched into cache while this group's exp loops
// run (softmax_rows): that group's scans then read from cache, not memory.
// A group's scans are bound by memory and its exp loops by the FMA pipes;
// without the prefetch the two never overlapped. y is fetched for writing
// where the exp pass writes it first. Some float rows are scanned there
// instead (kScansAhead, ScanLanes).
#pragma once

#include <cstdint>
#include <limits>

#include "simd.h"

FS_LEVEL_BEGIN

// The max and min lanes of a row of the next group, scanned by an exp loop
// of this group (RowAhead::scan): the loop loads that row's x in place of
// prefetching it, and its max and min ride on the pipes the exp leaves
// free, where the group's own scan pass cost a load and two operations a
// vector more.
template <class T>
struct ScanLanes {
    using Real = typename Simd<T>::Real;
    Real max = broadcast<Real>(-std::numeric_limits<T>::infinity());
    Real min = broadcast<Real>(std::numeric_limits<T>::infinity());
    FS_INLINE void add(const Real& v) {
        max = v > max ? v : max;  // NaN never enters
        min = v < min ? v : min;
    }
};

// Where the exp loops scan the rows ahead instead of prefetching them:
// float rows whose exp loop is lean enough (kLeanLoop: softmax's, and
// log_softmax's that store nothing and carry y from x) where the exp keeps
// NaN (their scans need no NaN flag: open_row_scan). log_softmax's loops that
// store d hold more registers, and ran slower so.
template <class T, bool kLeanLoop>
constexpr bool kScansAhead = kTableEntries > 0 && sizeof(T) == 4 && kLeanLoop;

template <class T>
struct RowAhead {
    const T* x = nullptr;
    T* y = nullptr;  // nullptr: nothing is written (logsumexp)
    bool into_l1 = true;
    // With kScansAhead, where the exp loop leaves the lanes of x's whole
    // blocks of four vectors.
    ScanLanes<T>* scan = nullptr;
};

// A next group of more than this (x and y) goes to L2 only (prefetcht1):
// fetched into L1 it evicted the group being worked on, and rows already in
// L2 ran slower with the prefetch than without it.
constexpr int64_t kPrefetchL1Bytes = int64_t(16) << 10;

// The next group: `rows` rows of n elements starting at x (and y).
template <class T>
RowAhead<T> row_ahead(const T* x, T* y, int64_t rows, int64_t n) {
    const int64_t bytes = rows * n * int64_t(sizeof(T)) * (y != nullptr ? 2 : 1);
    return {x, y, bytes <= kPrefetchL1Bytes};
}

// Prefetches the lines of elements [i, i + 4 vectors) of the row ahead, or
// (kScans) scans them into `lanes`. The loop holds one or the other: with the
// prefetches compiled in beside the scan, it ran slower.
template <bool kScans, class T>
FS_INLINE void prefetch_block(const RowAhead<T>& ahead, int64_t i, ScanLanes<T>& lanes) {
    constexpr int64_t kLine = 64, kBlockBytes = 4 * kVectorBytes;
    if (ahead.x == nullptr) return;
    if constexpr (kScans) {
        FS_EACH4(k) lanes.add(load(ahead.x + i + k * Simd<T>::lanes, Simd<T>::lanes, T(0)));
        return;
    }
    _Pragma("GCC unroll 8") for (int64_t b = 0; b < kBlockBytes; b += kLine) {
        const char* x = reinterpret_cast<const char*>(ahead.x + i) + b;
        char* y = ahead.y != nullptr ? reinterpret_cast<char*>(ahead.y + i) + b : nullptr;
        if (ahead.into_l1) {  // the locality must be a constant
            __builtin_prefetch(x, 0, 3);
            if (y != nullptr) __builtin_prefetch(y, 1, 3);
        } else {
            __builtin_prefetch(x, 0, 2);
            if (y != nullptr) __builtin_prefetch(y, 1, 2);
        }
    }
}

// Short rows (short_rows.h) of more than kShortPrefetchRowBytes fetch x of
// the rows kShortAheadBytes ahead into L1 as they go: out of L2 their loads
// came too late for the hardware's prefetch, and the rows waited on L3.
// Shorter rows lost more to the prefetches than they gained, and so did
// fetching y for writing.
constexpr int64_t kShortAheadBytes = int64_t(4) << 10;
constexpr int64_t kShortPrefetchRowBytes = 192;

// Every line of `rows` rows of n elements, rows `stride` apart, into L1.
template <class T>
FS_INLINE void prefetch_rows(const T* x, int64_t stride, int rows, int64_t n) {
    constexpr std::uintptr_t kLine = 64;
    for (int g = 0; g < rows; ++g) {
        const std::uintptr_t row = reinterpret_cast<std::uintptr_t>(x + g * stride);
        const std::uintptr_t end = row + std::uintptr_t(n) * sizeof(T);
        for (std::uintptr_t line = row & ~(kLine - 1); line < end; line += kLine) {
            __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 3);
        }
    }
}

FS_LEVEL_END
