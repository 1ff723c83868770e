// Sums of exp: the order of the additions and the precision they are kept in.
//
// A row is summed in chunks of kChunkVectors vectors with four vector
// accumulators in the row's type, so a lane adds at most four terms before
// its partial sum moves to a per-lane double total: what a lane can round
// away is bounded whatever the row's length, so the error does not grow
// with n. float rows add the partials in plain double (2^-53 per add:
// nothing at float precision for any row that fits in memory); double rows
// add them with a TwoSum compensation. The lanes' totals are added at the
// end (lanes_total). Every path (rows, short rows, the column sweep) adds in
// this order, so a row gives the same bits whatever its layout.
//
// log_softmax and logsumexp count the elements at the max (d == 0, exp
// exactly 1) apart from the sum of the rest (SplitSum), for
// log(sum) = log(count) + log1p(rest / count): logsumexp([0, -40]) is then
// 4.2e-18, not 0.
#pragma once

#include <cmath>
#include <type_traits>
#include <utility>

#include "simd.h"

FS_LEVEL_BEGIN

constexpr int64_t kChunkVectors = 16;
template <class T>
constexpr int64_t kChunk = kChunkVectors * Simd<T>::lanes;

template <class T>
constexpr bool kCompensatedTotals = sizeof(T) == 8;

// Sum of doubles with each add's rounding error kept apart (Neumaier's
// scheme). The error is TwoSum's, which needs no comparison: the form that
// ordered the two terms by magnitude first gives the same (exact) error, but
// as a branch it was a coin toss on the rows of log_softmax, whose terms are
// all below 1 (the max's term is counted apart).
// V: double, or a vector of doubles (a sum in each lane).
template <class V>
struct CompensatedSums {
    V sum{};
    V compensation{};
    FS_INLINE void add(V value) {
        const V t = sum + value;
        const V value_part = t - sum;
        compensation += (sum - (t - value_part)) + (value - value_part);
        sum = t;
    }
    FS_INLINE V value() const { return sum + compensation; }
};
using CompensatedSum = CompensatedSums<double>;

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

constexpr int64_t kMaxLanes = kVectorBytes / 4;

