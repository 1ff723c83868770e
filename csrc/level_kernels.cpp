// The kernels of one SIMD level: this file is compiled once per level by
// CMake, with that level's flags (-mavx2 -mfma, -mavx512f ..., nothing for
// the baseline), FASTSOFTMAX_LEVEL (the namespace, and the name info()
// reports) and FASTSOFTMAX_VECTOR_BYTES (16, 32 or 64). It includes the
// kernel headers, one concern each, and fills the level's table
// (kernel_table.h, where the entry points' contracts are):
//
//   simd.h          vector types, tail loads and stores, lane folds
//   exp.h           exp(d) for d <= 0, with its error contract
//   sums.h          the summation order and the precision of the sums
//   row_passes.h    scan, exp and sum, scale / subtract; special and wide rows
//   online_rows.h   rows too long for the cache: the online normalizer
//   short_rows.h    rows of a few vectors (at most four; softmax eight), in registers
//   column_sweep.h  reductions over a non-last axis, no transpose
//   half.h          float16 / bfloat16 conversion
#include "column_sweep.h"
#include "exp.h"
#include "half.h"
#include "kernel_table.h"
#include "online_rows.h"
#include "row_groups.h"
#include "row_passes.h"
#include "short_rows.h"

FS_LEVEL_BEGIN

// Where softmax rows go online by default. The online softmax saves a read
// and a write of y but takes a second exp an element: with AVX-512's exp
// (the 16-entry table, 512-bit vectors) that pays from rows that leave L2,
// as log_softmax's does (0: log_softmax's threshold, online_base_bytes());
// on the other levels (AVX2's 8-entry table, the polynomial of SSE2 and
// NEON) the three passes stayed ahead for every row measured up to 32 MB
// (csrc/README.md, "Rows beyond the cache"). AVX-512's float64 rows, whose
// exp is the polynomial, take the float threshold: not measured apart.
constexpr int64_t kSoftmaxOnlineRowBytes = kTableEntries == 16 ? 0 : int64_t(32) << 20;

template <class T>
bool online_sized(int64_t n, RowWork work) {
    return takes_online_path(n * int64_t(sizeof(T)), work, kSoftmaxOnlineRowBytes);
}

template <class T>
void softmax_row(const T* x, T* y, const uint8_t* mask, int64_t n, double temperature,
                 RowOp op) {
    if (online_sized<T>(n, row_work(op))) {
        softmax_row_online(x, y, mask, n, temperature, op);
    } else {
        softmax_row_in_cache(x, y, mask, n, temperature, op);
    }
}

template <class T>
double logsumexp_row(const T* x, const uint8_t* mask, int64_t n, double temperature) {
    if (online_sized<T>(n, RowWork::logsumexp)) return logsumexp_row_online(x, mask, n, temperature);
    return logsumexp_row_in_cache(x, mask, n, temperature);
}

// In-cache rows go in groups (PendingRow in row_groups.h): up to
// kGroupRows rows (row_groups.h) and about `bytes` of input. On an Intel
// core the softmax and log_softmax groups had to keep x, y and the carried
// rows' y in L1 for their last pass, beside the next group's prefetch (less
// with AVX-512's wider rows, whose exp loops hide less behind a group):
// kGroupBytes, the level's own budget. Zen cores take a larger one
// (group_bytes(), kernel_table.h). logsumexp groups read x only.
constexpr int64_t kGroupBytes = int64_t(kVectorBytes == 64 ? 4 : 8) << 10;
constexpr int64_t kReadOnlyGroupBytes = int64_t(16) << 10;

template <class T>
int64_t group_rows(int64_t n, int64_t bytes) {
    const int64_t fit = bytes / (n * int64_t(sizeof(T)));
    return fit < 1 ? 1 : fit > kGroupRows ? kGroupRows : fit;
}

// Rows up to 64 KB carry the previous group's last pass in their exp loops:
// measured faster up to rows of 16384 floats and slower from 32000,
// where the rows no longer stay in L2 between their passes.
constexpr int64_t kCarryBytes = int64_t(64) << 10;

template <class T>
bool carries_last_pass(int64_t n) {
    return n * int64_t(sizeof(T)) <= kCarryBytes;
}

