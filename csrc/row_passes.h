// The passes over one contiguous row of n elements (n >= 1), in cache:
//
//   softmax:      scan (max, min, NaN, active count) | exp, store y, sum | scale y
//   log_softmax:  scan | exp and sum, store d to y | y -= log(sum)
//                 (groups with 32 vector registers: scan | exp and sum |
//                 y = d - log(sum) from x, level_kernels.cpp)
//   logsumexp:    scan | exp and sum, nothing stored
//
// with d = (x - max) / temperature, computed as (x - max) * (1 / T) (with
// T == 1 the multiply is left out, which changes no bit). Rows whose max is
// +inf or -inf, or with nothing active, take fill_special_row, and so do rows
// holding a NaN, except where the exp keeps NaN (open_row_scan: their values
// come out NaN through the sum); rows of
// finite logits whose spread overflows with T > 1 take the wide_row_* form.
// x may be y (in place): every element is read before it is written.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

#include "exp.h"
#include "kernel_table.h"
#include "row_ahead.h"
#include "row_scan.h"
#include "simd.h"
#include "sums.h"

FS_LEVEL_BEGIN

// The scale of d: 1 / T in the row's type.
template <class T>
T scale_of(double temperature) {
    return static_cast<T>(1.0 / temperature);
}

// d = (x - max) * scale; kScaled false (temperature 1) skips the multiply.
template <bool kScaled, class R, class M, class T>
FS_INLINE R centred(R v, M max, T scale) {
    if constexpr (kScaled) return (v - max) * scale;
    return v - max;
}

// log_softmax's value d - log_sum, d = (x - max) * scale rounded first. Left
// to itself the compiler fuses the multiply and the subtraction into one
// FMA where d has no other use and not where it has: one path's values were
// then 1 ULP off another's. kScaled false (temperature 1): no multiply,
// nothing to fuse.
template <bool kScaled = true, class R, class M, class T, class Log>
FS_INLINE R log_softmax_of(R x, M max, T scale, Log log_sum) {
    R d = centred<kScaled>(x, max, scale);
    if constexpr (kScaled) opaque(d);
    return d - log_sum;
}

// The flags of a row's exp pass, from run-time values to template
// arguments: kSubnormal (some exp(d) may be subnormal or zero: the careful
// exp form) and kScaled. Calls body(bool_constant<kSubnormal>,
// bool_constant<kScaled>).
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

// What the exp pass writes to y: nothing (logsumexp; log_softmax's groups
// that carry y from x), exp(d) (softmax, scaled by pass 3), or d itself
// (log_softmax: pass 3 is then y - log(sum), one subtraction where
// d - log(sum) from x takes two).
enum class Stored { nothing, exp, centred };

// Pass 2: the sum of exp(d), d = (x - max) * scale, masked lanes 0, in the
// order of sums.h. kStore says what is written to y (Stored); kSplit
// (log_softmax, logsumexp) counts the elements at the max apart. Full
// vectors go four at a time through one interleaved exp block; what is left
// after the last block of four (up to three full vectors and a partial one)
// goes through one more block, added as visit_vector_blocks adds it.
template <Stored kStore, class T, class R>
FS_INLINE void stored(T* y, const R& d, const R& e, int64_t count) {
    if constexpr (kStore == Stored::exp) store(y, e, count);
    if constexpr (kStore == Stored::centred) store(y, d, count);
}

// The last pass of a row: y *= 1 / sum over stored exp (softmax),
// y -= log(sum) over stored d (log_softmax), or y = d - log(sum) from x
// (log_softmax whose exp pass stored nothing: same bits, log_softmax_of).
enum class LastPass { none, scale, lower, lower_from_x };

template <LastPass kLast, class R, class T>
FS_INLINE R last_pass_of(const R& v, T by) {
    static_assert(kLast == LastPass::scale || kLast == LastPass::lower);
    if constexpr (kLast == LastPass::scale) return v * by;
    return v - by;
}

// A row waiting for its last pass, which an exp pass over another row of the
// same length can carry (kCarried). x, max and scale: where the last pass
// reads x (LastPass::lower_from_x, x == nullptr otherwise).
template <class T>
struct CarriedRow {
    T* y = nullptr;
    T by = T(0);
    const T* x = nullptr;
    T max = T(0);
    T scale = T(1);
};

