// Internals shared by the index implementations: prepared filters, the top-k heap and the scoring
// kernels. Not a public header.
//
// Every score is the chain s = MulAdd(q[p], v[p], s), p = 0 .. d-1, from s = 0, where MulAdd is
// a fused multiply-add when the build's target has FMA (always in the portable x86-64-v3 build)
// and an unfused one otherwise, in the vector kernels (scan_kernels.inc, at every ISA level) and
// in the scalar Dot alike. The index sources are compiled with -ffp-contract=off so that the
// compiler never fuses (or not) on its own: the same item gets the same bits on every path.
#ifndef TWOTOWER_SRC_INDEX_SEARCH_INTERNAL_H_
#define TWOTOWER_SRC_INDEX_SEARCH_INTERNAL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace twotower::index::internal {

// ---- filters ----------------------------------------------------------------------------------

struct PreparedFilter {
  bool has_allow = false;
  std::vector<int64_t> exclude;  // sorted, unique, each in [0, size)
  std::vector<int64_t> allow;    // sorted, unique, in range, with the excluded labels removed
  int64_t allowed = 0;           // how many labels this query may return

  bool Allows(int64_t label) const {
    return has_allow ? std::binary_search(allow.begin(), allow.end(), label)
                     : !std::binary_search(exclude.begin(), exclude.end(), label);
  }
};

// ---- top-k ------------------------------------------------------------------------------------

struct Hit {
  float score;
  int64_t label;
};

// The result order: higher score first, then lower label.
inline bool Better(const Hit& a, const Hit& b) {
  return a.score > b.score || (a.score == b.score && a.label < b.label);
}

// The best `capacity` hits seen so far: a binary heap with the worst kept hit on top.
class TopK {
 public:
  TopK() = default;
  explicit TopK(int64_t capacity) { Reset(capacity); }
  void Reset(int64_t capacity) {
    capacity_ = static_cast<size_t>(capacity);
    hits_.clear();
    hits_.reserve(capacity_);
  }
  bool full() const { return hits_.size() >= capacity_; }
  size_t size() const { return hits_.size(); }
  // A candidate must score at least this to be kept.
  float threshold() const {
    if (capacity_ == 0) return std::numeric_limits<float>::infinity();
    return full() ? hits_.front().score : -std::numeric_limits<float>::infinity();
  }
  // Returns true when the hit was kept.
  bool Push(const Hit& hit) {
    if (hits_.size() < capacity_) {
      hits_.push_back(hit);
      std::push_heap(hits_.begin(), hits_.end(), Better);
      return true;
    }
    if (capacity_ == 0 || !Better(hit, hits_.front())) return false;
    std::pop_heap(hits_.begin(), hits_.end(), Better);
    hits_.back() = hit;
    std::push_heap(hits_.begin(), hits_.end(), Better);
    return true;
  }
  const std::vector<Hit>& hits() const { return hits_; }
  // Writes the hits best first into k slots, padding with -1 / -infinity. Empties the heap.
  void Write(int k, int64_t* ids, float* scores) {
    std::sort_heap(hits_.begin(), hits_.end(), Better);
    const size_t n = std::min(hits_.size(), static_cast<size_t>(k));
    for (size_t r = 0; r < n; ++r) {
      ids[r] = hits_[r].label;
      scores[r] = hits_[r].score;
    }
    for (size_t r = n; r < static_cast<size_t>(k); ++r) {
      ids[r] = -1;
      scores[r] = -std::numeric_limits<float>::infinity();
    }
    hits_.clear();
  }

 private:
  size_t capacity_ = 0;
  std::vector<Hit> hits_;
};

// ---- arithmetic -------------------------------------------------------------------------------

inline float MulAdd(float a, float b, float c) {
#if defined(__FMA__) || defined(__AVX512F__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// The canonical score of one item: what the vector kernels compute in each lane.
inline float Dot(const float* q, const float* v, int d) {
  float s = 0.0f;
  for (int p = 0; p < d; ++p) s = MulAdd(q[p], v[p], s);
  return s;
}

// Dot for n rows, eight (then four) independent chains at a time, each the same chain as Dot:
// eight chains keep both FMA pipes busy where four wait on the FMA latency.
inline void DotRows(const float* q, const float* const* rows, size_t n, int d, float* out) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    float s[8] = {};
    for (int p = 0; p < d; ++p) {
      const float x = q[p];
      for (int j = 0; j < 8; ++j) s[j] = MulAdd(x, rows[i + j][p], s[j]);
    }
    for (int j = 0; j < 8; ++j) out[i + j] = s[j];
  }
  for (; i + 4 <= n; i += 4) {
    const float *r0 = rows[i], *r1 = rows[i + 1], *r2 = rows[i + 2], *r3 = rows[i + 3];
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (int p = 0; p < d; ++p) {
      s0 = MulAdd(q[p], r0[p], s0);
      s1 = MulAdd(q[p], r1[p], s1);
      s2 = MulAdd(q[p], r2[p], s2);
      s3 = MulAdd(q[p], r3[p], s3);
    }
    out[i] = s0;
    out[i + 1] = s1;
    out[i + 2] = s2;
    out[i + 3] = s3;
  }
  for (; i < n; ++i) out[i] = Dot(q, rows[i], d);
}

// Sixteen floats: one lane per item of a panel. GCC lowers it to one AVX-512 register or two
// AVX ones, with the same per-lane results. The kernels on it are in scan_kernels.inc.
typedef float V16 __attribute__((vector_size(64)));
constexpr int kLanes = 16;
constexpr int kTileQueries = 8;  // queries per kernel call, packed d x 8

// Packs queries rows[0 .. n) of `queries` (row-major, d wide) into tiles of 8: tile t is d x 8 at
// out + t * d * 8, zero-padded.
inline void PackQueries(const float* queries, const int64_t* rows, int64_t n, int d,
                        std::vector<float>* out) {
  const int64_t tiles = (n + kTileQueries - 1) / kTileQueries;
  out->assign(static_cast<size_t>(tiles) * d * kTileQueries, 0.0f);
  for (int64_t r = 0; r < n; ++r) {
    const float* q = queries + rows[r] * d;
    float* tile = out->data() + (r / kTileQueries) * d * kTileQueries;
    const int64_t i = r % kTileQueries;
    for (int p = 0; p < d; ++p) tile[p * kTileQueries + i] = q[p];
  }
}

}  // namespace twotower::index::internal

#endif  // TWOTOWER_SRC_INDEX_SEARCH_INTERNAL_H_
