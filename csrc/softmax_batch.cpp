// Batch drivers, SIMD level selection and threads. Compiled for the baseline
// ISA only: nothing here is hot enough to need a wide one, and keeping it
// out of the per-level copies keeps their symbols apart.
#include "softmax_batch.h"

#if !defined(_WIN32)
#include <pthread.h>
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>

namespace fastsoftmax {
namespace {

using std::int64_t;
using std::uint8_t;

// Below this many elements per thread one thread does the whole call. With the
// worker pool, waking a worker costs ~25 us here; measured (float32 softmax,
// 2 threads against 1): 32768 elements 1.01-1.14x, 65536 1.25-1.39x, 131072
// 1.47-1.62x, 2^18 1.80x, 2^20 and up 1.76-1.96x.
constexpr int64_t kMinElementsPerThread = int64_t(1) << 15;
// A strided tile is gathered into a contiguous buffer of at most this size
// (it stays in L2), then computed in place and scattered back.
constexpr int64_t kTileBytes = int64_t(256) << 10;
constexpr int64_t kMaxTileRows = 16;
// A tile the column sweep declines (a special column among them) goes to the
// column groups, whose columns are first copied into a buffer of at most
// this size (it stays in L2) whose row stride is padded off a multiple of
// 4 KiB, and the column kernel's passes run there: rows 4 KiB apart (a
// 1024-float last axis) share their L1 and L2 sets and low address bits, so
// passes over them in place came from memory and stalled stores (4K
// aliasing). x is then read once and y written once.
constexpr int64_t kStageBytes = int64_t(256) << 10;
constexpr int64_t kStageMaxColumns = 64;
constexpr int64_t kStageMinColumns = 8;
constexpr int64_t kStagePad = 16;  // elements added to the buffer's row stride
// The column sweep takes tiles of up to this many bytes of a row (its state,
// ~300 bytes per float column, stays in L2). Measured against the staged
// column groups (float32 softmax over axis 0, one thread): 1024x1024
// 3.21 -> 2.29 ms, 4096x128 1.88 -> 1.00 ms, 128x4096 1.57 -> 1.19 ms,
// 64x1000 0.19 -> 0.16 ms, 16x4096 0.31 -> 0.26 ms.
constexpr int64_t kSweepBytes = int64_t(4) << 10;

struct Level {
    const RowKernels* kernels;
    bool (*supported)();
    bool automatic;  // may be picked as the best level; false for test-only levels
};

#if defined(__x86_64__) || defined(_M_X64)
bool cpu_has_avx512() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
}
bool cpu_has_avx2() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool always() { return true; }
const Level kLevels[] = {
    {&avx512::kernels, &cpu_has_avx512, true},
    {&avx2::kernels, &cpu_has_avx2, true},
    {&avx2_wide::kernels, &cpu_has_avx2, false},
    {&sse2::kernels, &always, true},
};
#elif defined(__aarch64__) || defined(_M_ARM64)
bool always() { return true; }
const Level kLevels[] = {{&neon::kernels, &always, true}};
#else
bool always() { return true; }
const Level kLevels[] = {{&generic::kernels, &always, true}};
#endif

const RowKernels* best_kernels() {
    for (const Level& level : kLevels) {
        if (level.automatic && level.supported()) return level.kernels;
    }
    return kLevels[0].kernels;  // unreachable: the baseline is always supported
}

std::atomic<const RowKernels*> g_kernels{best_kernels()};
std::atomic<int> g_threads{1};

// Worker threads kept between calls: starting and joining a std::thread per
// call cost ~0.25 ms here (a 1M-element softmax on two threads ran 1.28-1.53x
// one thread). One call uses the pool at a time; a call that finds it busy
// (calls from a user's own thread pool) runs on its own thread, so threads
// are never oversubscribed and no call waits for another. Never destroyed:
// its threads sleep on a condition variable until the process ends (so a
// later fork() happens in a multi-threaded process). In a forked child the
// pool is forgotten (pthread_atfork) and a new one is built on first use.
class WorkerPool {
  public:
    // part(t) for t in [0, parts): t = 0 and any part no worker could be
    // started for on the caller, the others on workers. False (nothing run)
    // when another call holds the pool.
    template <class Part>
    bool run(int64_t parts, const Part& part) {
        std::unique_lock<std::mutex> in_use(use_, std::try_to_lock);
        if (!in_use.owns_lock()) return false;
        const std::function<void(int64_t)> job = [&](int64_t t) { part(t); };
        int64_t on_workers;
        {
            std::lock_guard<std::mutex> lock(state_);
            while (int64_t(workers_.size()) < parts - 1) {
                const int64_t index = int64_t(workers_.size());
                try {
                    workers_.emplace_back([this, index] { work(index); });
                } catch (const std::system_error&) {
                    break;  // no more threads (a process limit): the caller does the rest
                }
            }
            on_workers = std::min(parts - 1, int64_t(workers_.size()));
            job_ = &job;
            parts_ = on_workers + 1;
            pending_ = on_workers;
            ++generation_;
        }
        wake_.notify_all();
        part(0);
        for (int64_t t = on_workers + 1; t < parts; ++t) part(t);
        std::unique_lock<std::mutex> lock(state_);
        done_.wait(lock, [&] { return pending_ == 0; });
        job_ = nullptr;
        return true;
    }

