// Batch drivers: run the kernels of the selected SIMD level over every row
// of a strided 3-D view (outer, inner, n) whose last axis is the reduction
// axis, on the set thread count. Pure C++; the Python layer has already
// validated dtypes, shapes and overlap, and made every stride a whole
// number of elements. n >= 1 and outer * inner >= 1.
#pragma once

#include <cstdint>

#include "kernel_table.h"

namespace fastsoftmax {

// Strides are in elements and may be zero (broadcast) or negative.
template <class T>
struct StridedView3 {
    T* data;
    std::int64_t stride[3];  // outer, inner, along the reduction axis
};

template <class T>
struct StridedView2 {
    T* data;
    std::int64_t stride[2];  // outer, inner
};

struct Extent3 {
    std::int64_t outer, inner, n;
};

// y = softmax (or log_softmax) along the last axis of x, scaled by 1/temperature.
// y may be x itself (same data and strides); mask.data == nullptr means no mask.
template <class T>
void softmax_batch(StridedView3<const T> x, StridedView3<T> y,
                   StridedView3<const std::uint8_t> mask, Extent3 extent, double temperature,
                   RowOp op);

// y[o, i] = logsumexp(x[o, i, :] / temperature).
template <class T>
void logsumexp_batch(StridedView3<const T> x, StridedView2<T> y,
                     StridedView3<const std::uint8_t> mask, Extent3 extent, double temperature);

// The same on 16-bit storage (float16, or bfloat16 when `bfloat`), computed
// in float one row at a time: no converted copy of the array.
void softmax_batch_16bit(StridedView3<const std::uint16_t> x, StridedView3<std::uint16_t> y,
                         StridedView3<const std::uint8_t> mask, Extent3 extent,
                         double temperature, RowOp op, bool bfloat);
void logsumexp_batch_16bit(StridedView3<const std::uint16_t> x, StridedView2<std::uint16_t> y,
                           StridedView3<const std::uint8_t> mask, Extent3 extent,
                           double temperature, bool bfloat);

}  // namespace fastsoftmax
