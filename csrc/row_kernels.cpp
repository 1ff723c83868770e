// Row kernels, written once and compiled once per SIMD level.
//
// CMake compiles this file once per level with that level's flags (-mavx2
// -mfma, -mavx512f ..., nothing for the baseline) and two definitions:
// FASTSOFTMAX_LEVEL (the namespace and the name reported by info()) and
// FASTSOFTMAX_VECTOR_BYTES (16, 32 or 64). The code is written on GCC/Clang
// vector types of that many bytes, so one source becomes SSE2, AVX2,
// AVX-512 or NEON code; a width larger than the hardware's (64 bytes built
// for AVX2) is split by the compiler, which lets this CPU run the widest
// path in tests. Everything but the exported table has internal linkage, so
// the linker can never hand one level's copy of a helper to another level.
//
// Passes over one contiguous row of n elements:
//   softmax:      scan (max, NaN, active count) | exp, store y, sum | scale y
//   log_softmax:  scan | exp and sum, nothing stored | y = d - log(sum)
//   logsumexp:    scan | exp and sum, nothing stored
// with d = (x - max) / temperature. Rows of at most four vectors skip the
// passes: short_rows keeps them in registers, a few rows at a time. Sums run
// in the row's type over chunks of kChunk elements with four vector
// accumulators; each lane's chunk partials go to a double total, so the
// error does not grow with n (see kChunkVectors).
//
// exp_nonpositive contract (tests/test_exp.py, `fastsoftmax accuracy`):
//   float:  d in [-inf, 0]; max error 0.88 ULP with FMA (1.18 without) over
//           every float of [-104, 0], subnormal results included (rounded
//           once, not flushed).
//   double: d in [-inf, 0]; max error 0.95 ULP with FMA (1.20 without) on
//           1.6e7 random points of [-746, 0] against a long double reference.
//   exp(0) == 1 and exp(-inf) == 0 exactly. NaN is never passed in.
#include "row_kernels.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef FASTSOFTMAX_LEVEL
#error "row_kernels.cpp is compiled once per SIMD level with -DFASTSOFTMAX_LEVEL=<name>"
#endif
#ifndef FASTSOFTMAX_VECTOR_BYTES
#error "row_kernels.cpp needs -DFASTSOFTMAX_VECTOR_BYTES=<16|32|64>"
#endif

#define FS_INLINE inline __attribute__((always_inline))
#define FS_INLINE_LAMBDA __attribute__((always_inline))

