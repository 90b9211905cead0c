// The only translation unit that includes hnswlib (see hnsw_graph.h).
#include "index/hnsw_graph.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "index/compressed_internal.h"
#include "index/scan_kernels.h"
#include "twotower/core/error.h"

// hnswlib 0.6.2's SSE code paths read the link after the last one of a neighbour list to
// prefetch it (hnswalg.h:214, searchBaseLayer), one element past the end of an upper-layer list:
// AddressSanitizer stops there. Its plain code paths do not, so sanitized builds use those.
#if defined(__SANITIZE_ADDRESS__)  // GCC
#define NO_MANUAL_VECTORIZATION
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)  // clang
#define NO_MANUAL_VECTORIZATION
#endif
#endif
#include <hnswlib/hnswlib.h>

namespace twotower::index::internal {
namespace {

using Hnsw = hnswlib::HierarchicalNSW<float>;

constexpr size_t kRandomSeed = 100;  // hnswlib's default: level draws are reproducible

// The size hnswlib 0.6.2's saveIndex writes for `h`: 13 header fields, the bottom layer, then
// each element's upper-layer links with their length.
uint64_t SavedSize(const Hnsw& h) {
  // offsetLevel0_, max_elements_, cur_element_count, size_data_per_element_, label_offset_,
  // offsetData_, maxlevel_ (int), enterpoint_node_ (tableint), maxM_, maxM0_, M_, mult_ (double),
  // ef_construction_.
  uint64_t size = 6 * sizeof(size_t) + sizeof(int) + sizeof(hnswlib::tableint) +
                  3 * sizeof(size_t) + sizeof(double) + sizeof(size_t);
  size += h.cur_element_count * h.size_data_per_element_;
  for (size_t i = 0; i < h.cur_element_count; ++i) {
    size += sizeof(unsigned int);
    if (h.element_levels_[i] > 0) size += h.size_links_per_element_ * h.element_levels_[i];
  }
  return size;
}

// ---- compressed records (see hnsw_graph.h) ----------------------------------------------------
// int8: the codes padded with zeros to a multiple of 64 bytes (P), then the scale s (float) and
// sum_p c_p (int32). bf16: the values padded to a multiple of 32 (64 bytes).

size_t CodeBytes(FlatStorage storage, int dim) {
  const size_t d = static_cast<size_t>(dim);
  if (storage == FlatStorage::kInt8) return (d + 63) / 64 * 64 + 8;
  if (storage == FlatStorage::kBf16) return (d + 31) / 32 * 64;
  return d * sizeof(float);
}

// The distance functions' parameter: the padded code bytes (int8: P; bf16: the whole record)
// and the products of this CPU's kernel level (scan_kernels.h): hnswlib's distance functions
// are plain function pointers that see nothing but this.
struct DistParam {
  size_t padded;
  int32_t (*int8_dot)(const uint8_t*, const uint8_t*, size_t);
  float (*bf16_dot)(const uint8_t*, const uint8_t*, size_t);
};

struct CodeSpace final : hnswlib::SpaceInterface<float> {
  CodeSpace(FlatStorage storage, int dim)
      : storage(storage),
        record(CodeBytes(storage, dim)),
        param{storage == FlatStorage::kInt8 ? record - 8 : record, Kernels().int8_code_dot,
              Kernels().bf16_code_dot} {}
  size_t get_data_size() override { return record; }
  hnswlib::DISTFUNC<float> get_dist_func() override {
    return storage == FlatStorage::kInt8 ? &Int8Distance : &Bf16Distance;
  }
  void* get_dist_func_param() override { return &param; }