  private:
    void work(int64_t index) {
        std::int64_t seen = 0;
        std::unique_lock<std::mutex> lock(state_);
        for (;;) {
            wake_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (index + 1 >= parts_) continue;  // not needed by this call
            const std::function<void(int64_t)>* job = job_;
            lock.unlock();
            (*job)(index + 1);
            lock.lock();
            if (--pending_ == 0) done_.notify_one();
        }
    }

    std::mutex use_;    // held by the call using the pool
    std::mutex state_;  // guards what follows
    std::condition_variable wake_, done_;
    std::vector<std::thread> workers_;
    const std::function<void(int64_t)>* job_ = nullptr;
    std::int64_t generation_ = 0, parts_ = 0, pending_ = 0;
};

std::atomic<WorkerPool*> g_pool{nullptr};
std::mutex* g_pool_creating = new std::mutex;  // replaced in a forked child

#if !defined(_WIN32)
// The child of a fork() has none of the parent's worker threads, and maybe a
// lock some parent thread held: start from nothing (the old pool is leaked).
void forget_pool_in_child() {
    g_pool.store(nullptr);
    g_pool_creating = new std::mutex;
}
[[maybe_unused]] const int g_atfork_registered = pthread_atfork(nullptr, nullptr, &forget_pool_in_child);
#endif

WorkerPool& worker_pool() {
    WorkerPool* pool = g_pool.load();
    if (pool == nullptr) {
        std::lock_guard<std::mutex> lock(*g_pool_creating);
        pool = g_pool.load();
        if (pool == nullptr) {
            pool = new WorkerPool();
            g_pool.store(pool);
        }
    }
    return *pool;
}

// Run body(first_row, last_row) over [0, rows), split in contiguous blocks
// of whole `grain`s of rows across threads. Each row is computed by one
// thread with the same code whatever the split, so results do not depend on
// the thread count.
template <class Body>
void parallel_rows(int64_t rows, int64_t n, const Body& body, int64_t grain = 1) {
    const int64_t by_work = std::max<int64_t>(1, rows * std::max<int64_t>(n, 1) / kMinElementsPerThread);
    const int64_t grains = (rows + grain - 1) / grain;
    const int64_t threads = std::min<int64_t>({int64_t(get_num_threads()), grains, by_work});
    if (threads <= 1) {
        body(0, rows);
        return;
    }
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
    const auto bound = [&](int64_t t) { return std::min(rows, grains * t / threads * grain); };
    const auto part = [&](int64_t t) {
        try {
            body(bound(t), bound(t + 1));
        } catch (...) {
            errors[size_t(t)] = std::current_exception();
        }
    };
    if (!worker_pool().run(threads, part)) {
        body(0, rows);  // the pool serves another call: this one stays on its thread
        return;
    }
    for (const std::exception_ptr& error : errors) {
        if (error) std::rethrow_exception(error);
    }
}

template <class T>
T* row_pointer(const StridedView3<T>& v, int64_t o, int64_t i) {
    return v.data + o * v.stride[0] + i * v.stride[1];
}

// Rows [first, last) of the flattened (outer, inner) index space, visited as
// tiles of consecutive inner rows that share one outer index.
template <class Visit>
void for_each_tile(int64_t first, int64_t last, int64_t inner, int64_t tile_rows,
                   const Visit& visit) {
    int64_t row = first;
    while (row < last) {
        const int64_t o = row / inner;
        const int64_t i = row % inner;
        const int64_t width = std::min({tile_rows, inner - i, last - row});
        visit(o, i, width);
        row += width;
    }
}

// Copy `width` strided rows of length n into buffer rows of length n. Reading
// across rows first makes a non-last reduction axis (inner stride 1) read
// whole cache lines.
template <class T>
void gather_tile(const StridedView3<const T>& v, int64_t o, int64_t i, int64_t width, int64_t n,
                 T* buffer) {
    const T* base = row_pointer(v, o, i);
    for (int64_t k = 0; k < n; ++k) {
        const T* at = base + k * v.stride[2];
        for (int64_t j = 0; j < width; ++j) buffer[j * n + k] = at[j * v.stride[1]];
    }
}

template <class T>
void scatter_tile(const T* buffer, const StridedView3<T>& v, int64_t o, int64_t i, int64_t width,
                  int64_t n) {
    T* base = row_pointer(v, o, i);
    for (int64_t k = 0; k < n; ++k) {
        T* at = base + k * v.stride[2];
        for (int64_t j = 0; j < width; ++j) at[j * v.stride[1]] = buffer[j * n + k];
    }
}

// Columns [i, i + width) of outer index o, all n rows, to or from a buffer of
// row stride `stride`.
// (A plain loop: a memcpy call per short row segment cost more than the copy.)
template <class T>
void copy_rows(const T* from, int64_t from_stride, T* to, int64_t to_stride, int64_t width,
               int64_t n) {
    constexpr int64_t kAhead = 8;  // rows: each is on another page, where no hardware prefetcher goes
    for (int64_t k = 0; k < n; ++k) {
        if (k + kAhead < n) {
            const char* next = reinterpret_cast<const char*>(from + (k + kAhead) * from_stride);
            for (int64_t b = 0; b < width * int64_t(sizeof(T)); b += 64) __builtin_prefetch(next + b);
        }
        const T* __restrict src = from + k * from_stride;
        T* __restrict dst = to + k * to_stride;
        for (int64_t j = 0; j < width; ++j) dst[j] = src[j];
    }
}

template <class T>
void gather_columns(const StridedView3<const T>& v, int64_t o, int64_t i, int64_t width,
                    int64_t n, T* buffer, int64_t stride) {
    copy_rows(row_pointer(v, o, i), v.stride[2], buffer, stride, width, n);
}

template <class T>
void scatter_columns(const T* buffer, int64_t stride, const StridedView3<T>& v, int64_t o,
                     int64_t i, int64_t width, int64_t n) {
    copy_rows(buffer, stride, row_pointer(v, o, i), v.stride[2], width, n);
}

// Columns per staged block for columns of n elements; 0: too long to stage.
template <class T>
int64_t stage_columns_for(int64_t n) {
    const int64_t fits = kStageBytes / (std::max<int64_t>(n, 1) * int64_t(sizeof(T)));
    if (fits < kStageMinColumns) return 0;
    return std::min(kStageMaxColumns, fits / kStageMinColumns * kStageMinColumns);
}

template <class T>
int64_t tile_rows_for(int64_t n) {
    return std::clamp<int64_t>(kTileBytes / (std::max<int64_t>(n, 1) * int64_t(sizeof(T))), 1,
                               kMaxTileRows);
}

// The float or the double entry of a kernel table, for T.
template <class T, class F32, class F64>
constexpr auto typed(F32 f32, F64 f64) {
    if constexpr (sizeof(T) == 4) {
        return f32;
    } else {
        return f64;
    }
}
#define FS_TYPED(kernels, name) typed<T>((kernels).name##_f32, (kernels).name##_f64)

}  // namespace