namespace fastsoftmax {
namespace FASTSOFTMAX_LEVEL {
namespace {

using std::int64_t;
using std::uint8_t;

template <class T> struct SameWidthInt;
template <> struct SameWidthInt<float> { using type = std::int32_t; };
template <> struct SameWidthInt<double> { using type = std::int64_t; };

constexpr int64_t kVectorBytes = FASTSOFTMAX_VECTOR_BYTES;

// Vector types of one level: Real holds `lanes` values, Ints the same-width
// integers (comparison results, exponent bits), Bytes one mask byte a lane.
template <class T>
struct Simd {
    using Int = typename SameWidthInt<T>::type;
    static constexpr int64_t lanes = kVectorBytes / int64_t(sizeof(T));
    typedef T Real __attribute__((vector_size(kVectorBytes)));
    typedef Int Ints __attribute__((vector_size(kVectorBytes)));
    typedef uint8_t Bytes __attribute__((vector_size(lanes)));
    typedef double Doubles __attribute__((vector_size(lanes * sizeof(double))));
};

// Sums of exp: elements are added in the row's type in chunks of
// kChunkVectors vectors with four vector accumulators, so a lane adds at most
// four terms before its partial sum moves to a per-lane double total (which
// bounds what a lane can round away, whatever the row's length). float rows
// add those partials in plain double (2^-53 per add: nothing at float
// precision for any row that fits in memory); double rows add them with a
// TwoSum compensation. The lanes' totals are added at the end (lanes_total:
// a tree for float rows, lane order with compensation for double rows).
constexpr int64_t kChunkVectors = 16;
template <class T>
constexpr int64_t kChunk = kChunkVectors * Simd<T>::lanes;

template <class To, class From>
FS_INLINE To bit_cast_scalar(From value) {
    static_assert(sizeof(To) == sizeof(From));
    To result;
    std::memcpy(&result, &value, sizeof result);
    return result;
}

template <class V, class T>
FS_INLINE V broadcast(T value) {
    return V{} + value;
}

// Lane indices 0, 1, ..., lanes - 1.
template <class I>
FS_INLINE I lane_indices() {
    I index{};
    for (int64_t j = 0; j < int64_t(sizeof(I) / sizeof(index[0])); ++j) index[j] = j;
    return index;
}

#if defined(__AVX512F__)
// piece(k, bits) for each 64-byte piece of a vector (lanes k .. k + 64 bytes)
// that holds lanes below count; bits has a 1 for each of those lanes.
template <class T, class Piece>
FS_INLINE void for_each_masked_piece(int64_t count, const Piece& piece) {
    constexpr int64_t kPiece = 64 / int64_t(sizeof(T));
    for (int64_t k = 0; k < Simd<T>::lanes && k < count; k += kPiece) {
        const int64_t c = count - k < kPiece ? count - k : kPiece;
        piece(k, static_cast<uint16_t>((uint32_t(1) << c) - 1));
    }
}
#endif

// Lanes [0, count) of p into a vector whose other lanes are 0; nothing past
// p[count - 1] is read. AVX2 and AVX-512 mask the load (one instruction per
// 32 or 64 bytes); other levels go through a small buffer.
template <class T>
FS_INLINE typename Simd<T>::Real load_first(const T* p, int64_t count) {
    using S = Simd<T>;
    typename S::Real v{};
#if defined(__AVX512F__)
    for_each_masked_piece<T>(count, [&](int64_t k, uint16_t bits) FS_INLINE_LAMBDA {
        if constexpr (sizeof(T) == 4) {
            const __m512 piece = _mm512_maskz_loadu_ps(bits, p + k);
            std::memcpy(reinterpret_cast<char*>(&v) + k * sizeof(T), &piece, sizeof piece);
        } else {
            const __m512d piece = _mm512_maskz_loadu_pd(static_cast<uint8_t>(bits), p + k);
            std::memcpy(reinterpret_cast<char*>(&v) + k * sizeof(T), &piece, sizeof piece);
        }
    });
#elif defined(__AVX2__)
    constexpr int64_t kPiece = 32 / int64_t(sizeof(T));
    typedef typename SameWidthInt<T>::type Piece __attribute__((vector_size(32)));
    const Piece index = lane_indices<Piece>();
    for (int64_t k = 0; k < S::lanes && k < count; k += kPiece) {
        const Piece on = index < Piece{} + typename SameWidthInt<T>::type(count - k);
        if constexpr (sizeof(T) == 4) {
            const __m256 piece = _mm256_maskload_ps(p + k, reinterpret_cast<const __m256i&>(on));
            std::memcpy(reinterpret_cast<char*>(&v) + k * sizeof(T), &piece, sizeof piece);
        } else {
            const __m256d piece = _mm256_maskload_pd(p + k, reinterpret_cast<const __m256i&>(on));
            std::memcpy(reinterpret_cast<char*>(&v) + k * sizeof(T), &piece, sizeof piece);
        }
    }
#else
    T buffer[S::lanes] = {};
    for (int64_t j = 0; j < count; ++j) buffer[j] = p[j];
    std::memcpy(&v, buffer, sizeof v);
#endif
    return v;
}

// Load `count` (<= lanes) elements; lanes past count hold `fill`, chosen so
// that they change nothing (-inf for a max or an exp). count == lanes is the
// main-loop case and folds to one unaligned load.
template <class T>
FS_INLINE typename Simd<T>::Real load(const T* p, int64_t count, T fill) {
    using S = Simd<T>;
    typename S::Real v;
    if (count == S::lanes) {
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    const auto live = lane_indices<typename S::Ints>() < typename S::Int(count);
    return live ? load_first(p, count) : broadcast<typename S::Real>(fill);
}

// Store lanes [0, count) of v to p. (A fixed-length loop: a loop of `count`
// copies became a memcpy call.)
template <class T>
FS_INLINE void store(T* p, typename Simd<T>::Real v, int64_t count) {
    using S = Simd<T>;
    if (count == S::lanes) {
        std::memcpy(p, &v, sizeof v);
        return;
    }
#if defined(__AVX512F__)
    for_each_masked_piece<T>(count, [&](int64_t k, uint16_t bits) FS_INLINE_LAMBDA {
        if constexpr (sizeof(T) == 4) {
            __m512 piece;
            std::memcpy(&piece, reinterpret_cast<const char*>(&v) + k * sizeof(T), sizeof piece);
            _mm512_mask_storeu_ps(p + k, bits, piece);
        } else {
            __m512d piece;
            std::memcpy(&piece, reinterpret_cast<const char*>(&v) + k * sizeof(T), sizeof piece);
            _mm512_mask_storeu_pd(p + k, static_cast<uint8_t>(bits), piece);
        }
    });
#else
#pragma GCC unroll 16
    for (int64_t j = 0; j < S::lanes; ++j) {
        if (j < count) p[j] = v[j];
    }
#endif
}

// Mask bytes as lanes of all ones (active) or zeros; lanes past count are inactive.
template <class T>
FS_INLINE typename Simd<T>::Ints load_mask(const uint8_t* p, int64_t count) {
    using S = Simd<T>;
    typename S::Bytes bytes;
    if (count == S::lanes) {
        std::memcpy(&bytes, p, sizeof bytes);
    } else {
        uint8_t buffer[S::lanes];
        for (int64_t j = 0; j < S::lanes; ++j) buffer[j] = j < count ? p[j] : 0;
        std::memcpy(&bytes, buffer, sizeof bytes);
    }
    const auto widened = __builtin_convertvector(bytes, typename S::Ints);
    return widened != 0;
}

template <class V>
constexpr int64_t lanes_of = int64_t(sizeof(V) / sizeof(V{}[0]));

// op over the lanes of v as a tree: lane j with lane j + lanes/2, then the
// halves again (log2(lanes) dependent steps instead of lanes - 1).
template <class V, class Op>
FS_INLINE auto fold_lanes(V v, const Op& op) {
    constexpr int64_t L = lanes_of<V>;
    if constexpr (L == 1) {
        return v[0];
    } else {
        return [&]<std::size_t... j>(std::index_sequence<j...>) __attribute__((always_inline)) {
            return fold_lanes(op(__builtin_shufflevector(v, v, j...),
                                 __builtin_shufflevector(v, v, (j + L / 2)...)),
                              op);
        }(std::make_index_sequence<std::size_t(L / 2)>{});
    }
}

template <class V>
FS_INLINE auto lanes_sum(V v) {
    return fold_lanes(v, [](auto a, auto b) { return a + b; });
}

template <class V>
FS_INLINE auto lanes_max(V v) {
    return fold_lanes(v, [](auto a, auto b) { return a > b ? a : b; });
}

template <class V>
FS_INLINE auto lanes_min(V v) {
    return fold_lanes(v, [](auto a, auto b) { return a < b ? a : b; });
}

// Visit [begin, end) a vector at a time: blocks of four vectors into four
// independent accumulators (an add has 3-4 cycles of latency; one chain
// would leave the FMA units idle), then single vectors into accumulator 0,
// then one partial vector into accumulator 1. block(offset, acc) takes four
// full vectors, vector k into acc[k]; visit(offset, count, accumulator) one
// vector, count is `lanes` except at the tail.
template <class T, class Acc, class Block, class Visit>
FS_INLINE void visit_vector_blocks(int64_t begin, int64_t end, Acc (&acc)[4], const Block& block,
                                   const Visit& visit) {
    constexpr int64_t L = Simd<T>::lanes;
    int64_t i = begin;
    for (; i + 4 * L <= end; i += 4 * L) block(i, acc);
    for (; i + L <= end; i += L) visit(i, L, acc[0]);
    if (i < end) visit(i, end - i, acc[1]);
}

// The same with the blocks as four single visits (count a compile-time
// constant there).
template <class T, class Acc, class Visit>
FS_INLINE void visit_vectors(int64_t begin, int64_t end, Acc (&acc)[4], const Visit& visit) {
    constexpr int64_t L = Simd<T>::lanes;
    visit_vector_blocks<T>(
        begin, end, acc,
        [&](int64_t i, Acc (&a)[4]) {
            visit(i, L, a[0]);
            visit(i + L, L, a[1]);
            visit(i + 2 * L, L, a[2]);
            visit(i + 3 * L, L, a[3]);
        },
        visit);
}

// exp(d) for d <= 0: d = n ln2 + r with |r| <= ln2/2, a polynomial for
// exp(r), then 2^n applied through the exponent bits. The shifter is
// 1.5 * 2^m + bias (m mantissa bits): adding it rounds d / ln2 to an integer
// and leaves n + bias, the biased exponent of 2^n, in the low bits of t, so
// the fast form builds 2^n with one shift. kSubnormal applies 2^n as two
// factors instead, so that a subnormal result is rounded once, not flushed.
// The polynomial is 1 + r + r^2 q(r): float, q of degree 4 (Remez fit,
// relative error 3.8e-9 with the coefficients rounded to float), 6 FMAs;
// double, q of degree 9 (Chebyshev fit, 1.6e-17), 11 FMAs.
template <class T>
struct ExpConstants;

template <>
struct ExpConstants<float> {
    static constexpr float clamp = -104.0f;      // exp(-104) < 2^-150: rounds to +0 below
    static constexpr float shifter = 12583039.0f;  // 1.5 * 2^23 + 127
    static constexpr float log2e = 1.44269504088896341f;
    static constexpr float ln2_high = 0.693359375f;  // n * ln2_high is exact
    static constexpr float ln2_low = -2.12194440e-4f;
    static constexpr int mantissa_bits = 23, bias = 127, min_exponent = -126;
    static constexpr float poly[] = {0x1.6a244ep-10f, 0x1.1239d4p-7f, 0x1.5558f2p-5f,
                                     0x1.555492p-3f,  0x1.fffffcp-2f, 1.0f, 1.0f};
};

template <>
struct ExpConstants<double> {
    static constexpr double clamp = -746.0;  // exp(-746) < 2^-1075: rounds to +0 below
    static constexpr double shifter = 6755399441056767.0;  // 1.5 * 2^52 + 1023
    static constexpr double log2e = 1.4426950408889634074;
    static constexpr double ln2_high = 6.93145751953125e-1;
    static constexpr double ln2_low = 1.42860682030941723212e-6;
    static constexpr int mantissa_bits = 52, bias = 1023, min_exponent = -1022;
    static constexpr double poly[] = {
        2.5100375832561234e-08, 2.7620075879983367e-07, 2.7557268480310024e-06,
        2.4801521322368692e-05, 0.00019841269863040545, 0.0013888888917196719,
        0.008333333333330065,   0.041666666666624164,   0.16666666666666669,
        0.5000000000000001,     1.0,                    1.0};
};

// Every step runs over a block of K independent vectors before the next one:
// the polynomial is a chain of dependent FMAs, and K interleaved chains keep
// the FMA units busy where the out-of-order window alone does not (AVX2 on
// this project's Zen machine: 0.93 -> 0.68 ns per float with K = 4).
#define FS_EACH(k) _Pragma("GCC unroll 16") for (int k = 0; k < K; ++k)
#define FS_EACH4(k) _Pragma("GCC unroll 4") for (int k = 0; k < 4; ++k)

template <class T, bool kSubnormal, int K>
FS_INLINE void exp_nonpositive_block(typename Simd<T>::Real (&v)[K]) {
    using S = Simd<T>;
    using R = typename S::Real;
    using I = typename S::Ints;
    using C = ExpConstants<T>;
    R t[K], n[K], r[K], p[K];
    if constexpr (kSubnormal) {
        FS_EACH(k) v[k] = v[k] < C::clamp ? broadcast<R>(C::clamp) : v[k];
    }
    FS_EACH(k) t[k] = v[k] * C::log2e + C::shifter;
    FS_EACH(k) n[k] = t[k] - C::shifter;
    FS_EACH(k) r[k] = v[k] - n[k] * C::ln2_high;
    FS_EACH(k) r[k] = r[k] - n[k] * C::ln2_low;
    FS_EACH(k) p[k] = broadcast<R>(C::poly[0]);
    const auto horner_step = [&](T c) __attribute__((always_inline)) {
        FS_EACH(k) p[k] = p[k] * r[k] + c;
    };
    [&]<std::size_t... j>(std::index_sequence<j...>) __attribute__((always_inline)) {
        (horner_step(C::poly[j + 1]), ...);
    }(std::make_index_sequence<std::size(C::poly) - 1>{});
    if constexpr (!kSubnormal) {  // every result is normal
        FS_EACH(k) v[k] = p[k] * __builtin_bit_cast(R, __builtin_bit_cast(I, t[k]) << C::mantissa_bits);
        return;
    }
    using Int = typename S::Int;
    FS_EACH(k) {
        const I ni = __builtin_bit_cast(I, t[k]) - __builtin_bit_cast(Int, C::shifter);  // n
        const I n_low = ni < C::min_exponent ? broadcast<I>(Int(C::min_exponent)) : ni;
        const I n_high = ni - n_low;  // a normal power of two times one in [2^-55, 1]
        const R scale_high = __builtin_bit_cast(R, (n_high + C::bias) << C::mantissa_bits);
        const R scale_low = __builtin_bit_cast(R, (n_low + C::bias) << C::mantissa_bits);
        v[k] = (p[k] * scale_high) * scale_low;
    }
}

// kSubnormal = false: the caller knows every d is above normal_exp_limit<T>
// (no result is subnormal or zero), so the clamp and the two-step scale go.
template <class T, bool kSubnormal = true>
FS_INLINE typename Simd<T>::Real exp_nonpositive(typename Simd<T>::Real d) {
    typename Simd<T>::Real v[1] = {d};
    exp_nonpositive_block<T, kSubnormal, 1>(v);
    return v[0];
}

// Below this, exp(d) may be subnormal (n < -126 / -1022 after rounding).
template <class T>
constexpr T normal_exp_limit = sizeof(T) == 4 ? T(-87.0) : T(-707.0);

// exp of `count` loaded lanes: the fast form only for full vectors of a row
// known to stay above normal_exp_limit (a partial vector's fill lanes, and
// masked lanes, hold -inf).
template <class T, bool kSubnormal>
FS_INLINE typename Simd<T>::Real exp_of_lanes(typename Simd<T>::Real d, int64_t count) {
    if (!kSubnormal && count == Simd<T>::lanes) return exp_nonpositive<T, false>(d);
    return exp_nonpositive<T, true>(d);
}

// Sum of doubles with Neumaier's compensation.
struct CompensatedSum {
    double sum = 0.0;
    double compensation = 0.0;
    FS_INLINE void add(double value) {
        const double t = sum + value;
        compensation += std::fabs(sum) >= std::fabs(value) ? (sum - t) + value : (value - t) + sum;
        sum = t;
    }
    FS_INLINE double value() const { return sum + compensation; }
};

// Running total of one lane's chunk partials (D = double), or of every lane
// at once (D = a vector of doubles): TwoSum keeps the rounding error of each
// add when kCompensated (double rows).
template <class D, bool kCompensated>
struct LaneTotal {
    D sum{};
    D compensation{};
    FS_INLINE void add(D value) {
        if constexpr (kCompensated) {
            const D t = sum + value;
            const D v = t - sum;
            compensation += (sum - (t - v)) + (value - v);
            sum = t;
        } else {
            sum += value;
        }
    }
};

// The row total from the per-lane totals, lanes in order. lane(j) gives
// (sum, compensation) of lane j as doubles.
constexpr int64_t kMaxLanes = kVectorBytes / 4;

template <bool kCompensated, class Lane>
FS_INLINE double lanes_total(int64_t lanes, const Lane& lane) {
    if constexpr (!kCompensated) {  // float rows: a few double adds lose nothing at float precision
        // As a tree, in fold_lanes' order: the row kernel's and the column
        // kernel's totals must agree bit for bit.
        double total[kMaxLanes];
        for (int64_t j = 0; j < lanes; ++j) total[j] = lane(j).first;
        for (int64_t width = lanes / 2; width >= 1; width /= 2) {
            for (int64_t j = 0; j < width; ++j) total[j] += total[j + width];
        }
        return total[0];
    } else {
        CompensatedSum total;
        for (int64_t j = 0; j < lanes; ++j) {
            const auto [sum, compensation] = lane(j);
            total.add(sum);
            total.add(compensation);
        }
        return total.value();
    }
}

template <class T>
constexpr bool kCompensatedTotals = sizeof(T) == 8;

// lanes_total of per-lane totals held in vectors of doubles; for float rows
// the tree runs on the vector (fold_lanes adds in lanes_total's order).
template <class T, class D>
FS_INLINE double vector_lanes_total(const D& sum, const D& compensation) {
    if constexpr (!kCompensatedTotals<T>) {
        return lanes_sum(sum);
    } else {
        return lanes_total<true>(lanes_of<D>, [&](int64_t j) {
            return std::pair<double, double>{sum[j], compensation[j]};
        });
    }
}

template <class T>
struct RowScan {
    T max;           // over active elements, NaN ignored
    T min;           // over active elements, NaN ignored
    int64_t active;  // elements not masked out
    bool has_nan;    // an active element is NaN
};

// scan_row without a mask: accumulators in registers; a partial tail is read
// as the row's last full vector (lanes seen twice change no max, min or NaN
// flag), so only rows shorter than a vector take a masked load.
template <class T>
RowScan<T> scan_unmasked_row(const T* x, int64_t n) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr int64_t L = S::lanes;
    constexpr T inf = std::numeric_limits<T>::infinity();
    Real max[4], min[4];
    Ints nan[4];
    FS_EACH4(k) {
        max[k] = broadcast<Real>(-inf);
        min[k] = broadcast<Real>(inf);
        nan[k] = Ints{};
    }
    const auto add = [&](int k, Real high, Real low) FS_INLINE_LAMBDA {
        max[k] = high > max[k] ? high : max[k];
        min[k] = low < min[k] ? low : min[k];
        nan[k] |= high != high;
    };
    int64_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
        FS_EACH4(k) {
            const Real v = load(x + i + k * L, L, T(0));
            add(k, v, v);
        }
    }
    for (; i + L <= n; i += L) {
        const Real v = load(x + i, L, T(0));
        add(1, v, v);
    }
    if (i < n) {
        if (n >= L) {
            const Real v = load(x + n - L, L, T(0));
            add(2, v, v);
        } else {
            const Real v = load_first(x, n);
            const auto live = lane_indices<Ints>() < typename S::Int(n);
            add(2, live ? v : broadcast<Real>(-inf), live ? v : broadcast<Real>(inf));
        }
    }
    _Pragma("GCC unroll 4") for (int k = 1; k < 4; ++k) add(0, max[k], min[k]), nan[0] |= nan[k];
    // NaN lanes never entered: max and min ignore NaN.
    return {lanes_max(max[0]), lanes_min(min[0]), n, lanes_sum(nan[0]) != 0};
}

template <class T>
RowScan<T> scan_row(const T* x, const uint8_t* mask, int64_t n) {
    if (mask == nullptr) return scan_unmasked_row(x, n);
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr T inf = std::numeric_limits<T>::infinity();
    struct Acc {
        Real max;
        Real min;
        Ints nan;
        Ints active;  // minus the count: comparisons give -1
    };
    Acc acc[4];
    for (Acc& a : acc) a = {broadcast<Real>(-inf), broadcast<Real>(inf), Ints{}, Ints{}};
    visit_vectors<T>(0, n, acc, [&](int64_t i, int64_t count, Acc& a) FS_INLINE_LAMBDA {
        const Ints on = load_mask<T>(mask + i, count);
        const Real v = load(x + i, count, -inf);
        const Real high = on ? v : broadcast<Real>(-inf);
        const Real low = on ? v : broadcast<Real>(inf);
        a.max = high > a.max ? high : a.max;
        a.min = low < a.min ? low : a.min;
        a.nan |= high != high;
        a.active += on;
    });
    for (int k = 1; k < 4; ++k) {  // fold the accumulators, then the lanes
        acc[0].max = acc[k].max > acc[0].max ? acc[k].max : acc[0].max;
        acc[0].min = acc[k].min < acc[0].min ? acc[k].min : acc[0].min;
        acc[0].nan |= acc[k].nan;
        acc[0].active += acc[k].active;
    }
    // NaN lanes never entered: max and min ignore NaN.
    return {lanes_max(acc[0].max), lanes_min(acc[0].min), -int64_t(lanes_sum(acc[0].active)),
            lanes_sum(acc[0].nan) != 0};
}

// Rows whose max is not finite, or with nothing active, take the
// scipy.special values: NaN for a NaN, +inf or all -inf row, except that
// log_softmax keeps -inf beside +inf; a row masked out entirely is 0
// (softmax) or -inf (log_softmax). Masked elements are 0 or -inf.
template <class T>
void fill_special_row(const T* x, T* y, const uint8_t* mask, int64_t n, const RowScan<T>& scan,
                      RowOp op) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr T nan = std::numeric_limits<T>::quiet_NaN();
    const T masked_value = op == RowOp::softmax ? T(0) : -inf;
    const bool keeps_minus_inf = op == RowOp::log_softmax && !scan.has_nan && scan.max == inf;
    for (int64_t i = 0; i < n; ++i) {
        if (mask != nullptr && mask[i] == 0) {
            y[i] = masked_value;
        } else if (keeps_minus_inf) {
            y[i] = x[i] == inf ? nan : -inf;
        } else {
            y[i] = nan;
        }
    }
}

// Every exp((x - max) * scale) of the row is a normal number: rounding is
// monotonic, so the smallest x gives the smallest d.
template <class T>
bool stays_normal(const RowScan<T>& scan, T scale) {
    return (scan.min - scan.max) * scale >= normal_exp_limit<T>;
}

template <class T>
bool is_special(const RowScan<T>& scan) {
    return scan.active == 0 || scan.has_nan || !std::isfinite(scan.max);
}

struct SplitSum {
    double below_max;
    double at_max;
};

// The flags of a row's exp pass: kSubnormal (some exp(d) may be subnormal or
// zero: the careful exp form), kScaled (temperature != 1: d = (x - max) * scale;
// with scale 1 the multiply is skipped, which changes no bit).
template <bool kScaled, class R, class M, class T>
FS_INLINE R centred(R v, M max, T scale) {
    if constexpr (kScaled) return (v - max) * scale;
    return v - max;
}

// Calls body(bool_constant<kSubnormal>, bool_constant<kScaled>).
template <class Body>
FS_INLINE auto with_exp_flags(bool subnormal, bool scaled, const Body& body) {
    using std::bool_constant;
    if (subnormal) {
        return scaled ? body(bool_constant<true>{}, bool_constant<true>{})
                      : body(bool_constant<true>{}, bool_constant<false>{});
    }
    return scaled ? body(bool_constant<false>{}, bool_constant<true>{})
                  : body(bool_constant<false>{}, bool_constant<false>{});
}

// Adds e = exp(d) to a sum accumulator; kSplit: an element at the max
// (d == 0) is counted in at_count instead (a true comparison is -1).
template <bool kSplit, class R, class I>
FS_INLINE void add_exp(R& acc, I& at_count, const R& d, const R& e) {
    if constexpr (kSplit) {
        const auto at_max = d == 0;
        acc += at_max ? R{} : e;
        at_count -= at_max;
    } else {
        acc += e;
    }
}

// Pass 2: the sum of exp(d), d = (x - max) * scale, masked lanes 0. kStore
// also writes exp(d) to y (softmax); x may be y (in place): each element is
// read before it is written. kSplit (log_softmax, logsumexp) counts the
// elements at the max (d == 0, exp exactly 1) apart from the sum of the
// rest, for log(sum) = log(count) + log1p(rest / count): that keeps the
// digits scipy keeps (logsumexp([0, -40]) is 4.2e-18, not 0).
template <class T, bool kSubnormal, bool kScaled, bool kStore, bool kSplit, bool kMasked>
SplitSum exp_sums_impl(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    using Doubles = typename S::Doubles;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    LaneTotal<Doubles, kCompensatedTotals<T>> totals;
    Ints at_count{};
    for (int64_t start = 0; start < n; start += kChunk<T>) {
        const int64_t stop = start + kChunk<T> < n ? start + kChunk<T> : n;
        Real acc[4] = {};
        const auto visit = [&](int64_t i, int64_t count, Real& a) {
            Real v = load(x + i, count, neg_inf);
            if constexpr (kMasked) v = load_mask<T>(mask + i, count) ? v : broadcast<Real>(neg_inf);
            const Real d = centred<kScaled>(v, max, scale);
            const Real e = kMasked ? exp_nonpositive<T, true>(d)
                                   : exp_of_lanes<T, kSubnormal>(d, count);
            if constexpr (kStore) store(y + i, e, count);
            add_exp<kSplit>(a, at_count, d, e);
        };
        const auto block = [&](int64_t i, Real (&a)[4]) {
            if constexpr (kMasked) {
                for (int k = 0; k < 4; ++k) visit(i + k * S::lanes, S::lanes, a[k]);
            } else {  // the four exps interleaved
                constexpr int K = 4;
                Real d[K], e[K];
                FS_EACH(k) d[k] = centred<kScaled>(load(x + i + k * S::lanes, S::lanes, T(0)),
                                                   max, scale);
                FS_EACH(k) e[k] = d[k];
                exp_nonpositive_block<T, kSubnormal, K>(e);
                FS_EACH(k) {
                    if constexpr (kStore) store(y + i + k * S::lanes, e[k], S::lanes);
                    add_exp<kSplit>(a[k], at_count, d[k], e[k]);
                }
            }
        };
        if constexpr (kMasked) {
            visit_vector_blocks<T>(start, stop, acc, block, visit);
        } else {
            constexpr int64_t L = S::lanes;
            int64_t i = start;
            for (; i + 4 * L <= stop; i += 4 * L) block(i, acc);
            if (i < stop) {
                // What is left (up to three full vectors and a partial one) as one
                // interleaved block, added as visit_vector_blocks adds it: full
                // vectors into acc[0] in order, the partial one into acc[1].
                constexpr int K = 4;
                const int64_t left = stop - i;
                const int64_t full = left / L, tail = left % L;
                const auto live = lane_indices<Ints>() < typename S::Int(tail);
                Real d[K], e[K];
                FS_EACH(k) {
                    if (k < full) {
                        d[k] = centred<kScaled>(load(x + i + k * L, L, T(0)), max, scale);
                        e[k] = d[k];
                    } else if (k == full && tail > 0) {
                        d[k] = centred<kScaled>(load_first(x + i + k * L, tail), max, scale);
                        d[k] = live ? d[k] : broadcast<Real>(neg_inf);
                        e[k] = live ? d[k] : Real{};
                    } else {
                        e[k] = Real{};
                    }
                }
                exp_nonpositive_block<T, kSubnormal, K>(e);
                FS_EACH(k) {
                    if (k < full) {
                        if constexpr (kStore) store(y + i + k * L, e[k], L);
                        add_exp<kSplit>(acc[0], at_count, d[k], e[k]);
                    } else if (k == full && tail > 0) {
                        e[k] = live ? e[k] : Real{};
                        if constexpr (kStore) store(y + i + k * L, e[k], tail);
                        add_exp<kSplit>(acc[1], at_count, d[k], e[k]);
                    }
                }
            }
        }
        totals.add(__builtin_convertvector((acc[0] + acc[1]) + (acc[2] + acc[3]), Doubles));
    }
    const double below = vector_lanes_total<T>(totals.sum, totals.compensation);
    return {below, kSplit ? double(lanes_sum(at_count)) : 0.0};  // -= true (-1) counts up
}


// The masked and unmasked loops compiled apart: a run-time mask test in the
// loop kept the accumulators in memory.
template <class T, bool kSubnormal, bool kScaled, bool kStore, bool kSplit>
SplitSum exp_sums(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale) {
    if (mask != nullptr) {
        return exp_sums_impl<T, kSubnormal, kScaled, kStore, kSplit, true>(x, y, mask, n, max,
                                                                           scale);
    }
    return exp_sums_impl<T, kSubnormal, kScaled, kStore, kSplit, false>(x, y, mask, n, max, scale);
}

// Pass 2 with the exp form (subnormal: some exp(d) may be below the normal
// range) and the scale picked at run time.
template <class T, bool kStore, bool kSplit>
SplitSum row_exp_sums(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale,
                      bool subnormal) {
    return with_exp_flags(subnormal, scale != T(1), [&](auto sub, auto scaled) {
        return exp_sums<T, decltype(sub)::value, decltype(scaled)::value, kStore, kSplit>(
            x, y, mask, n, max, scale);
    });
}

double log_of_split_sum(const SplitSum& s) {
    if (s.at_max == 1.0) return std::log1p(s.below_max);  // one element at the max: the usual row
    return std::log(s.at_max) + std::log1p(s.below_max / s.at_max);
}

template <class T>
void scale_row(T* y, int64_t n, T factor) {
    using Real = typename Simd<T>::Real;
    Real unused[4];
    visit_vectors<T>(0, n, unused, [&](int64_t i, int64_t count, Real&) {
        store(y + i, load(y + i, count, T(0)) * factor, count);
    });
}

// An empty asm the value must pass through in a register (in memory where
// the vector is wider than one): the compiler can no longer fuse the
// operation that made it with the one that uses it.
template <class R>
FS_INLINE void opaque(R& v) {
#if defined(__AVX512F__)
    constexpr size_t kRegisterBytes = 64;
#elif defined(__AVX__)
    constexpr size_t kRegisterBytes = 32;
#elif defined(__SSE2__) || defined(__aarch64__)
    constexpr size_t kRegisterBytes = 16;
#else
    constexpr size_t kRegisterBytes = 0;
#endif
#if defined(__x86_64__) || defined(__aarch64__)
    if constexpr (sizeof(R) <= kRegisterBytes) {
#if defined(__AVX512F__)
        __asm__("" : "+v"(v));
#elif defined(__x86_64__)
        __asm__("" : "+x"(v));
#else
        __asm__("" : "+w"(v));
#endif
        return;
    }
#endif
    __asm__("" : "+m"(v));
}

// log_softmax's value d - log_sum, d = (x - max) * scale rounded first. Left
// to itself the compiler fuses the multiply and the subtraction into one
// FMA where d has no other use and not where it has: one path's values were
// then 1 ULP off another's.
template <class R, class M, class T, class Log>
FS_INLINE R log_softmax_of(R x, M max, T scale, Log log_sum) {
    R d = (x - max) * scale;
    opaque(d);
    return d - log_sum;
}

// log_softmax pass 3: y = d - log_sum, masked lanes -inf. x may be y.
template <class T>
void subtract_row(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale, T log_sum) {
    using Real = typename Simd<T>::Real;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    Real unused[4];
    visit_vectors<T>(0, n, unused, [&](int64_t i, int64_t count, Real&) {
        Real v = log_softmax_of(load(x + i, count, T(0)), max, scale, log_sum);
        if (mask != nullptr) v = load_mask<T>(mask + i, count) ? v : broadcast<Real>(neg_inf);
        store(y + i, v, count);
    });
}

// Finite logits whose spread max - min overflows the type (|x| near its
// largest value) with T > 1: (x - max) / T would be -inf where the result
// is finite, so such rows divide first, in double (wide_row_*). With T <= 1
// the exact d is below -max_value anyway and the fast path's -inf is right.
template <class T>
bool needs_wide(const RowScan<T>& scan, double temperature) {
    return temperature > 1.0 && std::isfinite(scan.min) && !std::isfinite(scan.max - scan.min);
}

// The wide rows: d = x / T - max / T in double, scalar (such rows are rare).
template <class T>
SplitSum wide_row_sums(const T* x, const uint8_t* mask, int64_t n, double top,
                       double temperature) {
    CompensatedSum below;
    double at = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        if (mask != nullptr && mask[i] == 0) continue;
        const double d = double(x[i]) / temperature - top;
        if (d == 0.0) {
            at += 1.0;
        } else {
            below.add(std::exp(d));
        }
    }
    return {below.value(), at};
}