  // 1 - s_a s_b sum_p c_ap c_bp: (c_a + 128) as unsigned bytes against c_b, less 128 sum_p c_bp.
  static float Int8Distance(const void* a, const void* b, const void* param) {
    const auto& p = *static_cast<const DistParam*>(param);
    const auto* x = static_cast<const uint8_t*>(a);
    const auto* y = static_cast<const uint8_t*>(b);
    const int32_t sum = p.int8_dot(x, y, p.padded);
    float sa, sb;
    int32_t sum_b;
    std::memcpy(&sa, x + p.padded, 4);
    std::memcpy(&sb, y + p.padded, 4);
    std::memcpy(&sum_b, y + p.padded + 4, 4);
    return 1.0f - sa * sb * static_cast<float>(sum - 128 * sum_b);
  }
  // 1 - sum_p bf16(a_p) bf16(b_p), in fp32.
  static float Bf16Distance(const void* a, const void* b, const void* param) {
    const auto& p = *static_cast<const DistParam*>(param);
    return 1.0f -
           p.bf16_dot(static_cast<const uint8_t*>(a), static_cast<const uint8_t*>(b), p.padded);
  }

  FlatStorage storage;
  size_t record;
  DistParam param;
};

// Writes the record of `v` (dim values) for `storage` into `out` (CodeBytes bytes).
void EncodeRecord(FlatStorage storage, const float* v, int dim, uint8_t* out) {
  const size_t record = CodeBytes(storage, dim);
  std::memset(out, 0, record);
  if (storage == FlatStorage::kBf16) {
    for (int p = 0; p < dim; ++p) {
      const uint16_t half = ToBf16(v[p]);
      std::memcpy(out + 2 * p, &half, 2);
    }
    return;
  }
  float max_abs = 0.0f;
  for (int p = 0; p < dim; ++p) max_abs = std::max(max_abs, std::fabs(v[p]));
  // The scale rounded up to 8 significant bits (bf16's): vectors that differ by less than the
  // codes resolve get the same record, and so one graph node (HnswIndex merges equal records:
  // hnswlib's neighbour selection cuts groups of equal records apart). Rounding up keeps every
  // code within +-127.
  float scale = max_abs / 127.0f;
  uint32_t bits;
  std::memcpy(&bits, &scale, sizeof(bits));
  if ((bits & 0xffffu) != 0 && std::isfinite(scale)) bits = (bits + 0x10000u) & 0xffff0000u;
  std::memcpy(&scale, &bits, sizeof(bits));
  int32_t sum = 0;
  for (int p = 0; p < dim && scale > 0.0f; ++p) {
    const float c = std::clamp(std::nearbyint(v[p] / scale), -127.0f, 127.0f);
    const auto code = static_cast<int8_t>(c);
    out[p] = static_cast<uint8_t>(code);
    sum += code;
  }
  const size_t padded = record - 8;
  std::memcpy(out + padded, &scale, 4);
  std::memcpy(out + padded + 4, &sum, 4);
}

}  // namespace

struct HnswGraph::Impl {
  Impl(int dim, int M, int ef_construction, FlatStorage storage)
      : space(static_cast<size_t>(dim)),
        dim(dim),
        M(M),
        ef_construction(ef_construction),
        storage(storage) {
    if (storage != FlatStorage::kFp32) {
      codes = std::make_unique<CodeSpace>(storage, dim);
      code_bytes = CodeBytes(storage, dim);
    }
  }
  hnswlib::SpaceInterface<float>* Space() { return codes != nullptr ? codes.get() : &space; }
  // The record hnswlib gets for `v`: v itself (fp32), or its code in a per-thread buffer.
  const void* Record(const float* v) const {
    if (codes == nullptr) return v;
    thread_local std::vector<uint8_t> buffer;
    buffer.resize(code_bytes);
    EncodeRecord(storage, v, dim, buffer.data());
    return buffer.data();
  }

