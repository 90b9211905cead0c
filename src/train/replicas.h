// Data-parallel training over MPI (core/dist.h): what the ranks exchange in a step.
//
// Every rank holds the whole model (replicated parameters, as Horovod and PyTorch DDP do) and
// the same global batch of B examples (the same shuffle from the same seed); rank r runs the
// towers on its share of the batch (dist::Share), the tower outputs are allgathered so that the
// loss runs over the global batch (global in-batch negatives, as TFRS's cross-replica concat),
// and the parameters' gradients are summed across ranks: dense ones in one allreduce bucket,
// embedding tables as their touched rows only (ids and rows allgathered). N ranks with batch
// B / N then train the objective of one process with batch B.
#ifndef TWOTOWER_TRAIN_REPLICAS_H_
#define TWOTOWER_TRAIN_REPLICAS_H_

#include <cstdint>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/nn/layer.h"

namespace twotower::train {

// global (n x d) = the ranks' `local` rows (dist::Share(n, rank, size).size() x d) in rank order.
// Traffic: kEmbeddings.
void GatherRows(const Matrix& local, int64_t n, int d, Matrix* global);

// Sums every parameter's gradient over the ranks, identically on every rank. Dense parameters
// travel in one MPI_Allreduce bucket (Traffic kDense); a sparse parameter (an embedding table)
// sends only its touched rows, as ids and rows (kSparse), and afterwards holds the sum on the
// union of every rank's touched rows, added in rank order, with touched_rows that union (lazy
// Adam then updates exactly the rows the global batch touched). Buffers are reused across steps.
class GradientExchange {
 public:
  void Run(const std::vector<nn::Parameter*>& params);

 private:
  std::vector<float> bucket_, values_, all_values_;
  std::vector<int32_t> ids_, all_ids_;
  std::vector<int64_t> row_counts_;
};

// A 64-bit fingerprint of every parameter's values (CRC-32C of the bytes, and the sizes), to
// check that the replicas are bit-identical (dist::CheckSame).
uint64_t ParameterFingerprint(const std::vector<nn::Parameter*>& params);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_REPLICAS_H_
