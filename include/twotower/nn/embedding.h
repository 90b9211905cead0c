// EmbeddingBag: a learned table of `rows` x `dim` floats; each example pools (sums or averages)
// the rows named by its bag (torch.nn.EmbeddingBag with mode "sum" / "mean").
//
// Forward writes, for batch row i, the pooled rows of bag rows[i] of a data::Bags (CSR) into an
// n x dim block of the caller's matrix; Backward adds dy's rows back into the table's gradient,
// only into the rows the batch touched, and records those rows in Parameter::touched_rows, so the
// gradient of a step is the touched rows (what a sparse, lazy optimiser needs) and zeroing costs
// what the batch touched, not the table size. An empty bag pools to zeros.
// Thread-safety: Pool is const and safe from many threads; Backward needs exclusive use of the
// gradient.
#ifndef TWOTOWER_NN_EMBEDDING_H_
#define TWOTOWER_NN_EMBEDDING_H_

#include <cstdint>
#include <string>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/data/encoder.h"
#include "twotower/nn/layer.h"

namespace twotower::nn {

class EmbeddingBag {
 public:
  // A rows x dim table; throws Error for rows < 1 or dim < 1.
  EmbeddingBag(int64_t rows, int dim, data::Pooling pooling);
  // Values drawn from N(0, std^2).
  void InitNormal(Rng* rng, float std);

  // out (n x dim, row stride `stride` floats): out[i] = pool of table rows bags.ids[offsets[r] ..
  // offsets[r+1]) with r = rows[i]. Throws Error for a bag row >= bags.rows() or a table row
  // outside [0, rows()).
  void Pool(const data::Bags& bags, const int32_t* rows, int64_t n, float* out,
            int64_t stride) const;
  // dy (n x dim, stride `stride`): the loss gradient w.r.t. Pool's output for the same rows. Adds
  // into weight().grad and appends the touched table rows to weight().touched_rows.
  void Backward(const data::Bags& bags, const int32_t* rows, int64_t n, const float* dy,
                int64_t stride);

  Parameter& weight() { return weight_; }
  const Parameter& weight() const { return weight_; }
  int64_t rows() const { return weight_.value.rows(); }
  int dim() const { return static_cast<int>(weight_.value.cols()); }
  data::Pooling pooling() const { return pooling_; }

 private:
  Parameter weight_;
  data::Pooling pooling_;
};

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_EMBEDDING_H_
