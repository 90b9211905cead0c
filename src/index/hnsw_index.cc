#include "twotower/index/hnsw_index.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <string_view>
#include <utility>

#include "index/hnsw_graph.h"
#include "index/index_file_internal.h"
#include "index/search_internal.h"
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/parallel.h"

namespace twotower::index {
namespace {

using internal::Hit;
using internal::HnswGraph;
using internal::PreparedFilter;
using internal::TopK;

int Threads() { return omp_in_parallel() ? 1 : std::max(1, omp_get_max_threads()); }

// A temporary file removed when this object goes out of scope.
class TempFile {
 public:
  explicit TempFile(const std::string& pattern_prefix) {
    std::string pattern = pattern_prefix + ".XXXXXX";
    const int fd = ::mkstemp(pattern.data());
    if (fd < 0) {
      throw Error(pattern_prefix + ": cannot create a temporary file: " + std::strerror(errno));
    }
    ::close(fd);
    path_ = pattern;
    registered_ = RegisterTemporaryFile(path_);  // removed on SIGINT / SIGTERM too (files.h)
  }
  ~TempFile() {
    std::remove(path_.c_str());
    UnregisterTemporaryFile(registered_);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int registered_ = -1;
};

bool ParseInt(const std::string& text, int* out) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end && !text.empty();
}

}  // namespace

// ---- params -----------------------------------------------------------------------------------

std::string HnswParams::ToString() const {
  return "M=" + std::to_string(M) + ",ef_construction=" + std::to_string(ef_construction) +
         ",ef_search=" + std::to_string(ef_search) +
         (storage != FlatStorage::kFp32 ? std::string(",storage=") + FlatStorageName(storage)
                                        : std::string());
}

HnswParams HnswParams::Parse(const std::string& text) {
  HnswParams params;
  if (text.empty()) return params;
  std::vector<std::string> seen;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    start = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      throw Error("index type 'hnsw': expected key=value, got " + Quote(item) +
                  " (keys: M, ef_construction, ef_search, storage)");
    }
    const std::string key = item.substr(0, eq);
    const std::string value = item.substr(eq + 1);
    if (key == "storage") {
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        throw Error("index type 'hnsw': parameter 'storage' given twice");
      }
      seen.push_back(key);
      if (value == "fp32" || value == "bf16" || value == "int8") {
        params.storage = ParseFlatStorage(value);
        continue;
      }
      throw Error("index type 'hnsw': parameter 'storage': unknown value " + Quote(value) +
                  " (expected: fp32, bf16, int8)");
    }
    int* field = key == "M"                 ? &params.M
                 : key == "ef_construction" ? &params.ef_construction
                 : key == "ef_search"       ? &params.ef_search
                                            : nullptr;
    if (field == nullptr) {
      throw Error("index type 'hnsw': unknown parameter '" + key +
                  "' (expected: M, ef_construction, ef_search, storage)");
    }
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      throw Error("index type 'hnsw': parameter '" + key + "' given twice");
    }
    seen.push_back(key);
    if (!ParseInt(value, field)) {
      throw Error("index type 'hnsw': parameter '" + key + "': expected an integer, got " +
                  Quote(value));
    }
  }
  params.Validate();
  return params;
}

void HnswParams::Validate() const {
  auto check = [](const char* key, int value, int lo, int hi) {
    if (value < lo || value > hi) {
      throw Error(std::string("index type 'hnsw': parameter '") + key +
                  "': " + std::to_string(value) + " is out of range (expected " +
                  std::to_string(lo) + " .. " + std::to_string(hi) + ")");
    }
  };
  check("M", M, 2, 10000);
  check("ef_construction", ef_construction, 1, 1000000);
  check("ef_search", ef_search, 1, 1000000);
}

// ---- index ------------------------------------------------------------------------------------

HnswIndex::HnswIndex(int dim, const HnswParams& params) : dim_(dim), params_(params) {
  if (dim < 1) throw Error("index: dimension must be at least 1, got " + std::to_string(dim));
  params_.Validate();
  graph_ = std::make_unique<HnswGraph>(dim, params_.M, params_.ef_construction, params_.storage);
}

