// Row kernels: the per-row passes of softmax, log_softmax and logsumexp on one
// contiguous row. Pure C++, no Python. The same source (row_kernels.cpp) is
// compiled once per SIMD level with that level's compiler flags; each copy
// fills one RowKernels table, and dispatch.cpp picks a table at run time.
#pragma once

#include <cstdint>

namespace fastsoftmax {

enum class RowOp : int { softmax = 0, log_softmax = 1 };

// Rows of at least online_row_bytes() bytes take the online (two-pass)
// algorithm; shorter ones the three passes. Measured on the 2-core Zen3 VM of
// the README, float32 rows of 1 to 16 MiB: three passes 36-43 ms per 64 MiB,
// online 63-71 ms (its second exp costs more than the memory pass it saves:
// compute-bound), so the default is 64 MiB. Settable for tests and tuning.
std::int64_t online_row_bytes();
void set_online_row_bytes(std::int64_t bytes);

// Function table of one SIMD level. All rows are contiguous; `mask` is null
// (every element active) or one byte per element (non-zero = active).
struct RowKernels {
    const char* level;  // "avx512", "avx2", "avx2_wide", "sse2", "neon", "generic"

    // y = softmax or log_softmax of x * inv_temperature; y may equal x.
    void (*softmax_row_f32)(const float* x, float* y, const std::uint8_t* mask,
                            std::int64_t n, double temperature, RowOp op);
    void (*softmax_row_f64)(const double* x, double* y, const std::uint8_t* mask,
                            std::int64_t n, double temperature, RowOp op);

    // logsumexp of x / temperature, returned in double before rounding.
    double (*logsumexp_row_f32)(const float* x, const std::uint8_t* mask, std::int64_t n,
                                double temperature);
    double (*logsumexp_row_f64)(const double* x, const std::uint8_t* mask, std::int64_t n,
                                double temperature);

    // exp(d) for d <= 0 elementwise: the exponential every pass above uses,
    // exposed so its error in ULP can be measured.
    void (*exp_nonpositive_f32)(const float* d, float* y, std::int64_t n);
    void (*exp_nonpositive_f64)(const double* d, double* y, std::int64_t n);

    // 16-bit storage (float16, bfloat16): rows are widened to float, computed
    // by the float kernels and narrowed back (round to nearest even), one row
    // at a time, so no converted copy of a whole array is made.
    void (*widen_f16)(const std::uint16_t* in, std::int64_t stride, float* out, std::int64_t n);
    void (*narrow_f16)(const float* in, std::uint16_t* out, std::int64_t stride, std::int64_t n);
    void (*widen_bf16)(const std::uint16_t* in, std::int64_t stride, float* out, std::int64_t n);
    void (*narrow_bf16)(const float* in, std::uint16_t* out, std::int64_t stride, std::int64_t n);

    // Columns: a reduction over a non-last axis, `width` adjacent columns at
    // once; element k of column j is x[k * x_stride + j] (y likewise). No mask.
    // Returns the number of leading columns done (< width: column `done` needs
    // the special-value path; nothing of it was written).
    std::int64_t (*softmax_columns_f32)(const float* x, std::int64_t x_stride, float* y,
                                std::int64_t y_stride, std::int64_t width, std::int64_t n,
                                double temperature, RowOp op);
    std::int64_t (*softmax_columns_f64)(const double* x, std::int64_t x_stride, double* y,
                                std::int64_t y_stride, std::int64_t width, std::int64_t n,
                                double temperature, RowOp op);
    // y[j * y_step] = logsumexp of column j.
    std::int64_t (*logsumexp_columns_f32)(const float* x, std::int64_t x_stride, float* y,
                                  std::int64_t y_step, std::int64_t width, std::int64_t n,
                                  double temperature);
    std::int64_t (*logsumexp_columns_f64)(const double* x, std::int64_t x_stride, double* y,
                                  std::int64_t y_step, std::int64_t width, std::int64_t n,
                                  double temperature);

    // Contiguous rows without a mask, row r at x + r * x_stride (y likewise):
    // as softmax_row on each, but rows of at most four vectors are computed
    // a few at a time in registers (same values).
    void (*softmax_rows_f32)(const float* x, std::int64_t x_stride, float* y,
                             std::int64_t y_stride, std::int64_t rows, std::int64_t n,
                             double temperature, RowOp op);
    void (*softmax_rows_f64)(const double* x, std::int64_t x_stride, double* y,
                             std::int64_t y_stride, std::int64_t rows, std::int64_t n,
                             double temperature, RowOp op);
    // out[r * out_step] = logsumexp of row r, rounded to the row's type.
    void (*logsumexp_rows_f32)(const float* x, std::int64_t x_stride, float* out,
                               std::int64_t out_step, std::int64_t rows, std::int64_t n,
                               double temperature);
    void (*logsumexp_rows_f64)(const double* x, std::int64_t x_stride, double* out,
                               std::int64_t out_step, std::int64_t rows, std::int64_t n,
                               double temperature);

    // Columns as softmax_columns / logsumexp_columns, for a tile of many
    // columns: each pass sweeps whole rows, the per-column state in memory
    // (same values). False if a column needs the special-value path; then
    // nothing was written.
    bool (*softmax_column_sweep_f32)(const float* x, std::int64_t x_stride, float* y,
                                     std::int64_t y_stride, std::int64_t width, std::int64_t n,
                                     double temperature, RowOp op);
    bool (*softmax_column_sweep_f64)(const double* x, std::int64_t x_stride, double* y,
                                     std::int64_t y_stride, std::int64_t width, std::int64_t n,
                                     double temperature, RowOp op);
    bool (*logsumexp_column_sweep_f32)(const float* x, std::int64_t x_stride, float* y,
                                       std::int64_t y_step, std::int64_t width, std::int64_t n,
                                       double temperature);
    bool (*logsumexp_column_sweep_f64)(const double* x, std::int64_t x_stride, double* y,
                                       std::int64_t y_step, std::int64_t width, std::int64_t n,
                                       double temperature);
};

// The tables compiled into this build (defined in row_kernels.cpp, one per level).
#define FASTSOFTMAX_DECLARE_LEVEL(name) \
    namespace name { extern const RowKernels kernels; }
#if defined(__x86_64__) || defined(_M_X64)
FASTSOFTMAX_DECLARE_LEVEL(sse2)
FASTSOFTMAX_DECLARE_LEVEL(avx2)
FASTSOFTMAX_DECLARE_LEVEL(avx2_wide)
FASTSOFTMAX_DECLARE_LEVEL(avx512)
#elif defined(__aarch64__) || defined(_M_ARM64)
FASTSOFTMAX_DECLARE_LEVEL(neon)
#else
FASTSOFTMAX_DECLARE_LEVEL(generic)
#endif
#undef FASTSOFTMAX_DECLARE_LEVEL

}  // namespace fastsoftmax