template <class T>
double wide_row_logsumexp(const T* x, const uint8_t* mask, int64_t n, T max, double temperature) {
    const double top = double(max) / temperature;
    return top + log_of_split_sum(wide_row_sums(x, mask, n, top, temperature));
}

template <class T>
void wide_row_softmax(const T* x, T* y, const uint8_t* mask, int64_t n, T max,
                      double temperature, RowOp op) {
    const double top = double(max) / temperature;
    const SplitSum sums = wide_row_sums(x, mask, n, top, temperature);
    const double log_sum = log_of_split_sum(sums);
    const double inverse = 1.0 / (sums.below_max + sums.at_max);
    for (int64_t i = 0; i < n; ++i) {
        const double d = double(x[i]) / temperature - top;
        const bool on = mask == nullptr || mask[i] != 0;
        if (op == RowOp::softmax) {
            y[i] = on ? static_cast<T>(std::exp(d) * inverse) : T(0);
        } else {
            y[i] = on ? static_cast<T>(d - log_sum) : -std::numeric_limits<T>::infinity();
        }
    }
}

// ---------------------------------------------------------------------------
// Rows of online_row_bytes() and more do not stay in cache between passes: the
// online normalizer (Milakov & Gimelshein 2018), by chunks. Pass 1 reads
// each chunk from memory once (scan) and again from L1 (exp and split sum
// relative to the chunk's max), merging (max, sums) into the row's as it
// goes; pass 2 writes y. softmax reads x twice and writes y once;
// log_softmax the same; logsumexp reads x once.

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
        const SplitSum s = row_exp_sums<T, false, true>(x + start, nullptr, chunk_mask, m,
                                                        chunk.max, scale,
                                                        !stays_normal(chunk, scale));
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

