// The flat index's scan kernels, chosen at run time for this CPU. Not a public header.
//
// src/index/scan_kernels.inc is compiled once per ISA level (scan_kernels.cc):
//   build        the build's own target (-march=x86-64-v3 in a portable build, -march=native in
//                a native one): AVX2 + FMA with the int8 and bf16 dot products written in
//                portable vector code;
//   avx512       AVX-512 F/BW/DQ/VL (Skylake-SP and later);
//   avx512_vnni  + VNNI: vpdpbusd for int8 codes (Cascade Lake, Ice Lake);
//   avx512_bf16  + VNNI + AVX512_BF16: vdpbf16ps for bf16 codes (Cooper Lake, Sapphire Rapids,
//                Zen 4).
// Kernels() picks the widest level this CPU and its OS support (__builtin_cpu_supports, which
// checks the XSAVE state too), never above TWOTOWER_MAX_CPU_ISA when that is set. Every level
// returns the same results to the bit (every lane computes the same fma chain), so the choice
// changes speed only: int8 sums are exact integers on every level, and the portable bf16
// products add the pairs in vdpbf16ps's order with the same single rounding. The one exception:
// vdpbf16ps flushes a sum below 2^-126 to zero and the portable code does not, which moves a
// bf16 code distance (HNSW's graph) only for vectors whose dot products are that small; the flat
// index re-scores in fp32, so its results are the same even then.
//
// The AVX-512 levels are compiled only when the build's own target has FMA (it must fuse the
// same multiply-adds as they do); otherwise there is the build level alone.
#ifndef TWOTOWER_SRC_INDEX_SCAN_KERNELS_H_
#define TWOTOWER_SRC_INDEX_SCAN_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "index/compressed_internal.h"
#include "index/search_internal.h"

namespace twotower::index::internal {

// The fp32 kernel's data: exact scores of packed fp32 queries (PackQueries).
struct ExactScan {
  const float* panels;  // panel 0: panels of 16 items, d x 16 floats each
  size_t panel_floats;  // d * 16
  int d;
  const float* packed;  // query tile t at packed + t * d * 8
};

// The compressed kernel's data: approximate scores (compressed_internal.h).
struct CompressedScan {
  bool int8;                    // else bf16
  int groups;                   // 64-byte groups per panel
  const uint8_t* codes;         // panel p, group g at (p * groups + g) * 64
  const PackedQueries* packed;  // CompressedItems::Pack
};

// Which query tiles and panels one call scans.
struct ScanRangeArgs {
  int64_t n;                             // queries in all (the last tile may be partial)
  int64_t t0, t1;                        // query tiles [t0, t1); heaps[0] is tile t0's first slot
  int64_t count;                         // items (labels at or past it are padding lanes)
  int64_t p0, p1;                        // panels [p0, p1)
  int64_t block;                         // panels per cache block
  const PreparedFilter* const* filters;  // per packed slot (from slot 0), null for none
};

struct ScanKernels {
  const char* isa;  // "avx512_bf16", "avx512_vnni", "avx512", or "build (...)"
  void (*scan_exact)(const ExactScan&, const ScanRangeArgs&, TopK* heaps);
  void (*scan_compressed)(const CompressedScan&, const ScanRangeArgs&, Shortlist* heaps);
  // One query (qt: d x 8, slot 0 used) against one panel: 16 scores into out.
  void (*score_panel)(const float* qt, const float* panel, int d, float* out);
  // The approximate scores of the 8 queries of compressed tile `tile` against panel p (tests):
  // out[i * 16 + l] for query i and item l of the panel.
  void (*score_compressed_panel)(const CompressedScan&, int64_t tile, int64_t p, float* out);
  // The int8 and bf16 group products on 16 lanes (tests): vpdpbusd's and vdpbf16ps's results.
  void (*dot_u8s8)(const int32_t* acc, const uint8_t* u, const uint8_t* s, int32_t* out);
  void (*dot_bf16)(const float* acc, const uint16_t* a, const uint16_t* b, float* out);
  // HNSW's compressed records (hnsw_graph.cc), `bytes` a multiple of 64: sum_p (x_p ^ 0x80) y_p
  // over int8 codes (x unsigned, y signed), and sum_p x_p y_p over bf16 values in fp32.
  int32_t (*int8_code_dot)(const uint8_t* x, const uint8_t* y, size_t bytes);
  float (*bf16_code_dot)(const uint8_t* x, const uint8_t* y, size_t bytes);
};

// The kernels this process uses. Throws Error when TWOTOWER_MAX_CPU_ISA is set to something
// other than build, avx512, avx512_vnni or avx512_bf16.
const ScanKernels& Kernels();

// Every level this CPU can run, narrowest first (tests).
std::vector<const ScanKernels*> RunnableKernels();

// Makes Kernels() return `kernels` (one of RunnableKernels()) until called again; null goes back
// to the choice for this CPU (tests). Not thread-safe with searches in flight. An HNSW index
// keeps the distance functions of the level current when it was made.
void SetKernelsForTesting(const ScanKernels* kernels);

}  // namespace twotower::index::internal

#endif  // TWOTOWER_SRC_INDEX_SCAN_KERNELS_H_