HnswIndex::~HnswIndex() = default;

void HnswIndex::set_ef_search(int ef_search) {
  HnswParams p = params_;
  p.ef_search = ef_search;
  p.Validate();
  params_ = p;
}

HnswSearchCounters HnswIndex::counters() const {
  HnswSearchCounters c;
  c.graph_searches = graph_searches_.load();
  c.widened = widened_.load();
  c.exact_scans = exact_scans_.load();
  return c;
}

// ---- items and graph nodes ----------------------------------------------------------------------

namespace {
// A node is identified by its record: the fp32 vector's bytes, or with compressed storage its
// code (HnswGraph::Encode), so that vectors the codes cannot tell apart share a node.
uint64_t HashRecord(std::string_view record) { return std::hash<std::string_view>{}(record); }
}  // namespace

const float* HnswIndex::ItemVector(int64_t label) const {
  if (compressed()) return item_vectors_.data() + static_cast<size_t>(label) * dim_;
  return graph_->Vector(node_of_[label]);
}

void HnswIndex::GetVector(int64_t label, float* out) const {
  if (label < 0 || label >= size()) {
    throw Error("GetVector: label " + std::to_string(label) + " out of range [0, " +
                std::to_string(size()) + ")");
  }
  std::memcpy(out, ItemVector(label), sizeof(float) * static_cast<size_t>(dim_));
}

bool HnswIndex::Detach(int64_t label) {
  const int64_t node = node_of_[label];
  int64_t* link = &first_member_[node];
  while (*link != label) link = &next_member_[*link];
  *link = next_member_[label];
  next_member_[label] = -1;
  node_of_[label] = -1;
  return first_member_[node] < 0;
}

void HnswIndex::Attach(int64_t label, int64_t node) {
  node_of_[label] = node;
  next_member_[label] = first_member_[node];
  first_member_[node] = label;
}

void HnswIndex::IndexNodeHashes() {
  if (hashes_ready_) return;
  node_by_hash_.clear();
  node_by_hash_.reserve(first_member_.size());
  for (int64_t node = 0; node < static_cast<int64_t>(first_member_.size()); ++node) {
    if (first_member_[node] >= 0) node_by_hash_.emplace(HashRecord(graph_->Record(node)), node);
  }
  hashes_ready_ = true;
}

