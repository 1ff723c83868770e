// Rows in cache a group at a time (PendingRow): each row's scan, then the
// exp passes of the group (group_exp_sums), the normalizers and the last
// passes; and the single in-cache row, softmax and logsumexp.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "row_ahead.h"
#include "row_passes.h"
#include "sums.h"

FS_LEVEL_BEGIN

constexpr int64_t kGroupRows = 8;  // rows in a group, at most

// A row between its sum pass and its last pass. Rows are computed a group at
// a time (softmax_rows): the scans of every row of the group first, then
// their exp passes, then the last passes. The normalizers (a division, or a
// log whose dependency chain is some 80 cycles long) never stall their own
// row: softmax's come after the group's exp passes, side by side; the logs
// come four rows at a time between the exp passes (a full log_softmax group:
// after its last one; group_exp_sums).
template <class T>
struct PendingRow {
    T max;
    T scale;
    bool subnormal;  // some exp(d) may be subnormal: the careful exp form
    SplitSum sums;
};

// A row neither special nor wide (open_softmax_row, open_logsumexp_row) waits
// for its exp pass: its max, its scale and its exp form.
template <class T>
bool open_pending_row(const RowScan<T>& scan, T scale, PendingRow<T>& row) {
    row.max = scan.max;
    row.scale = scale;
    row.subnormal = !stays_normal(scan, scale);
    return true;
}

// A row's values for its exp pass, from its scan: false when the row is
// already done (special or wide values, written to y), true when it waits
// for its exp pass, normalizer and last pass.
template <class T>
bool open_softmax_row(const T* x, T* y, const uint8_t* mask, int64_t n, double temperature,
                      T scale, RowOp op, const RowScan<T>& scan, PendingRow<T>& row) {
    if (is_special(scan)) {
        fill_special_row(x, y, mask, n, scan, op);
        return false;
    }
    if (needs_wide(scan, temperature)) {
        wide_row_softmax(x, y, mask, n, scan.max, temperature, op);
        return false;
    }
    return open_pending_row(scan, scale, row);
}

// The scans of the next group's rows that this group's exp loops made
// (RowAhead::scan, scan_rest): ready[r] where row r's was made.
template <class T>
struct ScansAhead {
    RowScan<T> scan[kGroupRows];
    bool ready[kGroupRows] = {};
};

// The scans of a group's rows: those the previous group's exp loops made
// (taken from `ahead`), the others here.
template <class T>
FS_INLINE void scan_group(const T* x, int64_t x_stride, int64_t rows, int64_t n, double temperature,
                ScansAhead<T>& ahead, RowScan<T>* scan) {
    for (int64_t r = 0; r < rows; ++r) {
        scan[r] = open_row_scan(x + r * x_stride, n, temperature,
                                ahead.ready[r] ? &ahead.scan[r] : nullptr);
        ahead.ready[r] = false;
    }
}

// Pass 2 of softmax (exp stored) and log_softmax (d stored, split sum).
template <class T>
SplitSum softmax_exp_sums(const T* x, T* y, const uint8_t* mask, int64_t n,
                          const PendingRow<T>& row, RowOp op) {
    if (op == RowOp::softmax) {
        return row_exp_sums<T, Stored::exp, false>(x, y, mask, n, row.max, row.scale,
                                                   row.subnormal);
    }
    return row_exp_sums<T, Stored::centred, true>(x, y, mask, n, row.max, row.scale,
                                                  row.subnormal);
}

// log(sum) of the open rows among `rows` (at most kLogLanes) pending ones,
// in one vector (log_of_split_sums): the same bits as log_of_split_sum row
// by row.
template <class T>
void log_sums_of(const PendingRow<T>* pending, const bool* open, int64_t rows, double* log_sum) {
    LogLanes below{}, at = LogLanes{} + 1.0;
    for (int64_t j = 0; j < rows; ++j) {
        if (open[j]) {
            below[j] = pending[j].sums.below_max;
            at[j] = pending[j].sums.at_max;
        }
    }
    const LogLanes logs = log_of_split_sums(below, at);
    for (int64_t j = 0; j < rows; ++j) log_sum[j] = logs[j];
}

