// The nanobind module fastsoftmax._core: converts validated NumPy arrays to
// strided views and releases the GIL around the batch drivers. Arrays are
// taken without conversion (.noconvert()), so a wrong dtype is an error here,
// never a silent copy; the Python layer guarantees dtypes and shapes.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "softmax_batch.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fastsoftmax {
namespace {

template <class T>
using Array3 = nb::ndarray<T, nb::ndim<3>, nb::device::cpu>;
template <class T>
using Array2 = nb::ndarray<T, nb::ndim<2>, nb::device::cpu>;
template <class T>
using Array1 = nb::ndarray<T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Mask3 = nb::ndarray<const bool, nb::ndim<3>, nb::device::cpu>;

template <class T, class Array>
StridedView3<T> view3(const Array& a) {
    return {reinterpret_cast<T*>(a.data()), {a.stride(0), a.stride(1), a.stride(2)}};
}

StridedView3<const std::uint8_t> mask_view(const Mask3* mask) {
    if (mask == nullptr || !mask->is_valid()) return {nullptr, {0, 0, 0}};
    return view3<const std::uint8_t>(*mask);
}

template <class T>
Extent3 checked_extent(const Array3<const T>& x, std::size_t o, std::size_t i,
                       const Mask3* mask) {
    if (o != x.shape(0) || i != x.shape(1)) throw nb::value_error("x and out shapes differ");
    if (mask != nullptr && mask->is_valid() &&
        (mask->shape(0) != x.shape(0) || mask->shape(1) != x.shape(1) ||
         mask->shape(2) != x.shape(2))) {
        throw nb::value_error("mask shape differs from x");
    }
    return {std::int64_t(x.shape(0)), std::int64_t(x.shape(1)), std::int64_t(x.shape(2))};
}

template <class T>
void softmax3(const Array3<const T>& x, const Array3<T>& out, const Mask3& mask,
              double temperature, bool log) {
    const Mask3* m = &mask;
    const Extent3 extent = checked_extent(x, out.shape(0), out.shape(1), m);
    if (out.shape(2) != x.shape(2)) throw nb::value_error("x and out shapes differ");
    nb::gil_scoped_release release;
    softmax_batch<T>(view3<const T>(x), view3<T>(out), mask_view(m), extent, temperature,
                     log ? RowOp::log_softmax : RowOp::softmax);
}

template <class T>
void logsumexp3(const Array3<const T>& x, const Array2<T>& out, const Mask3& mask,
                double temperature) {
    const Mask3* m = &mask;
    const Extent3 extent = checked_extent(x, out.shape(0), out.shape(1), m);
    StridedView2<T> y{static_cast<T*>(out.data()), {out.stride(0), out.stride(1)}};
    nb::gil_scoped_release release;
    logsumexp_batch<T>(view3<const T>(x), y, mask_view(m), extent, temperature);
}

void softmax3_16bit(const Array3<const std::uint16_t>& x, const Array3<std::uint16_t>& out,
                    const Mask3& mask, double temperature, bool log, bool bfloat) {
    const Extent3 extent = checked_extent(x, out.shape(0), out.shape(1), &mask);
    if (out.shape(2) != x.shape(2)) throw nb::value_error("x and out shapes differ");
    nb::gil_scoped_release release;
    softmax_batch_16bit(view3<const std::uint16_t>(x), view3<std::uint16_t>(out), mask_view(&mask),
                        extent, temperature, log ? RowOp::log_softmax : RowOp::softmax, bfloat);
}

void logsumexp3_16bit(const Array3<const std::uint16_t>& x, const Array2<std::uint16_t>& out,
                      const Mask3& mask, double temperature, bool bfloat) {
    const Extent3 extent = checked_extent(x, out.shape(0), out.shape(1), &mask);
    StridedView2<std::uint16_t> y{static_cast<std::uint16_t*>(out.data()),
                                  {out.stride(0), out.stride(1)}};
    nb::gil_scoped_release release;
    logsumexp_batch_16bit(view3<const std::uint16_t>(x), y, mask_view(&mask), extent, temperature,
                          bfloat);
}

template <class T>
void exp_nonpositive(const Array1<const T>& d, const Array1<T>& out) {
    if (d.shape(0) != out.shape(0)) throw nb::value_error("d and out sizes differ");
    const RowKernels& k = current_kernels();
    nb::gil_scoped_release release;
    if constexpr (sizeof(T) == 4) {
        k.exp_nonpositive_f32(d.data(), out.data(), std::int64_t(d.shape(0)));
    } else {
        k.exp_nonpositive_f64(d.data(), out.data(), std::int64_t(d.shape(0)));
    }
}

// The common call, with no Python-side layout work: x and out C-contiguous,
// aligned, of one float dtype and one shape, reduction over the last axis.
// Returns false (nothing done) for anything else; the caller then takes
// the general path. Checked here because it is cheaper than in Python.
using AnyArray = nb::ndarray<nb::ro, nb::device::cpu>;
using AnyOutArray = nb::ndarray<nb::device::cpu>;

template <class A>
bool c_contiguous(const A& a) {
    std::int64_t expected = 1;
    for (std::size_t d = a.ndim(); d-- > 0;) {
        if (a.shape(d) != 1 && a.stride(d) != expected) return false;
        expected *= std::int64_t(a.shape(d));
    }
    return true;
}

template <class T>
bool is_plain(const AnyArray& x, const AnyOutArray& out) {
    if (x.dtype() != nb::dtype<T>() || out.dtype() != nb::dtype<T>()) return false;
    if (x.ndim() == 0 || x.ndim() != out.ndim() || x.size() == 0) return false;
    for (std::size_t d = 0; d < x.ndim(); ++d) {
        if (x.shape(d) != out.shape(d)) return false;
    }
    const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % sizeof(T) == 0; };
    return aligned(x.data()) && aligned(out.data()) && c_contiguous(x) && c_contiguous(out);
}