// The last pass of the carried rows no exp loop took.
template <class T>
void finish_carried(CarriedRow<T> (&carried)[kGroupRows], int64_t n, RowOp op) {
    for (CarriedRow<T>& row : carried) {
        if (row.y == nullptr) continue;
        if (row.x != nullptr) {
            subtract_row(row.x, row.y, static_cast<const uint8_t*>(nullptr), n, row.max,
                         row.scale, row.by, false);
        } else {
            finish_softmax_row(row.y, n, row.by, op);
        }
        row = {};
    }
}

// Whether the group of `rows` rows of n elements starting at row `first` of
// `total` prefetches the next one (RowAhead; some float groups scan it):
// when a whole group follows and its rows are at most kPrefetchRowBytes.
// Rows beyond that do not stay in cache until their scan: the prefetch only
// doubled their memory traffic.
constexpr int64_t kPrefetchRowBytes = int64_t(1) << 20;

template <class T>
bool prefetches_next(int64_t first, int64_t rows, int64_t total, int64_t n) {
    return first + 2 * rows <= total && n * int64_t(sizeof(T)) <= kPrefetchRowBytes;
}

// log_softmax's groups that carry their last pass store nothing in their exp
// loops and carry y = d - log(sum) from x (group_exp_sums_of) where there are
// 32 vector registers. With 16, the loop spilled its sums and held values to
// the stack, and modelled slower on Zen 1 (csrc/README.md): there it stores
// d and carries y -= log(sum).
constexpr bool kCarriesFromX = kVectorRegisters == 32;

// The exp passes of a group of log_softmax rows too long to carry: d stored,
// which brings y's lines into the cache for the last pass. A function of its
// own: inlined beside the carrying groups' loops, it slowed them.
template <class T>
[[gnu::noinline]] void stored_log_softmax_sums(const T* x, int64_t x_stride, T* y,
                                               int64_t y_stride, int64_t rows, int64_t n,
                                               const bool* open, PendingRow<T>* pending,
                                               bool ahead, double* log_sum) {
    group_exp_sums<T, Stored::centred, true>(x, x_stride, y, y_stride, rows, n, open, pending,
                                             nullptr, ahead, nullptr, log_sum);
}

// One group of in-cache rows. Its rows' last pass (y *= 1 / sum,
// y -= log(sum), or y = d - log(sum) from x) is left in `carried`, for the
// next group's exp loops to carry (group_exp_sums); what they do not take is
// done here, and the caller does the last group's.
template <class T>
void softmax_row_group(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows,
                       int64_t n, double temperature, RowOp op,
                       CarriedRow<T> (&carried)[kGroupRows], ScansAhead<T>& scans, bool ahead) {
    PendingRow<T> pending[kGroupRows];
    bool open[kGroupRows];
    const T scale = scale_of<T>(temperature);
    RowScan<T> scan[kGroupRows];
    scan_group(x, x_stride, rows, n, temperature, scans, scan);
    for (int64_t r = 0; r < rows; ++r) {
        open[r] = open_softmax_row(x + r * x_stride, y + r * y_stride, nullptr, n, temperature,
                                   scale, op, scan[r], pending[r]);
    }
    const bool carry = carries_last_pass<T>(n);
    CarriedRow<T>* carrying = carry ? carried : nullptr;
    T normalizer[kGroupRows];
    if (op == RowOp::softmax) {
        group_exp_sums<T, Stored::exp, false, LastPass::scale>(
            x, x_stride, y, y_stride, rows, n, open, pending, carrying, ahead, &scans);
        for (int64_t r = 0; r < rows; ++r) {
            if (open[r]) normalizer[r] = row_normalizer<T>(pending[r].sums, op);
        }
    } else {
        double log_sum[kGroupRows];
        if (carry && kCarriesFromX) {  // nothing stored, y from x (group_exp_sums_of)
            group_exp_sums<T, Stored::nothing, true, LastPass::lower_from_x>(
                x, x_stride, y, y_stride, rows, n, open, pending, carrying, ahead, &scans,
                log_sum);
        } else if (carry) {
            group_exp_sums<T, Stored::centred, true, LastPass::lower>(
                x, x_stride, y, y_stride, rows, n, open, pending, carrying, ahead, nullptr,
                log_sum);
        } else {
            stored_log_softmax_sums(x, x_stride, y, y_stride, rows, n, open, pending, ahead,
                                    log_sum);
        }
        for (int64_t r = 0; r < rows; ++r) normalizer[r] = static_cast<T>(log_sum[r]);
    }
    finish_carried(carried, n, op);
    for (int64_t r = 0; r < rows; ++r) {
        if (!open[r]) continue;
        CarriedRow<T> row = {y + r * y_stride, normalizer[r]};
        if (op != RowOp::softmax && carry && kCarriesFromX) {
            row.x = x + r * x_stride, row.max = pending[r].max, row.scale = scale;
        }
        if (carry) {
            carried[r] = row;
        } else {
            finish_softmax_row(row.y, n, row.by, op);  // rows too long to carry: while still near
        }
    }
}