// A row's exp sums as its exp pass leaves them, the last chunk's partial sum
// not yet in the totals; close() gives the row's SplitSum. A group of
// logsumexp rows closes a row's sums after the next row's exp pass
// (group_exp_sums), when the row's last exps are long done: closed at once,
// the widening, the adds and the lane total wait on them at the row's end.
template <class T, bool kSplit>
struct OpenSums {
    RowTotals<T> totals;
    typename Simd<T>::Real last;  // the last chunk's partial sum
    AtMaxCount<T> at_count;
    bool one_chunk;  // last is the row's only chunk: it opens the totals
    FS_INLINE SplitSum close() {
        if (one_chunk) {
            totals.first(last);
        } else {
            totals.add(last);
        }
        return {totals.total(), kSplit ? total_count(at_count) : 0.0};
    }
};

#if defined(__AVX512F__)
// softmax's float rows on AVX-512 whose x and y start at the same place off
// a 64-byte line (NumPy's arrays usually sit 16 bytes past one) run their exp
// loop at y's lines (exp_sums_impl): at the row's own offsets every 64-byte
// load and store spans two lines. A group decides by its first row
// (runs_at_lines); in such a group each row whose y starts off a line runs
// at y's lines, wherever its x sits (rows whose x and y strides differ). The row's lanes then sit rotated by y's
// offset in the vectors, and the sums follow them (RotatedSums), so that every
// term still goes into the lane and slot of sums.h's order: the same bits as
// the loop at the row's offsets. Rows shorter than a chunk keep that loop
// (the rotation's head, end and fix-up cost them more than the aligned stores
// saved), and so do log_softmax's rows (csrc/README.md).
template <class T, Stored kStore, bool kMasked>
constexpr bool kAlignsStores = sizeof(T) == 4 && kStore == Stored::exp && !kMasked &&
                               Simd<T>::lanes == 16;

// Where y's row starts in its 64-byte line, in floats (0: on a line, or off
// the float grid; either keeps the loop at the row's offsets).
FS_INLINE int64_t lanes_past_line(const float* y) {
    const auto address = reinterpret_cast<std::uintptr_t>(y);
    return address % 4 == 0 ? int64_t(address % 64 / 4) : 0;
}
#endif

// Rows of n at x and y whose exp pass runs at y's lines (kAlignsStores).
template <class T, Stored kStore>
bool runs_at_lines(const T* x, const T* y, int64_t n) {
#if defined(__AVX512F__)
    if constexpr (kAlignsStores<T, kStore, false>) {
        return n >= kChunk<T> && lanes_past_line(y) != 0 &&
               (reinterpret_cast<std::uintptr_t>(x) - reinterpret_cast<std::uintptr_t>(y)) % 64 == 0;
    }
#endif
    (void)x, (void)y, (void)n;
    return false;
}

#if defined(__AVX512F__)

// The four sum slots of exp_sums_impl in vectors at y's lines, s floats past
// the row's start: lane L of slot k holds lane (L - s) mod 16 of the row's
// slot k where L >= s, and of slot k - 1 (mod 4) where L < s (the vector at
// y's lines that ends with the first 16 - s lanes of block vector k starts
// with the last s lanes of the vector before it). `low` marks the lanes
// L < s, `back` puts lanes back in the row's order.
struct RotatedSums {
    __m512 slot[4];
    __mmask16 low;
    __m512i back;

    // The chunk's partial sum, (slot0 + slot1) + (slot2 + slot3) of the
    // row's slots in each lane (float addition commutes), in the rotated
    // lanes. Totals kept in rotated lanes give the row's total bit for bit:
    // lane j meets lane j + 8 (then + 4, + 2, + 1) in the row's order and
    // in any rotation of it.
    FS_INLINE __m512 partial() const {
        const __m512 first = _mm512_mask_add_ps(_mm512_add_ps(slot[0], slot[1]), low, slot[1],
                                                slot[2]);
        const __m512 second = _mm512_mask_add_ps(_mm512_add_ps(slot[2], slot[3]), low, slot[3],
                                                 slot[0]);
        return _mm512_add_ps(first, second);
    }
    // v's lanes in the row's order (the masked form: the plain one's
    // undefined source trips GCC 12's -Wuninitialized; the same vpermps).
    FS_INLINE __m512 in_row_order(__m512 v) const {
        return _mm512_mask_permutexvar_ps(v, __mmask16(0xffff), back, v);
    }
    // Slot k in the row's lanes.
    FS_INLINE __m512 row_slot(int k) const {
        return in_row_order(_mm512_mask_blend_ps(low, slot[k], slot[(k + 1) % 4]));
    }
};
#endif