// Online pass 2 of softmax: y = exp((x - max) * scale) * inverse_sum.
template <class T, bool kSubnormal, bool kScaled>
void exp_scale_store(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale,
                     T inverse_sum) {
    using Real = typename Simd<T>::Real;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    Real unused[4];
    visit_vectors<T>(0, n, unused, [&](int64_t i, int64_t count, Real&) {
        Real v = load(x + i, count, neg_inf);
        if (mask != nullptr) v = load_mask<T>(mask + i, count) ? v : broadcast<Real>(neg_inf);
        const Real d = centred<kScaled>(v, max, scale);
        const Real e = mask != nullptr ? exp_nonpositive<T, true>(d)
                                       : exp_of_lanes<T, kSubnormal>(d, count);
        store(y + i, e * inverse_sum, count);
    });
}

template <class T>
bool online_sized(int64_t n) {
    return n * int64_t(sizeof(T)) >= online_row_bytes();
}

template <class T>
void softmax_row_online(const T* x, T* y, const uint8_t* mask, int64_t n, double temperature,
                        RowOp op) {
    const T scale = static_cast<T>(1.0 / temperature);
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
        subtract_row(x, y, mask, n, row.scan.max, scale, static_cast<T>(log_of_split_sum(row.sums)));
        return;
    }
    const T inverse = static_cast<T>(1.0 / (row.sums.below_max + row.sums.at_max));
    with_exp_flags(!stays_normal(row.scan, scale), scale != T(1), [&](auto sub, auto scaled) {
        exp_scale_store<T, decltype(sub)::value, decltype(scaled)::value>(x, y, mask, n,
                                                                          row.scan.max, scale,
                                                                          inverse);
    });
}

