// Vector primitives of one SIMD level: the vector types, loads and stores
// (masked at a row's tail), lane folds and the block visitor every pass uses.
//
// Included only by level_kernels.cpp, which is compiled once per level with
// FASTSOFTMAX_LEVEL (the namespace) and FASTSOFTMAX_VECTOR_BYTES (16, 32 or
// 64) defined. The code is written on GCC/Clang vector types of that many
// bytes, so one source becomes SSE2, AVX2, AVX-512 or NEON code; a width
// wider than the hardware's (64 bytes built for AVX2) is split by the
// compiler, which lets an AVX2 machine run the widest path in tests.
// Everything lives in an anonymous namespace inside the level's namespace:
// the linker can never hand one level's copy of a helper to another level.
#pragma once

#if defined(__AVX__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#ifndef FASTSOFTMAX_LEVEL
#error "the kernel headers are compiled once per SIMD level with -DFASTSOFTMAX_LEVEL=<name>"
#endif
#ifndef FASTSOFTMAX_VECTOR_BYTES
#error "the kernel headers need -DFASTSOFTMAX_VECTOR_BYTES=<16|32|64>"
#endif

#define FS_INLINE inline __attribute__((always_inline))
#define FS_INLINE_LAMBDA __attribute__((always_inline))
// Compiled once, for every caller: no inlining and (GCC) no clones
// specialised on a caller's constants.
#if defined(__clang__)
#define FS_OUT_OF_LINE __attribute__((noinline))
#else
#define FS_OUT_OF_LINE __attribute__((noipa))
#endif

// Every step of a block runs over K independent vectors before the next
// step: a chain of dependent FMAs one vector at a time leaves the FMA units
// idle where K interleaved chains keep them busy.
#define FS_EACH(k) _Pragma("GCC unroll 16") for (int k = 0; k < K; ++k)
#define FS_EACH4(k) _Pragma("GCC unroll 4") for (int k = 0; k < 4; ++k)

#define FS_LEVEL_BEGIN              \
    namespace fastsoftmax {         \
    namespace FASTSOFTMAX_LEVEL {   \
    namespace {
#define FS_LEVEL_END \
    }                \
    }                \
    }

FS_LEVEL_BEGIN

using std::int64_t;
using std::uint8_t;

template <class T> struct SameWidthInt;
template <> struct SameWidthInt<float> { using type = std::int32_t; };
template <> struct SameWidthInt<double> { using type = std::int64_t; };

constexpr int64_t kVectorBytes = FASTSOFTMAX_VECTOR_BYTES;

// Vector registers of the level's ISA, and the bytes of one.
#if defined(__AVX512F__)
constexpr int kVectorRegisters = 32;
constexpr int64_t kRegisterBytes = 64;
#elif defined(__aarch64__)
constexpr int kVectorRegisters = 32;
constexpr int64_t kRegisterBytes = 16;
#elif defined(__AVX__)
constexpr int kVectorRegisters = 16;
constexpr int64_t kRegisterBytes = 32;
#else
constexpr int kVectorRegisters = 16;
constexpr int64_t kRegisterBytes = 16;
#endif

// Entries of exp's 2^(j/N) table (exp.h), which one permute indexes: 16
// with AVX-512, 8 with AVX2 (vpermps). SSE2 has no lane permute and NEON's
// table lookup takes bytes: those levels have none (0) and keep the
// table-free polynomial.
// By the level's width, not only the flags: built with a user's -march that
// enables AVX2, the 16-byte SSE2 level has no 32-byte permute to use.
#if defined(__AVX512F__) && FASTSOFTMAX_VECTOR_BYTES >= 64
#define FS_TABLE_ENTRIES 16
#elif defined(__AVX2__) && FASTSOFTMAX_VECTOR_BYTES >= 32
#define FS_TABLE_ENTRIES 8
#else
#define FS_TABLE_ENTRIES 0
#endif
constexpr int kTableEntries = FS_TABLE_ENTRIES;

