// exp(d) for d <= 0: the one exponential of every softmax pass. After the
// row's max is subtracted no argument is positive, so there is no overflow
// branch; what remains is the range reduction, a polynomial and the
// exponent bits.
//
// Contract (checked by tests/test_exp.py on every level the CPU runs, and
// measured by `fastsoftmax accuracy`):
//   lanes   float or double, any vector width of the level.
//   range   d in [-inf, 0], or NaN where kExpKeepsNaN (the table levels'
//           float, AVX-512 and AVX2: NaN out; elsewhere the row passes send
//           NaN rows to the special-value path first). exp(0) == 1 and
//           exp(-inf) == +0 exactly; below -104 (float) / -746 (double) the
//           result is +0, the correctly rounded value.
//   error   float, every float of [-104, 0] against the double exp: at most
//             0.9977 ULP with the 16-entry table (avx512), worst at
//             d = FS_EXP_WORST_F32_TABLE;
//             1.1474 ULP with the 8-entry table (avx2), worst at
//             d = FS_EXP_WORST_F32_TABLE8;
//             1.9777 ULP with FMA and no table (neon: the degree-5
//             polynomial), worst at d = FS_EXP_WORST_F32_FMA;
//             1.1764 ULP without FMA (sse2), worst at d = FS_EXP_WORST_F32.
//           double, 1.6e7 random points of [-746, 0] and [-1, 0] against a
//             long double reference: at most 0.945 ULP with FMA (worst seen
//             at d = FS_EXP_WORST_F64_FMA), 1.226 without (FS_EXP_WORST_F64).
//           Subnormal results (kSubnormal) are rounded once, never flushed,
//           and made without an operation whose result is subnormal
//           (descale_tiny: no microcode assist).
//   cost    float: 3 FMAs for the reduction, 5 for the polynomial (6
//           without FMA), then
//           2^n as an integer add to the exponent (with kSubnormal, five
//           more operations and the clamp); with a table (avx512, avx2) the
//           cubic and its product take 4, with a permute, and 2^k goes into
//           the table entry (a shift and an add) before the last FMA;
//           double: 3 and 11.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstddef>
#include <iterator>
#include <type_traits>
#include <utility>

#include "simd.h"

// The measured worst inputs of the contract above.
#define FS_EXP_WORST_F32_TABLE "-0x1.9ead96p+5 (-51.83480)"
#define FS_EXP_WORST_F32_TABLE8 "-0x1.5e4d2ep+4 (-21.89384)"
#define FS_EXP_WORST_F32_FMA "-0x1.df8450p+4 (-29.96980)"
#define FS_EXP_WORST_F32 "-0x1.1c2ea0p+6 (-71.04553)"
#define FS_EXP_WORST_F64_FMA "-0x1.0df72d4060cb1p+8 (-269.9655342327415)"
#define FS_EXP_WORST_F64 "-0x1.2e18962258a50p+5 (-37.76200510819456)"

FS_LEVEL_BEGIN

// d = n ln2 + r with |r| <= ln2/2, exp(r) by a polynomial in r, then 2^n
// through the exponent bits. The shifter is 1.5 * 2^m (m mantissa bits): adding it
// rounds d / ln2 to an integer and leaves n, in two's complement, in the low
// bits of t, so n shifted into the exponent field is one shift. ln2 is split in a high part with few bits, so n * ln2_high is
// exact. q: double, degree 9 (a Chebyshev fit). float with FMA and no table
// (NEON; the table levels use exp_table_block): degree 5 in r with the linear
// term fitted too (1 + r c1 + ... + r^5 c5, a minimax fit), inside the 2 ULP
// contract above for one FMA a vector less. Without
// FMA each step rounds twice and degree 5 goes over 2 ULP, so those levels
// keep degree 6 (1 + r + r^2 q(r), q of degree 4). The fits: csrc/README.md.
template <class T>
struct ExpConstants;

