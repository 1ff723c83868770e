// Batch drivers: which kernel entry each row of a strided 3-D view takes,
// tiling, and the split over threads. Compiled for the baseline ISA: the
// work happens in the kernel table's entries.
//
// A batch's rows take one of four paths, chosen from the strides:
//   contiguous rows, no mask   the `rows` entries, every row of an outer index
//                              in one call (short rows a few at a time, groups
//                              of rows carrying each other's last pass)
//   contiguous rows, a mask    the `row` entries, row by row
//   columns (a non-last axis, neighbouring rows adjacent, no mask)
//                              the column sweep, tiles of kSweepBytes of each
//                              row; a tile holding a column that needs the row
//                              path goes through the gathered path instead
//   anything else              gathered: tiles of up to kMaxTileRows rows
//                              copied into a contiguous buffer (at most
//                              kTileBytes, so it stays in L2), computed in
//                              place there and copied back
// Every path computes a row with the same additions in the same order, so
// the layout never changes the values.
#include "softmax_batch.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "thread_pool.h"

namespace fastsoftmax {
namespace {

using std::int64_t;
using std::uint8_t;

constexpr int64_t kTileBytes = int64_t(256) << 10;
constexpr int64_t kLongTileBytes = int64_t(64) << 20;
constexpr int64_t kMaxTileRows = 16;
// The `rows` entries take whole runs of rows: a call per few rows cut the
// runs of groups that carry each other's last pass.
constexpr int64_t kAllRows = std::numeric_limits<int64_t>::max();
// The column sweep's tile: this many bytes of each row (its per-column state,
// about 300 bytes a float column, then stays in L2).
constexpr int64_t kSweepBytes = int64_t(4) << 10;

template <class T>
T* row_pointer(const StridedView3<T>& v, int64_t o, int64_t i) {
    return v.data + o * v.stride[0] + i * v.stride[1];
}

// Rows [first, last) of the flattened (outer, inner) index space, visited as
// tiles of up to tile_rows consecutive inner rows that share one outer index.
template <class Visit>
void for_each_tile(int64_t first, int64_t last, int64_t inner, int64_t tile_rows,
                   const Visit& visit) {
    int64_t row = first;
    while (row < last) {
        const int64_t o = row / inner;
        const int64_t i = row % inner;
        const int64_t width = std::min({tile_rows, inner - i, last - row});
        visit(o, i, width);
        row += width;
    }
}

template <class T>
int64_t tile_rows_for(int64_t n, bool adjacent_rows) {
    const int64_t row_bytes = std::max<int64_t>(n, 1) * int64_t(sizeof(T));
    const int64_t rows = std::clamp<int64_t>(kTileBytes / row_bytes, 1, kMaxTileRows);
    if (!adjacent_rows) return rows;
    // Adjacent rows (columns of a non-last axis, too long for the sweep): a
    // cache line of them at a time, each line read once, in a buffer of up
    // to kLongTileBytes; one column at a time read 64 bytes for each element.
    const int64_t line = std::min<int64_t>(64 / int64_t(sizeof(T)), kMaxTileRows);
    return std::max(rows, std::clamp<int64_t>(kLongTileBytes / row_bytes, 1, line));
}

// Copy `width` strided rows of length n into buffer rows of length n.
// Reading across rows first makes a non-last reduction axis (inner stride 1)
// read whole cache lines. Buffer row j starts at buffer + j * ld.
template <class T>
void gather_tile(const StridedView3<const T>& v, int64_t o, int64_t i, int64_t width, int64_t n,
                 T* buffer, int64_t ld) {
    const T* base = row_pointer(v, o, i);
    for (int64_t k = 0; k < n; ++k) {
        const T* at = base + k * v.stride[2];
        for (int64_t j = 0; j < width; ++j) buffer[j * ld + k] = at[j * v.stride[1]];
    }
}

template <class T>
void scatter_tile(const T* buffer, int64_t ld, const StridedView3<T>& v, int64_t o, int64_t i,
                  int64_t width, int64_t n) {
    T* base = row_pointer(v, o, i);
    for (int64_t k = 0; k < n; ++k) {
        T* at = base + k * v.stride[2];
        for (int64_t j = 0; j < width; ++j) at[j * v.stride[1]] = buffer[j * ld + k];
    }
}

// Rows [first, last), gathered a tile at a time into contiguous buffers:
// compute(o, i, width, values, active, ld) gets the tile's rows (values row
// j at values + j * ld; active likewise, or nullptr without a mask). ld is n
// and a cache line: rows a power of two apart shared the cache's sets, and
// the gather and scatter, which go across the rows, evicted their own lines.
template <class T, class Compute>
void for_each_gathered_tile(const StridedView3<const T>& x, const StridedView3<const uint8_t>& mask,
                            const Extent3& extent, int64_t first, int64_t last,
                            const Compute& compute) {
    const int64_t n = extent.n;
    const bool has_mask = mask.data != nullptr;
    const int64_t tile_rows = tile_rows_for<T>(n, x.stride[1] == 1);
    const int64_t ld = n + 64 / int64_t(sizeof(T));
    std::vector<T> values(std::size_t(std::min(tile_rows, last - first) * ld));
    std::vector<uint8_t> active(has_mask ? values.size() : 0);
    for_each_tile(first, last, extent.inner, tile_rows, [&](int64_t o, int64_t i, int64_t width) {
        gather_tile(x, o, i, width, n, values.data(), ld);
        if (has_mask) gather_tile(mask, o, i, width, n, active.data(), ld);
        compute(o, i, width, values.data(), has_mask ? active.data() : nullptr, ld);
    });
}

// The float or the double entry of a kernel table, for T.
template <class T, class F32, class F64>
constexpr auto typed(F32 f32, F64 f64) {
    if constexpr (sizeof(T) == 4) {
        return f32;
    } else {
        return f64;
    }
}
#define FS_TYPED(kernels, name) typed<T>((kernels).name##_f32, (kernels).name##_f64)

enum class Path { rows, masked_rows, columns, gathered };

// A non-last reduction axis whose neighbouring rows are adjacent in memory
// (inner stride 1) takes the column sweep. Columns as long as an online row
// are gathered instead, so that a layout never changes the algorithm.
template <class T>
Path path_of(const RowKernels& kernels, const StridedView3<const T>& x, int64_t y_inner_stride,
             int64_t y_row_stride, const StridedView3<const uint8_t>& mask, const Extent3& extent,
             RowWork work) {
    const bool has_mask = mask.data != nullptr;
    if (x.stride[2] == 1 && y_row_stride == 1 && (!has_mask || mask.stride[2] == 1)) {
        return has_mask ? Path::masked_rows : Path::rows;
    }
    if (!has_mask && extent.inner > 1 && x.stride[1] == 1 && y_inner_stride == 1 &&
        x.stride[2] != 1 && !takes_online_path(extent.n * int64_t(sizeof(T)), work,
                                             kernels.softmax_online_row_bytes)) {
        return Path::columns;
    }
    return Path::gathered;
}

// A thread's share of softmax columns is made of whole kSweepBytes pieces of
// every row (or all the columns of an outer index): two cores writing
// neighbouring halves of the same rows ran slower than one.
template <class T>
int64_t column_grain(const Extent3& extent) {
    return std::min(extent.inner, kSweepBytes / int64_t(sizeof(T)));
}

template <class T>
struct SoftmaxRun {
    const RowKernels& kernels;
    StridedView3<const T> x;
    StridedView3<T> y;
    StridedView3<const uint8_t> mask;
    Extent3 extent;
    double temperature;
    RowOp op;