ItemIndex::AddResult HnswIndex::AddImpl(const float* vectors, int64_t n,
                                        const std::vector<std::string>& ids) {
  const int64_t before = ids_.size();
  AddResult result;
  std::vector<int64_t> labels(static_cast<size_t>(n));
  ids_.Reserve(before + n);
  for (int64_t r = 0; r < n; ++r) {
    bool added = false;
    labels[r] = ids_.Insert(ids[r], &added);
    ++(added ? result.added : result.updated);
  }
  const int64_t after = ids_.size();
  const int d = dim_;
  const size_t row_bytes = static_cast<size_t>(d) * sizeof(float);
  for (int64_t r = 0; r < n; ++r) {
    double norm = 0.0;
    for (int p = 0; p < d; ++p)
      norm += static_cast<double>(vectors[r * d + p]) * vectors[r * d + p];
    max_norm_ = std::max(max_norm_, std::sqrt(norm));
  }
  node_of_.resize(static_cast<size_t>(after), -1);
  next_member_.resize(static_cast<size_t>(after), -1);
  if (compressed()) item_vectors_.resize(static_cast<size_t>(after) * d);
  IndexNodeHashes();

  // Decide, row by row, which node each item goes to. Nodes made or moved in this call are
  // inserted into the graph afterwards; until then their record is the input row's (made again
  // when a hash matches: a copy per node would double the memory of a large Add).
  std::unordered_map<int64_t, int64_t> pending_row;       // node -> row of `vectors`
  std::vector<std::pair<int64_t, int64_t>> fresh, moved;  // (node, row)
  std::string code, scratch;                              // compressed storage's records
  // The record of row r: its fp32 bytes, or its code (into `out`).
  auto row_record = [&](int64_t r, std::string* out) -> std::string_view {
    const float* row = vectors + r * d;
    if (!compressed()) return {reinterpret_cast<const char*>(row), row_bytes};
    graph_->Encode(row, out);
    return *out;
  };
  auto node_record = [&](int64_t node) -> std::string_view {
    const auto it = pending_row.find(node);
    return it != pending_row.end() ? row_record(it->second, &scratch) : graph_->Record(node);
  };
  auto forget_hash = [&](int64_t node) {
    auto [first, last] = node_by_hash_.equal_range(HashRecord(node_record(node)));
    for (auto it = first; it != last; ++it) {
      if (it->second == node) {
        node_by_hash_.erase(it);
        return;
      }
    }
  };
  // With compressed storage each item keeps its own fp32 vector (a node may hold several).
  auto store = [&](int64_t label, const float* v) {
    if (compressed()) {
      std::memcpy(item_vectors_.data() + static_cast<size_t>(label) * d, v, row_bytes);
    }
  };
  for (int64_t r = 0; r < n; ++r) {
    const int64_t label = labels[r];
    const float* v = vectors + r * d;
    const std::string_view record = row_record(r, &code);
    int64_t emptied = -1;  // a node this update leaves without items
    if (label < before) {
      const int64_t node = node_of_[label];
      if (node_record(node) == record) {  // the same vector, or one with the same code
        store(label, v);
        continue;
      }
      if (Detach(label)) emptied = node;
    }
    store(label, v);
    const uint64_t hash = HashRecord(record);
    int64_t match = -1;
    auto [first, last] = node_by_hash_.equal_range(hash);
    for (auto it = first; it != last && match < 0; ++it) {
      if (it->second != emptied && node_record(it->second) == record) match = it->second;
    }
    if (match >= 0) {
      Attach(label, match);
      if (emptied >= 0) {
        forget_hash(emptied);
        graph_->MarkDeleted(emptied);
      }
    } else if (emptied >= 0) {
      // The node's only item moves: hnswlib updates the node's record and repairs its links.
      forget_hash(emptied);
      Attach(label, emptied);
      pending_row[emptied] = r;
      moved.emplace_back(emptied, r);
      node_by_hash_.emplace(hash, emptied);
    } else {
      const auto node = static_cast<int64_t>(first_member_.size());
      first_member_.push_back(-1);
      Attach(label, node);
      pending_row[node] = r;
      fresh.emplace_back(node, r);
      node_by_hash_.emplace(hash, node);
    }
  }

  HnswGraph& g = *graph_;
  g.Reserve(static_cast<int64_t>(first_member_.size()));
  auto add = [&](const std::pair<int64_t, int64_t>& node_row) {
    g.Add(vectors + node_row.second * d, node_row.first);
  };
  size_t begin = 0;
  if (g.size() == 0 && !fresh.empty()) add(fresh[begin++]);  // the entry point alone
  std::string failure;
  std::mutex failure_mutex;
  // Blocks of 64 items, claimed by the threads that are running (core/parallel.h); hnswlib's
  // graph takes concurrent adds.
  const auto add_block = [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i) {
      try {
        add(fresh[begin + static_cast<size_t>(i)]);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (failure.empty()) failure = e.what();
      }
    }
  };
  ParallelBlocks(static_cast<int64_t>(fresh.size() - begin), 64, Threads(), add_block);
  if (!failure.empty()) throw Error("hnsw index: adding items failed: " + failure);
  for (const auto& node_row : moved) add(node_row);
  return result;
}

