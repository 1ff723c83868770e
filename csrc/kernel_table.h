// The kernel table: the entry points one SIMD level exports. Pure C++, no
// Python. level_kernels.cpp is compiled once per level and fills one table;
// dispatch.cpp picks the table of the best level the CPU runs.
//
// Contracts common to every entry:
//   dtypes  float32 (_f32) and float64 (_f64); 16-bit storage goes through
//           widen/narrow around the float entries.
//   input   rows contiguous (element stride 1) unless a stride is given;
//           n >= 1 elements a row; `mask` null (all active) or one byte per
//           element, non-zero = active. Any values: NaN, +-inf and
//           subnormals are handled (scipy.special's values for special rows).
//   output  y may be x itself (same pointer and strides); no other overlap.
//   error   softmax: |y - ref| <= 4 eps (1 + |d| + log n) ref + tiny per
//           element, d = (x - max) / T, whatever n (the sums do not lose
//           digits with length); log_softmax: 4 eps (1 + |ref|) absolute.
//           Measured margins: README, Accuracy; exp: exp.h.
//   bits    a row gives the same bits through every entry (rows, short
//           rows, column sweep, online rows): one summation order. The
//           one exception, softmax rows that take the online algorithm
//           (their sum merged from chunk sums, last bits apart from the
//           three passes'), follows from the row's length, the level and
//           the CPU's online threshold alone (takes_online_path,
//           online_base_bytes()), never from the layout or threads.
//   T       temperature, positive and finite (the Python layer checks it).
#pragma once

#include <cstdint>