    void rows(int64_t first, int64_t last) const {
        for_each_tile(first, last, extent.inner, kAllRows,
                      [&](int64_t o, int64_t i, int64_t width) {
                          FS_TYPED(kernels, softmax_rows)(row_pointer(x, o, i), x.stride[1],
                                                          row_pointer(y, o, i), y.stride[1], width,
                                                          extent.n, temperature, op, stream());
                      });
    }

    // In place, a streaming store would evict the line the next vector reads.
    bool stream() const {
        return x.data != y.data &&
               extent.outer * extent.inner * extent.n * int64_t(sizeof(T)) > kStreamingBytes;
    }

    void masked_rows(int64_t first, int64_t last) const {
        for (int64_t r = first; r < last; ++r) {
            const int64_t o = r / extent.inner, i = r % extent.inner;
            FS_TYPED(kernels, softmax_row)(row_pointer(x, o, i), row_pointer(y, o, i),
                                           row_pointer(mask, o, i), extent.n, temperature, op);
        }
    }

    void gathered(int64_t first, int64_t last) const {
        const int64_t n = extent.n;
        for_each_gathered_tile(x, mask, extent, first, last,
                               [&](int64_t o, int64_t i, int64_t width, T* values,
                                   const uint8_t* active, int64_t ld) {
                                   for (int64_t j = 0; j < width; ++j) {
                                       FS_TYPED(kernels, softmax_row)(
                                           values + j * ld, values + j * ld,
                                           active == nullptr ? nullptr : active + j * ld, n,
                                           temperature, op);
                                   }
                                   scatter_tile(values, ld, y, o, i, width, n);
                               });
    }