void HnswIndex::SearchOne(const float* query, int k, int ef_search, const PreparedFilter* filter,
                          int64_t* ids_out, float* scores_out, SearchCounts* counts) const {
  const int64_t size = ids_.size();
  const int64_t allowed = filter != nullptr ? filter->allowed : size;
  const int64_t want = std::min<int64_t>(k, allowed);
  if (want <= 0) return;  // already padded
  // Costs in graph distances: an exact scan scores every item (or, for an allow-list, just
  // those), each row costing about 1.5 of hnswlib's SIMD distances (our scalar chains give
  // bit-equal scores; measured with bench_index compare on 3,000 items, where the scan is 0.8x
  // the graph at ef 64 and 1.3x at ef 128); a graph search scores about 2 * M * ef neighbours.
  const int64_t exact_cost =
      (filter != nullptr && filter->has_allow ? std::min<int64_t>(size, filter->allowed) : size) *
      3 / 2;
  const auto graph_cost = [&](int64_t ef) { return 2 * int64_t{params_.M} * ef; };
  // With a filter, enough candidates to expect `ef_search` allowed ones among them.
  const int64_t ef0 = std::max<int64_t>(ef_search, k);
  int64_t ef = ef0;
  if (filter != nullptr && allowed < size) {
    ef = static_cast<int64_t>(std::ceil(static_cast<double>(ef0) * size / allowed));
  }
  ef = std::min(ef, size);
  const int d = dim_;
  bool widened = ef > ef0;
  // hnswlib's distances (1 - inner product, its own summation order and fused multiply-adds)
  // differ from our scores by at most this, so candidates that close to the k-th are re-scored
  // too: the exact order among them decides (Higham, Accuracy and Stability of Numerical
  // Algorithms, 3.1: |error| <= d * eps * |q| |v| per dot product, twice for the two orders).
  double query_norm = 0.0;
  for (int p = 0; p < d; ++p) query_norm += static_cast<double>(query[p]) * query[p];
  // With compressed storage the graph's distances come from codes: every candidate is re-scored.
  const float tolerance = graph_->distance_is_approximate()
                              ? std::numeric_limits<float>::infinity()
                              : static_cast<float>(2.0 * d * std::numeric_limits<float>::epsilon() *
                                                       std::sqrt(query_norm) * max_norm_ +
                                                   std::numeric_limits<float>::min());
  // Per-thread scratch: a search allocates nothing once these have grown.
  thread_local std::vector<HnswGraph::Candidate> candidates;
  thread_local std::vector<const float*> rows;
  thread_local std::vector<int64_t> labels;
  thread_local std::vector<float> scores;
  while (graph_->size() > 0 && graph_cost(ef) < exact_cost) {
    ++counts->graph_searches;
    graph_->Search(query, static_cast<size_t>(ef), &candidates);
    rows.clear();
    labels.clear();
    float boundary = std::numeric_limits<float>::infinity();
    for (const HnswGraph::Candidate& c : candidates) {
      if (c.distance > boundary) break;  // candidates come closest first
      // A node holds one or more items with this record: the graph's copy of their vector (the
      // same values, and in cache after the search), or with compressed storage each item's own.
      for (int64_t label = first_member_[c.label]; label >= 0; label = next_member_[label]) {
        if (filter != nullptr && !filter->Allows(label)) continue;
        rows.push_back(c.vector != nullptr ? c.vector : ItemVector(label));
        labels.push_back(label);
        if (static_cast<int64_t>(rows.size()) == want) boundary = c.distance + tolerance;
      }
    }
    if (static_cast<int64_t>(rows.size()) >= want) {
      scores.resize(rows.size());
      internal::DotRows(query, rows.data(), rows.size(), d, scores.data());
      TopK heap(want);
      for (size_t i = 0; i < rows.size(); ++i) heap.Push(Hit{scores[i], labels[i]});
      counts->widened += widened;
      heap.Write(k, ids_out, scores_out);
      return;
    }
    if (ef >= size) break;
    ef = std::min(size, ef * 4);
    widened = true;
  }
  counts->widened += widened;
  ++counts->exact_scans;
  ExactScan(query, k, filter, ids_out, scores_out);
}

