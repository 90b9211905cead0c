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

// The value of item `label`, dimension p, in fp32 rows of dimension d.
inline float ItemValue(const float* rows, int d, int64_t label, int p) {
  return rows[label * d + p];
}

}  // namespace

uint16_t ToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7f800000u) == 0) return static_cast<uint16_t>((bits >> 31) << 15);
  const uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  uint16_t half = static_cast<uint16_t>(rounded >> 16);
  if ((half & 0x7f80u) == 0x7f80u) half = static_cast<uint16_t>((bits >> 31) << 15 | 0x7f7fu);
  return half;
}

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

int64_t CompressedItems::MemoryBytes() const { return static_cast<int64_t>(codes_.capacity()); }

void CompressedItems::EncodeItem(const float* rows, int64_t label) {
  const int64_t panel = label / kLanes, lane = label % kLanes;
  uint8_t* base = codes_.data() + panel * groups_ * 64 + lane * 4;
  double err2 = 0.0, norm2 = 0.0;  // ||x - decoded||^2, and ||c||^2 (int8) or ||decoded||^2
  if (storage_ == FlatStorage::kInt8) {
    int64_t l1 = 0;
    for (int p = 0; p < dim_; ++p) {
      const float x = ItemValue(rows, dim_, label, p);
      const float s = scale_[p];
      const int32_t c =
          s > 0.0f ? static_cast<int32_t>(std::clamp(std::nearbyint(x / s), -127.0f, 127.0f)) : 0;
      const double err = std::fabs(static_cast<double>(x) - static_cast<double>(s) * c);
      max_err_[p] = std::max(max_err_[p], static_cast<float>(err * kRoundUp * kRoundUp));
      max_code_[p] = std::max(max_code_[p], std::abs(c));
      err2 += err * err;
      norm2 += static_cast<double>(c) * c;
      l1 += std::abs(c);
      base[(p / 4) * 64 + p % 4] = static_cast<uint8_t>(c + 128);
    }
    max_l1_ = std::max(max_l1_, l1);
  } else {
    for (int p = 0; p < dim_; ++p) {
      const float x = ItemValue(rows, dim_, label, p);
      const uint16_t half = ToBf16(x);
      const double decoded = Bf16ToFloat(half);
      const double err = std::fabs(static_cast<double>(x) - decoded);
      max_err_[p] = std::max(max_err_[p], static_cast<float>(err * kRoundUp * kRoundUp));
      max_abs_[p] = std::max(max_abs_[p], std::fabs(x));
      err2 += err * err;
      norm2 += decoded * decoded;
      std::memcpy(base + (p / 2) * 64 + (p % 2) * 2, &half, sizeof(half));
    }
  }
  max_err_l2_ = std::max(max_err_l2_, std::sqrt(err2) * kRoundUp);
  max_norm_l2_ = std::max(max_norm_l2_, std::sqrt(norm2) * kRoundUp);
}

bool CompressedItems::InRange(const float* rows, int64_t label) const {
  if (storage_ != FlatStorage::kInt8) return true;
  for (int p = 0; p < dim_; ++p) {
    if (std::fabs(ItemValue(rows, dim_, label, p)) > max_abs_[p]) return false;
  }
  return true;
}

void CompressedItems::Rebuild(const float* rows, int64_t count) {
  const int64_t num_panels = (count + kLanes - 1) / kLanes;
  codes_.assign(static_cast<size_t>(num_panels * groups_ * 64), 0);
  std::fill(max_abs_.begin(), max_abs_.end(), 0.0f);
  std::fill(max_err_.begin(), max_err_.end(), 0.0f);
  std::fill(max_code_.begin(), max_code_.end(), 0);
  max_l1_ = 0;
  max_err_l2_ = 0.0;
  max_norm_l2_ = 0.0;
  if (storage_ == FlatStorage::kInt8) {
    for (int64_t label = 0; label < count; ++label) {
      for (int p = 0; p < dim_; ++p) {
        max_abs_[p] = std::max(max_abs_[p], std::fabs(ItemValue(rows, dim_, label, p)));
      }
    }
    for (int p = 0; p < dim_; ++p) scale_[p] = max_abs_[p] / 127.0f;
  }
  for (int64_t label = 0; label < count; ++label) EncodeItem(rows, label);
}