    void columns(int64_t first, int64_t last) const {
        for_each_tile(first, last, extent.inner, kSweepBytes / int64_t(sizeof(T)),
                      [&](int64_t o, int64_t i, int64_t width) {
                          if (!FS_TYPED(kernels, softmax_column_sweep)(
                                  row_pointer(x, o, i), x.stride[2], row_pointer(y, o, i),
                                  y.stride[2], width, extent.n, temperature, op)) {
                              const int64_t row = o * extent.inner + i;
                              gathered(row, row + width);  // a column needs the row path
                          }
                      });
    }
};

template <class T>
struct LogsumexpRun {
    const RowKernels& kernels;
    StridedView3<const T> x;
    StridedView3<T> y;  // stride[2] unused: one result per row
    StridedView3<const uint8_t> mask;
    Extent3 extent;
    double temperature;

    void rows(int64_t first, int64_t last) const {
        for_each_tile(first, last, extent.inner, kAllRows,
                      [&](int64_t o, int64_t i, int64_t width) {
                          FS_TYPED(kernels, logsumexp_rows)(row_pointer(x, o, i), x.stride[1],
                                                            row_pointer(y, o, i), y.stride[1],
                                                            width, extent.n, temperature);
                      });
    }

    void masked_rows(int64_t first, int64_t last) const {
        for (int64_t r = first; r < last; ++r) {
            const int64_t o = r / extent.inner, i = r % extent.inner;
            *row_pointer(y, o, i) = static_cast<T>(FS_TYPED(kernels, logsumexp_row)(
                row_pointer(x, o, i), row_pointer(mask, o, i), extent.n, temperature));
        }
    }

    void gathered(int64_t first, int64_t last) const {
        const int64_t n = extent.n;
        for_each_gathered_tile(
            x, mask, extent, first, last,
            [&](int64_t o, int64_t i, int64_t width, T* values, const uint8_t* active,
                int64_t ld) {
                for (int64_t j = 0; j < width; ++j) {
                    *row_pointer(y, o, i + j) = static_cast<T>(FS_TYPED(kernels, logsumexp_row)(
                        values + j * ld, active == nullptr ? nullptr : active + j * ld, n,
                        temperature));
                }
            });
    }

