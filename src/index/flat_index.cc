#include "twotower/index/flat_index.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "index/compressed_internal.h"
#include "index/index_file_internal.h"
#include "index/scan_kernels.h"
#include "index/search_internal.h"
#include "twotower/core/error.h"
#include "twotower/core/parallel.h"

namespace twotower::index {
namespace {

using internal::CompressedItems;
using internal::Hit;
using internal::kLanes;
using internal::kTileQueries;
using internal::PackedQueries;
using internal::PreparedFilter;
using internal::Shortlist;
using internal::TopK;

// Panels per cache block: about 192 KiB of items, scored against every query tile of a batch
// while it sits in L2. A multiple of 24 so that the kernels' panel steps (8, 4, 3) divide it.
int64_t BlockPanels(int64_t panel_bytes) {
  const int64_t fit = (192 * 1024) / panel_bytes;
  return std::max<int64_t>(24, fit / 24 * 24);
}

// The kernels' data with what ScanAll needs to know about them; the scans themselves run in the
// kernels of this CPU's ISA level (scan_kernels.h).
struct ExactKernel {
  internal::ExactScan scan;
  int64_t panel_bytes() const { return static_cast<int64_t>(scan.panel_floats) * 4; }
  void Scan(const internal::ScanRangeArgs& range, TopK* heaps) const {
    internal::Kernels().scan_exact(scan, range, heaps);
  }
};

struct CompressedKernel {
  internal::CompressedScan scan;
  int64_t panel_bytes() const { return static_cast<int64_t>(scan.groups) * 64; }
  void Scan(const internal::ScanRangeArgs& range, Shortlist* heaps) const {
    internal::Kernels().scan_compressed(scan, range, heaps);
  }
};

// Scores query tiles [t0, t1) (n queries in all) against panels [p0, p1), block by block.
template <class Kernel, class Heap>
void ScanRange(const Kernel& kernel, int64_t n, int64_t t0, int64_t t1, int64_t count, int64_t p0,
               int64_t p1, const PreparedFilter* const* filters, Heap* heaps) {
  kernel.Scan({n, t0, t1, count, p0, p1, BlockPanels(kernel.panel_bytes()), filters}, heaps);
}

inline void ResetHeap(TopK& heap, int64_t capacity, float /*margin*/) { heap.Reset(capacity); }
inline void ResetHeap(Shortlist& heap, int64_t capacity, float margin) {
  heap.Reset(capacity, margin);
}
inline void MergeHeap(TopK& into, TopK& part) {
  for (const Hit& h : part.hits()) into.Push(h);
}
inline void MergeHeap(Shortlist& into, Shortlist& part) { into.Merge(part); }

// Scans every item for nd packed queries and hands each query's heap to finish(r, heap), r the
// packed slot. capacity[r] is the heap size, margin[r] the Shortlist margin (ignored by TopK).
template <class Heap, class Kernel, class Finish>
void ScanAll(const Kernel& kernel, int64_t nd, int64_t count, int threads,
             const std::vector<int64_t>& capacity, const std::vector<float>& margin,
             const std::vector<const PreparedFilter*>& slot_filter, const Finish& finish) {
  const int64_t num_panels = (count + kLanes - 1) / kLanes;
  const int64_t tiles = (nd + kTileQueries - 1) / kTileQueries;
  if (nd >= 32 * static_cast<int64_t>(threads)) {
    // Many queries: blocks of query tiles, each scanned over all items by one thread.
    const int64_t tiles_per_block =
        std::clamp<int64_t>((tiles + 2 * threads - 1) / (2 * threads), 1, 32);
    const int64_t blocks = (tiles + tiles_per_block - 1) / tiles_per_block;
    const auto scan_block = [&](int64_t b, int) {
      const int64_t t0 = b * tiles_per_block;
      const int64_t t1 = std::min(tiles, t0 + tiles_per_block);
      std::vector<Heap> heaps(static_cast<size_t>((t1 - t0) * kTileQueries));
      for (int64_t r = t0 * kTileQueries; r < std::min(nd, t1 * kTileQueries); ++r) {
        ResetHeap(heaps[r - t0 * kTileQueries], capacity[r], margin[r]);
      }
      ScanRange(kernel, nd, t0, t1, count, 0, num_panels, slot_filter.data(), heaps.data());
      for (int64_t r = t0 * kTileQueries; r < std::min(nd, t1 * kTileQueries); ++r) {
        finish(r, heaps[r - t0 * kTileQueries]);
      }
    };
    ParallelFor(blocks, threads, IndexBody(scan_block));
    return;
  }

  // Few queries: the items are split between threads, each keeps a heap per query, merged after.
  const int64_t step = 24;  // part boundaries on whole kernel steps
  const int64_t steps = (num_panels + step - 1) / step;
  // A part is worth a thread from about 4 MiB of scanned bytes on: below that, waking a thread
  // costs more than it saves (measured with bench_index at 2,000 / 10,000 / 20,000 x 128 fp32
  // items, batch 1: two threads were 0.7x / 1.0x / 1.15x one thread).
  constexpr int64_t kMinBytesPerPart = int64_t{4} << 20;
  const int64_t worth = std::max<int64_t>(1, num_panels * kernel.panel_bytes() / kMinBytesPerPart);
  const int parts =
      static_cast<int>(std::max<int64_t>(1, std::min({int64_t{threads}, steps, worth})));
  const size_t slots = static_cast<size_t>(tiles * kTileQueries);
  std::vector<Heap> heaps(static_cast<size_t>(parts) * slots);
  for (int part = 0; part < parts; ++part) {
    for (int64_t r = 0; r < nd; ++r) ResetHeap(heaps[part * slots + r], capacity[r], margin[r]);
  }
  const auto scan_part = [&](int64_t part, int) {
    const int64_t p0 = std::min(num_panels, steps * part / parts * step);
    const int64_t p1 = std::min(num_panels, steps * (part + 1) / parts * step);
    ScanRange(kernel, nd, 0, tiles, count, p0, p1, slot_filter.data(), heaps.data() + part * slots);
  };
  ParallelFor(parts, parts, IndexBody(scan_part));
  for (int64_t r = 0; r < nd; ++r) {
    Heap& merged = heaps[r];
    for (int part = 1; part < parts; ++part) MergeHeap(merged, heaps[part * slots + r]);
    finish(r, merged);
  }
}

int Threads() { return omp_in_parallel() ? 1 : std::max(1, omp_get_max_threads()); }

}  // namespace

FlatIndex::FlatIndex(int dim, FlatStorage storage) : dim_(dim), storage_(storage) {
  if (dim < 1) throw Error("index: dimension must be at least 1, got " + std::to_string(dim));
  if (storage != FlatStorage::kFp32) compressed_ = std::make_unique<CompressedItems>(storage, dim);
}

FlatIndex::~FlatIndex() = default;

std::string FlatIndex::spec() const {
  return storage_ == FlatStorage::kFp32 ? "flat"
                                        : std::string("flat:storage=") + FlatStorageName(storage_);
}

void FlatIndex::SetVector(int64_t label, const float* v) {
  if (compressed_ != nullptr) {
    std::memcpy(rows_.data() + label * dim_, v, sizeof(float) * dim_);
    return;
  }
  Lanes* panel = &panels_[(label / kLanes) * dim_];
  const int64_t lane = label % kLanes;
  for (int p = 0; p < dim_; ++p) panel[p].v[lane] = v[p];
}

void FlatIndex::GetVector(int64_t label, float* out) const {
  if (label < 0 || label >= count_) {
    throw Error("GetVector: label " + std::to_string(label) + " out of range [0, " +
                std::to_string(count_) + ")");
  }
  if (compressed_ != nullptr) {
    std::memcpy(out, rows_.data() + label * dim_, sizeof(float) * dim_);
    return;
  }
  const Lanes* panel = &panels_[(label / kLanes) * dim_];
  const int64_t lane = label % kLanes;
  for (int p = 0; p < dim_; ++p) out[p] = panel[p].v[lane];
}

int64_t FlatIndex::MemoryBytes() const {
  int64_t bytes =
      static_cast<int64_t>(panels_.capacity() * sizeof(Lanes) + rows_.capacity() * sizeof(float));
  if (compressed_ != nullptr) bytes += compressed_->MemoryBytes();
  for (const std::string& id : ids_.ids()) bytes += static_cast<int64_t>(id.capacity() + 48);
  return bytes;
}

ItemIndex::AddResult FlatIndex::AddImpl(const float* vectors, int64_t n,
                                        const std::vector<std::string>& ids) {
  int64_t new_count = count_;
  for (int64_t r = 0; r < n; ++r) new_count += ids_.Find(ids[r]) < 0 ? 1 : 0;
  Resize(new_count);
  ids_.Reserve(new_count);
  AddResult result;
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    bool added = false;
    const int64_t label = ids_.Insert(ids[r], &added);
    ++(added ? result.added : result.updated);
    SetVector(label, vectors + r * dim_);
    labels[r] = label;
  }
  count_ = ids_.size();
  if (compressed_ != nullptr) compressed_->Update(rows_.data(), count_, labels);
  return result;
}

