// What this build of twotower is and what it computes with on this CPU (`twotower --version`,
// Python's twotower.build_info()).
#ifndef TWOTOWER_APP_BUILD_INFO_H_
#define TWOTOWER_APP_BUILD_INFO_H_

#include <string>
#include <utility>
#include <vector>

namespace twotower::app {

// In this order: "version" (the project's), "compiled_for" ("-march=x86-64-v3 (portable)" or
// "-march=native (this build machine's CPU)"), "fp32_training_products" (nn::Fp32Engine()),
// "bf16_training_products" (nn::Bf16Engine(), or "unavailable (why)"), "index_scan_kernels"
// (index::ScanKernelIsa(), the level chosen at run time; "error: ..." when TWOTOWER_MAX_CPU_ISA
// is invalid). Never throws Error.
std::vector<std::pair<std::string, std::string>> BuildInfo();

// Checks the environment settings that choose the kernels (TWOTOWER_MAX_CPU_ISA) and how work
// is shared (TWOTOWER_LOAD_AWARE, core/parallel.h) before a command starts; throws Error naming
// the variable and the values it takes.
void CheckKernelSettings();

}  // namespace twotower::app

#endif  // TWOTOWER_APP_BUILD_INFO_H_