namespace {
std::atomic<int64_t> g_online_row_bytes{int64_t(64) << 20};
}  // namespace

int64_t online_row_bytes() { return g_online_row_bytes.load(std::memory_order_relaxed); }
void set_online_row_bytes(int64_t bytes) { g_online_row_bytes.store(std::max<int64_t>(bytes, 1)); }

std::vector<std::string> supported_levels() {
    std::vector<std::string> names;
    for (const Level& level : kLevels) {
        if (level.supported()) names.emplace_back(level.kernels->level);
    }
    return names;
}

const char* current_level() { return g_kernels.load()->level; }
const RowKernels& current_kernels() { return *g_kernels.load(); }

bool set_level(const std::string& name) {
    for (const Level& level : kLevels) {
        if (name == level.kernels->level && level.supported()) {
            g_kernels.store(level.kernels);
            return true;
        }
    }
    return false;
}

void set_num_threads(int threads) { g_threads.store(std::max(1, threads)); }
int get_num_threads() { return g_threads.load(); }

// A non-last reduction axis whose neighbouring rows are adjacent in memory
// (inner stride 1): the column kernels vectorize across those rows.
// Columns as long as an online row go through the row kernel (gathered), so
// that a layout never changes the algorithm, and so the values.
template <class T, class U>
bool columns_layout(const StridedView3<T>& x, const StridedView3<U>& y, bool has_mask,
                    const Extent3& extent) {
    return !has_mask && extent.inner > 1 && x.stride[1] == 1 && y.stride[1] == 1 &&
           x.stride[2] != 1 && extent.n * int64_t(sizeof(T)) < online_row_bytes();
}