void FlatIndex::Resize(int64_t count) {
  if (compressed_ != nullptr) {
    rows_.resize(static_cast<size_t>(count * dim_), 0.0f);
  } else {
    panels_.resize(static_cast<size_t>((count + kLanes - 1) / kLanes * dim_), Lanes{});
  }
}

void FlatIndex::SearchAllowList(const float* query, const PreparedFilter& filter, int k,
                                int64_t* ids_out, float* scores_out) const {
  TopK heap(std::min<int64_t>(k, filter.allowed));
  if (compressed_ != nullptr) {  // rows: the same chain, item by item (DotRows)
    std::vector<const float*> rows;
    for (const int64_t label : filter.allow) rows.push_back(rows_.data() + label * dim_);
    std::vector<float> scores(rows.size());
    internal::DotRows(query, rows.data(), rows.size(), dim_, scores.data());
    for (size_t a = 0; a < rows.size(); ++a) heap.Push(Hit{scores[a], filter.allow[a]});
    heap.Write(k, ids_out, scores_out);
    return;
  }
  std::vector<float> qt(static_cast<size_t>(dim_) * kTileQueries, 0.0f);
  for (int p = 0; p < dim_; ++p) qt[p * kTileQueries] = query[p];
  const internal::ScanKernels& kernels = internal::Kernels();
  const std::vector<int64_t>& allow = filter.allow;
  float scores[kLanes];
  for (size_t a = 0; a < allow.size();) {
    const int64_t p = allow[a] / kLanes;
    kernels.score_panel(qt.data(), panel(p), dim_, scores);
    for (; a < allow.size() && allow[a] / kLanes == p; ++a) {
      heap.Push(Hit{scores[allow[a] % kLanes], allow[a]});
    }
  }
  heap.Write(k, ids_out, scores_out);
}

