// Compressed item storage for FlatIndex's first pass (flat:storage=bf16 | int8). Not a public
// header.
//
// A compressed search is two passes over the same items:
//  1. the scan reads only the compressed codes (2 bytes a value for bf16, 1 for int8, against 4)
//     and computes an approximate score A for every item;
//  2. a shortlist is re-scored exactly from the fp32 vectors, with the very arithmetic of the fp32
//     index (search_internal.h), so the scores returned are the fp32 inner products.
//
// The shortlist is not a fixed k' but every item whose A is within a margin of the k-th best A.
// For each query a bound eps >= |A - S| holds for every item (S: the fp32 score the fp32 index
// computes), derived below from the quantisation errors, which are measured while encoding. Then
// the k items with the best A all have S >= theta - eps (theta: the k-th best A), so the k-th best
// S is >= theta - eps, and any item of the exact top-k has A >= S - eps >= theta - 2 eps: keeping
// every item with A >= theta - 2 eps and re-scoring it gives exactly the fp32 index's results,
// ties included, on every query. The re-scoring goes best A first and stops at the first
// candidate with A + eps below the k-th best S found so far (every later one has S <= A + eps).
// How many items it re-scores depends on the data (measured in BENCHMARKS.md); never fewer
// than k.
//
// Codes:
//  - int8: per-dimension symmetric scales s_p = max_i |x_ip| / 127 and c_ip = round(x_ip / s_p).
//    Per dimension rather than per vector because the towers' outputs are L2-normalised (every
//    vector has norm 1, so per-vector scales would all be alike) while dimensions differ in range.
//    The query is folded with the scales (w_p = q_p s_p) and quantised per query to
//    g_p = round(w_p / t), t = max_p |w_p| / 127, so A = t * sum_p g_p c_ip is an integer dot
//    product: AVX-512 VNNI (vpdpbusd, unsigned x signed bytes) on the items' c_ip + 128 and the
//    query's g_p, the excess 128 * sum_p g_p subtracted per query (the query is the signed
//    operand, the one vpdpbusd can broadcast from memory). Integer sums are exact, so every code
//    path gives the same A.
//  - bf16: each value rounded to nearest-even bf16 (8 significant bits); the query too, A by
//    vdpbf16ps (pairs of dimensions, fp32 accumulation) where the CPU has AVX512_BF16.
//
// The bound. S - A = sum_p q_p (x_ip - x^_ip) + sum_p delta_p y_ip, with x^ the decoded item,
// delta_p = q_p s_p - t g_p and y = c (int8) or delta_p = q_p - bf16(q_p) and y = x^ (bf16).
// Each sum is bounded the tightest of these ways, from statistics measured while encoding:
//    per dimension   sum_p |q_p| e_p               and  sum_p |delta_p| Y_p
//    Cauchy-Schwarz  ||q||_2 R                     and  ||delta||_2 N
//    (int8 only)                                        max_p |delta_p| L1
// e_p is the largest |x_ip - x^_ip|, R the largest ||x_i - x^_i||_2, Y_p the largest |y_ip|, N
// the largest ||y_i||_2, L1 the largest sum_p |c_ip|. Cauchy-Schwarz is the one that usually
// wins: rounding errors of random sign grow like sqrt(d), not d. To both sums, rounding adds
// (2d + 8) 2^-23 sum_p |q_p| (M_p + e_p) (M_p the largest |x_ip|), which covers the fp32
// rounding of the exact chain and of A's accumulation with room to spare; every measured
// statistic is rounded up.
//
// Layout: panels of 16 items like the fp32 panels; within a panel, one 64-byte group per 4
// dimensions (int8: 16 items x 4 bytes) or 2 dimensions (bf16: 16 items x 2 halves), so one vector
// instruction scores a group for the 16 items. Dimensions are padded with zero codes.
#ifndef TWOTOWER_SRC_INDEX_COMPRESSED_INTERNAL_H_
#define TWOTOWER_SRC_INDEX_COMPRESSED_INTERNAL_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "index/search_internal.h"
#include "twotower/index/flat_index.h"