// kOpen: the sums are returned open (OpenSums), else closed (SplitSum).
// kScanAhead: the row ahead is scanned into ahead.scan, not prefetched.
// kAtLines: a row of kChunk or more whose y starts off a 64-byte line runs at
// y's lines (kAlignsStores).
template <class T, bool kSubnormal, bool kScaled, Stored kStore, bool kSplit, bool kMasked,
          LastPass kCarried = LastPass::none, bool kOpen = false, bool kScanAhead = false,
          bool kAtLines = false>
FS_INLINE std::conditional_t<kOpen, OpenSums<T, kSplit>, SplitSum> exp_sums_impl(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale,
                                 CarriedRow<T> other = {}, RowAhead<T> ahead = {}) {
    using S = Simd<T>;
    using Real = typename S::Real;
    using Ints = typename S::Ints;
    constexpr int64_t L = S::lanes;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    RowTotals<T> totals;
    AtMaxCount<T> at_count{};
    // A chunk's partial sum goes into the totals at the end of the next
    // chunk, when its last exps are long done: added at once, the widening
    // and the adds waited on them and held the scheduler's entries. Same
    // order, same bits.
    Real previous{};
    const auto close_chunk = [&](int64_t start, const Real& partial) FS_INLINE_LAMBDA {
        if (start == kChunk<T>) {
            totals.first(previous);
        } else if (start != 0) {
            totals.add(previous);
        }
        previous = partial;
    };
    const auto partial_of = [](const Real (&acc)[4]) FS_INLINE_LAMBDA {
        return (acc[0] + acc[1]) + (acc[2] + acc[3]);
    };
    [[maybe_unused]] ScanLanes<T> ahead_lanes;  // ahead.scan's
    const auto visit = [&](int64_t i, int64_t count, Real& a) FS_INLINE_LAMBDA {
        Real v = load(x + i, count, neg_inf);
        if constexpr (kMasked) v = load_mask<T>(mask + i, count) ? v : broadcast<Real>(neg_inf);
        const Real d = centred<kScaled>(v, max, scale);
        const Real e = kMasked ? exp_nonpositive<T, true>(d)
                               : exp_of_lanes<T, kSubnormal>(d, count);
        stored<kStore>(y + i, d, e, count);
        add_exp<kSplit>(a, at_count, d, e);
    };
    // softmax where vector registers are few: the row's max and the
    // carried row's factor are read from memory at each use (as
    // exp_vectors' constants); in registers they pushed the accumulators
    // to the stack, a store and a reload every iteration. (log_softmax's
    // loop kept its accumulators in registers, and ran slower this way.)
    constexpr bool kFromMemory = kVectorRegisters <= 16 && kStore == Stored::exp;
    constexpr bool kFromX = kCarried == LastPass::lower_from_x;
    alignas(kVectorBytes) Real row_values[3] = {broadcast<Real>(max), broadcast<Real>(other.by),
                                                broadcast<Real>(other.max)};
    const Real* held = row_values;
    if constexpr (kFromMemory) __asm__("" : "+r"(held));
    // softmax: the carried row's loads before this row's stores (a row a
    // multiple of 4 KiB back shares their address bits below 4 KiB, and a
    // load behind such a store waits for it), but after the exp, so that they
    // hold no register through it. Not for log_softmax, whose split sum holds
    // more registers: slower there.
    constexpr bool kEarly = kCarried == LastPass::scale;
    // Four full vectors from i (x, y and the carried row), the four exps
    // interleaved; the row ahead's block at ahead_i.
    const auto block = [&](int64_t i, int64_t ahead_i, Real (&a)[4]) FS_INLINE_LAMBDA {
        if constexpr (kMasked) {
            for (int k = 0; k < 4; ++k) visit(i + k * L, L, a[k]);
        } else {
            constexpr int K = 4;
            Real d[K], e[K], carried[K];
            prefetch_block<kScanAhead>(ahead, ahead_i, ahead_lanes);
            FS_EACH(k) d[k] = centred<kScaled>(load(x + i + k * L, L, T(0)), held[0], scale);
            FS_EACH(k) e[k] = d[k];
            exp_nonpositive_block_by_range<T, kSubnormal, K>(e);
            if constexpr (kEarly) {
                FS_EACH(k) carried[k] = load(other.y + i + k * L, L, T(0));
            }
            FS_EACH(k) stored<kStore>(y + i + k * L, d[k], e[k], L);
            add_exps<kSplit>(a, at_count, d, e, n > 8 * L);
            if constexpr (kFromX) {
                FS_EACH(k) {
                    const Real v = load(other.x + i + k * L, L, T(0));
                    store(other.y + i + k * L, log_softmax_of<kScaled>(v, held[2], scale, held[1]),
                          L);
                }
            } else if constexpr (kCarried != LastPass::none) {
                FS_EACH(k) {
                    T* at = other.y + i + k * L;
                    if constexpr (!kEarly) carried[k] = load(at, L, T(0));
                    store(at, last_pass_of<kCarried>(carried[k], held[1]), L);
                }
            }
        }
    };
    // What is left after the last whole block of four (up to three full
    // vectors and a partial one) as one interleaved block, added as
    // visit_vector_blocks adds it: full vectors into acc[0] in order, the
    // partial one into acc[1].
    const auto rest = [&](int64_t i, int64_t stop, Real (&acc)[4]) FS_INLINE_LAMBDA {
        constexpr int K = 4;
        const int64_t left = stop - i;
        const int64_t full = left / L, tail = left % L;
        const auto live = lane_indices<Ints>() < typename S::Int(tail);
        Real d[K] = {}, e[K];  // d[k] past the live vectors is never read
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
                stored<kStore>(y + i + k * L, d[k], e[k], L);
                add_exp<kSplit>(acc[0], at_count, d[k], e[k]);
            } else if (k == full && tail > 0) {
                e[k] = live ? e[k] : Real{};
                stored<kStore>(y + i + k * L, d[k], e[k], tail);
                add_exp<kSplit>(acc[1], at_count, d[k], e[k]);
            }
        }
        if constexpr (kCarried != LastPass::none) {
            for (int64_t j = i; j < stop; j += L) {
                const int64_t count = stop - j < L ? stop - j : L;
                if constexpr (kFromX) {
                    store(other.y + j,
                          log_softmax_of<kScaled>(load(other.x + j, count, T(0)), other.max,
                                                  scale, other.by),
                          count);
                } else {
                    store(other.y + j,
                          last_pass_of<kCarried>(load(other.y + j, count, T(0)), other.by), count);
                }
            }
        }
    };
    const auto finish = [&]() FS_INLINE_LAMBDA {
        if constexpr (kScanAhead) {
            if (ahead.x != nullptr) *ahead.scan = ahead_lanes;
        }
        OpenSums<T, kSplit> sums{totals, previous, at_count, n <= kChunk<T>};
        if constexpr (kOpen) {
            return sums;
        } else {
            return sums.close();
        }
    };