// Rows of at most kShortRowVectors vectors (class scores, short sequences)
// are loaded once and stay in registers from the scan to the store: no
// second read, no scale pass, no loop. The sums take exp_sums' order exactly
// (full vectors into accumulator 0 and a partial tail into accumulator 1, or
// one block of four into four accumulators), so a short row gets the bits
// the general passes give. Special and wide rows return false (the general
// path takes them).
constexpr int kShortRowVectors = 4;

enum class ShortOp { softmax, log_softmax, logsumexp };

// G rows of M vectors each (rows g at x + g * x_stride, y likewise): with
// G > 1 the rows' dependency chains (max, exp, sum, division) interleave,
// which a row of one or two vectors needs: alone it waits on latencies.
// logsumexp[g * ls_step] gets row g's logsumexp (kOp == logsumexp).
template <class T, int M, int G, ShortOp kOp>
bool short_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t n,
                double temperature, T* logsumexp, int64_t ls_step) {
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
    for (int g = 0; g < G; ++g) {
        const Real* row = v + g * M;
        Real high = live ? row[M - 1] : broadcast<Real>(-inf);
        Real low = live ? row[M - 1] : broadcast<Real>(inf);
        Ints nan = high != high;
        for (int k = 0; k + 1 < M; ++k) {
            high = row[k] > high ? row[k] : high;  // NaN never enters: the row leaves below
            low = row[k] < low ? row[k] : low;
            nan |= row[k] != row[k];
        }
        scan[g] = {lanes_max(high), lanes_min(low), n, lanes_sum(nan) != 0};
        if (is_special(scan[g]) || needs_wide(scan[g], temperature)) return false;
    }
    const T scale = static_cast<T>(1.0 / temperature);
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
        for (int g = 0; g < G; ++g) {
            const Real* dg = d + g * M;
            const Real* eg = e + g * M;
            Real acc[4] = {};
            Ints at_count{};
            if (M == 4 && tail == L) {
                for (int k = 0; k < M; ++k) add_exp<kSplit>(acc[k % 4], at_count, dg[k], eg[k]);
            } else {
                for (int k = 0; k + 1 < M; ++k) add_exp<kSplit>(acc[0], at_count, dg[k], eg[k]);
                add_exp<kSplit>(acc[tail == L ? 0 : 1], at_count, dg[M - 1], eg[M - 1]);
            }
            const Real total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            const SplitSum sums{
                vector_lanes_total<T>(__builtin_convertvector(total, typename S::Doubles),
                                      typename S::Doubles{}),
                kSplit ? double(lanes_sum(at_count)) : 0.0};
            if constexpr (kOp == ShortOp::logsumexp) {
                logsumexp[g * ls_step] = static_cast<T>(static_cast<double>(scan[g].max) / temperature +
                                                        log_of_split_sum(sums));
                continue;
            }
            T* out = y + g * y_stride;
            const Real* vg = v + g * M;
            if constexpr (kOp == ShortOp::softmax) {
                const T inverse = static_cast<T>(1.0 / (sums.below_max + sums.at_max));
                for (int k = 0; k < M; ++k) store(out + k * L, eg[k] * inverse, k + 1 < M ? L : tail);
            } else {  // subtract_row's expression
                const T log_sum = static_cast<T>(log_of_split_sum(sums));
                for (int k = 0; k < M; ++k) {
                    store(out + k * L, log_softmax_of(vg[k], scan[g].max, scale, log_sum),
                          k + 1 < M ? L : tail);
                }
            }
        }
    });
    return true;
}