// The grain of a thread's share of columns: a whole 4 KiB of every row, or
// all the columns of an outer index. Two threads sweeping halves of the same
// 4 KiB pieces of rows ran slower than one (each core's prefetcher pulled in
// the lines the other was writing): 1024x1024 over axis 0, 2.48 ms on one
// thread, 3.27 ms on two; 4096x256, 2.33 against 3.53 ms. With whole 4 KiB
// pieces, 2048x2048: 12.3 ms on one thread, 6.9 ms on two.
template <class T>
int64_t column_grain(const Extent3& extent) {
    return std::min(extent.inner, kSweepBytes / int64_t(sizeof(T)));
}

template <class T>
void softmax_batch(StridedView3<const T> x, StridedView3<T> y, StridedView3<const uint8_t> mask,
                   Extent3 extent, double temperature, RowOp op) {
    const RowKernels& kernels = current_kernels();
    const int64_t n = extent.n;
    const bool has_mask = mask.data != nullptr;
    const bool rows_contiguous = x.stride[2] == 1 && y.stride[2] == 1 &&
                                 (!has_mask || mask.stride[2] == 1);
    const bool columns = columns_layout(x, y, has_mask, extent);
    parallel_rows(extent.outer * extent.inner, n, [&](int64_t first, int64_t last) {
        if (rows_contiguous && !has_mask) {
            for_each_tile(first, last, extent.inner, kMaxTileRows,
                          [&](int64_t o, int64_t i, int64_t width) {
                FS_TYPED(kernels, softmax_rows)(row_pointer(x, o, i), x.stride[1],
                                                row_pointer(y, o, i), y.stride[1], width, n, temperature, op);
            });
            return;
        }
        if (rows_contiguous) {
            for_each_tile(first, last, extent.inner, kMaxTileRows,
                          [&](int64_t o, int64_t i, int64_t width) {
                for (int64_t j = 0; j < width; ++j) {
                    FS_TYPED(kernels, softmax_row)(row_pointer(x, o, i + j),
                                                   row_pointer(y, o, i + j),
                                                   has_mask ? row_pointer(mask, o, i + j) : nullptr, n,
                                                   temperature, op);
                }
            });
            return;
        }
        const int64_t tile_rows = columns ? 1 : tile_rows_for<T>(n);
        std::vector<T> values(size_t(tile_rows * n));
        std::vector<uint8_t> active(has_mask ? size_t(tile_rows * n) : 0);
        auto gathered = [&](int64_t o, int64_t i, int64_t width) {
            gather_tile(x, o, i, width, n, values.data());
            if (has_mask) gather_tile(mask, o, i, width, n, active.data());
            for (int64_t j = 0; j < width; ++j) {
                T* row = values.data() + j * n;
                FS_TYPED(kernels, softmax_row)(row, row, has_mask ? active.data() + j * n : nullptr,
                                               n, temperature, op);
            }
            scatter_tile(values.data(), y, o, i, width, n);
        };
        if (!columns) {
            for_each_tile(first, last, extent.inner, tile_rows, gathered);
            return;
        }
        // Column kernel over columns [0, width) of (in, in_stride) -> (out, out_stride);
        // a special column goes through the row kernel, gathered.
        const auto columns_of = [&](const T* in, int64_t in_stride, T* out, int64_t out_stride,
                                    int64_t width) {
            for (int64_t done = 0; done < width;) {
                done += FS_TYPED(kernels, softmax_columns)(in + done, in_stride, out + done,
                                                           out_stride, width - done, n, temperature, op);
                if (done < width) {  // a special column
                    for (int64_t k = 0; k < n; ++k) values[size_t(k)] = in[k * in_stride + done];
                    FS_TYPED(kernels, softmax_row)(values.data(), values.data(), nullptr, n,
                                                   temperature, op);
                    for (int64_t k = 0; k < n; ++k) out[k * out_stride + done] = values[size_t(k)];
                    ++done;
                }
            }
        };
        const int64_t staged = stage_columns_for<T>(n);
        const int64_t stage_stride = staged + kStagePad;
        std::vector<T> stage;
        const auto grouped = [&](int64_t o, int64_t i, int64_t width) {
            if (staged == 0) {
                columns_of(row_pointer(x, o, i), x.stride[2], row_pointer(y, o, i), y.stride[2],
                           width);
                return;
            }
            stage.resize(size_t(n * stage_stride));
            for (int64_t j = 0; j < width; j += staged) {
                const int64_t count = std::min(staged, width - j);
                gather_columns(x, o, i + j, count, n, stage.data(), stage_stride);
                columns_of(stage.data(), stage_stride, stage.data(), stage_stride, count);
                scatter_columns(stage.data(), stage_stride, y, o, i + j, count, n);
            }
        };
        for_each_tile(first, last, extent.inner, kSweepBytes / int64_t(sizeof(T)),
                      [&](int64_t o, int64_t i, int64_t width) {
            if (!FS_TYPED(kernels, softmax_column_sweep)(row_pointer(x, o, i), x.stride[2],
                                                         row_pointer(y, o, i), y.stride[2], width, n,
                                                         temperature, op)) {
                grouped(o, i, width);  // a special column among them
            }
        });
    }, columns ? column_grain<T>(extent) : 1);
}