// Vector types of one level: Real holds `lanes` values, Ints the same-width
// integers (comparison results, exponent bits), Bytes one mask byte a lane,
// Doubles the lanes widened to double (the column sweep's per-lane totals).
template <class T>
struct Simd {
    using Int = typename SameWidthInt<T>::type;
    static constexpr int64_t lanes = kVectorBytes / int64_t(sizeof(T));
    typedef T Real __attribute__((vector_size(kVectorBytes)));
    typedef Int Ints __attribute__((vector_size(kVectorBytes)));
    typedef uint8_t Bytes __attribute__((vector_size(lanes)));
    typedef double Doubles __attribute__((vector_size(lanes * sizeof(double))));
};

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
        piece(k, static_cast<std::uint16_t>((std::uint32_t(1) << c) - 1));
    }
}
#endif

// Lanes [0, count) of p into a vector whose other lanes are 0; nothing past
// p[count - 1] is read (the row may end at a page boundary). AVX2 and
// AVX-512 mask the load; other levels go through a small buffer.
template <class T>
FS_INLINE typename Simd<T>::Real load_first(const T* p, int64_t count) {
    using S = Simd<T>;
    typename S::Real v{};
#if defined(__AVX512F__)
    for_each_masked_piece<T>(count, [&](int64_t k, std::uint16_t bits) FS_INLINE_LAMBDA {
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

#if FS_TABLE_ENTRIES > 0
// Lane i: table[index[i] mod kTableEntries], float lanes and int32 indices
// (the permute reads only the low bits of an index), a permute's width
// (kTableEntries floats) at a time.
template <class R, class I>
FS_INLINE R lookup(const float* table, I index) {
    constexpr std::size_t kPiece = kTableEntries * sizeof(float);
    static_assert(sizeof(R) == sizeof(I) && sizeof(R) % kPiece == 0);
    R result;
#if FS_TABLE_ENTRIES == 16
    const __m512 entries = _mm512_loadu_ps(table);
#else
    const __m256 entries = _mm256_loadu_ps(table);
#endif
    for (std::size_t k = 0; k < sizeof(R); k += kPiece) {
#if FS_TABLE_ENTRIES == 16
        __m512i piece_index;
        std::memcpy(&piece_index, reinterpret_cast<const char*>(&index) + k, kPiece);
        // (the masked form: the plain one's undefined source trips GCC 12's
        // -Wuninitialized; an all-ones mask compiles to the same vpermps)
        const __m512 piece = _mm512_mask_permutexvar_ps(entries, __mmask16(0xffff), piece_index,
                                                        entries);
#else
        __m256i piece_index;
        std::memcpy(&piece_index, reinterpret_cast<const char*>(&index) + k, kPiece);
        const __m256 piece = _mm256_permutevar8x32_ps(entries, piece_index);
#endif
        std::memcpy(reinterpret_cast<char*>(&result) + k, &piece, kPiece);
    }
    return result;
}
#endif

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
// copies becomes a memcpy call.)
template <class T>
FS_INLINE void store(T* p, typename Simd<T>::Real v, int64_t count) {
    using S = Simd<T>;
    if (count == S::lanes) {
        std::memcpy(p, &v, sizeof v);
        return;
    }
#if defined(__AVX512F__)
    for_each_masked_piece<T>(count, [&](int64_t k, std::uint16_t bits) FS_INLINE_LAMBDA {
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

// Store a full vector to p, aligned to kVectorBytes, past the caches where
// the ISA has such a store (x86's non-temporal stores): the line is not read
// first and evicts nothing. Other ISAs store as usual.
template <class T>
FS_INLINE void store_streaming(T* p, typename Simd<T>::Real v) {
#if defined(__AVX512F__)
    using Piece = __m512i;
#elif defined(__AVX__)
    using Piece = __m256i;
#elif defined(__SSE2__)
    using Piece = __m128i;
#endif
#if defined(__x86_64__)
    _Pragma("GCC unroll 4") for (int64_t b = 0; b < int64_t(sizeof v); b += int64_t(sizeof(Piece))) {
        Piece piece;
        std::memcpy(&piece, reinterpret_cast<const char*>(&v) + b, sizeof piece);
        Piece* to = reinterpret_cast<Piece*>(reinterpret_cast<char*>(p) + b);
#if defined(__AVX512F__)
        _mm512_stream_si512(to, piece);
#elif defined(__AVX__)
        _mm256_stream_si256(to, piece);
#else
        _mm_stream_si128(to, piece);
#endif
    }
#else
    std::memcpy(p, &v, sizeof v);
#endif
}

// store or store_streaming, as visit_output_vectors says.
template <class T, bool kStreaming>
FS_INLINE void store_output(T* p, typename Simd<T>::Real v, int64_t count,
                            std::bool_constant<kStreaming>) {
    if constexpr (kStreaming) {
        store_streaming(p, v);
    } else {
        store(p, v, count);
    }
}

// Orders the streaming stores before whatever follows (they are weakly
// ordered on x86).
FS_INLINE void streaming_done() {
#if defined(__x86_64__)
    _mm_sfence();
#endif
}

// Visit [0, n) a vector at a time for a pass that writes y: visit(i, count,
// streaming) with streaming true for the full vectors of y aligned to
// kVectorBytes (if `stream`), false for the unaligned head and the tail.
template <class T, class Visit>
FS_INLINE void visit_output_vectors(const T* y, int64_t n, bool stream, const Visit& visit) {
    constexpr int64_t L = Simd<T>::lanes;
    int64_t i = 0;
    if (stream && reinterpret_cast<std::uintptr_t>(y) % sizeof(T) == 0) {
        const std::uintptr_t off = reinterpret_cast<std::uintptr_t>(y) % kVectorBytes;
        const int64_t head = off == 0 ? 0 : int64_t(kVectorBytes - off) / int64_t(sizeof(T));
        if (head + L <= n) {
            if (head > 0) visit(int64_t(0), head, std::false_type{});
            for (i = head; i + L <= n; i += L) visit(i, L, std::true_type{});
            streaming_done();
        }
    }
    for (; i + L <= n; i += L) visit(i, L, std::false_type{});
    if (i < n) visit(i, n - i, std::false_type{});
}

// Lanes where a or b is NaN, all ones (as `a != a` gives them): one
// unordered comparison for two vectors, where GCC compiles
// `(a != a) | (b != b)` to two comparisons and an or.
template <class V>
FS_INLINE auto unordered(V a, V b) {
    using I = decltype(a != a);
    constexpr bool kFloat = sizeof(a[0]) == 4;
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64) {
        if constexpr (kFloat) {
            return I(_mm512_movm_epi32(_mm512_cmp_ps_mask(__m512(a), __m512(b), _CMP_UNORD_Q)));
        } else {
            return I(_mm512_movm_epi64(_mm512_cmp_pd_mask(__m512d(a), __m512d(b), _CMP_UNORD_Q)));
        }
    }
#endif
#if defined(__AVX__)
    if constexpr (sizeof(V) == 32) {
        if constexpr (kFloat) {
            return I(_mm256_cmp_ps(__m256(a), __m256(b), _CMP_UNORD_Q));
        } else {
            return I(_mm256_cmp_pd(__m256d(a), __m256d(b), _CMP_UNORD_Q));
        }
    }
#endif
#if defined(__SSE2__)
    if constexpr (sizeof(V) == 16) {
        if constexpr (kFloat) {
            return I(_mm_cmpunord_ps(__m128(a), __m128(b)));
        } else {
            return I(_mm_cmpunord_pd(__m128d(a), __m128d(b)));
        }
    }
#endif
    return I((a != a) | (b != b));
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
    using Ints = typename S::Ints;
#if defined(__AVX2__)
    // One zero-extending move: GCC lowers the generic widening below a byte
    // at a time (an extract and an insert per lane), most of the extra cost
    // of a row with a `where` mask.
    constexpr int64_t width = int64_t(sizeof(Ints));
    if constexpr (width == 64 || width == 32) {
        __m128i packed = _mm_setzero_si128();
        std::memcpy(&packed, &bytes, sizeof bytes);
        Ints widened;
#if defined(__AVX512F__)
        if constexpr (width == 64) {
            const __m512i lanes = sizeof(T) == 4 ? _mm512_maskz_cvtepu8_epi32(__mmask16(0xffff), packed)
                                                 : _mm512_maskz_cvtepu8_epi64(__mmask8(0xff), packed);
            std::memcpy(&widened, &lanes, sizeof widened);
            return widened != 0;
        }
#endif
        if constexpr (width == 32) {
            const __m256i lanes = sizeof(T) == 4 ? _mm256_cvtepu8_epi32(packed)
                                                 : _mm256_cvtepu8_epi64(packed);
            std::memcpy(&widened, &lanes, sizeof widened);
            return widened != 0;
        }
    }
#endif
    return __builtin_convertvector(bytes, Ints) != 0;
}

template <class V>
constexpr int64_t lanes_of = int64_t(sizeof(V) / sizeof(V{}[0]));

// Whether every lane of a comparison's result (each lane all ones or zero)
// is set: a test of the vector's bytes where the level has one.
template <class I>
FS_INLINE bool all_lanes(I m) {
    constexpr std::size_t kBytes = sizeof(I);
#if defined(__AVX512F__)
    if constexpr (kBytes == 64) {
        return _mm512_cmpneq_epi32_mask(__m512i(m), _mm512_set1_epi32(-1)) == 0;
    }
#endif
#if defined(__AVX2__)
    if constexpr (kBytes == 32) return _mm256_movemask_epi8(__m256i(m)) == -1;
#endif
#if defined(__SSE2__)
    if constexpr (kBytes == 16) return _mm_movemask_epi8(__m128i(m)) == 0xFFFF;
#endif
    constexpr int64_t L = lanes_of<I>;
    if constexpr (kBytes > 16 && L >= 2) {  // the halves and-ed, then tested
        return [&]<std::size_t... j>(std::index_sequence<j...>) __attribute__((always_inline)) {
            return all_lanes(__builtin_shufflevector(m, m, j...) &
                             __builtin_shufflevector(m, m, (j + L / 2)...));
        }(std::make_index_sequence<std::size_t(L / 2)>{});
    } else {
        bool all = true;
        for (int64_t j = 0; j < L; ++j) all &= m[j] != 0;
        return all;
    }
}

// v's lanes converted to W's lane type (float to double: exact). Floats go
// through the ISA's widest conversion a piece at a time: GCC lowered the
// generic conversion in 4-lane pieces, each with an insert.
template <class W, class V>
FS_INLINE W widen(const V& v) {
#if defined(__AVX512F__) || defined(__AVX__)
    using From = std::remove_cvref_t<decltype(v[0])>;
    using To = std::remove_cvref_t<decltype(W{}[0])>;
    if constexpr (std::is_same_v<From, float> && std::is_same_v<To, double> &&
                  lanes_of<V> == lanes_of<W>) {
#if defined(__AVX512F__)
        using Half = __m256;
        // (maskz: the unmasked form's undefined source warns under GCC 12)
        const auto convert = [](Half h) FS_INLINE_LAMBDA {
            return _mm512_maskz_cvtps_pd(__mmask8(0xff), h);
        };
#else
        using Half = __m128;
        const auto convert = [](Half h) FS_INLINE_LAMBDA { return _mm256_cvtps_pd(h); };
#endif
        constexpr int64_t kPiece = int64_t(sizeof(Half));
        if constexpr (int64_t(sizeof(V)) % kPiece == 0) {
            W w;
            _Pragma("GCC unroll 8") for (int64_t b = 0; b < int64_t(sizeof(V)); b += kPiece) {
                Half piece;
                std::memcpy(&piece, reinterpret_cast<const char*>(&v) + b, sizeof piece);
                const auto wide = convert(piece);
                std::memcpy(reinterpret_cast<char*>(&w) + 2 * b, &wide, sizeof wide);
            }
            return w;
        }
    }
#endif
    return __builtin_convertvector(v, W);
}

// Half of V's lanes as doubles: a register of doubles for a register of floats.
template <class V>
struct WidenedHalf {
    typedef double type __attribute__((vector_size(sizeof(V))));
};

// v's low and high halves widened to double (exact), each a vector no
// wider than v: GCC keeps a vector wider than a register in memory, and
// assembled one from halves through a store and reloads.
template <class V, class W = typename WidenedHalf<V>::type>
FS_INLINE void widen_halves(const V& v, W& low, W& high) {
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(v[0])>, float>);
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64) {
        const __m512 r = __builtin_bit_cast(__m512, v);
        // (maskz: the unmasked forms' undefined source warns under GCC 12)
        const __m256 top =
            _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(__mmask8(0x0f), _mm512_castps_pd(r), 1));
        // (the low half by a shuffle: GCC 12's cast intrinsic extracts it from
        // an undefined source, and warns)
        const __m256 bottom = [&]<std::size_t... j>(std::index_sequence<j...>)
                                  __attribute__((always_inline)) {
            return __m256(__builtin_shufflevector(r, r, j...));
        }(std::make_index_sequence<8>{});
        low = __builtin_bit_cast(W, _mm512_maskz_cvtps_pd(__mmask8(0xff), bottom));
        high = __builtin_bit_cast(W, _mm512_maskz_cvtps_pd(__mmask8(0xff), top));
        return;
    }
#endif
#if defined(__AVX__)
    if constexpr (sizeof(V) == 32) {
        const __m256 r = __builtin_bit_cast(__m256, v);
        low = __builtin_bit_cast(W, _mm256_cvtps_pd(_mm256_castps256_ps128(r)));
        high = __builtin_bit_cast(W, _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1)));
        return;
    }
#endif
    constexpr int64_t L = lanes_of<V>;
    [&]<std::size_t... j>(std::index_sequence<j...>) __attribute__((always_inline)) {
        low = __builtin_convertvector(__builtin_shufflevector(v, v, j...), W);
        high = __builtin_convertvector(__builtin_shufflevector(v, v, (j + L / 2)...), W);
    }(std::make_index_sequence<std::size_t(L / 2)>{});
}