#if defined(__AVX512F__)
    if constexpr (kAtLines && kAlignsStores<T, kStore, kMasked>) {
        const int64_t s = lanes_past_line(y);
        if (s != 0 && n >= kChunk<T>) {
            // Vector j at y's lines holds elements 16 j - s to 16 j + 15 - s.
            // Blocks of four from j = 0 to `whole` (the row's vectors in whole
            // blocks of four, at its own offsets); the elements after them go
            // through `rest` as in the loop at the row's offsets. Vector 0
            // takes the head (elements 0 to 15 - s) in its lanes L >= s and
            // the end (the s elements before 16 whole) in its lanes L < s, so
            // that no exp is spent on lanes outside the row; the end's terms
            // wait in `end` and go into their slot last, where the row's
            // order adds them. Vector j > 0, j a multiple of 16, opens a chunk:
            // its lanes L < s close the chunk before.
            const auto bits = [](const Real& v) FS_INLINE_LAMBDA {
                return __builtin_bit_cast(__m512, v);
            };
            const auto real = [](const __m512& v) FS_INLINE_LAMBDA {
                return __builtin_bit_cast(Real, v);
            };
            const __mmask16 high = __mmask16(0xffffu << s), low = __mmask16(~high);
            RotatedSums sums{
                {}, low, __builtin_bit_cast(__m512i, (lane_indices<Ints>() + int32_t(s)) & 15)};
            const int64_t whole = 4 * (n / (4 * L)), end_at = whole * L - s;
            // With elements after the whole blocks, whose `rest` adds in the
            // row's lanes, every chunk's partial goes back to them.
            const bool rotated = whole * L == n;
            __m512 end{};
            // Vectors j to j + 3 (x, y and the carried row), the four exps
            // interleaved, vector j as above (kHead: j = 0).
            const auto edge_block = [&](int64_t j, auto head) FS_INLINE_LAMBDA {
                constexpr bool kHead = decltype(head)::value;
                constexpr int K = 4;
                const int64_t p = j * L - s;
                const auto load_first_vector = [&](const T* row) FS_INLINE_LAMBDA {
                    if constexpr (kHead) {
                        return real(_mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(high, row + p), low,
                                                         row + end_at));
                    } else {
                        return load(row + p, L, T(0));
                    }
                };
                const auto store_first_vector = [&](T* row, const Real& v) FS_INLINE_LAMBDA {
                    if constexpr (kHead) {
                        _mm512_mask_storeu_ps(row + p, high, bits(v));
                        _mm512_mask_storeu_ps(row + end_at, low, bits(v));
                    } else {
                        store(row + p, v, L);
                    }
                };
                Real d[K], e[K], carried[K];
                prefetch_block<kScanAhead>(ahead, j * L, ahead_lanes);
                d[0] = centred<kScaled>(load_first_vector(x), held[0], scale);
                _Pragma("GCC unroll 4") for (int k = 1; k < K; ++k) {
                    d[k] = centred<kScaled>(load(x + p + k * L, L, T(0)), held[0], scale);
                }
                FS_EACH(k) e[k] = d[k];
                exp_nonpositive_block_by_range<T, kSubnormal, K>(e);
                if constexpr (kEarly) {
                    carried[0] = load_first_vector(other.y);
                    _Pragma("GCC unroll 4") for (int k = 1; k < K; ++k) {
                        carried[k] = load(other.y + p + k * L, L, T(0));
                    }
                }
                store_first_vector(y, kStore == Stored::exp ? e[0] : d[0]);
                _Pragma("GCC unroll 4") for (int k = 1; k < K; ++k) {
                    stored<kStore>(y + p + k * L, d[k], e[k], L);
                }
                __mmask16 adds = 0xffff;
                if constexpr (kSplit) {
                    adds = _mm512_cmp_ps_mask(bits(d[0]), _mm512_setzero_ps(), _CMP_NEQ_UQ);
                    at_count += L - __builtin_popcount(unsigned(adds));
                }
                if constexpr (kHead) {
                    end = _mm512_maskz_mov_ps(low & adds, bits(e[0]));
                } else {
                    sums.slot[0] = _mm512_mask_add_ps(sums.slot[0], low & adds, sums.slot[0],
                                                      bits(e[0]));
                    const __m512 partial = sums.partial();
                    close_chunk((j / kChunkVectors - 1) * kChunk<T>,
                                real(rotated ? partial : sums.in_row_order(partial)));
                }
                sums.slot[0] = _mm512_maskz_mov_ps(high & adds, bits(e[0]));
                Real a[K] = {};
                _Pragma("GCC unroll 4") for (int k = 1; k < K; ++k) {
                    add_exp<kSplit>(a[k], at_count, d[k], e[k]);
                    sums.slot[k] = bits(a[k]);
                }
                if constexpr (kCarried != LastPass::none) {
                    if constexpr (!kEarly) carried[0] = load_first_vector(other.y);
                    store_first_vector(other.y, last_pass_of<kCarried>(carried[0], held[1]));
                    _Pragma("GCC unroll 4") for (int k = 1; k < K; ++k) {
                        T* at = other.y + p + k * L;
                        if constexpr (!kEarly) carried[k] = load(at, L, T(0));
                        store(at, last_pass_of<kCarried>(carried[k], held[1]), L);
                    }
                }
            };
            for (int64_t j = 0; j < whole; j += kChunkVectors) {
                if (j == 0) {
                    edge_block(j, std::true_type{});
                } else {
                    edge_block(j, std::false_type{});
                }
                Real a[4];
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; ++k) a[k] = real(sums.slot[k]);
                const int64_t stop = j + kChunkVectors < whole ? j + kChunkVectors : whole;
                for (int64_t b = j + 4; b < stop; b += 4) block(b * L - s, b * L, a);
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; ++k) sums.slot[k] = bits(a[k]);
            }
            sums.slot[0] = _mm512_add_ps(sums.slot[0], end);  // + 0 in the other lanes
            const int64_t done = whole * L;
            if (done == n) {
                close_chunk((whole - 1) / kChunkVectors * kChunk<T>, real(sums.partial()));
                return finish();
            }
            Real acc[4];
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; ++k) acc[k] = real(sums.row_slot(k));
            if (whole % kChunkVectors == 0) {
                close_chunk(done - kChunk<T>, partial_of(acc));
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; ++k) acc[k] = Real{};
            }
            rest(done, n, acc);
            close_chunk((n - 1) / kChunk<T> * kChunk<T>, partial_of(acc));
            return finish();
        }
    }
