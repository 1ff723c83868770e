// 16-bit storage (float16, bfloat16): rows are widened to float, computed by
// the float kernels and narrowed back, one row at a time, so no converted
// copy of a whole array is made.
//
// float16 -> float: the half's bits moved into a float and scaled by 2^112
// (exact for normal and subnormal halves), inf/NaN patched. float ->
// float16: round to nearest even by the float adder (subnormal results) or
// by a rounding bias on the bits (normal results); NaN stays NaN, too large
// rounds to inf. bfloat16 is the top half of a float (round to nearest even,
// NaN kept quiet).
#pragma once

#include <cstdint>

#include "simd.h"

FS_LEVEL_BEGIN

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

FS_LEVEL_END
