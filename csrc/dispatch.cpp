// SIMD level selection and the kernels' run-time settings. Compiled for the
// baseline ISA: nothing here is hot.
#include "dispatch.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace fastsoftmax {
namespace {

struct Level {
    const RowKernels* kernels;
    bool (*supported)();
    bool automatic;  // may be picked as the best level; false for test-only levels
};

bool always() { return true; }

#if defined(__x86_64__) || defined(_M_X64)
// The CPU's features from cpuid, and the register state the OS saves from
// xgetbv: __builtin_cpu_supports needs a runtime library that clang++
// targeting Windows does not link.
struct X86Features {
    bool avx2_fma = false;
    bool avx512 = false;  // F, DQ, BW, VL
};

X86Features x86_features() {
    X86Features features;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return features;
    const bool fma = c & bit_FMA;
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX)) return features;  // no AVX state saved
    unsigned xcr0_low, xcr0_high;
    __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    const bool ymm_saved = (xcr0_low & 0x6) == 0x6;             // SSE and AVX state
    const bool zmm_saved = (xcr0_low & 0xe6) == 0xe6;           // and opmask, ZMM state
    if (!ymm_saved || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return features;
    features.avx2_fma = fma && (b & bit_AVX2);
    constexpr unsigned kAvx512 = bit_AVX512F | bit_AVX512DQ | bit_AVX512BW | bit_AVX512VL;
    features.avx512 = features.avx2_fma && zmm_saved && (b & kAvx512) == kAvx512;
    return features;
}

// AMD's Zen 1 to Zen 4 cores (families 0x17 and 0x19): 32 KiB of L1 data
// and 512 KiB or more of L2 a core, the caches their tuning defaults were
// measured on (the group budget, the online threshold, the block rows; in
// kernel_table.h). Zen 5 (48 KiB L1) and the cores before Zen keep the
// others' defaults.
bool cpu_is_zen1_to_zen4() {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d) || b != signature_AMD_ebx || c != signature_AMD_ecx ||
        d != signature_AMD_edx || !__get_cpuid(1, &a, &b, &c, &d)) {
        return false;
    }
    const unsigned family = ((a >> 8) & 0xf) + ((a >> 20) & 0xff);  // base + extended
    return family == 0x17 || family == 0x19;
}

bool cpu_has_avx512() { return x86_features().avx512; }
bool cpu_has_avx2() { return x86_features().avx2_fma; }
// avx2_wide runs the AVX-512 vector width on AVX2 instructions: never picked
// by itself, it lets an AVX2 machine test the widest code path (test builds).
const Level kLevels[] = {
    {&avx512::kernels, &cpu_has_avx512, true},
    {&avx2::kernels, &cpu_has_avx2, true},
#if defined(FASTSOFTMAX_TEST_LEVELS)
    {&avx2_wide::kernels, &cpu_has_avx2, false},
#endif
    {&sse2::kernels, &always, true},
};
#elif defined(__aarch64__) || defined(_M_ARM64)
const Level kLevels[] = {{&neon::kernels, &always, true}};
#else
const Level kLevels[] = {{&generic::kernels, &always, true}};
#endif

std::int64_t default_group_bytes() {
#if defined(__x86_64__) || defined(_M_X64)
    if (cpu_is_zen1_to_zen4()) return kZenGroupBytes;
#endif
    return 0;  // the level's own
}

bool default_block_rows_in_groups() {
#if defined(__x86_64__) || defined(_M_X64)
    return cpu_is_zen1_to_zen4();
#else
    return false;
#endif
}

std::int64_t default_online_base_bytes() {
#if defined(__x86_64__) || defined(_M_X64)
    if (cpu_is_zen1_to_zen4()) return kZenOnlineRowBytes;
#endif
    return kOnlineRowBytes;
}

const RowKernels* best_kernels() {
    for (const Level& level : kLevels) {
        if (level.automatic && level.supported()) return level.kernels;
    }
    return kLevels[std::size(kLevels) - 1].kernels;  // the baseline: always supported
}

std::atomic<const RowKernels*> g_kernels{best_kernels()};
std::atomic<std::int64_t> g_online_row_bytes{0};  // 0: the defaults
std::atomic<std::int64_t> g_group_bytes{default_group_bytes()};
std::atomic<bool> g_block_rows_in_groups{default_block_rows_in_groups()};

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
    g_online_row_bytes.store(std::max<std::int64_t>(bytes, 0));
}

std::int64_t online_base_bytes() {
    static const std::int64_t base = default_online_base_bytes();  // set at first use
    return base;
}

std::int64_t group_bytes() { return g_group_bytes.load(std::memory_order_relaxed); }
void set_group_bytes(std::int64_t bytes) {
    g_group_bytes.store(bytes > 0 ? bytes : default_group_bytes());  // <= 0: the default
}

bool block_rows_in_groups() { return g_block_rows_in_groups.load(std::memory_order_relaxed); }
void set_block_rows_in_groups(int setting) {
    g_block_rows_in_groups.store(setting < 0 ? default_block_rows_in_groups() : setting > 0);
}

}  // namespace fastsoftmax
