#include <algorithm>
#include <cmath>
#include <limits>

#include "index/compressed_internal.h"
#include "twotower/core/error.h"

namespace twotower::index {

const char* FlatStorageName(FlatStorage storage) {
  switch (storage) {
    case FlatStorage::kFp32:
      return "fp32";
    case FlatStorage::kBf16:
      return "bf16";
    case FlatStorage::kInt8:
      return "int8";
  }
  return "?";
}

FlatStorage ParseFlatStorage(const std::string& value) {
  if (value == "fp32") return FlatStorage::kFp32;
  if (value == "bf16") return FlatStorage::kBf16;
  if (value == "int8") return FlatStorage::kInt8;
  throw Error("index type 'flat': parameter 'storage': unknown value " + Quote(value) +
              " (expected: fp32, bf16, int8)");
}

namespace internal {
namespace {

constexpr double kRoundUp = 1.0 + 0x1p-20;  // applied to every measured error and bound

// The value of item `label`, dimension p, in fp32 panels of dimension d.
inline float ItemValue(const float* panels, int d, int64_t label, int p) {
  return panels[(label / kLanes) * d * kLanes + static_cast<int64_t>(p) * kLanes + label % kLanes];
}

// Round to nearest even bf16; finite values past the largest bf16 saturate to it.
uint16_t ToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  const uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  uint16_t half = static_cast<uint16_t>(rounded >> 16);
  if ((half & 0x7f80u) == 0x7f80u) half = static_cast<uint16_t>((bits >> 31) << 15 | 0x7f7fu);
  return half;
}

}  // namespace

CompressedItems::CompressedItems(FlatStorage storage, int dim) : storage_(storage), dim_(dim) {
  if (storage == FlatStorage::kFp32) {
    throw Error(ErrorCode::kInternal, "CompressedItems: fp32 is not a compressed storage");
  }
  // int8: the running integer sum stays below 2^31 (|bias| + 255 * 127 per dimension).
  if (storage == FlatStorage::kInt8 && dim > 16384) {
    throw Error("index type 'flat': storage=int8 supports dimensions up to 16384, got " +
                std::to_string(dim));
  }
  groups_ = storage == FlatStorage::kInt8 ? (dim + 3) / 4 : (dim + 1) / 2;
  max_abs_.assign(static_cast<size_t>(dim), 0.0f);
  max_err_.assign(static_cast<size_t>(dim), 0.0f);
  scale_.assign(static_cast<size_t>(dim), 0.0f);
  max_code_.assign(static_cast<size_t>(dim), 0);
}

int64_t CompressedItems::MemoryBytes() const {
  return static_cast<int64_t>(codes_.capacity() + bias_.capacity() * sizeof(int32_t));
}

void CompressedItems::EncodeItem(const float* panels, int64_t label) {
  const int64_t panel = label / kLanes, lane = label % kLanes;
  uint8_t* base = codes_.data() + panel * groups_ * 64 + lane * 4;
  if (storage_ == FlatStorage::kInt8) {
    int64_t sum = 0, l1 = 0;
    for (int p = 0; p < dim_; ++p) {
      const float x = ItemValue(panels, dim_, label, p);
      const float s = scale_[p];
      const int32_t c =
          s > 0.0f ? static_cast<int32_t>(std::clamp(std::nearbyint(x / s), -127.0f, 127.0f)) : 0;
      const double err = std::fabs(static_cast<double>(x) - static_cast<double>(s) * c) * kRoundUp;
      max_err_[p] = std::max(max_err_[p], static_cast<float>(err) * static_cast<float>(kRoundUp));
      max_code_[p] = std::max(max_code_[p], std::abs(c));
      sum += c;
      l1 += std::abs(c);
      base[(p / 4) * 64 + p % 4] = static_cast<uint8_t>(static_cast<int8_t>(c));
    }
    max_l1_ = std::max(max_l1_, l1);
    bias_[static_cast<size_t>(label)] = static_cast<int32_t>(-128 * sum);
    return;
  }
  for (int p = 0; p < dim_; ++p) {
    const float x = ItemValue(panels, dim_, label, p);
    const uint16_t half = ToBf16(x);
    const double err = std::fabs(static_cast<double>(x) - Bf16ToFloat(half)) * kRoundUp;
    max_err_[p] = std::max(max_err_[p], static_cast<float>(err) * static_cast<float>(kRoundUp));
    max_abs_[p] = std::max(max_abs_[p], std::fabs(x));
    std::memcpy(base + (p / 2) * 64 + (p % 2) * 2, &half, sizeof(half));
  }
}

bool CompressedItems::InRange(const float* panels, int64_t label) const {
  if (storage_ != FlatStorage::kInt8) return true;
  for (int p = 0; p < dim_; ++p) {
    if (std::fabs(ItemValue(panels, dim_, label, p)) > max_abs_[p]) return false;
  }
  return true;
}

void CompressedItems::Rebuild(const float* panels, int64_t count) {
  const int64_t num_panels = (count + kLanes - 1) / kLanes;
  codes_.assign(static_cast<size_t>(num_panels * groups_ * 64), 0);
  bias_.assign(static_cast<size_t>(num_panels * kLanes), 0);
  std::fill(max_abs_.begin(), max_abs_.end(), 0.0f);
  std::fill(max_err_.begin(), max_err_.end(), 0.0f);
  std::fill(max_code_.begin(), max_code_.end(), 0);
  max_l1_ = 0;
  if (storage_ == FlatStorage::kInt8) {
    for (int64_t label = 0; label < count; ++label) {
      for (int p = 0; p < dim_; ++p) {
        max_abs_[p] = std::max(max_abs_[p], std::fabs(ItemValue(panels, dim_, label, p)));
      }
    }
    for (int p = 0; p < dim_; ++p) scale_[p] = max_abs_[p] / 127.0f;
  }
  for (int64_t label = 0; label < count; ++label) EncodeItem(panels, label);
}

void CompressedItems::Update(const float* panels, int64_t count,
                             const std::vector<int64_t>& labels) {
  for (const int64_t label : labels) {
    if (!InRange(panels, label)) return Rebuild(panels, count);
  }
  const int64_t num_panels = (count + kLanes - 1) / kLanes;
  codes_.resize(static_cast<size_t>(num_panels * groups_ * 64), 0);
  bias_.resize(static_cast<size_t>(num_panels * kLanes), 0);
  for (const int64_t label : labels) EncodeItem(panels, label);
}

void CompressedItems::Pack(const float* queries, const int64_t* rows, int64_t n,
                           PackedQueries* out) const {
  const int64_t tiles = (n + kTileQueries - 1) / kTileQueries;
  const size_t slots = static_cast<size_t>(tiles * kTileQueries);
  out->groups = groups_;
  out->codes.assign(slots * groups_, 0);
  out->scale.assign(slots, 0.0f);
  out->margin.assign(slots, std::numeric_limits<float>::infinity());
  std::vector<int32_t> g(static_cast<size_t>(dim_));
  for (int64_t r = 0; r < n; ++r) {
    const float* q = queries + rows[r] * dim_;
    uint32_t* tile = out->codes.data() + (r / kTileQueries) * groups_ * kTileQueries;
    const int64_t slot = r % kTileQueries;
    double item_err = 0.0, query_err = 0.0, magnitude = 0.0;
    for (int p = 0; p < dim_; ++p) {
      item_err += std::fabs(q[p]) * static_cast<double>(max_err_[p]);
      magnitude += std::fabs(q[p]) * (static_cast<double>(max_abs_[p]) + max_err_[p]);
    }
    if (storage_ == FlatStorage::kInt8) {
      float max_w = 0.0f;
      std::vector<float> w(static_cast<size_t>(dim_));
      for (int p = 0; p < dim_; ++p) {
        w[p] = q[p] * scale_[p];
        max_w = std::max(max_w, std::fabs(w[p]));
      }
      const float t = max_w > 0.0f ? max_w / 127.0f : 1.0f;
      double fold_err = 0.0, by_dim = 0.0, worst = 0.0;
      for (int p = 0; p < dim_; ++p) {
        g[p] = static_cast<int32_t>(std::clamp(std::nearbyint(w[p] / t), -127.0f, 127.0f));
        const double d = std::fabs(static_cast<double>(w[p]) - static_cast<double>(t) * g[p]);
        fold_err += std::fabs(static_cast<double>(q[p]) * scale_[p] - w[p]) * max_code_[p];
        by_dim += d * max_code_[p];
        worst = std::max(worst, d);
        const uint32_t u = static_cast<uint32_t>(g[p] + 128);
        tile[(p / 4) * kTileQueries + slot] |= u << (8 * (p % 4));
      }
      // Padding dimensions: u = 128 against a zero code adds nothing.
      for (int p = dim_; p < groups_ * 4; ++p) {
        tile[(p / 4) * kTileQueries + slot] |= 128u << (8 * (p % 4));
      }
      query_err = fold_err + std::min(by_dim, worst * static_cast<double>(max_l1_));
      out->scale[r] = t;
    } else {
      for (int p = 0; p < dim_; ++p) {
        const uint16_t half = ToBf16(q[p]);
        query_err += std::fabs(static_cast<double>(q[p]) - Bf16ToFloat(half)) *
                     (static_cast<double>(max_abs_[p]) + max_err_[p]);
        tile[(p / 2) * kTileQueries + slot] |= uint32_t{half} << (16 * (p % 2));
      }
      out->scale[r] = 1.0f;
    }
    const double rounding = (2.0 * dim_ + 8.0) * 0x1p-23 * magnitude + 1e-30;
    const double eps = (item_err + query_err) * kRoundUp + rounding;
    out->margin[r] = static_cast<float>(2.0 * eps * kRoundUp);
  }
}

// ---- Shortlist ---------------------------------------------------------------------------------

void Shortlist::Reset(int64_t k, float margin) {
  best_.Reset(k);
  margin_ = margin;
  hits_.clear();
  limit_ = std::max<size_t>(1024, 8 * static_cast<size_t>(k));
}

float Shortlist::threshold() const {
  const float t = best_.threshold();
  if (!std::isfinite(t)) return t;  // -inf until k hits, +inf for k = 0
  // Rounded down: a hit exactly at theta - margin is kept.
  return std::nextafter(t - margin_, -std::numeric_limits<float>::infinity());
}

bool Shortlist::Push(const Hit& hit) {
  const bool changed = best_.Push(hit);
  hits_.push_back(hit);
  if (hits_.size() >= limit_) Compact();
  return changed;
}

void Shortlist::Compact() {
  const float t = threshold();
  hits_.erase(std::remove_if(hits_.begin(), hits_.end(), [t](const Hit& h) { return h.score < t; }),
              hits_.end());
  if (hits_.size() * 2 > limit_) limit_ *= 2;
}

void Shortlist::Merge(const Shortlist& other) {
  for (const Hit& h : other.best_.hits()) best_.Push(h);
  hits_.insert(hits_.end(), other.hits_.begin(), other.hits_.end());
  Compact();
}

std::vector<int64_t> Shortlist::Candidates() const {
  const float t = threshold();
  std::vector<int64_t> labels;
  for (const Hit& h : hits_) {
    if (h.score >= t) labels.push_back(h.label);
  }
  std::sort(labels.begin(), labels.end());
  labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
  return labels;
}

}  // namespace internal
}  // namespace twotower::index