// The row total from the per-lane totals; lane(j) gives (sum, compensation)
// of lane j. float rows: a tree in fold_lanes' order (the vector forms,
// RowTotals::total and widened_sum_lanes_of, must give the same bits);
// double rows: lanes in order, compensated.
template <bool kCompensated, class Lane>
FS_INLINE double lanes_total(int64_t lanes, const Lane& lane) {
    if constexpr (!kCompensated) {
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

// lanes_total of double rows' per-lane totals, held in vectors of doubles
// (float rows add their widened lanes with lanes_sum).
template <class D>
FS_INLINE double compensated_lanes_total(const D& sum, const D& compensation) {
    return lanes_total<true>(lanes_of<D>, [&](int64_t j) {
        return std::pair<double, double>{sum[j], compensation[j]};
    });
}

// A row's per-lane totals (LaneTotal over the lanes of Simd<T>) in
// vectors no wider than a register, and their lanes_total. float rows keep
// the low and high halves of the lanes widened apart; lanes_sum's first step
// adds lane j to lane j + L/2, so their sum is that step. (One vector of all
// the lanes in double is wider than a register: GCC kept it in memory, a
// store and reloads at every chunk.)
template <class T>
struct RowTotals {
    using Real = typename Simd<T>::Real;
    using Half = typename WidenedHalf<Real>::type;
    static constexpr bool kFloat = sizeof(T) == 4;
    std::conditional_t<kFloat, Half, Real> sum[2] = {};
    Real compensation{};  // double rows (TwoSum)

    FS_INLINE void add(const Real& partial) {
        if constexpr (kFloat) {
            Half low, high;
            widen_halves(partial, low, high);
            sum[0] += low;
            sum[1] += high;
        } else {
            LaneTotal<Real, true> lane{sum[0], compensation};
            lane.add(partial);
            sum[0] = lane.sum;
            compensation = lane.compensation;
        }
    }
    // add() to totals that are still 0: float sums of exps are +0 or more
    // (or NaN), and 0 + v is v, so this is the same bits without the adds.
    FS_INLINE void first(const Real& partial) {
        if constexpr (kFloat) {
            widen_halves(partial, sum[0], sum[1]);
        } else {
            add(partial);
        }
    }
    FS_INLINE double total() const {
        if constexpr (kFloat) {
            return lanes_sum(sum[0] + sum[1]);
        } else {
            return compensated_lanes_total(sum[0], compensation);
        }
    }
};

struct SplitSum {
    double below_max;  // sum of exp(d) over the elements with d < 0
    double at_max;     // count of the elements with d == 0 (0 when not split)
};

// Adds e = exp(d) to a sum accumulator; kSplit: an element at the max
// (d == 0) is counted in at_count instead (a true comparison is -1). The
// comparison goes through an empty asm so that it is made once: left to
// itself, the compiler also made its negation for the add, one vector
// operation more on the pipes the exp pass is bound by.
template <bool kSplit, class R, class I>
FS_INLINE void add_exp(R& acc, I& at_count, const R& d, const R& e) {
    if constexpr (kSplit) {
        auto at_max = d == 0;
        opaque(at_max);
        acc += __builtin_bit_cast(R, ~at_max & __builtin_bit_cast(decltype(at_max), e));
        at_count -= at_max;
    } else {
        acc += e;
    }
}

#if defined(__AVX512F__)
// The same with a scalar count, on AVX-512: one comparison into a mask
// register, an add under that mask, and the mask's bits counted on the
// integer pipes (popcnt). Written as vector code, the comparison was made
// twice and widened to a vector to be subtracted: four vector operations a
// vector more, on the pipes the exp pass is bound by. The count is the same.
// (not std::conditional_t<kFloat, __m512, __m512d>: a template argument
// drops the types' alignment attributes, and GCC warns)
template <bool kFloat>
struct Avx512Register {
    using type = __m512;
};
template <>
struct Avx512Register<false> {
    using type = __m512d;
};

template <bool kSplit, class R>
FS_INLINE void add_exp(R& acc, int64_t& at_count, const R& d, const R& e) {
    static_assert(sizeof(R) == 64);
    if constexpr (!kSplit) {
        acc += e;
        return;
    }
    constexpr bool kFloat = sizeof(R{}[0]) == 4;
    using Register = typename Avx512Register<kFloat>::type;
    Register a, dv, ev;
    std::memcpy(&a, &acc, 64), std::memcpy(&dv, &d, 64), std::memcpy(&ev, &e, 64);
    // The add's mask is the comparison itself (d != 0, or NaN): its
    // complement would take a mask operation on a vector pipe. Lanes below
    // the max are counted, and the others found from the lane count.
    unsigned below;
    if constexpr (kFloat) {
        below = _mm512_cmp_ps_mask(dv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        a = _mm512_mask_add_ps(a, __mmask16(below), a, ev);
    } else {
        below = _mm512_cmp_pd_mask(dv, _mm512_setzero_pd(), _CMP_NEQ_UQ);
        a = _mm512_mask_add_pd(a, __mmask8(below), a, ev);
    }
    std::memcpy(&acc, &a, 64);
    at_count += lanes_of<R> - __builtin_popcount(below);
}
#endif

// Whether some lane of v is +0 or -0 (NaN lanes are not): one comparison and
// a test of its bits where the level has them.
template <class V>
FS_INLINE bool some_lane_zero(V v) {
    constexpr bool kFloat = sizeof(v[0]) == 4;
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64) {
        if constexpr (kFloat) {
            return _mm512_cmp_ps_mask(__m512(v), _mm512_setzero_ps(), _CMP_EQ_OQ) != 0;
        } else {
            return _mm512_cmp_pd_mask(__m512d(v), _mm512_setzero_pd(), _CMP_EQ_OQ) != 0;
        }
    }
#endif
#if defined(__AVX__)
    if constexpr (sizeof(V) == 32) {
        if constexpr (kFloat) {
            return _mm256_movemask_ps(_mm256_cmp_ps(__m256(v), _mm256_setzero_ps(), _CMP_EQ_OQ));
        } else {
            return _mm256_movemask_pd(_mm256_cmp_pd(__m256d(v), _mm256_setzero_pd(), _CMP_EQ_OQ));
        }
    }
#endif
#if defined(__SSE2__)
    if constexpr (sizeof(V) == 16) {
        if constexpr (kFloat) {
            return _mm_movemask_ps(_mm_cmpeq_ps(__m128(v), _mm_setzero_ps())) != 0;
        } else {
            return _mm_movemask_pd(_mm_cmpeq_pd(__m128d(v), _mm_setzero_pd())) != 0;
        }
    }
#endif
    bool zero = false;
    for (int64_t j = 0; j < int64_t(sizeof(V) / sizeof(v[0])); ++j) zero |= v[j] == 0;
    return zero;
}

// add_exp over a block of four vectors, vector k into acc[k]. A block with no
// element at the max (every d below 0) adds its terms as they are: the
// comparison and the count cost a vector operation or more a vector on the
// pipes the exp pass is bound by, and a row holds its max in one block or a
// few. The test is one comparison a block, on the largest d of the block. A
// NaN can hide a 0 there (the max keeps its second operand) and the count
// then misses it, but a NaN makes the row's sum NaN either way (and its log
// that NaN). Not for rows of at most two blocks (`tests` false), where the
// test only picks the block the max is in, and mispredicts about once a row.
// The same sums and count.
template <bool kSplit, class R, class I>
FS_INLINE void add_exps(R (&acc)[4], I& at_count, const R (&d)[4], const R (&e)[4], bool tests) {
    if constexpr (kSplit) {
        const auto larger = [](const R& a, const R& b) FS_INLINE_LAMBDA { return a > b ? a : b; };
        if (!tests || some_lane_zero(larger(larger(d[0], d[1]), larger(d[2], d[3])))) {
            FS_EACH4(k) add_exp<true>(acc[k], at_count, d[k], e[k]);
            return;
        }
    }
    FS_EACH4(k) acc[k] += e[k];
}

// What exp_sums counts elements at the max in: a scalar with AVX-512, a
// vector of per-lane counts (summed at the end) elsewhere.
#if defined(__AVX512F__)
template <class T>
using AtMaxCount = int64_t;
FS_INLINE double total_count(int64_t count) { return double(count); }
#else
template <class T>
using AtMaxCount = typename Simd<T>::Ints;
template <class I>
FS_INLINE double total_count(const I& count) {
    return double(lanes_sum(count));  // -= true (-1) counts up
}
#endif

typedef double LogLanes __attribute__((vector_size(32)));
constexpr int kLogLanes = 4;

// The logs below take any vector of doubles D (LogLanes, or the short rows'
// vector of a group's sums); LogBitsOf<D>::type holds its lanes' bits.
template <class D>
struct LogBitsOf {
    typedef std::int64_t type __attribute__((vector_size(sizeof(D))));
};

// log1p(b) for b >= 0 (finite or +inf), in each lane of K vectors of doubles,
// in place: every log_softmax and logsumexp row ends with one (libm's log1p
// call was a sixth of the time of a row of 128 floats); rows that come in
// groups take theirs four at a time, short rows a group's at once (a lane a
// row), with K vectors the K dependency chains interleaved op by op. u = 1 + b rounded; log(u) = k ln2 + log(m) with u =
// 2^k m, m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = f / (2 + f), f =
// m - 1 (exact), through fdlibm's degree-14 Remez fit in s (its Lg1..Lg7
// coefficients); c = (b - (u - 1)) / u puts back what rounding 1 + b lost,
// so b below 2^-53 gives b. No branch: m > sqrt(2) is a coin toss per row,
// and as a branch it cost as much as the rest of the log in mispredictions.
// Measured: at most 0.76 ULP with FMA, 0.88 without, over 2e7 random b in
// [2^-60, 2^1000] against a long double log1p.
template <int K, class D>
FS_INLINE void log1p_nonnegative(D (&b)[K]) {
    using LogBits = typename LogBitsOf<D>::type;
    constexpr std::int64_t kOne = 0x3FF0000000000000, kRootHalf = 0x3FE6A09E667F3BCD;
    constexpr double ln2_high = 6.93147180369123816490e-01;  // k * ln2_high exact for |k| < 2^11
    constexpr double ln2_low = 1.90821492927058770002e-10;
    D u[K], c[K], m[K], f[K], s[K], z[K], w[K], even[K], odd[K], half_f2[K], dk[K];
    LogBits k[K];
    FS_EACH(j) u[j] = 1.0 + b[j];
    FS_EACH(j) c[j] = (b[j] - (u[j] - 1.0)) / u[j];
    FS_EACH(j) {
        // Offset the bits so that the exponent field steps up where m passes sqrt(2).
        const LogBits bits = __builtin_bit_cast(LogBits, u[j]) + (kOne - kRootHalf);
        k[j] = (bits >> 52) - 1023;  // u >= 1: no sign bit
        m[j] = __builtin_bit_cast(D, (bits & ((std::int64_t(1) << 52) - 1)) + kRootHalf);
    }
    FS_EACH(j) f[j] = m[j] - 1.0;
    FS_EACH(j) s[j] = f[j] / (2.0 + f[j]);
    FS_EACH(j) z[j] = s[j] * s[j];
    FS_EACH(j) w[j] = z[j] * z[j];
    FS_EACH(j) {
        even[j] = w[j] * (3.999999999940941908e-01 +
                          w[j] * (2.222219843214978396e-01 + w[j] * 1.531383769920937332e-01));
    }
    FS_EACH(j) {
        odd[j] = z[j] * (6.666666666666735130e-01 +
                         w[j] * (2.857142874366239149e-01 +
                                 w[j] * (1.818357216161805012e-01 +
                                         w[j] * 1.479819860511658591e-01)));
    }
    FS_EACH(j) half_f2[j] = 0.5 * f[j] * f[j];
    // k as a double: 0 <= k <= 1024, so k's bits under 2^52's make 2^52 + k
    // exactly (AVX2 has no int64 to double conversion: it went lane by lane).
    constexpr std::int64_t kTwo52 = 0x4330000000000000;
    FS_EACH(j) dk[j] = __builtin_bit_cast(D, k[j] + kTwo52) - 0x1p52;
    FS_EACH(j) {
        const D log = dk[j] * ln2_high -
                      ((half_f2[j] - (s[j] * (half_f2[j] + (even[j] + odd[j])) +
                                      (dk[j] * ln2_low + c[j]))) -
                       f[j]);
        b[j] = k[j] == 1024 ? u[j] : log;  // b = +inf, or NaN
    }
}

// log(at + below) = log(at) + log1p(below / at) for the lanes' rows (unused
// lanes: below 0, at 1), into below. With at == 1 in every lane (one element
// at the max: the usual rows) one log1p does; the general form gives the
// same bits there (log1p(0) is 0), so a row's log does not depend on which
// rows share its vectors. Not inlined: which products the compiler fuses
// into FMAs depended on the caller it was inlined into, and then a row's
// log differed by an ULP between the row and column kernels; one body per
// vector type gives every caller the same bits. (The widths' bodies are the
// same source, fused alike: the short-row tests compare them bit for bit.)
template <int K, class D>
FS_OUT_OF_LINE void log_of_split_sums(D (&below)[K], const D (&at)[K]) {
    auto ones = at[0] == 1.0;
    FS_EACH(j) ones &= at[j] == 1.0;
    if (fold_lanes(ones, [](auto a, auto b) { return a & b; }) != 0) {
        log1p_nonnegative(below);
        return;
    }
    D high[K];
    FS_EACH(j) high[j] = at[j] - 1.0, below[j] = below[j] / at[j];
    log1p_nonnegative(high);
    log1p_nonnegative(below);
    FS_EACH(j) below[j] = high[j] + below[j];
}

FS_INLINE LogLanes log_of_split_sums(LogLanes below, LogLanes at) {
    LogLanes b[1] = {below};
    const LogLanes a[1] = {at};
    log_of_split_sums(b, a);
    return b[0];
}

inline double log_of_split_sum(const SplitSum& s) {
    return log_of_split_sums(LogLanes{s.below_max, 0.0, 0.0, 0.0},
                             LogLanes{s.at_max, 1.0, 1.0, 1.0})[0];
}

FS_LEVEL_END
