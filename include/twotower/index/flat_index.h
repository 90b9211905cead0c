// FlatIndex: exact top-k by inner product over every stored item.
//
// Storage: items in panels of 16 (a panel is dim x 16 floats, item-minor), so a query's scores
// for 16 items are 16 vector lanes and a batch of queries is a register-blocked matrix product
// (8 queries x up to 64 items per step) with the top-k test done on the registers: no score
// matrix is written. A single query streams the panels once, so it runs at memory bandwidth.
//
// Arithmetic: every score, on every path (one query or a batch, any thread count, FlatIndex or
// HnswIndex's re-scoring), is the same chain s = fma(q[p], v[p], s) for p = 0 .. dim-1 from
// s = 0 (an unfused multiply-add where the CPU has no FMA), so equal vectors give bit-equal
// scores and ties are decided by label alone.
//
// Threads: few queries split the items between threads (each keeps its own top-k; merged at the
// end), many queries split the queries. Thread-safety as ItemIndex.
//
// Compressed storage ("flat:storage=bf16" or "flat:storage=int8"): the scan reads a bf16 (2 bytes
// a value) or int8 (1 byte, per-dimension scales) copy of the vectors, 2x or 4x fewer bytes than
// fp32, scored with AVX512_BF16 / AVX-512 VNNI where the CPU has them (portable code otherwise);
// a shortlist is then re-scored from the fp32 vectors, which stay in memory, row-major (1.5x or
// 1.25x the fp32 index's memory). The shortlist holds every item whose approximate score is within
// a proven error bound of the k-th best one, so the results (labels, order and fp32 scores) are
// exactly those of storage=fp32, on every query; only the speed depends on the data. The method
// and the bound: src/index/compressed_internal.h. References: scalar quantisation with exact
// re-ranking of a shortlist as in Jegou, Tavenard, Douze & Amsaleg, "Searching in one billion
// vectors: re-rank with source coding" (ICASSP 2011) and FAISS's IndexRefine; bf16 as in
// Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training" (2019); the instructions
// vpdpbusd and vdpbf16ps as in the Intel 64 and IA-32 Architectures Software Developer's Manual.
#ifndef TWOTOWER_INDEX_FLAT_INDEX_H_
#define TWOTOWER_INDEX_FLAT_INDEX_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "twotower/index/id_table.h"
#include "twotower/index/item_index.h"

namespace twotower::index {

namespace internal {
class ByteSink;
class PayloadReader;
class CompressedItems;
}  // namespace internal

// What a FlatIndex scan reads (above). The numbers are the file format's (index_file.h).
enum class FlatStorage : uint32_t { kFp32 = 0, kBf16 = 1, kInt8 = 2 };
// "fp32", "bf16" or "int8".
const char* FlatStorageName(FlatStorage storage);

// The ISA level the flat index's scan (and HNSW's compressed distances) run at in this process,
// chosen at run time from what the CPU and its OS support: "avx512_bf16" (vdpbf16ps for bf16
// codes), "avx512_vnni" (vpdpbusd for int8 codes), "avx512", or "build (...)" (the build's own
// target, in a portable build AVX2 + FMA). The environment variable TWOTOWER_MAX_CPU_ISA (build,
// avx512, avx512_vnni or avx512_bf16) caps it, as DNNL_MAX_CPU_ISA caps oneDNN's; every level
// returns the same results to the bit (src/index/scan_kernels.h has the one exception: bf16 code
// products below 2^-126, which vdpbf16ps flushes to zero). Throws Error naming the variable when
// its value is none of those.
std::string ScanKernelIsa();
// The inverse; throws Error("index type 'flat': parameter 'storage': unknown value ...").
FlatStorage ParseFlatStorage(const std::string& value);

class FlatIndex final : public ItemIndex {
 public:
  // dim >= 1 (<= 16384 for int8); throws Error otherwise.
  explicit FlatIndex(int dim, FlatStorage storage = FlatStorage::kFp32);
  ~FlatIndex() override;

  std::string type() const override { return "flat"; }
  // "flat", or "flat:storage=bf16" / "flat:storage=int8".
  std::string spec() const override;
  FlatStorage storage() const { return storage_; }
  int dim() const override { return dim_; }
  int64_t size() const override { return count_; }
  const std::vector<std::string>& ids() const override { return ids_.ids(); }
  int64_t Find(const std::string& id) const override { return ids_.Find(id); }

  void GetVector(int64_t label, float* out) const override;
  // Bytes held by the vectors (and their compressed copy) and ids (for reports).
  int64_t MemoryBytes() const;
  // Compressed storage: items re-scored exactly so far, all searches together (for reports: the
  // shortlist's size per query is rescored() / queries).
  int64_t rescored() const { return rescored_.load(std::memory_order_relaxed); }

 protected:
  AddResult AddImpl(const float* vectors, int64_t n, const std::vector<std::string>& ids) override;
  void SearchImpl(const float* queries, int64_t n, int k, const internal::PreparedFilter* filters,
                  int64_t* ids_out, float* scores_out, const SearchOptions& options) const override;
  void SaveImpl(const std::string& path) const override;

 private:
  friend std::unique_ptr<ItemIndex> LoadIndex(const std::string& path, int expected_dim);

  struct alignas(64) Lanes {
    float v[16];
  };
  const float* panel(int64_t p) const { return panels_[p * dim_].v; }
  void SetVector(int64_t label, const float* v);
  void Resize(int64_t count);  // room for `count` items
  // The ids and vectors sections of an index file (index_file.h), written and read.
  void EmitItems(internal::ByteSink& sink) const;
  void ReadItems(internal::PayloadReader& reader, int64_t count);
  // One query, only the labels of a short allow-list: scores just their panels.
  void SearchAllowList(const float* query, const internal::PreparedFilter& filter, int k,
                       int64_t* ids_out, float* scores_out) const;

  // The exact scan (storage fp32), and the compressed scan with exact re-scoring.
  void SearchExact(const float* queries, const std::vector<int64_t>& rows, int k,
                   const internal::PreparedFilter* filters, int64_t* ids_out,
                   float* scores_out) const;
  void SearchCompressed(const float* queries, const std::vector<int64_t>& rows, int k,
                        const internal::PreparedFilter* filters, int64_t* ids_out,
                        float* scores_out) const;

  int dim_;
  FlatStorage storage_;
  std::unique_ptr<internal::CompressedItems> compressed_;  // null for fp32
  int64_t count_ = 0;
  mutable std::atomic<int64_t> rescored_{0};
  // The fp32 vectors: panels for the fp32 scan, rows (count_ x dim_) with compressed storage,
  // whose scan never reads them and whose re-scoring reads single items.
  std::vector<Lanes> panels_;  // ceil(count_ / 16) * dim_ entries; padding lanes are zero
  std::vector<float> rows_;
  IdTable ids_;
};

}  // namespace twotower::index

#endif  // TWOTOWER_INDEX_FLAT_INDEX_H_
