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
    m.def("supported_levels", &supported_levels,
          "SIMD levels compiled in and supported by this CPU, best first.");
    m.def("current_level", [] { return std::string(current_level()); });
    m.def("set_level", &set_level, "name"_a);
    m.def("set_num_threads", &set_num_threads, "threads"_a);
    m.def("get_num_threads", &get_num_threads);
}