#endif
    for (int64_t start = 0; start < n; start += kChunk<T>) {
        const int64_t stop = start + kChunk<T> < n ? start + kChunk<T> : n;
        Real acc[4] = {};
        if constexpr (kMasked) {
            visit_vector_blocks<T>(start, stop, acc, [&](int64_t i, Real (&a)[4])
                                   FS_INLINE_LAMBDA { block(i, i, a); }, visit);
        } else {
            int64_t i = start;
            for (; i + 4 * L <= stop; i += 4 * L) block(i, i, acc);
            if (i < stop) rest(i, stop, acc);
        }
        close_chunk(start, partial_of(acc));
    }
    return finish();
}

// One exp pass loop as a function of its own (inlined beside the masked
// loop, or into a group's loop, the double loop ran slower).
template <class T, bool kSubnormal, bool kScaled, Stored kStore, bool kSplit, bool kMasked,
          LastPass kCarried = LastPass::none>
__attribute__((noinline)) SplitSum exp_sums_loop(const T* x, T* y, const uint8_t* mask, int64_t n,
                                                 T max, T scale, CarriedRow<T> other = {},
                                                 RowAhead<T> ahead = {}) {
    return exp_sums_impl<T, kSubnormal, kScaled, kStore, kSplit, kMasked, kCarried>(
        x, y, mask, n, max, scale, other, ahead);
}

