// The worker pool behind parallel_rows. Starting and joining threads per
// call costs more than a mid-sized call, so the workers are kept: they
// sleep on a condition variable between calls and live until the process
// ends (a fork() after a threaded call therefore happens in a multi-threaded
// process). In a forked child the pool is forgotten (pthread_atfork) and a
// new one is built on first use.
#include "thread_pool.h"

#if !defined(_WIN32)
#include <pthread.h>
#endif

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

namespace fastsoftmax {
namespace {

std::atomic<int> g_threads{1};

class WorkerPool {
  public:
    bool run(std::int64_t parts, const std::function<void(std::int64_t)>& part) {
        std::unique_lock<std::mutex> in_use(use_, std::try_to_lock);
        if (!in_use.owns_lock()) return false;
        std::int64_t on_workers;
        {
            std::lock_guard<std::mutex> lock(state_);
            while (std::int64_t(workers_.size()) < parts - 1) {
                const std::int64_t index = std::int64_t(workers_.size());
                try {
                    workers_.emplace_back([this, index] { work(index); });
                } catch (const std::system_error&) {
                    break;  // no more threads (a process limit): the caller does the rest
                }
            }
            on_workers = std::min(parts - 1, std::int64_t(workers_.size()));
            job_ = &part;
            parts_ = on_workers + 1;
            pending_ = on_workers;
            ++generation_;
        }
        wake_.notify_all();
        part(0);
        for (std::int64_t t = on_workers + 1; t < parts; ++t) part(t);
        std::unique_lock<std::mutex> lock(state_);
        done_.wait(lock, [&] { return pending_ == 0; });
        job_ = nullptr;
        return true;
    }

  private:
    void work(std::int64_t index) {
        std::int64_t seen = 0;
        std::unique_lock<std::mutex> lock(state_);
        for (;;) {
            wake_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (index + 1 >= parts_) continue;  // not needed by this call
            const std::function<void(std::int64_t)>* job = job_;
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
    const std::function<void(std::int64_t)>* job_ = nullptr;
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
[[maybe_unused]] const int g_atfork_registered =
    pthread_atfork(nullptr, nullptr, &forget_pool_in_child);
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

}  // namespace

void set_num_threads(int threads) { g_threads.store(std::max(1, threads)); }
int get_num_threads() { return g_threads.load(); }

bool run_on_pool(std::int64_t parts, const std::function<void(std::int64_t)>& part) {
    return worker_pool().run(parts, part);
}

}  // namespace fastsoftmax

// threadpoolctl finds a library by its file name and confirms it by a symbol
// it exports: this one (src/fastsoftmax/_threads.py). The thread count proper
// is set through Python, which also sets the numba backend's.
#if defined(_WIN32)
#define FASTSOFTMAX_EXPORT __declspec(dllexport)
#else
#define FASTSOFTMAX_EXPORT __attribute__((visibility("default")))
#endif
extern "C" FASTSOFTMAX_EXPORT int fastsoftmax_get_num_threads() {
    return fastsoftmax::get_num_threads();
}