namespace twotower::index::internal {

// Sixteen int32 lanes (one per item of a panel).
typedef int32_t I16 __attribute__((vector_size(64)));

// One tile of up to 8 prepared queries (kTileQueries).
struct PackedQueries {
  int groups = 0;               // 64-byte groups per panel
  std::vector<uint32_t> codes;  // tile t, group g, query i at (t * groups + g) * 8 + i
  std::vector<float> scale;     // per slot: A = scale * integer sum (int8); 1 for bf16
  std::vector<int32_t> bias;    // per slot (int8): -128 * sum_p g_p, cancels the items' +128
  std::vector<float> margin;    // per slot: 2 eps (see above); +inf for padding slots
};

class CompressedItems {
 public:
  // Throws Error for dimensions past the int8 path's exact integer range (16384).
  CompressedItems(FlatStorage storage, int dim);

  FlatStorage storage() const { return storage_; }
  int groups() const { return groups_; }

  // Re-encodes every item from the fp32 vectors (count x d, row-major).
  void Rebuild(const float* rows, int64_t count);
  // Encodes the items `labels` (their vectors are already in `rows`; count is the new item
  // count). Re-encodes everything instead when a value exceeds the current scales.
  void Update(const float* rows, int64_t count, const std::vector<int64_t>& labels);

  // Prepares queries rows[0 .. n) of `queries` (n x d) in tiles of 8.
  void Pack(const float* queries, const int64_t* rows, int64_t n, PackedQueries* out) const;

  // The codes: panel p, group g at (p * groups() + g) * 64 (scan_kernels.h scores them).
  const uint8_t* codes() const { return codes_.data(); }

  int64_t MemoryBytes() const;

 private:
  void EncodeItem(const float* rows, int64_t label);
  bool InRange(const float* rows, int64_t label) const;

  FlatStorage storage_;
  int dim_;
  int groups_;                     // int8: ceil(d / 4); bf16: ceil(d / 2)
  std::vector<uint8_t> codes_;     // panel p, group g at (p * groups_ + g) * 64
  std::vector<float> scale_;       // int8: s_p (0 when the dimension is all zero)
  std::vector<float> max_abs_;     // M_p: the largest |x_ip| encoded with these scales
  std::vector<float> max_err_;     // e_p: the largest |x_ip - decoded|, rounded up
  std::vector<int32_t> max_code_;  // int8: C_p
  int64_t max_l1_ = 0;             // int8: L1
  double max_err_l2_ = 0.0;        // R: the largest ||x_i - decoded_i||_2, rounded up
  double max_norm_l2_ = 0.0;       // int8: the largest ||c_i||_2; bf16: of ||decoded_i||_2
};

// The shortlist of one query (see above): the k best approximate scores, whose worst sets theta,
// and every hit scored at least theta - margin when it was seen.
class Shortlist {
 public:
  void Reset(int64_t k, float margin);
  float threshold() const;  // what a hit must score to be kept
  bool Push(const Hit& hit);
  // Folds another shortlist of the same query in (threads' parts).
  void Merge(const Shortlist& other);
  // The hits (approximate scores) still within the margin, in no particular order.
  std::vector<Hit> CandidateHits() const;

 private:
  void Compact();
  TopK best_;
  float margin_ = 0.0f;
  std::vector<Hit> hits_;
  size_t limit_ = 0;
};

// ---- codes ------------------------------------------------------------------------------------
// The products on them (vpdpbusd, vdpbf16ps, and their portable forms) are in scan_kernels.inc.

typedef uint32_t U16 __attribute__((vector_size(64)));

// Round to nearest even bf16; finite values past the largest bf16 saturate to it, and values
// whose bf16 would be subnormal become +-0: vdpbf16ps reads subnormal inputs as zero, so the
// codes are what the instruction uses and the measured errors cover the flush.
uint16_t ToBf16(float x);

inline float Bf16ToFloat(uint32_t half) {
  const uint32_t bits = half << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace twotower::index::internal

#endif  // TWOTOWER_SRC_INDEX_COMPRESSED_INTERNAL_H_