// Where an unmasked row's exp pass can stop: from there to n every exp(d)
// is +0 (d below the clamp: a causal mask's -inf, an attention mask's
// -1e4). It is a whole number of blocks of four vectors from the row's
// start, or n when the elements after the row's last whole block are not
// all such. An exp pass over [0, end) adds its terms to the same sum slots
// as one over the row, and the zeros it leaves out add nothing to any of
// them, so its sums have the same bits.
template <class T, bool kScaled>
int64_t exp_end_before_zeros(const T* x, int64_t n, T max, T scale) {
    constexpr int64_t L = Simd<T>::lanes, kBlock = 4 * L;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const auto zeros = [&](int64_t i, int64_t count) FS_INLINE_LAMBDA {
        return centred<kScaled>(load(x + i, count, neg_inf), max, scale) < ExpConstants<T>::clamp;
    };
    int64_t end = n - n % kBlock;
    for (int64_t i = end; i < n; i += L) {
        if (!all_lanes(zeros(i, n - i < L ? n - i : L))) return n;
    }
    for (; end > 0; end -= kBlock) {
        const int64_t i = end - kBlock;
        if (!all_lanes(zeros(i, L) & zeros(i + L, L) & zeros(i + 2 * L, L) &
                       zeros(i + 3 * L, L))) {
            return end;
        }
    }
    return end;
}

// The masked and unmasked loops compiled apart: a run-time mask test in the
// loop kept the accumulators in memory.
template <class T, bool kSubnormal, bool kScaled, Stored kStore, bool kSplit>
SplitSum exp_sums(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale,
                  RowAhead<T> ahead) {
    if (mask != nullptr) {
        return exp_sums_loop<T, kSubnormal, kScaled, kStore, kSplit, true>(x, y, mask, n, max,
                                                                           scale);
    }
    return exp_sums_loop<T, kSubnormal, kScaled, kStore, kSplit, false>(x, y, mask, n, max, scale,
                                                                        {}, ahead);
}

