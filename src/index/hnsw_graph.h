// HnswGraph: the hierarchical navigable small world graph of HnswIndex, hnswlib 0.6.2's
// HierarchicalNSW over its InnerProductSpace (distance 1 - inner product), behind a narrow face.
//
// src/index/hnsw_graph.cc is the only translation unit that includes hnswlib: its header defines
// non-inline functions (cpuid, AVXCapable, ...), so a second includer in the same program would
// not link. That file is also compiled with the compiler's default contraction (-ffp-contract=
// fast), unlike the rest of the index code: hnswlib's distance kernels are written as multiply
// then add, and fusing them is ~10% of search time. Its distances only steer the graph; every
// score HnswIndex returns is recomputed with search_internal.h's arithmetic.
//
// Compressed storage (hnsw:storage=int8 | bf16): hnswlib's records hold codes instead of fp32
// vectors, so a traversal reads 4x (int8) or 2x (bf16) fewer bytes per visited neighbour (Vector,
// Elements and Candidate::vector are then null: Record gives the code). int8: per-vector symmetric
// codes c = round(x / s), s = max |x_p| / 127, and the distance 1 - s_a s_b sum_p c_ap c_bp, an
// exact integer sum (AVX-512 VNNI's vpdpbusd on c_a + 128 against c_b, the excess 128 sum_p c_bp
// stored with each code taken off). Per vector rather than per dimension (FlatIndex's int8) because
// a graph grows one insert at a time: a per-dimension scale would have to re-encode every record
// when a new value exceeds it; the scale is rounded up to 8 significant bits so that vectors closer
// than the codes resolve get equal records. bf16: each value rounded to nearest-even bf16 and the
// distance summed in fp32 (vdpbf16ps where the CPU has AVX512_BF16). The query is encoded the same
// way per search. The distances are then approximate: the graph's candidates come in the order of
// the codes, and the caller re-scores all of them (distance_is_approximate()) from fp32 vectors it
// keeps itself (HnswIndex, per item: items with equal records share a node).
#ifndef TWOTOWER_SRC_INDEX_HNSW_GRAPH_H_
#define TWOTOWER_SRC_INDEX_HNSW_GRAPH_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "twotower/index/flat_index.h"

namespace twotower::index::internal {

class HnswGraph {
 public:
  struct Candidate {
    float distance;       // 1 - inner product, hnswlib's arithmetic
    int64_t label;        // the label it was added with
    const float* vector;  // the graph's copy of its vector (null with compressed storage)
  };

  // Throws Error for dim < 1 or M < 2, and for int8 storage past 16384 dimensions (the
  // integer sums' exact range).
  HnswGraph(int dim, int M, int ef_construction, FlatStorage storage = FlatStorage::kFp32);
  ~HnswGraph();
  HnswGraph(const HnswGraph&) = delete;
  HnswGraph& operator=(const HnswGraph&) = delete;

  int64_t size() const;
  FlatStorage storage() const;
  // True with compressed storage: Candidate::distance comes from the codes.
  bool distance_is_approximate() const { return storage() != FlatStorage::kFp32; }
  // Room for `capacity` elements; call before Add, not while adds or searches run.
  void Reserve(int64_t capacity);
  // Inserts `vector` under `label`, or replaces the vector of an existing label and repairs its
  // links (hnswlib's update path). Concurrent calls with distinct labels are safe once the first
  // element is in; throws Error (hnswlib's message) when the graph is full.
  void Add(const float* vector, int64_t label);
  // The candidates for `query`, closest first: the upper layers greedily, then the bottom layer
  // with a candidate list of `ef`. Safe to call concurrently (unlike hnswlib's searchKnn, whose
  // ef is a member). `out` is cleared first; reusing it saves an allocation per query.
  void Search(const float* query, size_t ef, std::vector<Candidate>* out) const;

  // Marks the element of `label` deleted (hnswlib's markDelete): searches still pass through it
  // but never return it. Throws Error when no element has that label. Not while adds run.
  void MarkDeleted(int64_t label);
  // Whether element `first` .. (memory order, as Elements) is marked deleted.
  bool IsDeletedElement(int64_t element) const;

  // The graph's copy of the vector of `label`, or null when no element has that label or the
  // storage is compressed. Not while adds run.
  const float* Vector(int64_t label) const;
  // The record of `label` as stored (fp32 vector or code, record_bytes()), empty when no element
  // has that label. Not while adds run.
  std::string_view Record(int64_t label) const;
  size_t record_bytes() const;
  // The record `vector` (dim values) would be stored as, into `out`: what identifies a node.
  void Encode(const float* vector, std::string* out) const;
  // Elements [first, first + n) in the graph's own order (its memory order): labels and vectors.
  void Elements(int64_t first, int64_t n, int64_t* labels, const float** vectors) const;

  // Writes hnswlib's own file format to `path` and returns its size, checked against the size
  // the format implies; throws Error naming `path` otherwise.
  uint64_t Save(const std::string& path) const;
  // Checks bytes in hnswlib 0.6.2's saveIndex format before hnswlib reads them (its loadIndex
  // trusts every size and link in the file): the header fields this graph's dimension and M
  // imply, `count` elements, every neighbour list's length within M (2 M on the bottom layer),
  // every link to an element of that layer or above, the entry point on the top layer, and the
  // exact size. Returns "" when they hold, else what is wrong.
  std::string Check(const char* bytes, size_t size, int64_t count) const;
  // Replaces this graph with the one in `path` (hnswlib's format). Returns "" when it loaded and
  // matches: `count` elements of this graph's dimension and M, distinct labels below `count`
  // (some may be marked deleted); otherwise what is wrong (the graph is then empty).
  std::string Load(const std::string& path, int64_t count);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace twotower::index::internal

#endif  // TWOTOWER_SRC_INDEX_HNSW_GRAPH_H_