// Pass 2 over the open rows of a group (unmasked, one temperature): one
// call, the exp form picked once (the careful form where any row needs it:
// on a row of normal results it gives the same bits), so that the loop's
// constants stay in registers from row to row. carried[r], where its y is
// set, is a row of the previous group (same length) whose last pass rides in
// row r's exp loop: that pass is bound by loads and stores, the exp loop by
// the FMA pipes, and they overlap. With `ahead`, the next group (as many
// rows, the same strides) is prefetched (RowAhead), and with scans_ahead
// its rows are scanned there instead (where the exp keeps NaN: their scans
// have no NaN flag), each by the exp loop of the row as far up. With log_sum
// (split sums: log_softmax, logsumexp), log(sum) of each row goes there.
// kCarriedPass: the carried rows' last pass (LastPass::none: no row is
// carried). A log_softmax group that carries, where there are 32 vector
// registers (kCarriesFromX, level_kernels.cpp), stores nothing in its exp loops
// (Stored::nothing) and carries y = d - log(sum) from x (lower_from_x): the
// loop's stores of d, two 64-byte lines touched by each where y sits off a
// line, cost more than the carried pass's second subtraction.
// kAtLines: a group whose first row runs_at_lines (softmax, float, AVX-512)
// runs its rows' exp loops at y's lines, in an instance of its own: compiled
// into the same functions, the loops of short rows beside them came out 3-5%
// slower.
template <class T, Stored kStore, bool kSplit, LastPass kCarriedPass, bool kAtLines>
FS_INLINE void group_exp_sums_of(
    const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
    const bool* open, PendingRow<T>* pending, CarriedRow<T>* carried, bool ahead,
    ScansAhead<T>* scans_ahead, double* log_sum) {
    static_assert(!kScansAhead<T, true> || kExpKeepsNaN<T>);
    constexpr bool kScans =
        kScansAhead<T, kStore == Stored::exp || kCarriedPass == LastPass::lower_from_x>;
    if constexpr (kScans) {
        if (scans_ahead == nullptr || n < 4 * Simd<T>::lanes) ahead = false;
    }
    bool subnormal = false;
    T scale = T(1);
    for (int64_t r = 0; r < rows; ++r) {
        if (open[r]) subnormal = subnormal || pending[r].subnormal, scale = pending[r].scale;
    }
    // A full group of log_softmax rows takes its logs after its last exp pass
    // instead, where the work that follows is the next group's scans (bound by
    // loads) rather than exp passes (bound by the vector pipes).
    // Its in-loop logs are turned off through the pointer, not a new branch:
    // a test in the loop changed how the other rows' exp loop was compiled.
    constexpr bool kLogSoftmax =
        kStore == Stored::centred || kCarriedPass == LastPass::lower_from_x;
    const bool late_logs = kLogSoftmax && rows == kGroupRows;
    // Float rows whose exp loops store nothing (logsumexp, and log_softmax's
    // that carry) close their sums one row late (OpenSums): groups of rows of
    // 128 floats ran faster so; softmax rows, whose exp loops also store, ran
    // slower (csrc/README.md).
    constexpr bool kCloseLate = sizeof(T) == 4 && kStore == Stored::nothing;
    double* const quad_logs = late_logs ? nullptr : log_sum;
    with_exp_flags(subnormal, scale != T(1), [&](auto sub, auto scaled) {
        constexpr bool kSubnormal = decltype(sub)::value, kScaled = decltype(scaled)::value;
        const auto row_pass = [&](int64_t r) FS_INLINE_LAMBDA {
            const T* row_x = x + r * x_stride;
            T* row_y = kStore == Stored::nothing ? nullptr : y + r * y_stride;
            const bool carries = carried != nullptr && carried[r].y != nullptr;
            const CarriedRow<T> other = carries ? carried[r] : CarriedRow<T>{};
            RowAhead<T> next{};
            [[maybe_unused]] std::conditional_t<kScans, ScanLanes<T>, bool> next_lanes{};
            if (ahead) {
                T* next_y = kStore == Stored::nothing ? nullptr : row_y + rows * y_stride;
                next = row_ahead(row_x + rows * x_stride, next_y, rows, n);
                if constexpr (kScans) next.scan = &next_lanes;
            }
            const auto pass = [&](auto carry) FS_INLINE_LAMBDA {
                constexpr LastPass kCarried =
                    decltype(carry)::value ? kCarriedPass : LastPass::none;
                // A row whose exps end in zeros (a causal mask) stops its exp
                // loop before them (exp_end_before_zeros) where the loop stores
                // nothing, carries no row and scans none ahead (the carried
                // row's last pass and the scan need the whole length). softmax
                // rows, which store y, ran no faster so: their stores over the
                // zeros wait on memory without exps to hide it.
                const int64_t end = kSubnormal && kStore == Stored::nothing &&
                                            kCarried == LastPass::none && !kScans
                                        ? exp_end_before_zeros<T, kScaled>(row_x, n,
                                                                           pending[r].max, scale)
                                        : n;
                if constexpr (sizeof(T) == 4) {
                    const auto with_n = [&](int64_t count) FS_INLINE_LAMBDA {
                        return exp_sums_impl<T, kSubnormal, kScaled, kStore, kSplit, false,
                                             kCarried, kCloseLate, kScans, kAtLines>(
                            row_x, row_y, nullptr, count, pending[r].max, scale, other, next);
                    };
                    if (end < n) return with_n(end);
                    // Rows of exactly two or four blocks of four vectors (128 or
                    // 256 floats with AVX-512) with a constant length: the block
                    // loop unrolled whole, no chunk loop and no tail.
                    constexpr int64_t kBlock = 4 * Simd<T>::lanes;
                    static_assert(4 * kBlock == kChunk<T>);  // one chunk: no chunk loop
                    if (n == 2 * kBlock) return with_n(2 * kBlock);
                    if (n == 4 * kBlock) return with_n(4 * kBlock);
                    return with_n(n);
                } else {  // double rows ran slower with their loop inlined
                    return exp_sums_loop<T, kSubnormal, kScaled, kStore, kSplit, false, kCarried>(
                        row_x, row_y, nullptr, end, pending[r].max, scale, other, next);
                }
            };
            const auto sums = carries ? pass(std::true_type{}) : pass(std::false_type{});
            if (carries) carried[r] = {};
            if constexpr (kScans) {
                if (next.x != nullptr) {
                    const ScanLanes<T> lanes = scan_rest(next_lanes, next.x, n);
                    scans_ahead->scan[r] = {lanes_max(lanes.max), lanes_min(lanes.min), n, false};
                    scans_ahead->ready[r] = true;
                }
            }
            return sums;
        };
        OpenSums<T, kSplit> held_sums{};  // kCloseLate: row `held`'s, still open
        int64_t held = -1;
        const auto close_before = [&](int64_t r) FS_INLINE_LAMBDA {
            if (kCloseLate && held >= 0 && held < r) {
                pending[held].sums = held_sums.close();
                held = -1;
            }
        };
        for (int64_t r = 0; r < rows; ++r) {
            if (open[r]) {
                if constexpr (kCloseLate) {
                    const OpenSums<T, kSplit> sums = row_pass(r);
                    close_before(r);
                    held_sums = sums;
                    held = r;
                } else {
                    pending[r].sums = row_pass(r);
                }
            }
            // The logs of every four rows (unless late_logs) after the next row's
            // exp pass, the last four after the loop: the next rows' exp passes
            // then run beside the log's chain.
            if (kSplit && quad_logs != nullptr && r % kLogLanes == 0 && r > 0) {
                close_before(r);
                const int64_t first = r - kLogLanes;
                log_sums_of(pending + first, open + first, kLogLanes, quad_logs + first);
            }
        }
        close_before(rows);
        if (kSplit && quad_logs != nullptr && rows % kLogLanes == 0) {
            const int64_t first = rows - kLogLanes;
            log_sums_of(pending + first, open + first, kLogLanes, quad_logs + first);
        }
    });
    if (kSplit && log_sum != nullptr && late_logs) {
        static_assert(kGroupRows % kLogLanes == 0);
        for (int64_t first = 0; first < kGroupRows; first += kLogLanes) {
            log_sums_of(pending + first, open + first, kLogLanes, log_sum + first);
        }
    }
    if (kSplit && log_sum != nullptr && rows % kLogLanes != 0) {
        const int64_t first = rows - rows % kLogLanes;
        log_sums_of(pending + first, open + first, rows - first, log_sum + first);
    }
}