// Rows of 1 .. kShortRowVectors vectors, `rows` of them, a group at a time;
// a group holding a special or wide row goes row by row through `general`.
template <ShortOp kOp, int M, class T, class General>
void short_rows_of(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                   double temperature, T* logsumexp, int64_t ls_step, const General& general) {
    // Rows per group (kernel harness, avx2, ns a float32 softmax row, groups
    // of 4/2/1 rows -> 4/4/2 for one/two/three-four vectors): 16 floats 62 -> 58,
    // 24 floats 82 -> 66, 32 floats 68 -> 60; rows of 8 (one vector) were
    // slower in groups of 8 (50 -> 51).
    constexpr int G = M <= 2 ? 4 : 2;
    int64_t r = 0;
    for (; r + G <= rows; r += G) {
        if (!short_rows<T, M, G, kOp>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, logsumexp + r * ls_step, ls_step)) {
            for (int64_t g = r; g < r + G; ++g) general(g);
        }
    }
    for (; r < rows; ++r) {
        if (!short_rows<T, M, 1, kOp>(x + r * x_stride, x_stride, y + r * y_stride, y_stride, n,
                                       temperature, logsumexp + r * ls_step, ls_step)) {
            general(r);
        }
    }
}

// True when n suits the short-row kernels (then they did every row).
template <ShortOp kOp, class T, class General>
bool short_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                double temperature, T* logsumexp, int64_t ls_step, const General& general) {
    constexpr int64_t L = Simd<T>::lanes;
    if (n <= 0 || online_sized<T>(n)) return false;
    switch ((n + L - 1) / L) {
        case 1: short_rows_of<kOp, 1>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        case 2: short_rows_of<kOp, 2>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        case 3: short_rows_of<kOp, 3>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        case 4: short_rows_of<kOp, 4>(x, x_stride, y, y_stride, rows, n, temperature, logsumexp, ls_step, general); return true;
        default: return false;
    }
}

template <class T>
void softmax_row(const T* x, T* y, const uint8_t* mask, int64_t n, double temperature,
                 RowOp op) {
    if (online_sized<T>(n)) {
        softmax_row_online(x, y, mask, n, temperature, op);
        return;
    }
    const RowScan<T> scan = scan_row(x, mask, n);
    if (is_special(scan)) {
        fill_special_row(x, y, mask, n, scan, op);
        return;
    }
    if (needs_wide(scan, temperature)) {
        wide_row_softmax(x, y, mask, n, scan.max, temperature, op);
        return;
    }
    const T scale = static_cast<T>(1.0 / temperature);
    const bool subnormal = !stays_normal(scan, scale);
    if (op == RowOp::softmax) {
        const SplitSum sums =
            row_exp_sums<T, true, false>(x, y, mask, n, scan.max, scale, subnormal);
        scale_row(y, n, static_cast<T>(1.0 / (sums.below_max + sums.at_max)));
    } else {
        const double log_sum = log_of_split_sum(
            row_exp_sums<T, false, true>(x, nullptr, mask, n, scan.max, scale, subnormal));
        subtract_row(x, y, mask, n, scan.max, scale, static_cast<T>(log_sum));
    }
}

template <class T>
double logsumexp_row(const T* x, const uint8_t* mask, int64_t n, double temperature) {
    if (online_sized<T>(n)) {
        const OnlineRow<T> row = online_row(x, mask, n, static_cast<T>(1.0 / temperature));
        if (row.scan.active == 0) return -std::numeric_limits<double>::infinity();
        if (row.scan.has_nan) return std::numeric_limits<double>::quiet_NaN();
        if (!std::isfinite(row.scan.max)) return static_cast<double>(row.scan.max);
        if (needs_wide(row.scan, temperature)) return wide_row_logsumexp(x, mask, n, row.scan.max, temperature);
        return static_cast<double>(row.scan.max) / temperature + log_of_split_sum(row.sums);
    }
    const RowScan<T> scan = scan_row(x, mask, n);
    if (scan.active == 0) return -std::numeric_limits<double>::infinity();
    if (scan.has_nan) return std::numeric_limits<double>::quiet_NaN();
    if (!std::isfinite(scan.max)) return static_cast<double>(scan.max);  // +inf, or all -inf
    if (needs_wide(scan, temperature)) return wide_row_logsumexp(x, mask, n, scan.max, temperature);
    const T scale = static_cast<T>(1.0 / temperature);
    const SplitSum sums = row_exp_sums<T, false, true>(x, nullptr, mask, n, scan.max, scale,
                                                       !stays_normal(scan, scale));
    return static_cast<double>(scan.max) / temperature + log_of_split_sum(sums);
}

template <class T>
void exp_nonpositive_array(const T* d, T* y, int64_t n) {
    using Real = typename Simd<T>::Real;
    Real unused[4];
    visit_vectors<T>(0, n, unused, [&](int64_t i, int64_t count, Real&) {
        store(y + i, exp_nonpositive<T>(load(d + i, count, T(0))), count);
    });
}


// ---------------------------------------------------------------------------
// Columns: a reduction over a non-last axis. Element k of column j is at
// x[k * x_stride + j]: adjacent columns are contiguous, so a vector holds one
// element of `lanes` different columns and every statistic is per lane;
// nothing is reduced across lanes and nothing is transposed. Four vectors
// (4 * lanes columns) are in flight per pass to hide the exp latency.
// Returns how many leading columns were done: a group holding a column that
// needs the special-value path (NaN, +-inf max) stops the call before anything
// of that group is written; the caller runs that column as a row and resumes.

constexpr int kColumnVectors = 4;

template <class T>
struct ColumnStats {
    using Real = typename Simd<T>::Real;
    static constexpr int64_t L = Simd<T>::lanes;
    Real max[kColumnVectors];
    Real min[kColumnVectors];
    double sum[kColumnVectors][L];     // per column, as the row kernel's double total
    double at_max[kColumnVectors][L];  // log variants: count of d == 0
};

// Lanes of vector v that hold real columns of a group of `count` columns.
template <class T>
FS_INLINE int64_t lanes_in(int64_t count, int v) {
    const int64_t left = count - int64_t(v) * Simd<T>::lanes;
    return left < 0 ? 0 : (left < Simd<T>::lanes ? left : Simd<T>::lanes);
}

// A column with a NaN, a +-inf max or a spread that overflows (see
// needs_wide) takes the row path.
template <class T>
bool needs_row_path(bool nan, T max, T min) {
    return nan || !std::isfinite(max) || (std::isfinite(min) && !std::isfinite(max - min));
}

// No exp(d) of the column is subnormal (as stays_normal for a row).
template <class T>
bool column_stays_normal(T max, T min, T scale) {
    return (min - max) * scale >= normal_exp_limit<T>;
}

// Scan a group: per-lane max and min; false if a real lane is special.
template <class T>
bool scan_columns(const T* x, int64_t x_stride, int64_t count, int64_t n, ColumnStats<T>& st) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr T inf = std::numeric_limits<T>::infinity();
    Ints nan[kColumnVectors];
    for (int v = 0; v < kColumnVectors; ++v) {
        st.max[v] = broadcast<Real>(-inf);
        st.min[v] = broadcast<Real>(inf);
        nan[v] = Ints{};
    }
    for (int64_t k = 0; k < n; ++k) {
        const T* row = x + k * x_stride;
        for (int v = 0; v < kColumnVectors; ++v) {
            const int64_t c = lanes_in<T>(count, v);
            if (c == 0) break;
            const Real value = load(row + v * S::lanes, c, T(0));
            st.max[v] = value > st.max[v] ? value : st.max[v];
            st.min[v] = value < st.min[v] ? value : st.min[v];
            nan[v] |= value != value;
        }
    }
    for (int v = 0; v < kColumnVectors; ++v) {
        const int64_t c = lanes_in<T>(count, v);
        for (int64_t j = 0; j < c; ++j) {
            if (needs_row_path(nan[v][j] != 0, st.max[v][j], st.min[v][j])) return false;
        }
    }
    return true;
}