// Pass 2 with the exp form (subnormal: some exp(d) may be below the normal
// range) and the scale picked at run time.
template <class T, Stored kStore, bool kSplit>
SplitSum row_exp_sums(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale,
                      bool subnormal, RowAhead<T> ahead = {}) {
    return with_exp_flags(subnormal, scale != T(1), [&](auto sub, auto scaled) {
        return exp_sums<T, decltype(sub)::value, decltype(scaled)::value, kStore, kSplit>(
            x, y, mask, n, max, scale, ahead);
    });
}

// Pass 3 of a row (LastPass).
template <LastPass kLast, class T>
FS_INLINE void last_pass_row(T* y, int64_t n, T by) {
    using Real = typename Simd<T>::Real;
    Real unused[4];
    visit_vectors<T>(0, n, unused, [&](int64_t i, int64_t count, Real&) FS_INLINE_LAMBDA {
        store(y + i, last_pass_of<kLast>(load(y + i, count, T(0)), by), count);
    });
}

// log_softmax's last pass from x: y = d - log_sum, masked lanes -inf; y's
// stores stream past the caches if `stream` (store_streaming).
template <bool kScaled, bool kMasked, class T>
void subtract_row_impl(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale,
                       T log_sum, bool stream) {
    using Real = typename Simd<T>::Real;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const auto visit = [&](int64_t i, int64_t count, auto streaming) FS_INLINE_LAMBDA {
        Real v = log_softmax_of<kScaled>(load(x + i, count, T(0)), max, scale, log_sum);
        if constexpr (kMasked) {
            v = load_mask<T>(mask + i, count) ? v : broadcast<Real>(neg_inf);
        }
        store_output(y + i, v, count, streaming);
    };
    visit_output_vectors<T>(y, n, stream, visit);
}

template <class T>
void subtract_row(const T* x, T* y, const uint8_t* mask, int64_t n, T max, T scale, T log_sum,
                  bool stream) {
    const bool scaled = scale != T(1);
    if (mask != nullptr) {
        scaled ? subtract_row_impl<true, true>(x, y, mask, n, max, scale, log_sum, stream)
               : subtract_row_impl<false, true>(x, y, mask, n, max, scale, log_sum, stream);
    } else {
        scaled ? subtract_row_impl<true, false>(x, y, mask, n, max, scale, log_sum, stream)
               : subtract_row_impl<false, false>(x, y, mask, n, max, scale, log_sum, stream);
    }
}

// Finite logits whose spread max - min overflows the type (|x| near its
// largest value) with T > 1: (x - max) / T would be -inf where the result
// is finite, so such rows divide first, in double (wide_row_*). With T <= 1
// the exact d is below -max_value anyway and the fast path's -inf is right.
template <class T>
bool needs_wide(const RowScan<T>& scan, double temperature) {
    return temperature > 1.0 && std::isfinite(scan.min) && !std::isfinite(scan.max - scan.min);
}

// The scan of an unmasked row of a group whose exp pass follows. Where the
// exp keeps NaN (kExpKeepsNaN), the scan skips its NaN flag (its
// comparison and or): a NaN in a row whose max is finite makes its exp
// sum NaN, and so every value of the row NaN, the values a NaN row gets
// (fill_special_row). Rows the scan finds special or wide are scanned again
// with the flag, which picks their values.
template <class T>
FS_INLINE RowScan<T> open_row_scan(const T* x, int64_t n, double temperature,
                                   const RowScan<T>* flagless = nullptr) {
    if constexpr (kExpKeepsNaN<T>) {
        const RowScan<T> scan = flagless != nullptr ? *flagless : scan_unmasked_row<T, false>(x, n);
        if (!is_special(scan) && !needs_wide(scan, temperature)) return scan;
    }
    return scan_unmasked_row<T, true>(x, n);
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

// logsumexp of a row from its scan (special rows: -inf when nothing is
// active, NaN, or the infinite max), in double before rounding.
template <class T>
bool special_logsumexp(const RowScan<T>& scan, double& result) {
    if (scan.active == 0) {
        result = -std::numeric_limits<double>::infinity();
    } else if (scan.has_nan) {
        result = std::numeric_limits<double>::quiet_NaN();
    } else if (!std::isfinite(scan.max)) {
        result = static_cast<double>(scan.max);  // +inf, or all -inf
    } else {
        return false;
    }
    return true;
}

FS_LEVEL_END