void HnswIndex::ExactScan(const float* query, int k, const PreparedFilter* filter, int64_t* ids_out,
                          float* scores_out) const {
  const int64_t size = ids_.size();
  TopK heap(std::min<int64_t>(k, filter != nullptr ? filter->allowed : size));
  constexpr int64_t kChunk = 256;
  int64_t labels[kChunk];
  const float* rows[kChunk];
  float scores[kChunk];
  // Not inlined: once per 256 rows, and GCC 12 inlined it warns (wrongly) that DotRows' tail loop
  // overflows.
  auto score = [&](size_t count) __attribute__((noinline)) {
    if (count == 0 || count > static_cast<size_t>(kChunk)) return;
    internal::DotRows(query, rows, count, dim_, scores);
    for (size_t i = 0; i < count; ++i) heap.Push(Hit{scores[i], labels[i]});
  };
  size_t m = 0;  // rows gathered for the next score()
  if (filter != nullptr && filter->has_allow) {
    // Just the allowed items, looked up by label.
    for (int64_t label : filter->allow) {
      labels[m] = label;
      rows[m] = ItemVector(label);
      if (++m == static_cast<size_t>(kChunk)) score(std::exchange(m, size_t{0}));
    }
  } else {
    // Every node in the graph's memory order, each with its items, the excluded ones skipped.
    int64_t nodes[kChunk];
    const float* vectors[kChunk];
    for (int64_t first = 0; first < graph_->size(); first += kChunk) {
      const int64_t count = std::min(kChunk, graph_->size() - first);
      graph_->Elements(first, count, nodes, vectors);
      for (int64_t i = 0; i < count; ++i) {
        for (int64_t label = first_member_[nodes[i]]; label >= 0; label = next_member_[label]) {
          if (filter != nullptr && !filter->Allows(label)) continue;
          labels[m] = label;
          rows[m] = vectors[i] != nullptr ? vectors[i] : ItemVector(label);
          if (++m == static_cast<size_t>(kChunk)) score(std::exchange(m, size_t{0}));
        }
      }
    }
  }
  score(m);
  heap.Write(k, ids_out, scores_out);
}

void HnswIndex::SearchImpl(const float* queries, int64_t n, int k, const PreparedFilter* filters,
                           int64_t* ids_out, float* scores_out,
                           const SearchOptions& options) const {
  const int d = dim_;
  const int ef_search = options.ef_search > 0 ? options.ef_search : params_.ef_search;
  // Counted per thread and added once: shared counters bumped per query cost a contended
  // cache line in every search.
  const int threads = n > 1 ? Threads() : 1;
  std::vector<SearchCounts> counts(static_cast<size_t>(threads));  // one per ParallelFor slot
  const auto search_one = [&](int64_t q, int slot) {
    SearchOne(queries + q * d, k, ef_search, filters != nullptr ? &filters[q] : nullptr,
              ids_out + q * k, scores_out + q * k, &counts[static_cast<size_t>(slot)]);
  };
  ParallelFor(n, threads, IndexBody(search_one));
  int64_t searches = 0, widened = 0, exact = 0;
  for (const SearchCounts& c : counts) {
    searches += c.graph_searches;
    widened += c.widened;
    exact += c.exact_scans;
  }
  graph_searches_.fetch_add(searches, std::memory_order_relaxed);
  widened_.fetch_add(widened, std::memory_order_relaxed);
  exact_scans_.fetch_add(exact, std::memory_order_relaxed);
}