namespace fastsoftmax {

enum class RowOp : int { softmax = 0, log_softmax = 1 };

// What a row computes, as far as the choice of its path goes.
enum class RowWork : int { softmax, log_softmax, logsumexp };
inline RowWork row_work(RowOp op) {
    return op == RowOp::softmax ? RowWork::softmax : RowWork::log_softmax;
}

// Long rows take the online algorithm, shorter ones the three passes (two
// for logsumexp). The online passes move fewer bytes (x read twice, y
// written once), but softmax's computes every exp twice; log_softmax's and
// logsumexp's compute it once. The defaults, by what a row computes:
//   log_softmax  rows of online_base_bytes() and more: kOnlineRowBytes
//                (512 KiB: where a row and its y no longer share L2 with the
//                next rows), or kZenOnlineRowBytes on AMD's Zen 1 to Zen 4
//                (dispatch.cpp), whose L3 fed the three passes of 512 KiB
//                rows faster than the online pass ran;
//   logsumexp    four times kOnlineRowBytes on every CPU (its passes move
//                half the bytes, and its in-cache groups prefetch rows of up
//                to 1 MiB);
//   softmax      the level's RowKernels::softmax_online_row_bytes: where the
//                second exp costs less than the bytes it saves (the exp's
//                cost differs by level; csrc/README.md, "Rows beyond the
//                cache"); 0 there means online_base_bytes(), as log_softmax.
//                One value a level, for float and double rows.
// online_row_bytes() is a setting for tests and tuning: 0 (the default)
// keeps the defaults above; set to b > 0, softmax and log_softmax rows go
// online from b bytes and logsumexp rows from 4 b (defined in dispatch.cpp).
constexpr std::int64_t kOnlineRowBytes = std::int64_t(512) << 10;
constexpr std::int64_t kZenOnlineRowBytes = std::int64_t(1) << 20;
std::int64_t online_base_bytes();
std::int64_t online_row_bytes();
void set_online_row_bytes(std::int64_t bytes);

// The input budget of a group of in-cache softmax and log_softmax rows
// (softmax_rows in level_kernels.cpp: up to kGroupRows rows and about this
// many bytes of x). 0 keeps the level's own budget, tuned on an Intel core,
// whose L1 the group's x, y and carried y must share with the next group's
// prefetch. AMD's Zen 1 to Zen 4 cores default to kZenGroupBytes
// (dispatch.cpp): on a Zen 4 core the larger groups ran faster, their later
// passes fed from L2 fast enough, and fewer groups meant fewer fixed costs a
// row. The grouping changes no bit of any row (one summation order).
// set_group_bytes(b <= 0) restores the CPU's default; a setting for tests
// and tuning.
constexpr std::int64_t kZenGroupBytes = std::int64_t(32) << 10;
std::int64_t group_bytes();
void set_group_bytes(std::int64_t bytes);

// Float softmax rows of exactly eight vectors (128 floats with AVX-512) fit
// both the short-row kernels (short_rows.h: two rows at a time, in
// registers) and the groups' exp loop unrolled whole for that length
// (row_groups.h) where there are 32 vector registers (AVX-512, NEON; on the
// other levels eight vectors are beyond the short-row kernels anyway). Where
// block_rows_in_groups() is true they go in groups: the default on AMD's
// Zen 1 to Zen 4 (dispatch.cpp; in effect on Zen 4, the one with AVX-512),
// where the groups ran them faster from two rows a call, the short-row
// kernels waiting on their latencies; on an Intel core the short-row kernels
// were the faster. Other lengths keep their paths either way, and both paths
// give the same bits (RowKernels::row_path says which a length takes).
// set_block_rows_in_groups(s): s > 0 on, s == 0 off, s < 0 the CPU's
// default; a setting for tests and tuning.
bool block_rows_in_groups();
void set_block_rows_in_groups(int setting);

// Whether a row of `row_bytes` takes the online algorithm, on a level whose
// softmax default is `softmax_default` (0: online_base_bytes()). The one
// rule for the row kernels and for the batch's choice of path.
inline bool takes_online_path(std::int64_t row_bytes, RowWork work,
                              std::int64_t softmax_default) {
    const std::int64_t setting = online_row_bytes();
    if (work == RowWork::logsumexp) {
        return row_bytes / 4 >= (setting > 0 ? setting : kOnlineRowBytes);
    }
    if (setting > 0) return row_bytes >= setting;
    const bool own = work == RowWork::softmax && softmax_default > 0;
    return row_bytes >= (own ? softmax_default : online_base_bytes());
}

// A call that writes more than this (all threads together), not in place,
// would not keep its y in cache anyway: the online rows of its contiguous,
// unmasked rows path write y with streaming stores, which do not read each
// line of y from memory before writing it. (Tuned on one machine, whose
// looped y of 16 MiB still stayed in cache; masked, gathered and 16-bit
// rows do not stream.)
constexpr std::int64_t kStreamingBytes = std::int64_t(16) << 20;

// The path the rows entries below (softmax_rows, logsumexp_rows) take for
// contiguous unmasked rows of n elements, by length, level, CPU and the
// settings above, never by layout or threads: in registers a few rows at a time
// (short_rows.h), in groups in cache (row_groups.h), or online
// (online_rows.h). A row the short-row kernels find special goes through
// the groups' passes on its own.
enum class RowPath : int { short_rows = 0, groups = 1, online = 2 };

struct RowKernels {
    const char* level;  // "avx512", "avx2", "avx2_wide", "sse2", "neon", "generic"
    // Where softmax rows take the online algorithm by default (above; 0:
    // online_base_bytes(), as log_softmax rows).
    std::int64_t softmax_online_row_bytes;
    // The path of rows of n elements of float (f64 false) or double: the
    // one choice softmax_rows and logsumexp_rows make (for tests and tools).
    RowPath (*row_path)(std::int64_t n, bool f64, RowWork work);

    // y = softmax (or log_softmax) of x / temperature along one row.
    // Passes: a row in cache reads x twice and y once and writes y twice
    // (softmax) or reads x three times and writes y once (log_softmax); a
    // row that takes the online algorithm reads x twice and writes y once (the
    // row entry never streams y: it also writes the 16-bit rows' buffers).
    void (*softmax_row_f32)(const float* x, float* y, const std::uint8_t* mask,
                            std::int64_t n, double temperature, RowOp op);
    void (*softmax_row_f64)(const double* x, double* y, const std::uint8_t* mask,
                            std::int64_t n, double temperature, RowOp op);

