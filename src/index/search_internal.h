// Internals shared by the index implementations: prepared filters, the top-k heap and the scoring
// kernels. Not a public header.
//
// Every score is the chain s = MulAdd(q[p], v[p], s), p = 0 .. d-1, from s = 0, where MulAdd is
// a fused multiply-add when the CPU has one and an unfused one otherwise, in the vector kernels
// and in the scalar Dot alike. The index sources are compiled with -ffp-contract=off so that the
// compiler never fuses (or not) on its own: the same item gets the same bits on every path.
#ifndef TWOTOWER_SRC_INDEX_SEARCH_INTERNAL_H_
#define TWOTOWER_SRC_INDEX_SEARCH_INTERNAL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

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

// Sixteen floats: one lane per item of a panel. GCC lowers it to one AVX-512 register, two AVX
// or four SSE registers, with the same per-lane results.
typedef float V16 __attribute__((vector_size(64)));
constexpr int kLanes = 16;
constexpr int kTileQueries = 8;  // queries per kernel call, packed d x 8

inline V16 Load16(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Not `V16{} + x`: that is an addition (0 + -0 is +0), which the compiler must keep.
inline V16 Broadcast16(float x) { return V16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }

inline V16 MulAdd(V16 a, V16 b, V16 c) {
#if defined(__AVX512F__)
  return reinterpret_cast<V16>(_mm512_fmadd_ps(
      reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b), reinterpret_cast<__m512>(c)));
#elif defined(__FMA__)
  __m256 a2[2], b2[2], c2[2];
  std::memcpy(a2, &a, sizeof(a));
  std::memcpy(b2, &b, sizeof(b));
  std::memcpy(c2, &c, sizeof(c));
  c2[0] = _mm256_fmadd_ps(a2[0], b2[0], c2[0]);
  c2[1] = _mm256_fmadd_ps(a2[1], b2[1], c2[1]);
  V16 r;
  std::memcpy(&r, c2, sizeof(r));
  return r;
#else
  return a * b + c;
#endif
}

// Bit l set when lane l of v is >= t (NaN never is).
inline uint32_t MaskAtLeast(V16 v, float t) {
#if defined(__AVX512F__)
  return _mm512_cmp_ps_mask(reinterpret_cast<__m512>(v), _mm512_set1_ps(t), _CMP_GE_OQ);
#else
  uint32_t m = 0;
  for (int l = 0; l < kLanes; ++l) m |= static_cast<uint32_t>(v[l] >= t) << l;
  return m;
#endif
}

// Scores of Q packed queries (qt[p * 8 + i], i < Q) against J consecutive panels starting at
// `panels` (each d x 16, `panel_floats` = d * 16 apart): acc[i][j] lane l = score of query i and
// item l of panel j.
template <int Q, int J>
inline __attribute__((always_inline)) void ScoreTile(const float* qt, const float* panels,
                                                     size_t panel_floats, int d, V16 (&acc)[Q][J]) {
#pragma GCC unroll 8
  for (int i = 0; i < Q; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) acc[i][j] = V16{};
  }
  for (int p = 0; p < d; ++p) {
    V16 v[J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) v[j] = Load16(panels + j * panel_floats + p * kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < Q; ++i) {
      const V16 b = Broadcast16(qt[p * kTileQueries + i]);
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) acc[i][j] = MulAdd(b, v[j], acc[i][j]);
    }
  }
}

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