template <class T, Stored kStore, bool kSplit, LastPass kCarriedPass = LastPass::none>
void group_exp_sums(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows,
                    int64_t n, const bool* open, PendingRow<T>* pending,
                    CarriedRow<T>* carried, bool ahead, ScansAhead<T>* scans_ahead,
                    double* log_sum = nullptr) {
    const auto with_lines = [&](auto at_lines) {
        group_exp_sums_of<T, kStore, kSplit, kCarriedPass, decltype(at_lines)::value>(
            x, x_stride, y, y_stride, rows, n, open, pending, carried, ahead, scans_ahead,
            log_sum);
    };
    if (runs_at_lines<T, kStore>(x, y, n)) {
        with_lines(std::true_type{});
    } else {
        with_lines(std::false_type{});
    }
}

// softmax: 1 / sum; log_softmax: log(sum).
template <class T>
T row_normalizer(const SplitSum& sums, RowOp op) {
    if (op == RowOp::softmax) return static_cast<T>(1.0 / (sums.below_max + sums.at_max));
    return static_cast<T>(log_of_split_sum(sums));
}

// Pass 3: y *= 1 / sum (softmax), y = d - log(sum) (log_softmax, d stored
// by pass 2; a masked lane's d is -inf, so its result is -inf).
template <class T>
void finish_softmax_row(T* y, int64_t n, T normalizer, RowOp op) {
    if (op == RowOp::softmax) {
        last_pass_row<LastPass::scale>(y, n, normalizer);
    } else {
        last_pass_row<LastPass::lower>(y, n, normalizer);
    }
}