template <class T>
bool columns_stay_normal(const ColumnStats<T>& st, int64_t count, T scale) {
    for (int v = 0; v < kColumnVectors; ++v) {
        const int64_t c = lanes_in<T>(count, v);
        for (int64_t j = 0; j < c; ++j) {
            if (!column_stays_normal(st.max[v][j], st.min[v][j], scale)) return false;
        }
    }
    return true;
}

// Sums of exp(d) per column, added in exactly the order the row kernel adds
// a row (exp_sums): element r of a chunk goes to lane r % lanes of
// accumulator (r / lanes) % 4 in the unrolled part, of accumulator 0 in the
// single-vector part and of accumulator 1 in the partial tail; accumulators
// fold as ((0 + 1) + (2 + 3)) per lane, each lane's chunk partials go to its
// own double total, and the lanes' totals are added by lanes_total; kSplit
// counts d == 0 apart as the row kernel does. So a column gives bit for bit
// what the same values laid out as a row give. Here each "slot"
// (accumulator, lane) is a vector over columns. kStore writes e to y.
template <class T, bool kSubnormal, bool kScaled, bool kStore, bool kSplit>
void exp_sum_columns(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t count,
                     int64_t n, T scale, ColumnStats<T>& st) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr int64_t L = S::lanes;
    constexpr int64_t kSlots = 4 * L;
    constexpr bool kCompensated = kCompensatedTotals<T>;
    Real acc[kColumnVectors][kSlots];
    LaneTotal<double, kCompensated> totals[kColumnVectors][L][L];  // [vector][column][lane]
    Ints at_count[kColumnVectors] = {};
    for (int64_t chunk = 0; chunk < n; chunk += kChunk<T>) {
        const int64_t m = n - chunk < kChunk<T> ? n - chunk : kChunk<T>;
        const int64_t unrolled = m / kSlots * kSlots;
        const int64_t singles = unrolled + (m - unrolled) / L * L;
        for (int v = 0; v < kColumnVectors; ++v) {
            for (int64_t q = 0; q < kSlots; ++q) acc[v][q] = Real{};
        }
        const auto slot_of = [&](int64_t r) {
            return r < unrolled ? r % kSlots : (r < singles ? (r - unrolled) % L : L + (r - singles));
        };
        int64_t r = 0;
        if (count == kColumnVectors * L && unrolled > 0) {
            // A full group, slot by slot: rows q, q + kSlots, q + 2 kSlots, ... share
            // a slot, so visiting them in that order keeps the slot's partial sums in
            // registers (same additions in the same order as row by row). Two rows
            // at a time: the eight exps interleaved, and both rows loaded before
            // either is stored (x and y rows often share their low 12 address bits;
            // a load behind such a store waits: 4K aliasing).
            constexpr int kRows = 2;
            constexpr int K = kRows * kColumnVectors;
            for (int64_t q = 0; q < kSlots; q += kRows) {
                Real partial[K] = {};
                for (int64_t base = q; base < unrolled; base += kSlots) {
                    Real d[K], e[K];
                    FS_EACH(p) {
                        const int64_t row = chunk + base + p / kColumnVectors;
                        const int v = p % kColumnVectors;
                        d[p] = centred<kScaled>(load(x + row * x_stride + v * L, L, T(0)),
                                                st.max[v], scale);
                    }
                    FS_EACH(p) e[p] = d[p];
                    exp_nonpositive_block<T, kSubnormal, K>(e);
                    FS_EACH(p) {
                        const int64_t row = chunk + base + p / kColumnVectors;
                        const int v = p % kColumnVectors;
                        if constexpr (kStore) store(y + row * y_stride + v * L, e[p], L);
                        add_exp<kSplit>(partial[p], at_count[v], d[p], e[p]);
                    }
                }
                FS_EACH(p) acc[p % kColumnVectors][q + p / kColumnVectors] = partial[p];
            }
            r = unrolled;
        }
        for (; r < m; ++r) {
            const int64_t slot = slot_of(r);
            const T* in = x + (chunk + r) * x_stride;
            T* out = y + (chunk + r) * y_stride;
            for (int v = 0; v < kColumnVectors; ++v) {
                const int64_t c = lanes_in<T>(count, v);
                if (c == 0) break;
                const Real d = centred<kScaled>(load(in + v * L, c, T(0)), st.max[v], scale);
                const Real e = exp_nonpositive<T, kSubnormal>(d);
                if constexpr (kStore) store(out + v * L, e, c);
                add_exp<kSplit>(acc[v][slot], at_count[v], d, e);
            }
        }
        for (int v = 0; v < kColumnVectors; ++v) {
            const int64_t c = lanes_in<T>(count, v);
            for (int64_t j = 0; j < c; ++j) {
                for (int64_t lane = 0; lane < L; ++lane) {
                    const T folded = (acc[v][lane][j] + acc[v][L + lane][j]) +
                                     (acc[v][2 * L + lane][j] + acc[v][3 * L + lane][j]);
                    totals[v][j][lane].add(static_cast<double>(folded));
                }
            }
        }
    }
    for (int v = 0; v < kColumnVectors; ++v) {
        for (int64_t j = 0; j < L; ++j) {
            st.sum[v][j] = lanes_total<kCompensated>(L, [&](int64_t lane) {
                return std::pair<double, double>{totals[v][j][lane].sum,
                                                 totals[v][j][lane].compensation};
            });
            st.at_max[v][j] = double(at_count[v][j]);
        }
    }
}

// log(sum) per lane, from the split sums.
template <class T>
void log_sums(const ColumnStats<T>& st, int64_t count,
              typename Simd<T>::Real (&log_sum)[kColumnVectors]) {
    for (int v = 0; v < kColumnVectors; ++v) {
        log_sum[v] = typename Simd<T>::Real{};
        const int64_t c = lanes_in<T>(count, v);
        for (int64_t j = 0; j < c; ++j) {
            log_sum[v][j] = T(log_of_split_sum({st.sum[v][j], st.at_max[v][j]}));
        }
    }
}

template <class T, bool kSubnormal, bool kScaled>
void softmax_column_group(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t count,
                          int64_t n, T scale, RowOp op, ColumnStats<T>& st) {
    using S = Simd<T>;
    using Real = typename S::Real;
    if (op == RowOp::softmax) {
        exp_sum_columns<T, kSubnormal, kScaled, true, false>(x, x_stride, y, y_stride, count, n,
                                                             scale, st);
        Real inverse[kColumnVectors];
        for (int v = 0; v < kColumnVectors; ++v) {
            inverse[v] = Real{};
            const int64_t c = lanes_in<T>(count, v);
            for (int64_t j = 0; j < c; ++j) {
                inverse[v][j] = static_cast<T>(1.0 / (st.sum[v][j] + st.at_max[v][j]));
            }
        }
        int64_t k = 0;
        if (count == kColumnVectors * S::lanes) {
            // Rows kRowsAhead at a time, every load before any store: rows y_stride
            // apart often share their low 12 address bits, and a load issued behind
            // such a store waits on it (4K aliasing).
            constexpr int64_t kRowsAhead = 4;
            for (; k + kRowsAhead <= n; k += kRowsAhead) {
                Real block[kRowsAhead][kColumnVectors];
                for (int64_t q = 0; q < kRowsAhead; ++q) {
                    for (int v = 0; v < kColumnVectors; ++v) {
                        block[q][v] = load(y + (k + q) * y_stride + v * S::lanes, S::lanes, T(0));
                    }
                }
                for (int64_t q = 0; q < kRowsAhead; ++q) {
                    for (int v = 0; v < kColumnVectors; ++v) {
                        store(y + (k + q) * y_stride + v * S::lanes, block[q][v] * inverse[v],
                              S::lanes);
                    }
                }
            }
        }
        for (; k < n; ++k) {
            T* out = y + k * y_stride;
            for (int v = 0; v < kColumnVectors; ++v) {
                const int64_t c = lanes_in<T>(count, v);
                if (c == 0) break;
                store(out + v * S::lanes, load(out + v * S::lanes, c, T(0)) * inverse[v], c);
            }
        }
        return;
    }
    exp_sum_columns<T, kSubnormal, kScaled, false, true>(x, x_stride, y, y_stride, count, n,
                                                        scale, st);
    Real log_sum[kColumnVectors];
    log_sums(st, count, log_sum);
    for (int64_t k = 0; k < n; ++k) {
        const T* in = x + k * x_stride;
        T* out = y + k * y_stride;
        for (int v = 0; v < kColumnVectors; ++v) {
            const int64_t c = lanes_in<T>(count, v);
            if (c == 0) break;
            const Real value = load(in + v * S::lanes, c, T(0));
            store(out + v * S::lanes, log_softmax_of(value, st.max[v], scale, log_sum[v]), c);
        }
    }
}