// Contiguous unmasked rows of n >= 1 elements take the short-row kernels
// where those hold n (short_rows_hold: softmax, log_softmax and logsumexp
// rows of a few vectors; softmax rows of eight that block_rows_in_groups()
// sends to the groups aside), the groups in cache, or the online path.
template <class T>
RowPath row_path_of(int64_t n, RowWork work) {
    if (online_sized<T>(n, work)) return RowPath::online;
    bool held = false;
    switch (work) {
        case RowWork::softmax:
            held = short_rows_hold<ShortOp::softmax, T>(n) &&
                   !(sizeof(T) == 4 && n == 8 * Simd<T>::lanes && block_rows_in_groups());
            break;
        case RowWork::log_softmax:
            held = short_rows_hold<ShortOp::log_softmax, T>(n);
            break;
        case RowWork::logsumexp:
            held = short_rows_hold<ShortOp::logsumexp, T>(n);
            break;
    }
    return held ? RowPath::short_rows : RowPath::groups;
}

RowPath row_path(int64_t n, bool f64, RowWork work) {
    return f64 ? row_path_of<double>(n, work) : row_path_of<float>(n, work);
}

// Short rows a few at a time, in-cache rows in groups, online rows one by one.
template <class T>
void softmax_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                  double temperature, RowOp op, bool stream) {
    if (n <= 0) return;  // nothing to write (the Python layer sends no such rows)
    const RowPath path = row_path_of<T>(n, row_work(op));
    if (path == RowPath::online) {
        for (int64_t r = 0; r < rows; ++r) {
            softmax_row_online(x + r * x_stride, y + r * y_stride, nullptr, n, temperature, op,
                               stream);
        }
        return;
    }
    const auto one_row = [&](int64_t r) {
        softmax_row_in_cache(x + r * x_stride, y + r * y_stride, nullptr, n, temperature, op);
    };
    if (path == RowPath::short_rows &&
        (op == RowOp::softmax
             ? short_rows<ShortOp::softmax>(x, x_stride, y, y_stride, rows, n, temperature,
                                            static_cast<T*>(nullptr), 0, one_row)
             : short_rows<ShortOp::log_softmax>(x, x_stride, y, y_stride, rows, n, temperature,
                                                static_cast<T*>(nullptr), 0, one_row))) {
        return;
    }
    const int64_t budget = group_bytes();
    const int64_t group = group_rows<T>(n, budget > 0 ? budget : kGroupBytes);
    CarriedRow<T> carried[kGroupRows] = {};
    ScansAhead<T> scans;
    for (int64_t r = 0; r < rows; r += group) {
        softmax_row_group(x + r * x_stride, x_stride, y + r * y_stride, y_stride,
                          rows - r < group ? rows - r : group, n, temperature, op, carried,
                          scans, prefetches_next<T>(r, group, rows, n));
    }
    finish_carried(carried, n, op);
}