template <class T>
void softmax_plain(const AnyArray& x, const AnyOutArray& out, double temperature, bool log) {
    const std::int64_t n = std::int64_t(x.shape(x.ndim() - 1));
    const Extent3 extent{1, std::int64_t(x.size()) / n, n};
    const StridedView3<const T> xv{static_cast<const T*>(x.data()), {0, n, 1}};
    const StridedView3<T> yv{static_cast<T*>(out.data()), {0, n, 1}};
    nb::gil_scoped_release release;
    softmax_batch<T>(xv, yv, {nullptr, {0, 0, 0}}, extent, temperature,
                     log ? RowOp::log_softmax : RowOp::softmax);
}

bool softmax_contiguous(const AnyArray& x, const AnyOutArray& out, double temperature, bool log) {
    if (is_plain<float>(x, out)) {
        softmax_plain<float>(x, out, temperature, log);
    } else if (is_plain<double>(x, out)) {
        softmax_plain<double>(x, out, temperature, log);
    } else {
        return false;
    }
    return true;
}

template <class T>
void bind_dtype(nb::module_& m) {
    m.def("softmax", &softmax3<T>, "x"_a.noconvert(), "out"_a.noconvert(),
          "mask"_a.noconvert().none(), "temperature"_a, "log"_a);
    m.def("logsumexp", &logsumexp3<T>, "x"_a.noconvert(), "out"_a.noconvert(),
          "mask"_a.noconvert().none(), "temperature"_a);
    m.def("exp_nonpositive", &exp_nonpositive<T>, "d"_a.noconvert(), "out"_a.noconvert());
}

}  // namespace
}  // namespace fastsoftmax

NB_MODULE(_core, m) {
    using namespace fastsoftmax;
    m.doc() = "fastsoftmax compiled kernels (private; use the fastsoftmax package)";
    bind_dtype<float>(m);
    bind_dtype<double>(m);
    m.def("softmax_16bit", &softmax3_16bit, "x"_a.noconvert(), "out"_a.noconvert(),
          "mask"_a.noconvert().none(), "temperature"_a, "log"_a, "bfloat"_a,
          "softmax of float16 / bfloat16 data given as uint16 views, computed in float");
    m.def("logsumexp_16bit", &logsumexp3_16bit, "x"_a.noconvert(), "out"_a.noconvert(),
          "mask"_a.noconvert().none(), "temperature"_a, "bfloat"_a);
    m.def("softmax_contiguous", &softmax_contiguous, "x"_a.noconvert(), "out"_a.noconvert(),
          "temperature"_a, "log"_a,
          "softmax along the last axis of C-contiguous x into out; False if not that case.");
    m.def("supported_levels", &supported_levels,
          "SIMD levels compiled in and supported by this CPU, best first.");
    m.def("current_level", [] { return std::string(current_level()); });
    m.def("set_level", &set_level, "name"_a);
    m.def("set_num_threads", &set_num_threads, "threads"_a);
    m.def("online_row_bytes", &online_row_bytes);
    m.def("set_online_row_bytes", &set_online_row_bytes, "bytes"_a,
          "rows of this many bytes and more take the online two-pass algorithm");
    m.def("get_num_threads", &get_num_threads);
}