void HnswIndex::SaveImpl(const std::string& path) const {
  // hnswlib writes its graph to a file of its own; it goes into ours as the last section.
  std::unique_ptr<TempFile> graph;
  uint64_t graph_size = 0;
  if (graph_->size() > 0) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) MakeDirectories(parent.string());
    graph = std::make_unique<TempFile>(path + ".graph");
    graph_size = graph_->Save(graph->path());
  }
  internal::WriteIndexFile(
      path, "hnsw", dim_, ids_.size(), model_fingerprint(),
      // fp32 graphs stay format 2 (readable by older builds); compressed ones need 3.
      params_.storage == FlatStorage::kFp32 ? 2 : 3, [&](internal::ByteSink& sink) {
        sink.U32(static_cast<uint32_t>(params_.M));
        sink.U32(static_cast<uint32_t>(params_.ef_construction));
        sink.U32(static_cast<uint32_t>(params_.ef_search));
        // Format 3: the storage (FlatStorage); formats 1 and 2 write 0 there (fp32).
        sink.U32(static_cast<uint32_t>(params_.storage));
        // The items section as FlatIndex writes it: ids, then the vectors row-major by label.
        ids_.Emit(sink);
        for (int64_t label = 0; label < ids_.size(); ++label) {
          sink.Write(ItemVector(label), static_cast<size_t>(dim_) * sizeof(float));
        }
        // Format 2: the graph node of each item (identical vectors share one).
        sink.U64(static_cast<uint64_t>(first_member_.size()));
        for (int64_t label = 0; label < ids_.size(); ++label) {
          sink.U64(static_cast<uint64_t>(node_of_[label]));
        }
        sink.U64(graph_size);
        if (graph_size == 0) return;
        std::ifstream in(graph->path(), std::ios::binary);
        std::vector<char> buffer(1 << 20);
        uint64_t left = graph_size;
        while (left > 0) {
          const size_t m = static_cast<size_t>(std::min<uint64_t>(left, buffer.size()));
          if (!in.read(buffer.data(), static_cast<std::streamsize>(m))) {
            throw Error(path + ": cannot read back the hnswlib graph from " + graph->path());
          }
          sink.Write(buffer.data(), m);
          left -= m;
        }
      });
}

