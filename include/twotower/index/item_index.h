// ItemIndex: top-k retrieval of items by inner product (metric "ip"), batch-first.
//
// An index holds size() item vectors of dimension dim() together with their external string ids
// (the movie ids), so an index file alone is enough to answer a query. Inside, an item is a
// *label*: its row in ids(), 0 .. size()-1, in the order items were first added; adding an id that
// is already there updates its vector and keeps its label.
//
// Search(queries, n, k) returns, per query, the k labels with the largest <query, item>, best
// first; equal scores are ordered by lower label, so results are deterministic (the same for any
// thread count and any batch size: every implementation computes a score with the same arithmetic,
// see flat_index.h). An optional per-query SearchFilter excludes labels (the items a user already
// saw) and/or restricts the search to an allow-list (a genre). When fewer than k items are
// allowed, the missing results are padded with label -1 and score -infinity; otherwise a search
// always returns k results, for every implementation (an approximate index widens its search or
// falls back to an exact scan rather than return fewer).
//
// Implementations: FlatIndex (exact, flat_index.h) and HnswIndex (approximate, hnsw_index.h),
// made from a spec string by MakeIndex ("flat", "hnsw:M=32,ef_construction=200,ef_search=64") and
// read back from a file by LoadIndex (file format: index_file.h).
//
// Thread-safety: the const methods (Search, Save, ids, Find) may be called from many threads at
// once; Add and the setters need exclusive access. Search shares its work among
// threads itself (core/parallel.h; SetThreads / --threads).
#ifndef TWOTOWER_INDEX_ITEM_INDEX_H_
#define TWOTOWER_INDEX_ITEM_INDEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace twotower::index {

namespace internal {
struct PreparedFilter;
}  // namespace internal

// Which labels one query may return. Labels may come in any order and may repeat.
struct SearchFilter {
  // Never returned (e.g. the items the user rated in train).
  std::vector<int64_t> exclude;
  // When set, only these labels may be returned (e.g. the items of one genre); `exclude` still
  // applies on top.
  std::optional<std::vector<int64_t>> allow;
};

// Settings of one Search call (FAISS's SearchParametersHNSW, hnswlib's set_ef per call).
struct SearchOptions {
  // HNSW: the candidate list of this call's graph searches (at least k is used), in place of the
  // index's ef_search; 0: the index's own. An exact index has no such setting and refuses a
  // non-zero value. Range 0 .. 1,000,000.
  int ef_search = 0;
};

class ItemIndex {
 public:
  virtual ~ItemIndex() = default;

  // "flat" or "hnsw".
  virtual std::string type() const = 0;
  // The MakeIndex spec that recreates this configuration, e.g. "hnsw:M=32,ef_construction=200,
  // ef_search=64".
  virtual std::string spec() const = 0;
  virtual int dim() const = 0;
  virtual int64_t size() const = 0;
  // ids()[label] is the external id of `label`.
  virtual const std::vector<std::string>& ids() const = 0;
  // The label of `id`, or -1.
  virtual int64_t Find(const std::string& id) const = 0;
  // Copies the fp32 vector of `label` (0 <= label < size()) into out[0 .. dim()) (compressed
  // storage keeps the fp32 vectors beside its codes: these are those).
  virtual void GetVector(int64_t label, float* out) const = 0;

  struct AddResult {
    int64_t added = 0;    // new ids, given labels size() .. size()+added-1 in input order
    int64_t updated = 0;  // ids already present: vector replaced, label kept
  };
  // Adds n vectors (n x dim(), row-major) with their ids (n of them). Throws Error for an id that
  // is empty, contains a line break or occurs twice in `ids`, or for a non-finite value; nothing
  // is added then.
  AddResult Add(const float* vectors, int64_t n, const std::vector<std::string>& ids);

  // Top-k search for n queries (n x dim(), row-major). `filters` is null or points to n filters,
  // one per query. Writes n * k labels to ids_out and n * k inner products to scores_out, query
  // after query, best first, padded with -1 / -infinity where fewer than k items are allowed.
  // Throws Error for k < 1, a non-finite query value, a filter label outside [0, size()), or
  // options the index does not take (ef_search on an exact index, or out of range).
  void Search(const float* queries, int64_t n, int k, const SearchFilter* filters, int64_t* ids_out,
              float* scores_out, const SearchOptions& options = {}) const;

  // Writes the index file atomically (format: index_file.h). Throws Error naming the path.
  void Save(const std::string& path) const;

  // The fingerprint (SHA-256 of the model file, core/hash.h) of the model whose item tower made
  // these vectors, or "" when unknown (vectors from elsewhere, or an index file of format 1).
  // Saved in the index file; `twotower recommend` and `index add` refuse an index made by
  // another model.
  const std::string& model_fingerprint() const { return model_fingerprint_; }
  // Throws Error unless `fingerprint` is "" or 64 lowercase hex digits.
  void set_model_fingerprint(const std::string& fingerprint);

 protected:
  // Called after Add's checks: rows are valid and ids distinct.
  virtual AddResult AddImpl(const float* vectors, int64_t n,
                            const std::vector<std::string>& ids) = 0;
  // Called after Search's checks; filters is null or holds n prepared filters. Outputs are
  // pre-filled with padding. options.ef_search is 0 unless type() is "hnsw".
  virtual void SearchImpl(const float* queries, int64_t n, int k,
                          const internal::PreparedFilter* filters, int64_t* ids_out,
                          float* scores_out, const SearchOptions& options) const = 0;
  // Writes the file (through internal::WriteIndexFile, which writes atomically).
  virtual void SaveImpl(const std::string& path) const = 0;

 private:
  std::string model_fingerprint_;
};

// Makes an empty index from a spec: "flat", or "hnsw" with optional parameters
// "hnsw:M=32,ef_construction=200,ef_search=64" (see HnswParams). Throws
// Error("unknown index type 'hsnw' (expected: flat, hnsw)") or an Error naming the bad parameter.
std::unique_ptr<ItemIndex> MakeIndex(const std::string& spec, int dim);

// Reads an index file written by ItemIndex::Save. With expected_dim > 0, an index of another
// dimension is an error (checked from the header, before the payload is read). Throws
// Error("<path>: ...") for a missing, truncated, foreign or corrupted file.
std::unique_ptr<ItemIndex> LoadIndex(const std::string& path, int expected_dim = 0);

}  // namespace twotower::index

#endif  // TWOTOWER_INDEX_ITEM_INDEX_H_
