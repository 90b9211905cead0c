// HnswGraph: the hierarchical navigable small world graph of HnswIndex, hnswlib 0.6.2's
// HierarchicalNSW over its InnerProductSpace (distance 1 - inner product), behind a narrow face.
//
// src/index/hnsw_graph.cc is the only translation unit that includes hnswlib: its header defines
// non-inline functions (cpuid, AVXCapable, ...), so a second includer in the same program would
// not link. That file is also compiled with the compiler's default contraction (-ffp-contract=
// fast), unlike the rest of the index code: hnswlib's distance kernels are written as multiply
// then add, and fusing them is ~10% of search time. Its distances only steer the graph; every
// score HnswIndex returns is recomputed with search_internal.h's arithmetic.
#ifndef TWOTOWER_SRC_INDEX_HNSW_GRAPH_H_
#define TWOTOWER_SRC_INDEX_HNSW_GRAPH_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace twotower::index::internal {

class HnswGraph {
 public:
  struct Candidate {
    float distance;       // 1 - inner product, hnswlib's arithmetic
    int64_t label;        // the label it was added with
    const float* vector;  // the graph's copy of its vector
  };

  // Throws Error for dim < 1 or M < 2.
  HnswGraph(int dim, int M, int ef_construction);
  ~HnswGraph();
  HnswGraph(const HnswGraph&) = delete;
  HnswGraph& operator=(const HnswGraph&) = delete;

  int64_t size() const;
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

  // The graph's copy of the vector of `label`, or null when no element has that label. Not while
  // adds run.
  const float* Vector(int64_t label) const;
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
