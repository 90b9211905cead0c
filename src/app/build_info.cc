#include "twotower/app/build_info.h"

#include "twotower/core/error.h"
#include "twotower/core/parallel.h"
#include "twotower/index/flat_index.h"
#include "twotower/nn/gemm.h"

namespace twotower::app {

std::vector<std::pair<std::string, std::string>> BuildInfo() {
  std::string isa;
  try {
    isa = index::ScanKernelIsa();
  } catch (const Error& e) {
    isa = std::string("error: ") + e.what();
  }
  const std::string bf16 = nn::Bf16Unavailable();
  return {
      {"version", TWOTOWER_VERSION},
      {"compiled_for", TWOTOWER_BUILD_TARGET},
      {"fp32_training_products", nn::Fp32Engine()},
      {"bf16_training_products", bf16.empty() ? nn::Bf16Engine() : "unavailable (" + bf16 + ")"},
      {"index_scan_kernels", isa}};
}

void CheckKernelSettings() {
  index::ScanKernelIsa();
  LoadAware();
}

}  // namespace twotower::app