template <class T>
int64_t softmax_columns(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t width,
                        int64_t n, double temperature, RowOp op) {
    constexpr int64_t group = kColumnVectors * Simd<T>::lanes;
    const T scale = static_cast<T>(1.0 / temperature);
    ColumnStats<T> st;
    for (int64_t start = 0; start < width; start += group) {
        const int64_t count = width - start < group ? width - start : group;
        if (!scan_columns(x + start, x_stride, count, n, st)) return start;
        with_exp_flags(!columns_stay_normal(st, count, scale), scale != T(1),
                       [&](auto sub, auto scaled) {
                           softmax_column_group<T, decltype(sub)::value, decltype(scaled)::value>(
                               x + start, x_stride, y + start, y_stride, count, n, scale, op, st);
                       });
    }
    return width;
}

template <class T>
int64_t logsumexp_columns(const T* x, int64_t x_stride, T* y, int64_t y_step, int64_t width,
                          int64_t n, double temperature) {
    constexpr int64_t group = kColumnVectors * Simd<T>::lanes;
    const T scale = static_cast<T>(1.0 / temperature);
    ColumnStats<T> st;
    for (int64_t start = 0; start < width; start += group) {
        const int64_t count = width - start < group ? width - start : group;
        if (!scan_columns(x + start, x_stride, count, n, st)) return start;
        with_exp_flags(!columns_stay_normal(st, count, scale), scale != T(1),
                       [&](auto sub, auto scaled) {
                           exp_sum_columns<T, decltype(sub)::value, decltype(scaled)::value, false,
                                           true>(x + start, x_stride, nullptr, 0, count, n, scale,
                                                 st);
                       });
        for (int v = 0; v < kColumnVectors; ++v) {
            const int64_t c = lanes_in<T>(count, v);
            for (int64_t j = 0; j < c; ++j) {
                y[(start + v * Simd<T>::lanes + j) * y_step] = static_cast<T>(
                    double(st.max[v][j]) / temperature + log_of_split_sum({st.sum[v][j], st.at_max[v][j]}));
            }
        }
    }
    return width;
}

// ---------------------------------------------------------------------------
// Column sweeps: the column kernels for a tile of many columns, each pass
// sweeping whole rows of the tile in address order with the per-column state
// (max, min, slot partials, lane totals) in arrays rather than registers. A
// group of 4 vectors of columns read down the rows touches one cache line per
// row, and rows 4 KiB apart share their cache sets: in place, that came from
// memory. Swept row by row, rows stream and need no staging copy. The slots
// are the group kernel's (exp_sum_columns): the same additions in the same
// order, so a column still gives the bits its values give as a row.

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

// Per-column max and min; false if a column is special (see scan_columns).
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
                st.totals[v * L + lane].add(__builtin_convertvector(folded, typename S::Doubles));
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
    const T scale = static_cast<T>(1.0 / temperature);
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
            for (; v + 4 <= full_vectors; v += 4) {  // loads before stores (4K aliasing)
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
    const T scale = static_cast<T>(1.0 / temperature);
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


// ---------------------------------------------------------------------------
// 16-bit storage. float16 -> float: the half's bits moved into a float and
// scaled by 2^112 (exact for normal and subnormal halves), inf/NaN patched.
// float -> float16: round to nearest even by the float adder (subnormal
// results) or by a rounding bias on the bits (normal results); NaN stays
// NaN, too large rounds to inf. bfloat16 is the top half of a float.

FS_INLINE float half_to_float(std::uint16_t h) {
    const std::uint32_t magnitude = std::uint32_t(h & 0x7fffu) << 13;
    float f = bit_cast_scalar<float>(magnitude) * 5.192296858534828e33f;  // 2^112
    if ((h & 0x7c00u) == 0x7c00u) f = bit_cast_scalar<float>(magnitude | 0x7f800000u);
    return bit_cast_scalar<float>(bit_cast_scalar<std::uint32_t>(f) | (std::uint32_t(h & 0x8000u) << 16));
}

FS_INLINE std::uint16_t float_to_half(float value) {
    std::uint32_t f = bit_cast_scalar<std::uint32_t>(value);
    const std::uint32_t sign = f & 0x80000000u;
    f ^= sign;
    std::uint32_t h;
    if (f >= 0x47800000u) {  // >= 65536, inf or NaN
        h = f > 0x7f800000u ? 0x7e00u : 0x7c00u;
    } else if (f < 0x38800000u) {  // below 2^-14: a subnormal half or zero
        const float rounded = bit_cast_scalar<float>(f) + 0.5f;  // 0.5 = 2^-1: ulp 2^-24
        h = std::uint16_t(bit_cast_scalar<std::uint32_t>(rounded) - 0x3f000000u);
    } else {
        const std::uint32_t odd = (f >> 13) & 1u;
        f += 0xc8000fffu + odd;  // rebias the exponent (-112 << 23) and round half to even
        h = f >> 13;
    }
    return std::uint16_t(h | (sign >> 16));
}

FS_INLINE float bfloat_to_float(std::uint16_t b) {
    return bit_cast_scalar<float>(std::uint32_t(b) << 16);
}

FS_INLINE std::uint16_t float_to_bfloat(float value) {
    const std::uint32_t f = bit_cast_scalar<std::uint32_t>(value);
    if (value != value) return std::uint16_t((f >> 16) | 0x40u);  // quiet NaN
    return std::uint16_t((f + 0x7fffu + ((f >> 16) & 1u)) >> 16);
}

template <float (*kWiden)(std::uint16_t)>
void widen_row(const std::uint16_t* in, int64_t stride, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = kWiden(in[i * stride]);
}

template <std::uint16_t (*kNarrow)(float)>
void narrow_row(const float* in, std::uint16_t* out, int64_t stride, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i * stride] = kNarrow(in[i]);
}

}  // namespace

#define FS_STRINGIFY2(name) #name
#define FS_STRINGIFY(name) FS_STRINGIFY2(name)

extern const RowKernels kernels;
// Contiguous rows (no mask) at a stride: short rows a few at a time, others
// one by one.
template <class T>
void softmax_rows(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t rows, int64_t n,
                  double temperature, RowOp op) {
    const auto general = [&](int64_t r) {
        softmax_row(x + r * x_stride, y + r * y_stride, nullptr, n, temperature, op);
    };
    const bool done =
        op == RowOp::softmax
            ? short_rows<ShortOp::softmax>(x, x_stride, y, y_stride, rows, n, temperature,
                                           static_cast<T*>(nullptr), 0, general)
            : short_rows<ShortOp::log_softmax>(x, x_stride, y, y_stride, rows, n, temperature,
                                               static_cast<T*>(nullptr), 0, general);
    if (!done) {
        for (int64_t r = 0; r < rows; ++r) general(r);
    }
}

// out[r * out_step] = logsumexp of row r.
template <class T>
void logsumexp_rows(const T* x, int64_t x_stride, T* out, int64_t out_step, int64_t rows,
                    int64_t n, double temperature) {
    const auto general = [&](int64_t r) {
        out[r * out_step] = static_cast<T>(logsumexp_row(x + r * x_stride, nullptr, n, temperature));
    };
    if (!short_rows<ShortOp::logsumexp>(x, x_stride, static_cast<T*>(nullptr), 0, rows, n,
                                        temperature, out, out_step, general)) {
        for (int64_t r = 0; r < rows; ++r) general(r);
    }
}

const RowKernels kernels = {
    FS_STRINGIFY(FASTSOFTMAX_LEVEL),
    &softmax_row<float>,
    &softmax_row<double>,
    &logsumexp_row<float>,
    &logsumexp_row<double>,
    &exp_nonpositive_array<float>,
    &exp_nonpositive_array<double>,
    &widen_row<half_to_float>,
    &narrow_row<float_to_half>,
    &widen_row<bfloat_to_float>,
    &narrow_row<float_to_bfloat>,
    &softmax_columns<float>,
    &softmax_columns<double>,
    &logsumexp_columns<float>,
    &logsumexp_columns<double>,
    &softmax_rows<float>,
    &softmax_rows<double>,
    &logsumexp_rows<float>,
    &logsumexp_rows<double>,
    &softmax_column_sweep<float>,
    &softmax_column_sweep<double>,
    &logsumexp_column_sweep<float>,
    &logsumexp_column_sweep<double>,
};

}  // namespace FASTSOFTMAX_LEVEL
}  // namespace fastsoftmax