  hnswlib::InnerProductSpace space;
  // Compressed storage: a CodeSpace (held by its base: Impl is not in this file's anonymous
  // namespace) and its record size.
  std::unique_ptr<hnswlib::SpaceInterface<float>> codes;
  size_t code_bytes = 0;
  int dim, M, ef_construction;
  FlatStorage storage;
  std::unique_ptr<Hnsw> hnsw;  // null until the first Reserve
};

HnswGraph::HnswGraph(int dim, int M, int ef_construction, FlatStorage storage) {
  if (dim < 1) throw Error("hnsw graph: dimension must be at least 1, got " + std::to_string(dim));
  if (M < 2) throw Error("hnsw graph: M must be at least 2, got " + std::to_string(M));
  if (storage == FlatStorage::kInt8 && dim > 16384) {
    throw Error("index type 'hnsw': storage=int8 takes at most 16384 dimensions, got " +
                std::to_string(dim));
  }
  impl_ = std::make_unique<Impl>(dim, M, ef_construction, storage);
}

FlatStorage HnswGraph::storage() const { return impl_->storage; }

HnswGraph::~HnswGraph() = default;

int64_t HnswGraph::size() const {
  return impl_->hnsw ? static_cast<int64_t>(impl_->hnsw->cur_element_count) : 0;
}

void HnswGraph::Reserve(int64_t capacity) {
  Impl& g = *impl_;
  if (!g.hnsw) {
    g.hnsw = std::make_unique<Hnsw>(g.Space(), static_cast<size_t>(std::max<int64_t>(capacity, 16)),
                                    static_cast<size_t>(g.M),
                                    static_cast<size_t>(g.ef_construction), kRandomSeed);
  } else if (static_cast<size_t>(capacity) > g.hnsw->max_elements_) {
    g.hnsw->resizeIndex(std::max<size_t>(static_cast<size_t>(capacity), 2 * g.hnsw->max_elements_));
  }
}

void HnswGraph::Add(const float* vector, int64_t label) {
  Impl& g = *impl_;
  if (!g.hnsw) Reserve(1);
  g.hnsw->addPoint(g.Record(vector), static_cast<hnswlib::labeltype>(label));
}

void HnswGraph::Search(const float* query, size_t ef, std::vector<Candidate>* out) const {
  out->clear();
  if (!impl_->hnsw || impl_->hnsw->cur_element_count == 0) return;
  const Hnsw& h = *impl_->hnsw;
  query = static_cast<const float*>(impl_->Record(query));  // the code, with compressed storage
  // hnswlib's searchKnn without its ef member: upper layers greedily, then the bottom layer.
  hnswlib::tableint current = h.enterpoint_node_;
  float current_dist = h.fstdistfunc_(query, h.getDataByInternalId(current), h.dist_func_param_);
  for (int level = h.maxlevel_; level > 0; --level) {
    bool changed = true;
    while (changed) {
      changed = false;
      hnswlib::linklistsizeint* list = h.get_linklist(current, level);
      const int size = h.getListCount(list);
      const hnswlib::tableint* links = reinterpret_cast<const hnswlib::tableint*>(list + 1);
      for (int i = 0; i < size; ++i) {
        const float d = h.fstdistfunc_(query, h.getDataByInternalId(links[i]), h.dist_func_param_);
        if (d < current_dist) {
          current_dist = d;
          current = links[i];
          changed = true;
        }
      }
    }
  }
  auto top = h.num_deleted_ != 0 ? h.searchBaseLayerST<true>(current, query, ef)
                                 : h.searchBaseLayerST<false>(current, query, ef);
  out->resize(top.size());
  for (size_t i = top.size(); i-- > 0;) {
    const auto [dist, internal_id] = top.top();
    top.pop();
    const auto label = static_cast<int64_t>(h.getExternalLabel(internal_id));
    (*out)[i] = Candidate{dist, label,
                          impl_->codes != nullptr
                              ? nullptr
                              : reinterpret_cast<const float*>(h.getDataByInternalId(internal_id))};
  }
}

void HnswGraph::MarkDeleted(int64_t label) {
  if (impl_->hnsw == nullptr || Record(label).empty()) {
    throw Error("hnsw graph: no element with label " + std::to_string(label) + " to delete");
  }
  impl_->hnsw->markDelete(static_cast<hnswlib::labeltype>(label));
}

bool HnswGraph::IsDeletedElement(int64_t element) const {
  return impl_->hnsw->isMarkedDeleted(static_cast<hnswlib::tableint>(element));
}

const float* HnswGraph::Vector(int64_t label) const {
  if (!impl_->hnsw) return nullptr;
  const Hnsw& h = *impl_->hnsw;
  const auto it = h.label_lookup_.find(static_cast<hnswlib::labeltype>(label));
  if (it == h.label_lookup_.end()) return nullptr;
  if (impl_->codes != nullptr) return nullptr;
  return reinterpret_cast<const float*>(h.getDataByInternalId(it->second));
}

std::string_view HnswGraph::Record(int64_t label) const {
  if (!impl_->hnsw) return {};
  const Hnsw& h = *impl_->hnsw;
  const auto it = h.label_lookup_.find(static_cast<hnswlib::labeltype>(label));
  if (it == h.label_lookup_.end()) return {};
  return {h.getDataByInternalId(it->second), h.data_size_};
}

size_t HnswGraph::record_bytes() const { return CodeBytes(impl_->storage, impl_->dim); }

void HnswGraph::Encode(const float* vector, std::string* out) const {
  const Impl& g = *impl_;
  out->resize(CodeBytes(g.storage, g.dim));
  if (g.codes == nullptr) {
    std::memcpy(out->data(), vector, out->size());
    return;
  }
  EncodeRecord(g.storage, vector, g.dim, reinterpret_cast<uint8_t*>(out->data()));
}

void HnswGraph::Elements(int64_t first, int64_t n, int64_t* labels, const float** vectors) const {
  const Hnsw& h = *impl_->hnsw;
  for (int64_t i = 0; i < n; ++i) {
    const auto id = static_cast<hnswlib::tableint>(first + i);
    labels[i] = static_cast<int64_t>(h.getExternalLabel(id));
    vectors[i] = impl_->codes != nullptr
                     ? nullptr
                     : reinterpret_cast<const float*>(h.getDataByInternalId(id));
  }
}

uint64_t HnswGraph::Save(const std::string& path) const {
  if (!impl_->hnsw) throw Error(path + ": the hnsw graph is empty");
  Hnsw& h = *impl_->hnsw;
  h.saveIndex(path);  // not const in hnswlib, but only reads
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec || size != SavedSize(h)) {
    throw Error(path + ": writing the hnswlib graph failed (" +
                (ec ? ec.message()
                    : std::to_string(size) + " bytes, expected " + std::to_string(SavedSize(h))) +
                ")");
  }
  return size;
}