template <class T>
void logsumexp_row_group(const T* x, int64_t x_stride, T* out, int64_t out_step, int64_t rows,
                         int64_t n, double temperature, bool ahead) {
    PendingRow<T> pending[kGroupRows];
    bool open[kGroupRows];
    double done[kGroupRows];
    const T scale = scale_of<T>(temperature);
    RowScan<T> scan[kGroupRows];
    for (int64_t r = 0; r < rows; ++r) scan[r] = open_row_scan(x + r * x_stride, n, temperature);
    for (int64_t r = 0; r < rows; ++r) {
        open[r] = open_logsumexp_row(x + r * x_stride, nullptr, n, temperature, scale, scan[r],
                                     pending[r], done[r]);
    }
    double log_sum[kGroupRows];
    group_exp_sums<T, Stored::nothing, true>(x, x_stride, static_cast<T*>(nullptr), 0, rows, n,
                                             open, pending, nullptr, ahead, nullptr, log_sum);
    for (int64_t r = 0; r < rows; ++r) {
        // logsumexp_of's expression, with the group's logs
        out[r * out_step] = static_cast<T>(
            open[r] ? static_cast<double>(pending[r].max) / temperature + log_sum[r] : done[r]);
    }
}

template <class T>
void logsumexp_rows(const T* x, int64_t x_stride, T* out, int64_t out_step, int64_t rows,
                    int64_t n, double temperature) {
    if (n <= 0) {  // an empty sum (the Python layer never sends such rows)
        for (int64_t r = 0; r < rows; ++r) {
            out[r * out_step] = -std::numeric_limits<T>::infinity();
        }
        return;
    }
    const RowPath path = row_path_of<T>(n, RowWork::logsumexp);
    if (path == RowPath::online) {
        for (int64_t r = 0; r < rows; ++r) {
            out[r * out_step] =
                static_cast<T>(logsumexp_row_online(x + r * x_stride, nullptr, n, temperature));
        }
        return;
    }
    const auto one_row = [&](int64_t r) {
        out[r * out_step] =
            static_cast<T>(logsumexp_row_in_cache(x + r * x_stride, nullptr, n, temperature));
    };
    if (path == RowPath::short_rows &&
        short_rows<ShortOp::logsumexp>(x, x_stride, static_cast<T*>(nullptr), 0, rows, n,
                                       temperature, out, out_step, one_row)) {
        return;
    }
    const int64_t group = group_rows<T>(n, kReadOnlyGroupBytes);
    for (int64_t r = 0; r < rows; r += group) {
        logsumexp_row_group(x + r * x_stride, x_stride, out + r * out_step, out_step,
                            rows - r < group ? rows - r : group, n, temperature,
                            prefetches_next<T>(r, group, rows, n));
    }
}

FS_LEVEL_END

#define FS_STRINGIFY2(name) #name
#define FS_STRINGIFY(name) FS_STRINGIFY2(name)

namespace fastsoftmax {
namespace FASTSOFTMAX_LEVEL {

extern const RowKernels kernels;
const RowKernels kernels = {
    .level = FS_STRINGIFY(FASTSOFTMAX_LEVEL),
    .softmax_online_row_bytes = kSoftmaxOnlineRowBytes,
    .row_path = &row_path,
    .softmax_row_f32 = &softmax_row<float>,
    .softmax_row_f64 = &softmax_row<double>,
    .logsumexp_row_f32 = &logsumexp_row<float>,
    .logsumexp_row_f64 = &logsumexp_row<double>,
    .softmax_rows_f32 = &softmax_rows<float>,
    .softmax_rows_f64 = &softmax_rows<double>,
    .logsumexp_rows_f32 = &logsumexp_rows<float>,
    .logsumexp_rows_f64 = &logsumexp_rows<double>,
    .softmax_column_sweep_f32 = &softmax_column_sweep<float>,
    .softmax_column_sweep_f64 = &softmax_column_sweep<double>,
    .logsumexp_column_sweep_f32 = &logsumexp_column_sweep<float>,
    .logsumexp_column_sweep_f64 = &logsumexp_column_sweep<double>,
    .exp_nonpositive_f32 = &exp_nonpositive_array<float>,
    .exp_nonpositive_f64 = &exp_nonpositive_array<double>,
    .widen_f16 = &widen_row<half_to_float>,
    .narrow_f16 = &narrow_row<float_to_half>,
    .widen_bf16 = &widen_row<bfloat_to_float>,
    .narrow_bf16 = &narrow_row<float_to_bfloat>,
};

}  // namespace FASTSOFTMAX_LEVEL
}  // namespace fastsoftmax
