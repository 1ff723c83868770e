// Threads: large calls are split over rows across a pool of workers kept
// between calls; small calls stay on the caller's thread. Each row is
// computed by one thread with the same code whatever the split, so results
// do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <vector>

namespace fastsoftmax {

void set_num_threads(int threads);
int get_num_threads();

// Below this many elements per thread one thread does the whole call: waking
// a worker costs more than the second core gives on smaller calls.
constexpr std::int64_t kMinElementsPerThread = std::int64_t(1) << 15;

// part(t) for t in [0, parts): t = 0, and any part no worker could be started
// for, on the caller; the others on the pool's workers. Returns false, having
// run nothing, when another call holds the pool (a user's own thread pool
// calling in): that call then runs on its own thread, so threads are never
// oversubscribed and no call waits for another.
bool run_on_pool(std::int64_t parts, const std::function<void(std::int64_t)>& part);

// body(first_row, last_row) over [0, rows), split in contiguous blocks of
// whole `grain`s of rows across threads (a grain keeps a unit of work that
// must not be shared, e.g. a piece of columns, on one thread).
template <class Body>
void parallel_rows(std::int64_t rows, std::int64_t n, const Body& body, std::int64_t grain = 1) {
    using std::int64_t;
    const int64_t by_work =
        std::max<int64_t>(1, rows * std::max<int64_t>(n, 1) / kMinElementsPerThread);
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
            errors[std::size_t(t)] = std::current_exception();
        }
    };
    if (!run_on_pool(threads, part)) {
        body(0, rows);
        return;
    }
    for (const std::exception_ptr& error : errors) {
        if (error) std::rethrow_exception(error);
    }
}

}  // namespace fastsoftmax
