// HnswIndex: approximate top-k by inner product with a hierarchical navigable small world graph
// (Malkov & Yashunin 2018) from hnswlib 0.6.2 (Debian's libhnswlib-dev, InnerProductSpace).
//
// The vectors live once, in the graph: the candidates the graph finds are re-scored from them
// with FlatIndex's arithmetic (so a score here is bit-equal to FlatIndex's for the same item, and
// ties go to the lower label), and a search whose filter leaves too few allowed items among the
// graph's candidates widens ef_search (x4 at a time) and, when that would cost more than an
// exact scan, scans the graph's vectors exactly (row by row: slower than FlatIndex's panels, a
// fall-back for narrow filters that saves a second copy of every vector). A search therefore
// returns k results whenever k allowed items exist. Small catalogues (1.5 * size < 2 * M * ef)
// are always scanned exactly: that is cheaper than the graph there.
//
// Items with bit-identical vectors (with compressed storage: identical codes) share one graph
// node (the node's items are returned together, re-scored and ordered like any others): hnswlib's
// neighbour selection keeps a candidate only when it is closer to the node than to every neighbour
// already kept, so a group of identical vectors links to one of its copies and to nothing else, and
// a thousand of them cut the graph apart (a thousand identical movies made 281 of 300 users' top 1
// wrong). Graph labels are node ids.
//
// Adding an id that exists updates its vector: it leaves its node (a node left with no items is
// marked deleted in the graph, hnswlib's markDelete: still traversed, never returned) and joins
// the node of an identical vector or a new one; a node whose only item moves is updated in place
// (hnswlib's update path). It is never duplicated. A build with several threads inserts in
// parallel, so the graph (not the exact re-scoring) may differ from run to run; one thread gives
// the same graph for the same input.
//
// With storage=int8 or bf16 (hnsw:storage=int8) the graph holds codes, 4x / 2x smaller than the
// fp32 vectors, so a traversal reads fewer bytes per visited node; every candidate the graph
// returns is then re-scored from the fp32 vectors (the codes only order the traversal). The
// file is format 3 and keeps the fp32 vectors and the codes; the codes are checked against the
// vectors on load.
//
// hnswlib's header defines non-inline functions, so only src/index/hnsw_graph.cc includes it;
// this header does not. Thread-safety as ItemIndex.
#ifndef TWOTOWER_INDEX_HNSW_INDEX_H_
#define TWOTOWER_INDEX_HNSW_INDEX_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "twotower/index/flat_index.h"
#include "twotower/index/id_table.h"
#include "twotower/index/item_index.h"

namespace twotower::index {
namespace internal {
class HnswGraph;
class PayloadReader;
}  // namespace internal

struct HnswParams {
  int M = 32;                 // graph degree (2 * M on the bottom layer); 2 .. 10000
  int ef_construction = 200;  // candidate list while inserting; >= 1
  int ef_search = 64;         // candidate list while searching (at least k is used); >= 1
  // The graph's records: fp32 vectors, or int8 / bf16 codes that the traversal reads, with the
  // fp32 vectors kept beside the graph for re-scoring every candidate exactly (the scores
  // returned are the fp32 inner products; recall against the fp32 graph is measured in
  // BENCHMARKS.md). See src/index/hnsw_graph.h for the codes.
  FlatStorage storage = FlatStorage::kFp32;

  // "M=32,ef_construction=200,ef_search=64" (",storage=int8" when not fp32)
  std::string ToString() const;
  // Parses "key=value,..." over the defaults; throws Error("index type 'hnsw': ...") naming
  // the unknown key or the bad value and what was expected.
  static HnswParams Parse(const std::string& text);
  // Throws Error naming the field and its range.
  void Validate() const;
};

// What searches did, for benchmarks and tests (counts since construction or load).
struct HnswSearchCounters {
  int64_t graph_searches = 0;  // graph traversals (a widened search counts each try)
  int64_t widened = 0;         // queries whose filter made ef_search grow
  int64_t exact_scans = 0;     // queries answered by an exact scan
};

class HnswIndex final : public ItemIndex {
 public:
  // Throws Error for dim < 1 or invalid params.
  HnswIndex(int dim, const HnswParams& params);
  ~HnswIndex() override;

  std::string type() const override { return "hnsw"; }
  std::string spec() const override { return "hnsw:" + params_.ToString(); }
  int dim() const override { return dim_; }
  int64_t size() const override { return ids_.size(); }
  const std::vector<std::string>& ids() const override { return ids_.ids(); }
  int64_t Find(const std::string& id) const override { return ids_.Find(id); }
  void GetVector(int64_t label, float* out) const override;

  const HnswParams& params() const { return params_; }
  // Not safe while searches run. Throws Error for ef_search < 1.
  void set_ef_search(int ef_search);
  HnswSearchCounters counters() const;

 protected:
  AddResult AddImpl(const float* vectors, int64_t n, const std::vector<std::string>& ids) override;
  void SearchImpl(const float* queries, int64_t n, int k, const internal::PreparedFilter* filters,
                  int64_t* ids_out, float* scores_out, const SearchOptions& options) const override;
  void SaveImpl(const std::string& path) const override;

 private:
  friend std::unique_ptr<ItemIndex> LoadIndex(const std::string& path, int expected_dim);
  // The payload after the header (index_file.h); errors name the reader's file.
  static std::unique_ptr<HnswIndex> ReadPayload(int dim, int64_t count, uint32_t format_version,
                                                internal::PayloadReader& reader);

  // What one search did, summed per batch into the counters.
  struct SearchCounts {
    int64_t graph_searches = 0, widened = 0, exact_scans = 0;
  };
  // ef_search: the candidate list to start from (the index's own, or SearchOptions').
  void SearchOne(const float* query, int k, int ef_search, const internal::PreparedFilter* filter,
                 int64_t* ids_out, float* scores_out, SearchCounts* counts) const;
  // Every allowed item scored, from the graph's vectors.
  void ExactScan(const float* query, int k, const internal::PreparedFilter* filter,
                 int64_t* ids_out, float* scores_out) const;
  // The fp32 vector of item `label`: its node's (the graph's copy), or with compressed storage
  // its own (item_vectors_).
  const float* ItemVector(int64_t label) const;
  bool compressed() const { return params_.storage != FlatStorage::kFp32; }
  // Moves item `label` out of its node; returns whether the node is left without items.
  bool Detach(int64_t label);
  void Attach(int64_t label, int64_t node);
  // Graph nodes by a hash of their vector's bytes, for finding identical vectors on Add; built on
  // the first Add after construction or load.
  void IndexNodeHashes();

  int dim_;
  HnswParams params_;
  IdTable ids_;
  std::unique_ptr<internal::HnswGraph> graph_;
  // Compressed storage: each item's fp32 vector (labels x dim, row-major). Items whose vectors
  // encode to the same record share a graph node; each is re-scored from its own vector.
  std::vector<float> item_vectors_;
  // Items and graph nodes: node_of_[label]; the items of a node as a list, first_member_[node]
  // then next_member_[label] until -1 (first_member_ -1: no items, marked deleted).
  std::vector<int64_t> node_of_, next_member_, first_member_;
  std::unordered_multimap<uint64_t, int64_t> node_by_hash_;
  bool hashes_ready_ = false;
  // The largest stored vector norm: bounds the rounding difference between hnswlib's distances
  // and our scores (see SearchOne).
  double max_norm_ = 0.0;
  mutable std::atomic<int64_t> graph_searches_{0}, widened_{0}, exact_scans_{0};
};

}  // namespace twotower::index

#endif  // TWOTOWER_INDEX_HNSW_INDEX_H_
