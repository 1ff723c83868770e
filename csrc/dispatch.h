// SIMD level selection: every level compiled in has a kernel table
// (kernel_table.h); the best one the CPU runs is picked once, at load, from
// the CPU's features (never from the compiler's -march). A lower level can
// be forced (tests run each; FASTSOFTMAX_SIMD from Python).
#pragma once

#include <string>
#include <vector>

#include "kernel_table.h"

namespace fastsoftmax {

// Levels compiled in and supported by this CPU, best first.
std::vector<std::string> supported_levels();
// The level in use; set_level returns false for a name not in supported_levels().
const char* current_level();
bool set_level(const std::string& name);
const RowKernels& current_kernels();

}  // namespace fastsoftmax