std::string HnswGraph::Check(const char* bytes, size_t size, int64_t count) const {
  const Impl& g = *impl_;
  size_t pos = 0;
  auto take = [&](void* out, size_t n) {
    if (size - pos < n) return false;
    std::memcpy(out, bytes + pos, n);
    pos += n;
    return true;
  };
  size_t offset_level0, max_elements, elements, size_per_element, label_offset, offset_data;
  int max_level;
  hnswlib::tableint entry;
  size_t max_m, max_m0, m;
  double mult;
  size_t ef_construction;
  if (!take(&offset_level0, 8) || !take(&max_elements, 8) || !take(&elements, 8) ||
      !take(&size_per_element, 8) || !take(&label_offset, 8) || !take(&offset_data, 8) ||
      !take(&max_level, 4) || !take(&entry, 4) || !take(&max_m, 8) || !take(&max_m0, 8) ||
      !take(&m, 8) || !take(&mult, 8) || !take(&ef_construction, 8)) {
    return "shorter than hnswlib's header";
  }
  const size_t M = static_cast<size_t>(g.M);
  const size_t links0 = 2 * M * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
  const size_t links = M * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
  const size_t data = CodeBytes(g.storage, g.dim);
  if (offset_level0 != 0 || m != M || max_m != M || max_m0 != 2 * M || offset_data != links0 ||
      label_offset != links0 + data || size_per_element != links0 + data + sizeof(size_t) ||
      mult != 1 / std::log(1.0 * static_cast<double>(M)) || ef_construction < 1 ||
      ef_construction > 1000000) {
    return "header fields do not match dimension " + std::to_string(g.dim) + " and M " +
           std::to_string(M);
  }
  if (elements != static_cast<size_t>(count) || max_elements < elements) {
    return std::to_string(elements) + " elements, expected " + std::to_string(count);
  }
  if (max_level < 0 || max_level > 64 || (count > 0 && entry >= elements)) {
    return "entry point " + std::to_string(entry) + " at level " + std::to_string(max_level) +
           " is out of range";
  }
  if ((size - pos) / size_per_element < elements) return "truncated bottom layer";
  const char* level0 = bytes + pos;
  pos += elements * size_per_element;
  // Each element's levels, from its upper-layer link lists.
  std::vector<int> levels(elements, 0);
  std::vector<size_t> upper(elements, 0);  // offset of the element's upper-layer lists
  for (size_t i = 0; i < elements; ++i) {
    unsigned int list_size;
    if (!take(&list_size, 4)) return "truncated upper layers";
    if (list_size % links != 0 || list_size / links > static_cast<size_t>(max_level) ||
        size - pos < list_size) {
      return "element " + std::to_string(i) + ": upper-layer links of " +
             std::to_string(list_size) + " bytes";
    }
    levels[i] = static_cast<int>(list_size / links);
    upper[i] = pos;
    pos += list_size;
  }
  if (pos != size) return std::to_string(size - pos) + " bytes after the graph";
  if (count > 0 && levels[entry] != max_level) return "the entry point is not on the top layer";
  // A list: u16 count, u8 flags (bit 0: deleted), u8 unused, then the links.
  auto check_list = [&](const char* list, size_t capacity, int level) -> std::string {
    uint16_t n;
    std::memcpy(&n, list, sizeof(n));
    if (n > capacity)
      return "a list of " + std::to_string(n) + " links (at most " + std::to_string(capacity) + ")";
    for (uint16_t j = 0; j < n; ++j) {
      hnswlib::tableint to;
      std::memcpy(&to, list + sizeof(hnswlib::linklistsizeint) + j * sizeof(to), sizeof(to));
      if (to >= elements || levels[to] < level) {
        return "a link to element " + std::to_string(to) + " at level " + std::to_string(level);
      }
    }
    return "";
  };
  for (size_t i = 0; i < elements; ++i) {
    std::string problem = check_list(level0 + i * size_per_element, 2 * M, 0);
    for (int level = 1; problem.empty() && level <= levels[i]; ++level) {
      problem = check_list(bytes + upper[i] + (level - 1) * links, M, level);
    }
    if (!problem.empty()) return "element " + std::to_string(i) + ": " + problem;
  }
  return "";
}