template <class T>
void logsumexp_batch(StridedView3<const T> x, StridedView2<T> y, StridedView3<const uint8_t> mask,
                     Extent3 extent, double temperature) {
    const RowKernels& kernels = current_kernels();
    const int64_t n = extent.n;
    const bool has_mask = mask.data != nullptr;
    const bool rows_contiguous = x.stride[2] == 1 && (!has_mask || mask.stride[2] == 1);
    const StridedView3<T> y3{y.data, {y.stride[0], y.stride[1], 0}};
    const bool columns = !rows_contiguous && columns_layout(x, y3, has_mask, extent);
    parallel_rows(extent.outer * extent.inner, n, [&](int64_t first, int64_t last) {
        const int64_t tile_rows = rows_contiguous ? kMaxTileRows : (columns ? 1 : tile_rows_for<T>(n));
        std::vector<T> values(rows_contiguous ? 0 : size_t(tile_rows * n));
        std::vector<uint8_t> active(has_mask && !rows_contiguous ? size_t(tile_rows * n) : 0);
        auto by_rows = [&](int64_t o, int64_t i, int64_t width) {
            if (rows_contiguous && !has_mask) {
                FS_TYPED(kernels, logsumexp_rows)(row_pointer(x, o, i), x.stride[1],
                                                  row_pointer(y3, o, i), y3.stride[1], width, n, temperature);
                return;
            }
            if (!rows_contiguous) {
                gather_tile(x, o, i, width, n, values.data());
                if (has_mask) gather_tile(mask, o, i, width, n, active.data());
            }
            for (int64_t j = 0; j < width; ++j) {
                const T* row = rows_contiguous ? row_pointer(x, o, i + j) : values.data() + j * n;
                const uint8_t* row_mask =
                    !has_mask ? nullptr
                              : (rows_contiguous ? row_pointer(mask, o, i + j) : active.data() + j * n);
                const double result = FS_TYPED(kernels, logsumexp_row)(row, row_mask, n, temperature);
                *row_pointer(y3, o, i + j) = static_cast<T>(result);
            }
        };
        if (!columns) {
            for_each_tile(first, last, extent.inner, tile_rows, by_rows);
            return;
        }
        for_each_tile(first, last, extent.inner, kSweepBytes / int64_t(sizeof(T)),
                      [&](int64_t o, int64_t i, int64_t width) {
            if (FS_TYPED(kernels, logsumexp_column_sweep)(row_pointer(x, o, i), x.stride[2],
                                                          row_pointer(y3, o, i), y3.stride[1], width,
                                                          n, temperature)) {
                return;
            }
            for (int64_t done = 0; done < width;) {
                done += FS_TYPED(kernels, logsumexp_columns)(row_pointer(x, o, i + done), x.stride[2],
                                                             row_pointer(y3, o, i + done), y3.stride[1],
                                                             width - done, n, temperature);
                if (done < width) by_rows(o, i + done++, 1);
            }
        });
    });
}

