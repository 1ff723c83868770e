// The nanobind module fastsoftmax._core: converts validated NumPy arrays to
// strided views and releases the GIL around the batch drivers (NumPy's C API
// only for the one-step common call, softmax_last_axis). Arrays are
// taken without conversion (.noconvert()), so a wrong dtype is an error here,
// never a silent copy; the Python layer guarantees dtypes and shapes.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstddef>
#include <limits>
#include <mutex>
#include <utility>

#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

#include "dispatch.h"
#include "softmax_batch.h"
#include "thread_pool.h"

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

// The path current_kernels() takes for contiguous rows of n elements
// (RowKernels::row_path), by name.
std::string row_path(std::int64_t n, bool f64, const std::string& function) {
    RowWork work;
    if (function == "softmax") {
        work = RowWork::softmax;
    } else if (function == "log_softmax") {
        work = RowWork::log_softmax;
    } else if (function == "logsumexp") {
        work = RowWork::logsumexp;
    } else {
        throw nb::value_error("function: softmax, log_softmax or logsumexp");
    }
    if (n < 1 || n > std::numeric_limits<std::int64_t>::max() / 8) {
        throw nb::value_error("n must be at least 1 and its bytes fit int64");
    }
    switch (current_kernels().row_path(n, f64, work)) {
        case RowPath::short_rows:
            return "short_rows";
        case RowPath::groups:
            return "groups";
        case RowPath::online:
            break;
    }
    return "online";
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

// The common call in one step, for the Python layer's fast path: x an exact
// ndarray of native float32/float64, C-contiguous and aligned, with at least
// one element, reduced over its last axis (axis -1 or ndim - 1); the result
// goes to a new array or to out= (see plain_output). Anything else returns
// None and the caller takes the general path. NumPy's C API reads the array
// header directly: nanobind's generic ndarray import costs most of a
// 3-element call. Small calls keep the GIL: releasing and taking it back
// costs more than the work.
constexpr std::int64_t kKeepGilElements = 1 << 14;

// Runs f() with the GIL released for calls large enough to be worth it.
template <class F>
void maybe_without_gil(std::int64_t size, const F& f) {
    if (size < kKeepGilElements) {
        f();
    } else {
        nb::gil_scoped_release release;
        f();
    }
}

template <class T>
void softmax_rows_of(PyArrayObject* x, PyArrayObject* out, bool log) {
    const int ndim = PyArray_NDIM(x);
    const std::int64_t n = PyArray_DIM(x, ndim - 1);
    const std::int64_t size = PyArray_SIZE(x);
    const Extent3 extent{1, size / n, n};
    const StridedView3<const T> xv{static_cast<const T*>(PyArray_DATA(x)), {0, n, 1}};
    const StridedView3<T> yv{static_cast<T*>(PyArray_DATA(out)), {0, n, 1}};
    maybe_without_gil(size, [&] {
        softmax_batch<T>(xv, yv, {nullptr, {0, 0, 0}}, extent, 1.0,
                         log ? RowOp::log_softmax : RowOp::softmax);
    });
}

// New outputs of the one-step calls from kReusedMinBytes up are allocated
// through a NumPy memory handler (NEP 49) that keeps the last such block
// freed and hands it to the next output of exactly its size. A new output
// of that size is otherwise fresh memory from the kernel: a page fault and
// a page of zeros per page before the kernel writes a byte, again on every
// call of a loop. One block at most is kept,
// at most kReusedMaxBytes; the arrays own their data as usual (NumPy frees
// them through the handler, which they reference).
constexpr std::size_t kReusedMinBytes = std::size_t(4) << 20;
constexpr std::size_t kReusedMaxBytes = std::size_t(256) << 20;

struct ReusedBlock {
    std::mutex lock;
    void* data = nullptr;
    std::size_t bytes = 0;
    PyDataMem_Handler* fallback = nullptr;  // NumPy's default handler

    // The kept block if it has exactly `bytes`, else nullptr.
    void* take(std::size_t wanted) {
        std::lock_guard<std::mutex> guard(lock);
        if (data == nullptr || bytes != wanted) return nullptr;
        return std::exchange(data, nullptr);
    }
    // Keeps `block` in place of the kept one; returns the block to free
    // (the one replaced, or `block` itself when it is not kept).
    std::pair<void*, std::size_t> keep(void* block, std::size_t size) {
        if (size < kReusedMinBytes || size > kReusedMaxBytes) return {block, size};
        std::lock_guard<std::mutex> guard(lock);
        std::pair<void*, std::size_t> replaced{data, bytes};
        data = block;
        bytes = size;
        return replaced;
    }
};

ReusedBlock reused_block;

void* reused_malloc(void*, std::size_t size) {
    if (void* block = reused_block.take(size)) return block;
    PyDataMemAllocator& a = reused_block.fallback->allocator;
    return a.malloc(a.ctx, size);
}

void* reused_calloc(void*, std::size_t count, std::size_t size) {
    PyDataMemAllocator& a = reused_block.fallback->allocator;
    return a.calloc(a.ctx, count, size);
}

void* reused_realloc(void*, void* block, std::size_t size) {
    PyDataMemAllocator& a = reused_block.fallback->allocator;
    return a.realloc(a.ctx, block, size);
}

void reused_free(void*, void* block, std::size_t size) {
    const auto [freed, bytes] = reused_block.keep(block, size);
    if (freed == nullptr) return;
    PyDataMemAllocator& a = reused_block.fallback->allocator;
    a.free(a.ctx, freed, bytes);
}

PyDataMem_Handler reused_handler = {
    "fastsoftmax_reused_output", 1,
    {nullptr, reused_malloc, reused_calloc, reused_realloc, reused_free}};

PyObject* reused_handler_capsule = nullptr;  // a module attribute keeps it alive

// Frees the kept block; returns the bytes it held.
std::size_t release_reused_block() {
    const auto [block, bytes] = [] {
        std::lock_guard<std::mutex> guard(reused_block.lock);
        return std::pair{std::exchange(reused_block.data, nullptr),
                         std::exchange(reused_block.bytes, 0)};
    }();
    if (block == nullptr) return 0;
    PyDataMemAllocator& a = reused_block.fallback->allocator;
    a.free(a.ctx, block, bytes);
    return bytes;
}

std::size_t reused_block_bytes() {
    std::lock_guard<std::mutex> guard(reused_block.lock);
    return reused_block.data == nullptr ? 0 : reused_block.bytes;
}

// A new C-ordered array of x's dtype and the first ndim of its dimensions;
// large ones through the reusing handler, unless the caller's context has a
// handler of its own (that one is left in charge).
nb::object new_output(PyArrayObject* x, int ndim) {
    PyArray_Descr* descr = PyArray_DESCR(x);
    std::size_t bytes = std::size_t(PyArray_ITEMSIZE(x));
    for (int d = 0; d < ndim; ++d) bytes *= std::size_t(PyArray_DIM(x, d));
    PyObject* previous = nullptr;
    if (bytes >= kReusedMinBytes && bytes <= kReusedMaxBytes) {
        PyObject* current = PyDataMem_GetHandler();
        if (current == nullptr) throw nb::python_error();
        const bool is_default = current == PyDataMem_DefaultHandler;
        Py_DECREF(current);
        if (is_default) {
            previous = PyDataMem_SetHandler(reused_handler_capsule);
            if (previous == nullptr) throw nb::python_error();
        }
    }
    Py_INCREF(descr);  // stolen by PyArray_NewFromDescr
    PyObject* out = PyArray_NewFromDescr(&PyArray_Type, descr, ndim, PyArray_DIMS(x), nullptr,
                                         nullptr, 0, nullptr);
    if (previous != nullptr) {
        PyObject* ours = PyDataMem_SetHandler(previous);
        Py_DECREF(previous);
        if (ours == nullptr) {
            Py_XDECREF(out);
            throw nb::python_error();
        }
        Py_DECREF(ours);
    }
    if (out == nullptr) throw nb::python_error();
    return nb::steal(out);
}

// x as an array the one-step calls handle, or nullptr (take the general path).
PyArrayObject* plain_input(nb::handle x_handle, int axis) {
    PyObject* object = x_handle.ptr();
    if (!PyArray_CheckExact(object)) return nullptr;
    auto* x = reinterpret_cast<PyArrayObject*>(object);
    const int type = PyArray_TYPE(x);
    const int ndim = PyArray_NDIM(x);
    if ((type != NPY_FLOAT32 && type != NPY_FLOAT64) || ndim == 0 || PyArray_SIZE(x) == 0 ||
        (axis != -1 && axis != ndim - 1) || !PyArray_ISNOTSWAPPED(x) ||
        !PyArray_CHKFLAGS(x, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED)) {
        return nullptr;
    }
    return x;
}

// out given: an exact, writeable, C-contiguous aligned ndarray of x's dtype
// and shape (reduced: without x's last axis, logsumexp's). softmax's out may
// be x itself; otherwise it shares no memory with x (a partial overlap takes
// the general path, which reads x from a copy).
bool plain_output(PyArrayObject* x, PyObject* object, bool reduced = false) {
    if (!PyArray_CheckExact(object)) return false;
    auto* out = reinterpret_cast<PyArrayObject*>(object);
    const int ndim = PyArray_NDIM(x) - (reduced ? 1 : 0);
    if (PyArray_TYPE(out) != PyArray_TYPE(x) || PyArray_NDIM(out) != ndim ||
        !PyArray_ISNOTSWAPPED(out) ||
        !PyArray_CHKFLAGS(out, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_WRITEABLE)) {
        return false;
    }
    for (int d = 0; d < ndim; ++d) {
        if (PyArray_DIM(out, d) != PyArray_DIM(x, d)) return false;
    }
    const auto* x_begin = static_cast<const char*>(PyArray_DATA(x));
    const auto* out_begin = static_cast<const char*>(PyArray_DATA(out));
    const bool same = !reduced && x_begin == out_begin;
    return same || x_begin + PyArray_NBYTES(x) <= out_begin ||
           out_begin + PyArray_NBYTES(out) <= x_begin;
}

nb::object softmax_last_axis(nb::handle x_handle, int axis, bool log, nb::handle out_handle) {
    PyArrayObject* x = plain_input(x_handle, axis);
    if (x == nullptr) return nb::none();
    nb::object result;
    if (out_handle.is_none()) {
        result = new_output(x, PyArray_NDIM(x));
    } else {
        if (!plain_output(x, out_handle.ptr())) return nb::none();
        result = nb::borrow(out_handle);
    }
    auto* y = reinterpret_cast<PyArrayObject*>(result.ptr());
    if (PyArray_TYPE(x) == NPY_FLOAT32) {
        softmax_rows_of<float>(x, y, log);
    } else {
        softmax_rows_of<double>(x, y, log);
    }
    return result;
}

template <class T>
void logsumexp_rows_of(PyArrayObject* x, PyArrayObject* out) {
    const std::int64_t n = PyArray_DIM(x, PyArray_NDIM(x) - 1);
    const std::int64_t size = PyArray_SIZE(x);
    const Extent3 extent{1, size / n, n};
    const StridedView3<const T> xv{static_cast<const T*>(PyArray_DATA(x)), {0, n, 1}};
    const StridedView2<T> yv{static_cast<T*>(PyArray_DATA(out)), {0, 1}};
    maybe_without_gil(size, [&] {
        logsumexp_batch<T>(xv, yv, {nullptr, {0, 0, 0}}, extent, 1.0);
    });
}

// logsumexp over the last axis: into out, or a new array of x's shape
// without it (0-d for 1-d x); None as softmax_last_axis.
nb::object logsumexp_last_axis(nb::handle x_handle, int axis, nb::handle out_handle) {
    PyArrayObject* x = plain_input(x_handle, axis);
    if (x == nullptr) return nb::none();
    nb::object result;
    if (out_handle.is_none()) {
        result = new_output(x, PyArray_NDIM(x) - 1);
    } else {
        if (!plain_output(x, out_handle.ptr(), true)) return nb::none();
        result = nb::borrow(out_handle);
    }
    auto* y = reinterpret_cast<PyArrayObject*>(result.ptr());
    if (PyArray_TYPE(x) == NPY_FLOAT32) {
        logsumexp_rows_of<float>(x, y);
    } else {
        logsumexp_rows_of<double>(x, y);
    }
    return result;
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
    if (_import_array() < 0) throw nb::python_error();
    reused_block.fallback = static_cast<PyDataMem_Handler*>(
        PyCapsule_GetPointer(PyDataMem_DefaultHandler, "mem_handler"));
    if (reused_block.fallback == nullptr) throw nb::python_error();
    reused_handler_capsule = PyCapsule_New(&reused_handler, "mem_handler", nullptr);
    if (reused_handler_capsule == nullptr) throw nb::python_error();
    m.attr("_reused_output_handler") = nb::steal(reused_handler_capsule);
    bind_dtype<float>(m);
    bind_dtype<double>(m);
    m.def("softmax_16bit", &softmax3_16bit, "x"_a.noconvert(), "out"_a.noconvert(),
          "mask"_a.noconvert().none(), "temperature"_a, "log"_a, "bfloat"_a,
          "softmax of float16 / bfloat16 data given as uint16 views, computed in float");
    m.def("logsumexp_16bit", &logsumexp3_16bit, "x"_a.noconvert(), "out"_a.noconvert(),
          "mask"_a.noconvert().none(), "temperature"_a, "bfloat"_a);
    m.def("softmax_last_axis", &softmax_last_axis, "x"_a, "axis"_a, "log"_a,
          "out"_a = nb::none(),
          "softmax (log: log_softmax) over the last axis of a C-contiguous float32/float64 "
          "ndarray, into out (x itself or not overlapping it) or a new array; None if x or "
          "out is not that case.");
    m.def("logsumexp_last_axis", &logsumexp_last_axis, "x"_a, "axis"_a, "out"_a = nb::none(),
          "logsumexp over the last axis of a C-contiguous float32/float64 ndarray, into out "
          "(not overlapping x) or a new array; None if x or out is not that case.");
    m.def("reused_output_bytes", &reused_block_bytes,
          "bytes of the freed output kept for the next new output of that size (0: none)");
    m.def("release_reused_output", &release_reused_block,
          "free the kept output block; returns its bytes");
    m.def("supported_levels", &supported_levels,
          "SIMD levels compiled in and supported by this CPU, best first.");
    m.def("current_level", [] { return std::string(current_level()); });
    m.def("set_level", &set_level, "name"_a);
    m.def("set_num_threads", &set_num_threads, "threads"_a);
    m.def("online_row_bytes", &online_row_bytes,
          "the setting of set_online_row_bytes; 0: the defaults (by function and level)");
    m.def("set_online_row_bytes", &set_online_row_bytes, "bytes"_a,
          "softmax / log_softmax rows of this many bytes and more take the online two-pass "
          "algorithm (logsumexp rows from four times that); 0 restores the defaults");
    m.def("group_bytes", &group_bytes,
          "the input budget of a group of in-cache softmax / log_softmax rows; 0: the level's own");
    m.def("set_group_bytes", &set_group_bytes, "bytes"_a,
          "set that budget (bytes > 0), or restore the CPU's default (bytes <= 0)");
    m.def("online_base_bytes", &online_base_bytes,
          "the CPU's default: log_softmax rows (softmax rows on AVX-512) of this many bytes "
          "and more take the online algorithm");
    m.def("block_rows_in_groups", &block_rows_in_groups,
          "whether float softmax rows of exactly eight vectors go in groups (else in registers)");
    m.def("set_block_rows_in_groups", &set_block_rows_in_groups, "setting"_a,
          "1: in groups, 0: in registers, -1: the CPU's default");
    m.def("row_path", &row_path, "n"_a, "f64"_a, "function"_a,
          "the path of contiguous unmasked rows of n floats (f64: doubles) on the current level: "
          "'short_rows', 'groups' or 'online'");
    m.def("get_num_threads", &get_num_threads);
}