std::string HnswGraph::Load(const std::string& path, int64_t count) {
  Impl& g = *impl_;
  // hnswlib's loading constructor leaves num_deleted_ uninitialised (0.6.2) and loadIndex only
  // adds to it; start from the empty constructor and zero it first.
  g.hnsw = std::make_unique<Hnsw>(g.Space());
  g.hnsw->num_deleted_ = 0;
  try {
    g.hnsw->loadIndex(path, g.Space(), static_cast<size_t>(count));
  } catch (const std::exception& e) {
    g.hnsw.reset();
    return std::string("hnswlib cannot load it: ") + e.what();
  }
  const Hnsw& h = *g.hnsw;
  std::string problem;
  const size_t row_bytes = CodeBytes(g.storage, g.dim);
  if (h.cur_element_count != static_cast<size_t>(count) ||
      h.size_data_per_element_ != h.offsetData_ + row_bytes + sizeof(size_t) ||
      h.label_offset_ != h.offsetData_ + row_bytes || h.M_ != static_cast<size_t>(g.M)) {
    problem = "does not match the header (" + std::to_string(h.cur_element_count) +
              " elements, expected " + std::to_string(count) + " of dimension " +
              std::to_string(g.dim) + ")";
  }
  std::vector<char> seen(problem.empty() ? static_cast<size_t>(count) : 0, 0);
  for (size_t i = 0; problem.empty() && i < h.cur_element_count; ++i) {
    const hnswlib::labeltype label = h.getExternalLabel(static_cast<hnswlib::tableint>(i));
    if (label >= static_cast<size_t>(count) || seen[label]) {
      problem = "element " + std::to_string(i) + " has label " + std::to_string(label) +
                ", expected a distinct label below " + std::to_string(count);
    } else {
      seen[label] = 1;
    }
  }
  if (!problem.empty()) g.hnsw.reset();
  return problem;
}

}  // namespace twotower::index::internal