namespace {

// Rows of 16-bit storage: widen into a float buffer, run the float row
// kernel there, hand the buffer to `finish` (narrow back, or take the result).
template <class Finish>
void for_each_widened_row(StridedView3<const uint16_t> x, StridedView3<const uint8_t> mask,
                          Extent3 extent, bool bfloat, const Finish& finish) {
    const RowKernels& kernels = current_kernels();
    const auto widen = bfloat ? kernels.widen_bf16 : kernels.widen_f16;
    const int64_t n = extent.n;
    const bool has_mask = mask.data != nullptr;
    parallel_rows(extent.outer * extent.inner, n, [&](int64_t first, int64_t last) {
        std::vector<float> row(size_t(std::max<int64_t>(n, 1)));
        std::vector<uint8_t> active(has_mask ? size_t(n) : 0);
        for (int64_t r = first; r < last; ++r) {
            const int64_t o = r / extent.inner, i = r % extent.inner;
            widen(row_pointer(x, o, i), x.stride[2], row.data(), n);
            const uint8_t* row_mask = nullptr;
            if (has_mask) {
                gather_tile(mask, o, i, 1, n, active.data());
                row_mask = active.data();
            }
            finish(kernels, o, i, row.data(), row_mask);
        }
    });
}

}  // namespace

void softmax_batch_16bit(StridedView3<const uint16_t> x, StridedView3<uint16_t> y,
                         StridedView3<const uint8_t> mask, Extent3 extent, double temperature,
                         RowOp op, bool bfloat) {
    const int64_t n = extent.n;
    for_each_widened_row(x, mask, extent, bfloat,
                         [&](const RowKernels& k, int64_t o, int64_t i, float* row,
                             const uint8_t* row_mask) {
        k.softmax_row_f32(row, row, row_mask, n, temperature, op);
        (bfloat ? k.narrow_bf16 : k.narrow_f16)(row, row_pointer(y, o, i), y.stride[2], n);
    });
}

void logsumexp_batch_16bit(StridedView3<const uint16_t> x, StridedView2<uint16_t> y,
                           StridedView3<const uint8_t> mask, Extent3 extent, double temperature,
                           bool bfloat) {
    const int64_t n = extent.n;
    for_each_widened_row(x, mask, extent, bfloat,
                         [&](const RowKernels& k, int64_t o, int64_t i, float* row,
                             const uint8_t* row_mask) {
        const float result = static_cast<float>(k.logsumexp_row_f32(row, row_mask, n, temperature));
        (bfloat ? k.narrow_bf16 : k.narrow_f16)(&result, y.data + o * y.stride[0] + i * y.stride[1],
                                               1, 1);
    });
}

template void softmax_batch<float>(StridedView3<const float>, StridedView3<float>,
                                   StridedView3<const uint8_t>, Extent3, double, RowOp);
template void softmax_batch<double>(StridedView3<const double>, StridedView3<double>,
                                    StridedView3<const uint8_t>, Extent3, double, RowOp);
template void logsumexp_batch<float>(StridedView3<const float>, StridedView2<float>,
                                     StridedView3<const uint8_t>, Extent3, double);
template void logsumexp_batch<double>(StridedView3<const double>, StridedView2<double>,
                                      StridedView3<const uint8_t>, Extent3, double);

}  // namespace fastsoftmax