std::unique_ptr<HnswIndex> HnswIndex::ReadPayload(int dim, int64_t count, uint32_t format_version,
                                                  internal::PayloadReader& reader) {
  HnswParams params;
  params.M = static_cast<int>(reader.U32("hnsw parameters"));
  params.ef_construction = static_cast<int>(reader.U32("hnsw parameters"));
  params.ef_search = static_cast<int>(reader.U32("hnsw parameters"));
  const uint32_t storage = reader.U32("hnsw parameters");
  if (storage > static_cast<uint32_t>(FlatStorage::kInt8) || (format_version < 3 && storage != 0)) {
    reader.Fail("hnsw parameters: storage " + std::to_string(storage) +
                " (expected 0 fp32, 1 bf16 or 2 int8; compressed graphs are format 3)");
  }
  params.storage = static_cast<FlatStorage>(storage);
  try {
    params.Validate();
  } catch (const Error& e) {
    reader.Fail(std::string("hnsw parameters: ") + e.what());
  }
  auto index = std::make_unique<HnswIndex>(dim, params);
  index->ids_.Read(reader, count);
  const size_t row_bytes = static_cast<size_t>(dim) * sizeof(float);
  const char* vectors = reader.Take(static_cast<size_t>(count) * row_bytes, "vectors");
  // Format 1 has no node table: one node per item, with the item's label.
  uint64_t nodes = static_cast<uint64_t>(count);
  std::vector<int64_t>& node_of = index->node_of_;
  node_of.resize(static_cast<size_t>(count));
  if (format_version >= 2) {
    nodes = reader.U64("graph nodes");
    // Each node fills at least its bottom-layer record (2 M links, vector, label) and an
    // upper-layer length in the graph section: a count the payload cannot hold is refused
    // before anything is sized by it.
    const uint64_t node_bytes = 8 * static_cast<uint64_t>(params.M) + 4 +
                                (params.storage == FlatStorage::kFp32 ? row_bytes : 8) + 8 + 4;
    if (nodes > reader.remaining() / node_bytes) {
      reader.Fail("graph nodes: " + std::to_string(nodes) + " nodes need at least " +
                  std::to_string(nodes * node_bytes) + " bytes, " +
                  std::to_string(reader.remaining()) + " are left");
    }
    const char* table = reader.Take(static_cast<size_t>(count) * 8, "node of each item");
    for (int64_t label = 0; label < count; ++label) {
      uint64_t node;
      std::memcpy(&node, table + label * 8, 8);
      if (node >= nodes) {
        reader.Fail("node of each item: item " + std::to_string(label) + " has node " +
                    std::to_string(node) + ", expected below " + std::to_string(nodes));
      }
      node_of[label] = static_cast<int64_t>(node);
    }
  } else {
    for (int64_t label = 0; label < count; ++label) node_of[label] = label;
  }
  index->next_member_.assign(static_cast<size_t>(count), -1);
  index->first_member_.assign(static_cast<size_t>(nodes), -1);
  for (int64_t label = count; label-- > 0;) index->Attach(label, node_of[label]);
  const uint64_t graph_size = reader.U64("graph size");
  const char* graph_bytes = reader.Take(static_cast<size_t>(graph_size), "graph");
  reader.ExpectEnd();
  if (count == 0) {
    if (graph_size != 0) reader.Fail("graph: present, but the index holds no items");
    return index;
  }
  // hnswlib's loader trusts the file: the graph is checked before it reads it.
  const std::string malformed = index->graph_->Check(graph_bytes, static_cast<size_t>(graph_size),
                                                     static_cast<int64_t>(nodes));
  if (!malformed.empty()) reader.Fail("graph: " + malformed);
  std::error_code ec;
  const std::string temp_dir = std::filesystem::temp_directory_path(ec).string();
  TempFile graph((ec ? std::string(".") : temp_dir) + "/twotower_graph");
  {
    std::ofstream out(graph.path(), std::ios::binary);
    out.write(graph_bytes, static_cast<std::streamsize>(graph_size));
    if (!out.flush()) throw Error(graph.path() + ": cannot write a temporary file");
  }
  const std::string problem = index->graph_->Load(graph.path(), static_cast<int64_t>(nodes));
  if (!problem.empty()) reader.Fail("graph: " + problem);
  // A node is marked deleted exactly when no item has it.
  {
    std::vector<int64_t> element_node(static_cast<size_t>(nodes));
    std::vector<const float*> unused(static_cast<size_t>(nodes));
    index->graph_->Elements(0, static_cast<int64_t>(nodes), element_node.data(), unused.data());
    for (int64_t e = 0; e < static_cast<int64_t>(nodes); ++e) {
      const bool deleted = index->graph_->IsDeletedElement(e);
      const bool empty = index->first_member_[element_node[e]] < 0;
      if (deleted != empty) {
        reader.Fail("graph: node " + std::to_string(element_node[e]) +
                    (empty ? " holds no item but is not marked deleted"
                           : " holds items but is marked deleted"));
      }
    }
  }
  // The graph holds the vectors the index searches; the items section must hold the same ones
  // (it is what FlatIndex and other readers of the file take), and they must be finite. With
  // compressed storage the items section holds the vectors searched, and each item's code must
  // be its node's record.
  if (index->compressed()) {
    index->item_vectors_.resize(static_cast<size_t>(count) * dim);
    if (count > 0) std::memcpy(index->item_vectors_.data(), vectors, count * row_bytes);
  }
  std::string record;
  for (int64_t label = 0; label < count; ++label) {
    const float* v = index->ItemVector(label);
    if (index->compressed()) {
      reader.CheckFinite(v, dim, label, index->ids_.ids()[static_cast<size_t>(label)]);
      index->graph_->Encode(v, &record);
      if (index->graph_->Record(node_of[label]) != record) {
        reader.Fail("graph: the code of item " + std::to_string(label) + " (id " +
                    Quote(index->ids_.ids()[static_cast<size_t>(label)]) + ", node " +
                    std::to_string(node_of[label]) +
                    ") is not the encoding of its vector in the vectors section");
      }
    } else if (std::memcmp(v, vectors + label * row_bytes, row_bytes) != 0) {
      reader.Fail("graph: the vector of item " + std::to_string(label) + " (id " +
                  Quote(index->ids_.ids()[static_cast<size_t>(label)]) +
                  ") differs from the vectors section");
    }
    reader.CheckFinite(v, dim, label, index->ids_.ids()[static_cast<size_t>(label)]);
    double norm = 0.0;
    for (int p = 0; p < dim; ++p) norm += static_cast<double>(v[p]) * v[p];
    index->max_norm_ = std::max(index->max_norm_, std::sqrt(norm));
  }
  return index;
}

}  // namespace twotower::index