void FlatIndex::SearchImpl(const float* queries, int64_t n, int k, const PreparedFilter* filters,
                           int64_t* ids_out, float* scores_out,
                           const SearchOptions& /*options*/) const {
  const int64_t num_panels = (count_ + kLanes - 1) / kLanes;
  // A short allow-list is cheaper to score item by item than to filter out of a full scan.
  std::vector<int64_t> dense, sparse;
  dense.reserve(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) {
    const bool short_allow = filters != nullptr && filters[q].has_allow &&
                             static_cast<int64_t>(filters[q].allow.size()) * 4 < num_panels;
    (short_allow ? sparse : dense).push_back(q);
  }
  const int threads = Threads();
  if (!sparse.empty()) {
    const auto search_one = [&](int64_t i, int) {
      const int64_t q = sparse[static_cast<size_t>(i)];
      SearchAllowList(queries + q * dim_, filters[q], k, ids_out + q * k, scores_out + q * k);
    };
    ParallelFor(static_cast<int64_t>(sparse.size()), threads, IndexBody(search_one));
  }
  if (dense.empty()) return;
  if (compressed_ != nullptr) {
    SearchCompressed(queries, dense, k, filters, ids_out, scores_out);
  } else {
    SearchExact(queries, dense, k, filters, ids_out, scores_out);
  }
}

namespace {

// Per packed slot: its filter (null for none or for padding slots) and its heap size.
void SlotsOf(const std::vector<int64_t>& rows, int k, int64_t count, const PreparedFilter* filters,
             std::vector<const PreparedFilter*>* slot_filter, std::vector<int64_t>* capacity) {
  const int64_t nd = static_cast<int64_t>(rows.size());
  const int64_t tiles = (nd + kTileQueries - 1) / kTileQueries;
  slot_filter->assign(static_cast<size_t>(tiles * kTileQueries), nullptr);
  capacity->assign(static_cast<size_t>(nd), 0);
  for (int64_t r = 0; r < nd; ++r) {
    const int64_t q = rows[r];
    if (filters != nullptr) (*slot_filter)[r] = &filters[q];
    (*capacity)[r] = std::min<int64_t>(k, filters != nullptr ? filters[q].allowed : count);
  }
}

}  // namespace

void FlatIndex::SearchExact(const float* queries, const std::vector<int64_t>& rows, int k,
                            const PreparedFilter* filters, int64_t* ids_out,
                            float* scores_out) const {
  const int64_t nd = static_cast<int64_t>(rows.size());
  std::vector<float> packed;
  internal::PackQueries(queries, rows.data(), nd, dim_, &packed);
  std::vector<const PreparedFilter*> slot_filter;
  std::vector<int64_t> capacity;
  SlotsOf(rows, k, count_, filters, &slot_filter, &capacity);
  const std::vector<float> margin(static_cast<size_t>(nd), 0.0f);
  const ExactKernel kernel{{panel(0), static_cast<size_t>(dim_) * kLanes, dim_, packed.data()}};
  ScanAll<TopK>(kernel, nd, count_, Threads(), capacity, margin, slot_filter,
                [&](int64_t r, TopK& heap) {
                  heap.Write(k, ids_out + rows[r] * k, scores_out + rows[r] * k);
                });
}