// Lanes 0 .. lanes_of<B> - 1 of v converted to B's lane type (lanes v
// lacks: 0).
template <class B, class V>
FS_INLINE B low_lanes_as(const V& v) {
    constexpr int64_t n = lanes_of<B>;
    if constexpr (lanes_of<V> >= n) {
        return [&]<std::size_t... j>(std::index_sequence<j...>) __attribute__((always_inline)) {
            return widen<B>(__builtin_shufflevector(v, v, j...));
        }(std::make_index_sequence<std::size_t(n)>{});
    } else {
        B b{};
        for (int64_t j = 0; j < lanes_of<V>; ++j) b[j] = v[j];
        return b;
    }
}

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

// fold_lanes of G vectors at once (G a power of two, at most the lane
// count): the same pairs in the same order (lane j with lane j + w/2 of a
// block of w lanes, w halving), with the blocks of several vectors packed
// into one, so that G rows share each shuffle and op. Lane g of the result
// is fold_lanes(v[g], op): the short rows' maxima and sums, a few rows a
// time, for fewer shuffles than one tree a row.
template <int64_t w, class V, class Op>
FS_INLINE V fold_blocks(V x, V y, const Op& op) {
    constexpr int64_t L = lanes_of<V>;
    constexpr int64_t blocks = L / w, half = w / 2;
    // Output lane q: block q / half of x's blocks, then of y's (x ++ y indexing).
    constexpr auto first = [](int64_t q) {
        const int64_t b = q / half, o = q % half;
        return (b < blocks ? 0 : L) + (b % blocks) * w + o;
    };
    return [&]<std::size_t... q>(std::index_sequence<q...>) __attribute__((always_inline)) {
        return op(__builtin_shufflevector(x, y, first(q)...),
                  __builtin_shufflevector(x, y, (first(q) + half)...));
    }(std::make_index_sequence<std::size_t(L)>{});
}