template <>
struct ExpConstants<float> {
    static constexpr float clamp = -104.0f;        // exp(-104) < 2^-150: rounds to +0 below
    static constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
    static constexpr float log2e = 1.44269504088896341f;
    static constexpr float ln2_high = 0.693359375f;
    static constexpr float ln2_low = -2.12194440e-4f;
    static constexpr int mantissa_bits = 23, bias = 127, min_exponent = -126;
#if defined(__FMA__) || defined(__aarch64__)
    static constexpr float poly[] = {0x1.0fa32cp-7f, 0x1.573a24p-5f, 0x1.555a7ap-3f,
                                     0x1.fffdc6p-2f, 0x1.fffff6p-1f, 1.0f};
#else
    static constexpr float poly[] = {0x1.6a244ep-10f, 0x1.1239d4p-7f, 0x1.5558f2p-5f,
                                     0x1.555492p-3f,  0x1.fffffcp-2f, 1.0f, 1.0f};
#endif
};

template <>
struct ExpConstants<double> {
    static constexpr double clamp = -746.0;  // exp(-746) < 2^-1075: rounds to +0 below
    static constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
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

// exp of K vectors in place, every step over the K before the next.
// The constants of ExpConstants<T> as whole vectors, in memory: log2e,
// shifter, ln2_high, ln2_low, then the polynomial.
template <class T>
struct ExpVectors {
    using R = typename Simd<T>::Real;
    using C = ExpConstants<T>;
    static constexpr std::size_t kPoly = std::size(C::poly);
    template <std::size_t... j>
    static constexpr R splat(T value, std::index_sequence<j...>) {
        return R{((void)j, value)...};
    }
    static constexpr R one(T value) { return splat(value, std::make_index_sequence<Simd<T>::lanes>{}); }
    template <std::size_t... j>
    static constexpr auto table(std::index_sequence<j...>) {
        return std::array<R, 4 + kPoly>{one(C::log2e), one(C::shifter), one(C::ln2_high),
                                         one(C::ln2_low), one(C::poly[j])...};
    }
    alignas(kVectorBytes) static constexpr std::array<R, 4 + kPoly> values =
        table(std::make_index_sequence<kPoly>{});
};

// The constants an exp block reads. With 16 vector registers (AVX2, SSE2)
// they come from memory at each use, as FMA operands: held in registers,
// they pushed the row passes' four accumulators to the stack, a store and a
// reload in every iteration. The empty asm hides where the pointer points, so the loads cannot be
// hoisted out of the loop.
template <class R>
FS_INLINE const R* held_in_memory(const R* values) {
    if constexpr (kVectorRegisters <= 16) __asm__("" : "+r"(values));
    return values;
}

template <class T>
FS_INLINE const typename Simd<T>::Real* exp_vectors() {
    return held_in_memory(ExpVectors<T>::values.data());
}

// exp_nonpositive_block gives NaN for a NaN on every input, whatever its
// payload: the table form ends in an FMA of the NaN, and its careful form's
// descale_tiny passes NaN lanes on (AVX-512: a multiply masked to the lanes
// that are not tiny; AVX2: NaN lanes picked apart). (Both polynomial forms
// add n to the exponent field as an integer, which can turn a NaN into a
// number.)
template <class T>
constexpr bool kExpKeepsNaN = kTableEntries > 0 && sizeof(T) == 4;

// v 2^-kTinyShift rounded once, for v >= 0 and normal (what the careful form
// builds for every d the clamp leaves), or NaN. The exp's careful form scales its
// result by 2^kTinyShift more than it should, so that every value it builds
// is normal, and comes back here. A subnormal result is made without a
// floating-point operation that has a subnormal result (Intel cores finish
// each such vector in microcode; csrc/README.md): v + 2^e, where
// 2^e = 2^kTinyShift times the smallest normal, has an ulp of 2^kTinyShift
// times the subnormal spacing, so the add rounds v on the subnormal grid,
// and the sum's bits less those of 2^e are the subnormal's bits. Normal
// results are v times 2^-kTinyShift, exact.
constexpr int kTinyShift = 64;

template <class T>
FS_INLINE typename Simd<T>::Real descale_tiny(typename Simd<T>::Real v) {
    using S = Simd<T>;
    using R = typename S::Real;
    using I = typename S::Ints;
    using Int = typename S::Int;
    using C = ExpConstants<T>;
    constexpr Int kEdgeBits = Int(C::min_exponent + kTinyShift + C::bias) << C::mantissa_bits;
    const T edge = bit_cast_scalar<T>(kEdgeBits);  // 2^kTinyShift times the smallest normal
    const R tiny = __builtin_bit_cast(R, __builtin_bit_cast(I, v + edge) - kEdgeBits);
#if defined(__AVX512F__)
    // The normal lanes by a multiply masked to them: a masked-off lane takes
    // no assist, and NaN stays NaN (kExpKeepsNaN).
    static_assert(sizeof(R) == 64);
    const T down = bit_cast_scalar<T>(Int(C::bias - kTinyShift) << C::mantissa_bits);
    if constexpr (sizeof(T) == 4) {
        const __m512 value = __builtin_bit_cast(__m512, v);
        const __mmask16 normal = _mm512_cmp_ps_mask(value, _mm512_set1_ps(edge), _CMP_NLT_UQ);
        return __builtin_bit_cast(R, _mm512_mask_mul_ps(__builtin_bit_cast(__m512, tiny), normal,
                                                        value, _mm512_set1_ps(down)));
    } else {
        const __m512d value = __builtin_bit_cast(__m512d, v);
        const __mmask8 normal = _mm512_cmp_pd_mask(value, _mm512_set1_pd(edge), _CMP_NLT_UQ);
        return __builtin_bit_cast(R, _mm512_mask_mul_pd(__builtin_bit_cast(__m512d, tiny), normal,
                                                        value, _mm512_set1_pd(down)));
    }
#else
    // Without masks the normal lanes come from the exponent field, which
    // would turn a NaN into a number: the table form's NaN (it keeps NaN,
    // kExpKeepsNaN) is passed on apart; the polynomial form's never reaches
    // here (its rows go to the special path).
    const I shift_bits = broadcast<I>(Int(kTinyShift) << C::mantissa_bits);
    const R normal = __builtin_bit_cast(R, __builtin_bit_cast(I, v) - shift_bits);
    const R value = v < edge ? tiny : normal;
    if constexpr (kExpKeepsNaN<T>) return v == v ? value : v;
    return value;
#endif
}

// float exp through a table of 2^(j/N), N = kTableEntries (16: AVX-512, 8:
// AVX2; one permute): d = (N k + j) ln2/N + r, |r| <= ln2/(2N), exp(d) = 2^k
// 2^(j/N) (1 + r + c2 r^2 + c3 r^3), c2 and c3 our minimax fits (relative
// error 1.7e-9 with 16 entries, 2.6e-8 with 8). The cubic needs three
// FMA-pipe operations where the table-free polynomial needs five or six:
// 7 such operations a vector in all instead of 8, and a dependency chain
// shorter by a third, which is what the exp pass waits on where the FMA
// pipes are not full. The index is the low bits of t.
template <int N>
struct ExpTable;

// powers[j] with j << (23 - shift) taken from its bits: adding t << (23 -
// shift) (the whole index N k + j, from the low bits of t) then adds k << 23,
// so one shift and an add give 2^k 2^(j/N) (see exp_table_block).
template <std::size_t N>
constexpr std::array<float, N> offset_table(const float (&powers)[N], int shift) {
    std::array<float, N> entries{};
    for (std::size_t j = 0; j < N; ++j) {
        entries[j] = std::bit_cast<float>(std::bit_cast<int32_t>(powers[j]) -
                                          (int32_t(j) << (23 - shift)));
    }
    return entries;
}

template <>
struct ExpTable<16> {
    static constexpr float scaled_log2e = 0x1.715476p+4f;  // 16 / ln2
    static constexpr float c2 = 0x1.00022ap-1f, c3 = 0x1.555648p-3f;
    static constexpr int shift = 4;
    static constexpr float powers[16] = {
        0x1.000000p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f,
        0x1.306fe0p+0f, 0x1.3dea64p+0f, 0x1.4bfdaep+0f, 0x1.5ab07ep+0f,
        0x1.6a09e6p+0f, 0x1.7a1148p+0f, 0x1.8ace54p+0f, 0x1.9c4918p+0f,
        0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f};
    alignas(64) static constexpr std::array<float, 16> offset_powers = offset_table(powers, shift);
};

template <>
struct ExpTable<8> {
    static constexpr float scaled_log2e = 0x1.715476p+3f;  // 8 / ln2
    static constexpr float c2 = 0x1.000878p-1f, c3 = 0x1.555658p-3f;
    static constexpr int shift = 3;
    static constexpr float powers[8] = {0x1.000000p+0f, 0x1.172b84p+0f, 0x1.306fe0p+0f,
                                        0x1.4bfdaep+0f, 0x1.6a09e6p+0f, 0x1.8ace54p+0f,
                                        0x1.ae89fap+0f, 0x1.d5818ep+0f};
    alignas(32) static constexpr std::array<float, 8> offset_powers = offset_table(powers, shift);
};

// The constants exp_table_block reads, as whole vectors (exp_vectors):
// N / ln2, the shifter, ln2_high / N and ln2_low / N (exact: N is a power of
// two), then c3, c2 and 1.
template <int N>
struct ExpTableVectors {
    using E = ExpVectors<float>;
    using C = ExpConstants<float>;
    using Table = ExpTable<N>;
    alignas(kVectorBytes) static constexpr std::array<typename E::R, 7> values = {
        E::one(Table::scaled_log2e), E::one(C::shifter), E::one(C::ln2_high / N),
        E::one(C::ln2_low / N),      E::one(Table::c3),  E::one(Table::c2),
        E::one(1.0f)};
};

// a * b + c (kNegated: c - a * b) rounded once, for float vectors of the
// table exp: an explicit FMA. Left to -ffp-contract, GCC fused a multiply
// and its add in some vectors of a block and not in others in a few
// instances (AVX-512 short rows of whole vectors, several rows a group), so
// a row's last bits depended on the rows beside it. (c - a * b through
// fnmadd, not a negated a: a NaN keeps its sign.)
template <bool kNegated = false, class R>
FS_INLINE R fused_multiply_add(const R& a, const R& b, const R& c) {
    static_assert(std::is_same_v<R, typename Simd<float>::Real>, "float vectors only");
#if defined(__AVX512F__)
    if constexpr (sizeof(R) == 64) {
        const __m512 x = __builtin_bit_cast(__m512, a), y = __builtin_bit_cast(__m512, b),
                     z = __builtin_bit_cast(__m512, c);
        return __builtin_bit_cast(R, kNegated ? _mm512_fnmadd_ps(x, y, z) : _mm512_fmadd_ps(x, y, z));
    }
#endif
#if defined(__FMA__)
    const auto half = [](__m256 x, __m256 y, __m256 z) FS_INLINE_LAMBDA {
        return kNegated ? _mm256_fnmadd_ps(x, y, z) : _mm256_fmadd_ps(x, y, z);
    };
    if constexpr (sizeof(R) == 32) {
        return __builtin_bit_cast(R, half(__builtin_bit_cast(__m256, a), __builtin_bit_cast(__m256, b),
                                          __builtin_bit_cast(__m256, c)));
    }
#if !defined(__AVX512F__)
    if constexpr (sizeof(R) == 64) {  // the test level avx2_wide: two halves
        struct Halves {
            __m256 low, high;
        };
        const Halves x = __builtin_bit_cast(Halves, a), y = __builtin_bit_cast(Halves, b),
                     z = __builtin_bit_cast(Halves, c);
        return __builtin_bit_cast(R, Halves{half(x.low, y.low, z.low), half(x.high, y.high, z.high)});
    }
#endif
#endif
    return kNegated ? c - a * b : a * b + c;  // (every table level has FMA)
}

#if FS_TABLE_ENTRIES > 0
template <bool kSubnormal, int K>
FS_INLINE void exp_table_block(typename Simd<float>::Real (&v)[K]) {
    using S = Simd<float>;
    using R = typename S::Real;
    using I = typename S::Ints;
    using C = ExpConstants<float>;
    using Table = ExpTable<kTableEntries>;
    const R* c = held_in_memory(ExpTableVectors<kTableEntries>::values.data());
    R t[K], m[K], r[K], q[K];
    if constexpr (kSubnormal) {
        FS_EACH(k) v[k] = v[k] < C::clamp ? broadcast<R>(C::clamp) : v[k];
    }
    FS_EACH(k) t[k] = fused_multiply_add(v[k], c[0], c[1]);  // N k + j in the low bits
    FS_EACH(k) m[k] = t[k] - c[1];
    FS_EACH(k) r[k] = fused_multiply_add<true>(m[k], c[2], v[k]);
    FS_EACH(k) r[k] = fused_multiply_add<true>(m[k], c[3], r[k]);
    FS_EACH(k) q[k] = fused_multiply_add(r[k], c[4], c[5]);
    FS_EACH(k) q[k] = fused_multiply_add(q[k], r[k], c[6]);
    FS_EACH(k) q[k] = q[k] * r[k];  // exp(r) - 1
    if constexpr (!kSubnormal) {
        // Every result normal: 2^k 2^(j/N) is exact, and scaling by 2^k
        // commutes with the rounding of the last FMA (same bits as scaling
        // after it). The FMA last also carries a NaN through.
        FS_EACH(k) {
            const I index = __builtin_bit_cast(I, t[k]);
            const R power = __builtin_bit_cast(
                R, __builtin_bit_cast(I, lookup<R>(Table::offset_powers.data(), index)) +
                       (index << (C::mantissa_bits - Table::shift)));
            v[k] = fused_multiply_add(power, q[k], power);  // 2^k 2^(j/N) exp(r)
        }
        return;
    }
    FS_EACH(k) {  // 2^kTinyShift exp(d): normal for every d the clamp leaves (k >= -151)
        const I index = __builtin_bit_cast(I, t[k]);
        const R power = __builtin_bit_cast(
            R, __builtin_bit_cast(I, lookup<R>(Table::offset_powers.data(), index)) +
                   (index << (C::mantissa_bits - Table::shift)) +
                   (int32_t(kTinyShift) << C::mantissa_bits));
        v[k] = descale_tiny<float>(fused_multiply_add(power, q[k], power));
    }
}
#endif

// kSubnormal = false: the caller knows every d is above normal_exp_limit<T>
// (no result is subnormal or zero), so the clamp and descale_tiny go.
template <class T, bool kSubnormal, int K>
FS_INLINE void exp_nonpositive_block(typename Simd<T>::Real (&v)[K]) {
#if FS_TABLE_ENTRIES > 0
    if constexpr (sizeof(T) == 4) {
        exp_table_block<kSubnormal, K>(v);
        return;
    }
#endif
    using S = Simd<T>;
    using R = typename S::Real;
    using I = typename S::Ints;
    using C = ExpConstants<T>;
    const R* c = exp_vectors<T>();
    R t[K], n[K], r[K], p[K];
    if constexpr (kSubnormal) {
        FS_EACH(k) v[k] = v[k] < C::clamp ? broadcast<R>(C::clamp) : v[k];
    }
    FS_EACH(k) t[k] = v[k] * c[0] + c[1];
    FS_EACH(k) n[k] = t[k] - c[1];
    FS_EACH(k) r[k] = v[k] - n[k] * c[2];
    FS_EACH(k) r[k] = r[k] - n[k] * c[3];
    FS_EACH(k) p[k] = c[4];
    const auto horner_step = [&](const R& coefficient) __attribute__((always_inline)) {
        FS_EACH(k) p[k] = p[k] * r[k] + coefficient;
    };
    [&]<std::size_t... j>(std::index_sequence<j...>) __attribute__((always_inline)) {
        (horner_step(c[5 + j]), ...);
    }(std::make_index_sequence<std::size(C::poly) - 1>{});
    if constexpr (!kSubnormal) {
        // Every result is normal, so p * 2^n is p with n added to its exponent
        // field: an integer add (the low bits of t hold n, and the shift
        // drops the shifter's high bits) instead of a multiply, which
        // leaves the FMA pipes one operation less per vector. Same bits.
        FS_EACH(k) {
            v[k] = __builtin_bit_cast(
                R, __builtin_bit_cast(I, p[k]) + (__builtin_bit_cast(I, t[k]) << C::mantissa_bits));
        }
        return;
    }
    // p 2^(n + kTinyShift), normal for every d the clamp leaves, then scaled back.
    FS_EACH(k) {
        const I scaled = __builtin_bit_cast(I, p[k]) +
                         ((__builtin_bit_cast(I, t[k]) + kTinyShift) << C::mantissa_bits);
        v[k] = descale_tiny<T>(__builtin_bit_cast(R, scaled));
    }
}

// Below this, exp(d) may be subnormal (n < -126 / -1022 after rounding).
template <class T>
constexpr T normal_exp_limit = sizeof(T) == 4 ? T(-87.0) : T(-707.0);

// exp_nonpositive_block, with the careful form (kSubnormal) only for the
// blocks that need it: a block whose every d is at or above
// normal_exp_limit takes the fast form, a block whose every d is below the
// clamp is +0 (the careful form's value there). The same bits as the
// careful form for every block; rows with long runs of -inf (a causal
// mask's) or of tiny terms pay for the careful form only where such a run
// meets the rest. A NaN fails both tests and takes the careful form.
template <class T, bool kSubnormal, int K>
FS_INLINE void exp_nonpositive_block_by_range(typename Simd<T>::Real (&v)[K]) {
    if constexpr (kSubnormal) {
        using I = typename Simd<T>::Ints;
        I normal = v[0] >= normal_exp_limit<T>, zero = v[0] < ExpConstants<T>::clamp;
        for (int k = 1; k < K; ++k) {
            normal &= v[k] >= normal_exp_limit<T>;
            zero &= v[k] < ExpConstants<T>::clamp;
        }
        if (all_lanes(normal)) {
            exp_nonpositive_block<T, false, K>(v);
            return;
        }
        if (all_lanes(zero)) {
            FS_EACH(k) v[k] = typename Simd<T>::Real{};
            return;
        }
    }
    exp_nonpositive_block<T, kSubnormal, K>(v);
}

template <class T, bool kSubnormal = true>
FS_INLINE typename Simd<T>::Real exp_nonpositive(typename Simd<T>::Real d) {
    typename Simd<T>::Real v[1] = {d};
    exp_nonpositive_block<T, kSubnormal, 1>(v);
    return v[0];
}

// exp of `count` loaded lanes: the fast form only for full vectors of a row
// known to stay above normal_exp_limit (a partial vector's fill lanes, and
// masked lanes, hold -inf).
template <class T, bool kSubnormal>
FS_INLINE typename Simd<T>::Real exp_of_lanes(typename Simd<T>::Real d, int64_t count) {
    if (!kSubnormal && count == Simd<T>::lanes) return exp_nonpositive<T, false>(d);
    return exp_nonpositive<T, true>(d);
}

// y = exp(d) elementwise over an array, d <= 0 (the contract above). The
// kernel table exposes it so that its error can be measured from Python.
template <class T>
void exp_nonpositive_array(const T* d, T* y, int64_t n) {
    using Real = typename Simd<T>::Real;
    Real unused[4];
    visit_vectors<T>(0, n, unused, [&](int64_t i, int64_t count, Real&) FS_INLINE_LAMBDA {
        store(y + i, exp_nonpositive<T>(load(d + i, count, T(0))), count);
    });
}

FS_LEVEL_END