void FlatIndex::SearchCompressed(const float* queries, const std::vector<int64_t>& rows, int k,
                                 const PreparedFilter* filters, int64_t* ids_out,
                                 float* scores_out) const {
  const int64_t nd = static_cast<int64_t>(rows.size());
  internal::PackedQueries packed;
  compressed_->Pack(queries, rows.data(), nd, &packed);
  std::vector<const PreparedFilter*> slot_filter;
  std::vector<int64_t> capacity;
  SlotsOf(rows, k, count_, filters, &slot_filter, &capacity);
  const CompressedKernel kernel{{compressed_->storage() == FlatStorage::kInt8,
                                 compressed_->groups(), compressed_->codes(), &packed}};
  ScanAll<Shortlist>(
      kernel, nd, count_, Threads(), capacity, packed.margin, slot_filter,
      [&](int64_t r, Shortlist& shortlist) {
        // Exact re-scoring, best approximate score first, with the fp32 index's arithmetic (Dot
        // is the chain every fp32 kernel lane computes). It stops at the first candidate whose
        // A + eps is below the k-th exact score: that one and every later one (lower A) score
        // S <= A + eps, below it, so none can enter.
        std::vector<Hit> candidates = shortlist.CandidateHits();
        // A heap, best on top: only the candidates re-scored are ordered.
        const auto worse = [](const Hit& x, const Hit& y) { return internal::Better(y, x); };
        std::make_heap(candidates.begin(), candidates.end(), worse);
        const double eps = 0.5 * static_cast<double>(packed.margin[r]);
        const float* q = queries + rows[r] * dim_;
        TopK exact(capacity[r]);
        int64_t rescored = 0;
        // Eight at a time, eight independent chains (DotRows); the stop test is made on the
        // best of the eight, so at most seven more items are scored than needed.
        constexpr size_t kBatch = 8;
        Hit batch[kBatch];
        const float* batch_rows[kBatch];
        float scores[kBatch];
        while (!candidates.empty()) {
          if (exact.full() &&
              static_cast<double>(candidates.front().score) + eps < exact.threshold()) {
            break;
          }
          size_t m = 0;
          for (; m < kBatch && !candidates.empty(); ++m) {
            std::pop_heap(candidates.begin(), candidates.end(), worse);
            batch[m] = candidates.back();
            candidates.pop_back();
            batch_rows[m] = rows_.data() + batch[m].label * dim_;
          }
          internal::DotRows(q, batch_rows, m, dim_, scores);
          for (size_t i = 0; i < m; ++i) exact.Push(Hit{scores[i], batch[i].label});
          rescored += static_cast<int64_t>(m);
        }
        exact.Write(k, ids_out + rows[r] * k, scores_out + rows[r] * k);
        rescored_.fetch_add(rescored, std::memory_order_relaxed);
      });
}

void FlatIndex::EmitItems(internal::ByteSink& sink) const {
  ids_.Emit(sink);
  // Vectors row-major, one panel (16 items) at a time.
  std::vector<float> rows(static_cast<size_t>(kLanes) * dim_);
  for (int64_t first = 0; first < count_; first += kLanes) {
    const int64_t m = std::min<int64_t>(kLanes, count_ - first);
    for (int64_t i = 0; i < m; ++i) GetVector(first + i, rows.data() + i * dim_);
    sink.Write(rows.data(), static_cast<size_t>(m * dim_) * sizeof(float));
  }
}

void FlatIndex::ReadItems(internal::PayloadReader& reader, int64_t count) {
  ids_.Read(reader, count);  // validates the ids
  count_ = count;
  Resize(count);
  const size_t row_bytes = static_cast<size_t>(dim_) * sizeof(float);
  const char* data = reader.Take(static_cast<size_t>(count) * row_bytes, "vectors");
  // The payload is not float-aligned: each row goes through an aligned copy.
  std::vector<float> row(static_cast<size_t>(dim_));
  for (int64_t label = 0; label < count; ++label) {
    std::memcpy(row.data(), data + label * row_bytes, row_bytes);
    reader.CheckFinite(row.data(), dim_, label, ids_.ids()[static_cast<size_t>(label)]);
    SetVector(label, row.data());
  }
  if (compressed_ != nullptr) compressed_->Rebuild(rows_.data(), count_);
}

void FlatIndex::SaveImpl(const std::string& path) const {
  // Storage fp32 writes format 2 (no parameters section), which older builds read too.
  const bool compressed = storage_ != FlatStorage::kFp32;
  internal::WriteIndexFile(path, "flat", dim_, count_, model_fingerprint(), compressed ? 3 : 2,
                           [this, compressed](internal::ByteSink& sink) {
                             if (compressed) {
                               sink.U32(static_cast<uint32_t>(storage_));
                               sink.U32(0);  // reserved
                             }
                             EmitItems(sink);
                           });
}

}  // namespace twotower::index