template <int64_t w, int G, class V, class Op>
FS_INLINE V fold_rows(const V (&v)[G], const Op& op) {
    if constexpr (G > 1) {
        V next[G / 2];
        for (int i = 0; i < G / 2; ++i) next[i] = fold_blocks<w>(v[2 * i], v[2 * i + 1], op);
        return fold_rows<w / 2, G / 2>(next, op);
    } else if constexpr (w > 1) {
        const V next[1] = {fold_blocks<w>(v[0], v[0], op)};
        return fold_rows<w / 2, 1>(next, op);
    } else {
        return v[0];
    }
}

template <int G, class V, class Op>
FS_INLINE V fold_lanes_of(const V (&v)[G], const Op& op) {
    static_assert(G >= 1 && (G & (G - 1)) == 0 && G <= lanes_of<V>);
    return fold_rows<lanes_of<V>, G>(v, op);
}

// Lane g: lanes_sum of v[g] widened to double (the float rows' double
// totals), the same pairs in the same order as fold_lanes_of over the
// widened vectors. Where G is at most half the lanes, the tree's first step
// (lane j plus lane j + L/2) adds the two widened halves of each vector, so
// that no vector wider than a register is built.
template <int G, class V>
FS_INLINE auto widened_sum_lanes_of(const V (&v)[G]) {
    using Wide = typename WidenedHalf<V>::type;
    if constexpr (G <= lanes_of<Wide>) {
        Wide halves[G];
        for (int g = 0; g < G; ++g) {
            Wide low, high;
            widen_halves(v[g], low, high);
            halves[g] = low + high;
        }
        return fold_lanes_of(halves, [](auto a, auto b) { return a + b; });
    } else {  // G == lanes: a vector of doubles per row, no wider than G needs
        static_assert(G == lanes_of<V>);
        typedef double W __attribute__((vector_size(G * sizeof(double))));
        W wide[G];
        for (int g = 0; g < G; ++g) wide[g] = widen<W>(v[g]);
        return fold_lanes_of(wide, [](auto a, auto b) { return a + b; });
    }
}

// Visit [begin, end) a vector at a time: blocks of four vectors into four
// independent accumulators (one chain of dependent adds would wait on each
// add's latency), then single vectors into accumulator 0, then one partial
// vector into accumulator 1. block(offset, acc) takes four full vectors,
// vector k into acc[k]; visit(offset, count, accumulator) one vector, count
// is `lanes` except at the tail. The sums' order is this order.
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
        [&](int64_t i, Acc (&a)[4]) FS_INLINE_LAMBDA {
            visit(i, L, a[0]);
            visit(i + L, L, a[1]);
            visit(i + 2 * L, L, a[2]);
            visit(i + 3 * L, L, a[3]);
        },
        visit);
}

// An empty asm the value must pass through in a register (in memory where
// the vector is wider than one): the compiler can no longer fuse the
// operation that made it with the one that uses it.
template <class R>
FS_INLINE void opaque(R& v) {
#if defined(__x86_64__) || defined(__aarch64__)
    if constexpr (int64_t(sizeof(R)) <= kRegisterBytes) {
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

FS_LEVEL_END
