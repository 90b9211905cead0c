#include "index/scan_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "twotower/core/error.h"
#include "twotower/index/flat_index.h"

// Every library header is included above, outside any target region: the .inc below includes
// nothing, and only its own functions (in their own namespaces) are compiled for AVX-512. The
// regions are GCC's `#pragma GCC target` or clang's `#pragma clang attribute` (the sanitizer and
// fuzz builds), which give every function in them the target attribute.

namespace twotower::index::internal {

#define TWOTOWER_ISA_AVX512 0
#define TWOTOWER_ISA_VNNI 0
#define TWOTOWER_ISA_BF16 0
namespace build {
#include "index/scan_kernels.inc"
}  // namespace build
#undef TWOTOWER_ISA_AVX512
#undef TWOTOWER_ISA_VNNI
#undef TWOTOWER_ISA_BF16

#if defined(__x86_64__) && defined(__FMA__)
#define TWOTOWER_SCAN_DISPATCH 1

#define TWOTOWER_ISA_AVX512 1
#define TWOTOWER_ISA_VNNI 0
#define TWOTOWER_ISA_BF16 0
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
#endif
namespace avx512 {
#include "index/scan_kernels.inc"
}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef TWOTOWER_ISA_VNNI
#define TWOTOWER_ISA_VNNI 1

#if defined(__clang__)
#pragma clang attribute push(                                                     \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512vnni"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512vnni")
#endif
namespace avx512_vnni {
#include "index/scan_kernels.inc"
}  // namespace avx512_vnni
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef TWOTOWER_ISA_BF16
#define TWOTOWER_ISA_BF16 1

#if defined(__clang__)
#pragma clang attribute push(                                                                \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512vnni,avx512bf16"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512vnni,avx512bf16")
#endif
namespace avx512_bf16 {
#include "index/scan_kernels.inc"
}  // namespace avx512_bf16
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef TWOTOWER_ISA_AVX512
#undef TWOTOWER_ISA_VNNI
#undef TWOTOWER_ISA_BF16
#endif

namespace {

#if defined(__AVX512BF16__)
#define TWOTOWER_BUILD_ISA "build (avx512_bf16)"
#elif defined(__AVX512VNNI__)
#define TWOTOWER_BUILD_ISA "build (avx512_vnni)"
#elif defined(__AVX512F__)
#define TWOTOWER_BUILD_ISA "build (avx512)"
#elif defined(__AVX2__) && defined(__FMA__)
#define TWOTOWER_BUILD_ISA "build (avx2)"
#else
#define TWOTOWER_BUILD_ISA "build (sse2)"
#endif

#define TWOTOWER_KERNELS(ns, name)                                                     \
  ScanKernels {                                                                        \
    name, ns::ScanExact, ns::ScanCompressed, ns::ScorePanel, ns::ScoreCompressedPanel, \
        ns::DotU8S8Lanes, ns::DotBf16Lanes, ns::Int8CodeDot, ns::Bf16CodeDot           \
  }

const ScanKernels kBuild = TWOTOWER_KERNELS(build, TWOTOWER_BUILD_ISA);
#ifdef TWOTOWER_SCAN_DISPATCH
const ScanKernels kAvx512 = TWOTOWER_KERNELS(avx512, "avx512");
const ScanKernels kAvx512Vnni = TWOTOWER_KERNELS(avx512_vnni, "avx512_vnni");
const ScanKernels kAvx512Bf16 = TWOTOWER_KERNELS(avx512_bf16, "avx512_bf16");
#endif

// Levels in order; each needs what the one before it needs and more.
std::vector<const ScanKernels*> Levels() {
  std::vector<const ScanKernels*> levels{&kBuild};
#ifdef TWOTOWER_SCAN_DISPATCH
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))) {
    return levels;
  }
  levels.push_back(&kAvx512);
  if (!__builtin_cpu_supports("avx512vnni")) return levels;
  levels.push_back(&kAvx512Vnni);
  if (!__builtin_cpu_supports("avx512bf16")) return levels;
  levels.push_back(&kAvx512Bf16);
#endif
  return levels;
}

const ScanKernels& Chosen() {
  static const ScanKernels* const chosen = [] {
    const std::vector<const ScanKernels*> levels = Levels();
    const char* limit = std::getenv("TWOTOWER_MAX_CPU_ISA");
    if (limit == nullptr || *limit == '\0') return levels.back();
    const std::string want = limit;
    static const char* const kNames[] = {"build", "avx512", "avx512_vnni", "avx512_bf16"};
    const auto named = std::find(std::begin(kNames), std::end(kNames), want);
    if (named == std::end(kNames)) {
      throw Error("TWOTOWER_MAX_CPU_ISA: unknown value \"" + want +
                  "\" (expected build, avx512, avx512_vnni or avx512_bf16)");
    }
    const size_t rank = static_cast<size_t>(named - std::begin(kNames));
    return levels[std::min(rank, levels.size() - 1)];
  }();
  return *chosen;
}

std::atomic<const ScanKernels*> g_testing{nullptr};

}  // namespace

const ScanKernels& Kernels() {
  const ScanKernels* forced = g_testing.load(std::memory_order_relaxed);
  return forced != nullptr ? *forced : Chosen();
}

std::vector<const ScanKernels*> RunnableKernels() { return Levels(); }

void SetKernelsForTesting(const ScanKernels* kernels) {
  g_testing.store(kernels, std::memory_order_relaxed);
}

}  // namespace twotower::index::internal

namespace twotower::index {

std::string ScanKernelIsa() { return internal::Kernels().isa; }

}  // namespace twotower::index
