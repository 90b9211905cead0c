#include "twotower/index/item_index.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "index/index_file_internal.h"
#include "index/search_internal.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"
#include "twotower/index/flat_index.h"
#include "twotower/index/hnsw_index.h"

namespace twotower::index {
namespace {

// Sorted unique labels; Error for one outside [0, size).
std::vector<int64_t> SortedLabels(const std::vector<int64_t>& labels, int64_t size, int64_t query,
                                  const char* what) {
  std::vector<int64_t> out(labels);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (!out.empty() && (out.front() < 0 || out.back() >= size)) {
    const int64_t bad = out.front() < 0 ? out.front() : out.back();
    throw Error("search filter of query " + std::to_string(query) + ": " + what + " label " +
                std::to_string(bad) + " is out of range (the index holds " + std::to_string(size) +
                " items, labels 0.." + std::to_string(size - 1) + ")");
  }
  return out;
}

internal::PreparedFilter Prepare(const SearchFilter& f, int64_t size, int64_t query) {
  internal::PreparedFilter p;
  p.exclude = SortedLabels(f.exclude, size, query, "exclude");
  if (f.allow.has_value()) {
    p.has_allow = true;
    const std::vector<int64_t> allow = SortedLabels(*f.allow, size, query, "allow");
    std::set_difference(allow.begin(), allow.end(), p.exclude.begin(), p.exclude.end(),
                        std::back_inserter(p.allow));
    p.allowed = static_cast<int64_t>(p.allow.size());
  } else {
    p.allowed = size - static_cast<int64_t>(p.exclude.size());
  }
  return p;
}

}  // namespace

ItemIndex::AddResult ItemIndex::Add(const float* vectors, int64_t n,
                                    const std::vector<std::string>& ids) {
  if (n < 0 || static_cast<int64_t>(ids.size()) != n) {
    throw Error("index add: " + std::to_string(n) + " vectors but " + std::to_string(ids.size()) +
                " ids");
  }
  if (n == 0) return {};
  if (vectors == nullptr) throw Error("index add: no vectors given");
  const int d = dim();
  std::unordered_map<std::string, int64_t> first_row;
  first_row.reserve(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const std::string& id = ids[r];
    if (id.empty()) throw Error("index add: row " + std::to_string(r) + ": empty id");
    if (id.find_first_of("\n\r") != std::string::npos) {
      throw Error("index add: row " + std::to_string(r) + ": id " + Quote(id) +
                  " contains a line break");
    }
    const auto [it, inserted] = first_row.emplace(id, r);
    if (!inserted) {
      throw Error("index add: duplicate id " + Quote(id) + " in rows " +
                  std::to_string(it->second) + " and " + std::to_string(r));
    }
    const float* v = vectors + r * d;
    for (int p = 0; p < d; ++p) {
      if (!std::isfinite(v[p])) {
        throw Error("index add: row " + std::to_string(r) + " (id " + Quote(id) + "): value " +
                    std::to_string(v[p]) + " at dimension " + std::to_string(p) + " is not finite");
      }
    }
  }
  return AddImpl(vectors, n, ids);
}

void ItemIndex::Search(const float* queries, int64_t n, int k, const SearchFilter* filters,
                       int64_t* ids_out, float* scores_out, const SearchOptions& options) const {
  if (k < 1) throw Error("index search: k must be at least 1, got " + std::to_string(k));
  if (options.ef_search < 0 || options.ef_search > 1000000) {
    throw Error(ErrorCode::kInvalidArgument,
                "index search: ef_search must be in 0..1000000 (0: the index's own), got " +
                    std::to_string(options.ef_search),
                "ef_search");
  }
  if (options.ef_search != 0 && type() != "hnsw") {
    throw Error(ErrorCode::kInvalidArgument,
                "index search: ef_search applies to an hnsw index; this one is " + spec() +
                    " (an exact scan, no candidate list)",
                "ef_search");
  }
  if (n < 0) throw Error("index search: negative query count " + std::to_string(n));
  if (n == 0) return;
  if (queries == nullptr || ids_out == nullptr || scores_out == nullptr) {
    throw Error("index search: null query or output array");
  }
  const int d = dim();
  for (int64_t i = 0; i < n * d; ++i) {
    if (!std::isfinite(queries[i])) {
      throw Error("index search: query " + std::to_string(i / d) + ": value at dimension " +
                  std::to_string(i % d) + " is not finite");
    }
  }
  std::vector<internal::PreparedFilter> prepared;
  if (filters != nullptr) {
    prepared.reserve(static_cast<size_t>(n));
    for (int64_t q = 0; q < n; ++q) prepared.push_back(Prepare(filters[q], size(), q));
  }
  std::fill(ids_out, ids_out + n * k, int64_t{-1});
  std::fill(scores_out, scores_out + n * k, -std::numeric_limits<float>::infinity());
  if (size() == 0) return;
  SearchImpl(queries, n, k, filters != nullptr ? prepared.data() : nullptr, ids_out, scores_out,
             options);
}

void ItemIndex::Save(const std::string& path) const { SaveImpl(path); }

void ItemIndex::set_model_fingerprint(const std::string& fingerprint) {
  if (!fingerprint.empty() && !IsSha256Hex(fingerprint)) {
    throw Error("index: model fingerprint " + Quote(fingerprint) +
                " is not a SHA-256 (64 lowercase hex digits)");
  }
  model_fingerprint_ = fingerprint;
}

std::unique_ptr<ItemIndex> MakeIndex(const std::string& spec, int dim) {
  const size_t colon = spec.find(':');
  const std::string type = spec.substr(0, colon);
  const std::string params = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (colon != std::string::npos && params.empty() && (type == "flat" || type == "hnsw")) {
    throw Error("index type '" + type + "': nothing after ':' (expected " + type +
                ":key=value,... or '" + type + "' alone)");
  }
  if (type == "flat") {
    FlatStorage storage = FlatStorage::kFp32;
    if (colon != std::string::npos) {
      const size_t eq = params.find('=');
      const std::string key = params.substr(0, eq);
      if (params.find(',') != std::string::npos) {
        throw Error("index type 'flat' takes one parameter, storage=fp32|bf16|int8, got " +
                    Quote(params));
      }
      if (eq == std::string::npos || key != "storage") {
        throw Error("index type 'flat': expected storage=fp32|bf16|int8, got " + Quote(params));
      }
      storage = ParseFlatStorage(params.substr(eq + 1));
    }
    return std::make_unique<FlatIndex>(dim, storage);
  }
  if (type == "hnsw") return std::make_unique<HnswIndex>(dim, HnswParams::Parse(params));
  throw Error("unknown index type '" + type + "' (expected: flat, hnsw)");
}

std::unique_ptr<ItemIndex> LoadIndex(const std::string& path, int expected_dim) {
  const internal::IndexFileContents file = internal::ReadIndexFile(path, expected_dim);
  internal::PayloadReader reader(path, file.bytes, kIndexHeaderSize);
  const std::string fingerprint = file.info.format_version >= 2
                                      ? reader.ModelFingerprint()
                                      : std::string();  // format 1 recorded no model
  std::unique_ptr<ItemIndex> index;
  if (file.info.type == "flat") {
    FlatStorage storage = FlatStorage::kFp32;
    if (file.info.format_version >= 3) {  // the storage parameter section
      const uint32_t code = reader.U32("flat parameters: storage");
      if (code > static_cast<uint32_t>(FlatStorage::kInt8)) {
        reader.Fail("flat parameters: storage " + std::to_string(code) +
                    " is unknown (expected 0 fp32, 1 bf16, 2 int8)");
      }
      if (reader.U32("flat parameters: reserved") != 0) {
        reader.Fail("flat parameters: the reserved field is not 0");
      }
      storage = static_cast<FlatStorage>(code);
      if (storage == FlatStorage::kFp32) {
        reader.Fail("flat parameters: storage fp32 is written as format 2, not 3");
      }
      if (storage == FlatStorage::kInt8 && file.info.dim > 16384) {
        reader.Fail(
            "flat parameters: storage int8 supports dimensions up to 16384, the header "
            "says " +
            std::to_string(file.info.dim));
      }
    }
    auto flat = std::make_unique<FlatIndex>(file.info.dim, storage);
    flat->ReadItems(reader, file.info.count);
    reader.ExpectEnd();
    index = std::move(flat);
  } else {
    index =
        HnswIndex::ReadPayload(file.info.dim, file.info.count, file.info.format_version, reader);
  }
  index->set_model_fingerprint(fingerprint);
  return index;
}

}  // namespace twotower::index