template <class T>
void softmax_row_in_cache(const T* x, T* y, const uint8_t* mask, int64_t n, double temperature,
                          RowOp op) {
    PendingRow<T> row;
    if (open_softmax_row(x, y, mask, n, temperature, scale_of<T>(temperature), op,
                         scan_row(x, mask, n), row)) {
        row.sums = softmax_exp_sums(x, y, mask, n, row, op);
        finish_softmax_row(y, n, row_normalizer<T>(row.sums, op), op);
    }
}

// logsumexp's values for its exp pass: false with the result in `done` for
// special and wide rows, true when the row waits for its exp pass and
// logsumexp_of.
template <class T>
bool open_logsumexp_row(const T* x, const uint8_t* mask, int64_t n, double temperature,
                        T scale, const RowScan<T>& scan, PendingRow<T>& row, double& done) {
    if (special_logsumexp(scan, done)) return false;
    if (needs_wide(scan, temperature)) {
        done = wide_row_logsumexp(x, mask, n, scan.max, temperature);
        return false;
    }
    return open_pending_row(scan, scale, row);
}

template <class T>
double logsumexp_of(const PendingRow<T>& row, double temperature) {
    return static_cast<double>(row.max) / temperature + log_of_split_sum(row.sums);
}

template <class T>
double logsumexp_row_in_cache(const T* x, const uint8_t* mask, int64_t n, double temperature) {
    PendingRow<T> row;
    double done;
    if (!open_logsumexp_row(x, mask, n, temperature, scale_of<T>(temperature),
                            scan_row(x, mask, n), row, done)) {
        return done;
    }
    row.sums = row_exp_sums<T, Stored::nothing, true>(x, nullptr, mask, n, row.max, row.scale,
                                                      row.subnormal);
    return logsumexp_of(row, temperature);
}

FS_LEVEL_END