void CompressedItems::Update(const float* rows, int64_t count, const std::vector<int64_t>& labels) {
  for (const int64_t label : labels) {
    if (!InRange(rows, label)) return Rebuild(rows, count);
  }
  const int64_t num_panels = (count + kLanes - 1) / kLanes;
  codes_.resize(static_cast<size_t>(num_panels * groups_ * 64), 0);
  for (const int64_t label : labels) EncodeItem(rows, label);
}

void CompressedItems::Pack(const float* queries, const int64_t* rows, int64_t n,
                           PackedQueries* out) const {
  const int64_t tiles = (n + kTileQueries - 1) / kTileQueries;
  const size_t slots = static_cast<size_t>(tiles * kTileQueries);
  out->groups = groups_;
  out->codes.assign(slots * groups_, 0);
  out->scale.assign(slots, 0.0f);
  out->bias.assign(slots, 0);
  out->margin.assign(slots, std::numeric_limits<float>::infinity());
  std::vector<int32_t> g(static_cast<size_t>(dim_));
  for (int64_t r = 0; r < n; ++r) {
    const float* q = queries + rows[r] * dim_;
    uint32_t* tile = out->codes.data() + (r / kTileQueries) * groups_ * kTileQueries;
    const int64_t slot = r % kTileQueries;
    // The item term, sum_p q_p (x_p - decoded_p): per dimension, or by Cauchy-Schwarz.
    double by_dim = 0.0, q2 = 0.0, magnitude = 0.0;
    for (int p = 0; p < dim_; ++p) {
      by_dim += std::fabs(q[p]) * static_cast<double>(max_err_[p]);
      q2 += static_cast<double>(q[p]) * q[p];
      magnitude += std::fabs(q[p]) * (static_cast<double>(max_abs_[p]) + max_err_[p]);
    }
    const double item_err = std::min(by_dim, std::sqrt(q2) * kRoundUp * max_err_l2_);
    // The query term, sum_p delta_p * code_p: delta = q s - t g (int8; exact in double) or
    // q - bf16(q), bounded the same three ways.
    double query_err = 0.0;
    double delta_by_dim = 0.0, delta2 = 0.0, delta_max = 0.0;
    if (storage_ == FlatStorage::kInt8) {
      float max_w = 0.0f;
      for (int p = 0; p < dim_; ++p) max_w = std::max(max_w, std::fabs(q[p] * scale_[p]));
      const float t = max_w > 0.0f ? max_w / 127.0f : 1.0f;
      int64_t sum = 0;
      for (int p = 0; p < dim_; ++p) {
        g[p] =
            static_cast<int32_t>(std::clamp(std::nearbyint(q[p] * scale_[p] / t), -127.0f, 127.0f));
        const double delta =
            std::fabs(static_cast<double>(q[p]) * scale_[p] - static_cast<double>(t) * g[p]);
        delta_by_dim += delta * max_code_[p];
        delta2 += delta * delta;
        delta_max = std::max(delta_max, delta);
        sum += g[p];
        const uint32_t byte = static_cast<uint8_t>(static_cast<int8_t>(g[p]));
        tile[(p / 4) * kTileQueries + slot] |= byte << (8 * (p % 4));
      }
      // Padding dimensions have g = 0: they add nothing whatever the item's byte.
      out->bias[r] = static_cast<int32_t>(-128 * sum);
      query_err = std::min({delta_by_dim, delta_max * static_cast<double>(max_l1_),
                            std::sqrt(delta2) * kRoundUp * max_norm_l2_});
      out->scale[r] = t;
    } else {
      for (int p = 0; p < dim_; ++p) {
        const uint16_t half = ToBf16(q[p]);
        const double delta = std::fabs(static_cast<double>(q[p]) - Bf16ToFloat(half));
        delta_by_dim += delta * (static_cast<double>(max_abs_[p]) + max_err_[p]);
        delta2 += delta * delta;
        tile[(p / 2) * kTileQueries + slot] |= uint32_t{half} << (16 * (p % 2));
      }
      query_err = std::min(delta_by_dim, std::sqrt(delta2) * kRoundUp * max_norm_l2_);
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

std::vector<Hit> Shortlist::CandidateHits() const {
  const float t = threshold();
  std::vector<Hit> hits;
  for (const Hit& h : hits_) {
    if (h.score >= t) hits.push_back(h);
  }
  return hits;
}

}  // namespace internal
}  // namespace twotower::index