    void columns(int64_t first, int64_t last) const {
        for_each_tile(first, last, extent.inner, kSweepBytes / int64_t(sizeof(T)),
                      [&](int64_t o, int64_t i, int64_t width) {
                          if (!FS_TYPED(kernels, logsumexp_column_sweep)(
                                  row_pointer(x, o, i), x.stride[2], row_pointer(y, o, i),
                                  y.stride[1], width, extent.n, temperature)) {
                              const int64_t row = o * extent.inner + i;
                              gathered(row, row + width);  // a column needs the row path
                          }
                      });
    }
};

// Runs a SoftmaxRun / LogsumexpRun over every row on the set thread count,
// in blocks of whole `grain`s of rows.
template <class Run>
void run_batch(const Run& run, Path path, int64_t grain) {
    const Extent3& extent = run.extent;
    parallel_rows(
        extent.outer * extent.inner, extent.n,
        [&](int64_t first, int64_t last) {
            switch (path) {
                case Path::rows: run.rows(first, last); break;
                case Path::masked_rows: run.masked_rows(first, last); break;
                case Path::columns: run.columns(first, last); break;
                case Path::gathered: run.gathered(first, last); break;
            }
        },
        grain);
}

// A batch whose rows all lie along the outer index (inner == 1: the last
// axis of a C-contiguous array, as NumPy reshapes it) seen as one outer index
// of many inner rows, the same rows: tiles, and the kernels' row groups,
// span rows only along the inner index.
template <class T>
StridedView3<T> outer_as_inner(StridedView3<T> v) {
    return {v.data, {0, v.stride[0], v.stride[2]}};
}

Extent3 outer_as_inner(Extent3 extent) { return {1, extent.outer, extent.n}; }

}  // namespace

template <class T>
void softmax_batch(StridedView3<const T> x, StridedView3<T> y, StridedView3<const uint8_t> mask,
                   Extent3 extent, double temperature, RowOp op) {
    if (extent.inner == 1 && extent.outer > 1) {
        x = outer_as_inner(x), y = outer_as_inner(y), mask = outer_as_inner(mask);
        extent = outer_as_inner(extent);
    }
    const SoftmaxRun<T> run{current_kernels(), x, y, mask, extent, temperature, op};
    const Path path =
        path_of(run.kernels, x, y.stride[1], y.stride[2], mask, extent, row_work(op));
    run_batch(run, path, path == Path::columns ? column_grain<T>(extent) : 1);
}

template <class T>
void logsumexp_batch(StridedView3<const T> x, StridedView2<T> y, StridedView3<const uint8_t> mask,
                     Extent3 extent, double temperature) {
    if (extent.inner == 1 && extent.outer > 1) {
        x = outer_as_inner(x), mask = outer_as_inner(mask);
        y = {y.data, {0, y.stride[0]}};
        extent = outer_as_inner(extent);
    }
    const LogsumexpRun<T> run{current_kernels(), x, {y.data, {y.stride[0], y.stride[1], 0}},
                              mask, extent, temperature};
    // The result has no reduction axis: only x's row stride decides rows.
    // logsumexp writes one value per column, so columns split at any row.
    run_batch(run, path_of(run.kernels, x, y.stride[1], x.stride[2], mask, extent, RowWork::logsumexp),
              1);
}

namespace {

// Rows of 16-bit storage: each widened into a float buffer, computed there
// by the float row kernel, handed to `finish` (narrow back, or store the
// result). One row at a time: no converted copy of the array.
template <class Finish>
void for_each_widened_row(StridedView3<const uint16_t> x, StridedView3<const uint8_t> mask,
                          Extent3 extent, bool bfloat, const Finish& finish) {
    const RowKernels& kernels = current_kernels();
    const auto widen = bfloat ? kernels.widen_bf16 : kernels.widen_f16;
    const int64_t n = extent.n;
    const bool has_mask = mask.data != nullptr;
    parallel_rows(extent.outer * extent.inner, n, [&](int64_t first, int64_t last) {
        std::vector<float> row(std::size_t(std::max<int64_t>(n, 1)));
        std::vector<uint8_t> active(has_mask ? std::size_t(n) : 0);
        for (int64_t r = first; r < last; ++r) {
            const int64_t o = r / extent.inner, i = r % extent.inner;
            widen(row_pointer(x, o, i), x.stride[2], row.data(), n);
            const uint8_t* row_mask = nullptr;
            if (has_mask) {
                gather_tile(mask, o, i, 1, n, active.data(), n);
                row_mask = active.data();
            }
            finish(kernels, o, i, row.data(), row_mask);
        }
    });
}

}  // namespace

void softmax_batch_16bit(StridedView3<const uint16_t> x, StridedView3<uint16_t> y,
                         StridedView3<const uint8_t> mask, Extent3 extent, double temperature,
                         RowOp op, bool bfloat) {
    const int64_t n = extent.n;
    for_each_widened_row(x, mask, extent, bfloat,
                         [&](const RowKernels& k, int64_t o, int64_t i, float* row,
                             const uint8_t* row_mask) {
                             k.softmax_row_f32(row, row, row_mask, n, temperature, op);
                             (bfloat ? k.narrow_bf16 : k.narrow_f16)(row, row_pointer(y, o, i),
                                                                    y.stride[2], n);
                         });
}

void logsumexp_batch_16bit(StridedView3<const uint16_t> x, StridedView2<uint16_t> y,
                           StridedView3<const uint8_t> mask, Extent3 extent, double temperature,
                           bool bfloat) {
    const int64_t n = extent.n;
    for_each_widened_row(x, mask, extent, bfloat,
                         [&](const RowKernels& k, int64_t o, int64_t i, float* row,
                             const uint8_t* row_mask) {
                             const float result =
                                 static_cast<float>(k.logsumexp_row_f32(row, row_mask, n, temperature));
                             (bfloat ? k.narrow_bf16 : k.narrow_f16)(
                                 &result, y.data + o * y.stride[0] + i * y.stride[1], 1, 1);
                         });
}

template void softmax_batch<float>(StridedView3<const float>, StridedView3<float>,
                                   StridedView3<const uint8_t>, Extent3, double, RowOp);
template void softmax_batch<double>(StridedView3<const double>, StridedView3<double>,
                                    StridedView3<const uint8_t>, Extent3, double, RowOp);
template void logsumexp_batch<float>(StridedView3<const float>, StridedView2<float>,
                                     StridedView3<const uint8_t>, Extent3, double);
template void logsumexp_batch<double>(StridedView3<const double>, StridedView2<double>,
                                      StridedView3<const uint8_t>, Extent3, double);

}  // namespace fastsoftmax
