// SIMD level selection and the kernels' run-time settings. Compiled for the
// baseline ISA: nothing here is hot.
#include "dispatch.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>

namespace fastsoftmax {
namespace {

struct Level {
    const RowKernels* kernels;
    bool (*supported)();
    bool automatic;  // may be picked as the best level; false for test-only levels
};

bool always() { return true; }

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
// avx2_wide runs the AVX-512 vector width on AVX2 instructions: never picked
// by itself, it lets an AVX2 machine test the widest code path.
const Level kLevels[] = {
    {&avx512::kernels, &cpu_has_avx512, true},
    {&avx2::kernels, &cpu_has_avx2, true},
    {&avx2_wide::kernels, &cpu_has_avx2, false},
    {&sse2::kernels, &always, true},
};
#elif defined(__aarch64__) || defined(_M_ARM64)
const Level kLevels[] = {{&neon::kernels, &always, true}};
#else
const Level kLevels[] = {{&generic::kernels, &always, true}};
#endif

const RowKernels* best_kernels() {
    for (const Level& level : kLevels) {
        if (level.automatic && level.supported()) return level.kernels;
    }
    return kLevels[std::size(kLevels) - 1].kernels;  // the baseline: always supported
}

std::atomic<const RowKernels*> g_kernels{best_kernels()};
std::atomic<std::int64_t> g_online_row_bytes{std::int64_t(64) << 20};

}  // namespace

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

std::int64_t online_row_bytes() { return g_online_row_bytes.load(std::memory_order_relaxed); }
void set_online_row_bytes(std::int64_t bytes) {
    g_online_row_bytes.store(std::max<std::int64_t>(bytes, 1));
}

}  // namespace fastsoftmax