    // logsumexp of x / temperature along one row, in double before rounding:
    // -inf for a row with nothing active, NaN for NaN, the max for an
    // infinite max. Reads x twice (once for rows that take the online
    // algorithm).
    double (*logsumexp_row_f32)(const float* x, const std::uint8_t* mask, std::int64_t n,
                                double temperature);
    double (*logsumexp_row_f64)(const double* x, const std::uint8_t* mask, std::int64_t n,
                                double temperature);

    // `rows` contiguous rows without a mask, row r at x + r * x_stride (y
    // likewise): softmax_row on each, except that short rows (row_path) are
    // computed a few at a time in registers (one read, one write; the same
    // bits). With `stream`, online rows write y with
    // streaming stores, past the caches (the same bits; for calls whose y
    // is larger than kStreamingBytes).
    void (*softmax_rows_f32)(const float* x, std::int64_t x_stride, float* y,
                             std::int64_t y_stride, std::int64_t rows, std::int64_t n,
                             double temperature, RowOp op, bool stream);
    void (*softmax_rows_f64)(const double* x, std::int64_t x_stride, double* y,
                             std::int64_t y_stride, std::int64_t rows, std::int64_t n,
                             double temperature, RowOp op, bool stream);
    // out[r * out_step] = logsumexp of row r, rounded to the row's type.
    void (*logsumexp_rows_f32)(const float* x, std::int64_t x_stride, float* out,
                               std::int64_t out_step, std::int64_t rows, std::int64_t n,
                               double temperature);
    void (*logsumexp_rows_f64)(const double* x, std::int64_t x_stride, double* out,
                               std::int64_t out_step, std::int64_t rows, std::int64_t n,
                               double temperature);

    // Columns: a reduction over a non-last axis, `width` adjacent columns of
    // n elements, element k of column j at x[k * x_stride + j] (y likewise),
    // no mask. Each column gets the bits its values give as a row. Passes:
    // as a row in cache, each pass sweeping whole rows of the tile; state
    // about 300 bytes per float column. Returns false, having written
    // nothing, when a column needs the row path (a NaN, an infinite max, a
    // spread that overflows): the caller runs the tile's columns as rows.
    bool (*softmax_column_sweep_f32)(const float* x, std::int64_t x_stride, float* y,
                                     std::int64_t y_stride, std::int64_t width, std::int64_t n,
                                     double temperature, RowOp op);
    bool (*softmax_column_sweep_f64)(const double* x, std::int64_t x_stride, double* y,
                                     std::int64_t y_stride, std::int64_t width, std::int64_t n,
                                     double temperature, RowOp op);
    // y[j * y_step] = logsumexp of column j; false as above.
    bool (*logsumexp_column_sweep_f32)(const float* x, std::int64_t x_stride, float* y,
                                       std::int64_t y_step, std::int64_t width, std::int64_t n,
                                       double temperature);
    bool (*logsumexp_column_sweep_f64)(const double* x, std::int64_t x_stride, double* y,
                                       std::int64_t y_step, std::int64_t width, std::int64_t n,
                                       double temperature);

    // exp(d) for d <= 0 elementwise: the exponential of every pass above,
    // exposed so that its error can be measured. Contract in exp.h.
    void (*exp_nonpositive_f32)(const float* d, float* y, std::int64_t n);
    void (*exp_nonpositive_f64)(const double* d, double* y, std::int64_t n);

    // 16-bit storage: a strided row of float16 / bfloat16 bits widened into
    // contiguous floats (exact), or contiguous floats narrowed into a strided
    // row (round to nearest even, NaN kept, overflow to inf).
    void (*widen_f16)(const std::uint16_t* in, std::int64_t stride, float* out, std::int64_t n);
    void (*narrow_f16)(const float* in, std::uint16_t* out, std::int64_t stride, std::int64_t n);
    void (*widen_bf16)(const std::uint16_t* in, std::int64_t stride, float* out, std::int64_t n);
    void (*narrow_bf16)(const float* in, std::uint16_t* out, std::int64_t stride, std::int64_t n);
};

// The tables compiled into this build, one per level (level_kernels.cpp).
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
