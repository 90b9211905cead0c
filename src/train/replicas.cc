#include "train/replicas.h"

#include <algorithm>

#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"

namespace twotower::train {

void GatherRows(const Matrix& local, int64_t n, int d, Matrix* global) {
  const int size = dist::Size();
  std::vector<int64_t> counts(size);
  for (int r = 0; r < size; ++r) counts[r] = dist::Share(n, r, size).size() * d;
  if (local.size() != counts[dist::Rank()]) {
    throw Error(ErrorCode::kInternal, "GatherRows: this rank's rows do not match its share");
  }
  global->resize(n, d);
  dist::Allgatherv(local.data(), counts, global->data(), dist::Traffic::kEmbeddings);
}

void GradientExchange::Run(const std::vector<nn::Parameter*>& params) {
  if (!dist::Distributed()) return;
  const int size = dist::Size();
  // Dense: one bucket, one allreduce.
  size_t total = 0;
  for (const nn::Parameter* p : params) {
    if (!p->sparse) total += static_cast<size_t>(p->grad.size());
  }
  if (total > 0) {
    bucket_.resize(total);
    float* at = bucket_.data();
    for (const nn::Parameter* p : params) {
      if (p->sparse) continue;
      at = std::copy(p->grad.data(), p->grad.data() + p->grad.size(), at);
    }
    dist::AllreduceSum(bucket_.data(), static_cast<int64_t>(total), dist::Traffic::kDense);
    const float* from = bucket_.data();
    for (nn::Parameter* p : params) {
      if (p->sparse) continue;
      std::copy(from, from + p->grad.size(), p->grad.data());
      from += p->grad.size();
    }
  }
  // Sparse: each table's touched rows (sorted, unique) as ids and rows.
  std::vector<nn::Parameter*> sparse;
  for (nn::Parameter* p : params) {
    if (p->sparse) sparse.push_back(p);
  }
  if (sparse.empty()) return;
  const size_t s = sparse.size();
  ids_.clear();
  values_.clear();
  std::vector<int32_t> local_counts(s);
  for (size_t j = 0; j < s; ++j) {
    nn::Parameter& p = *sparse[j];
    std::vector<int32_t>& rows = p.touched_rows;
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    local_counts[j] = static_cast<int32_t>(rows.size());
    ids_.insert(ids_.end(), rows.begin(), rows.end());
    const Eigen::Index cols = p.grad.cols();
    for (int32_t r : rows) {
      const float* row = p.grad.data() + static_cast<Eigen::Index>(r) * cols;
      values_.insert(values_.end(), row, row + cols);
    }
  }
  // Every rank's per-table counts, then every rank's ids and rows.
  std::vector<int32_t> counts(s * size);
  dist::Allgatherv(local_counts.data(), std::vector<int64_t>(size, static_cast<int64_t>(s)),
                   counts.data(), dist::Traffic::kSparse);
  std::vector<int64_t> id_totals(size, 0), value_totals(size, 0);
  for (int r = 0; r < size; ++r) {
    for (size_t j = 0; j < s; ++j) {
      id_totals[r] += counts[r * s + j];
      value_totals[r] += static_cast<int64_t>(counts[r * s + j]) * sparse[j]->grad.cols();
    }
  }
  int64_t all_ids = 0, all_values = 0;
  for (int r = 0; r < size; ++r) all_ids += id_totals[r], all_values += value_totals[r];
  all_ids_.resize(all_ids);
  all_values_.resize(all_values);
  dist::Allgatherv(ids_.data(), id_totals, all_ids_.data(), dist::Traffic::kSparse);
  dist::Allgatherv(values_.data(), value_totals, all_values_.data(), dist::Traffic::kSparse);
  // Each table: zero its local rows, then add every rank's rows in rank order (so every rank
  // computes the same sums in the same order), and touch the union.
  for (size_t j = 0; j < s; ++j) {
    nn::Parameter& p = *sparse[j];
    for (int32_t r : p.touched_rows) p.grad.row(r).setZero();
    p.touched_rows.clear();
  }
  const int32_t* id = all_ids_.data();
  const float* value = all_values_.data();
  for (int r = 0; r < size; ++r) {
    for (size_t j = 0; j < s; ++j) {
      nn::Parameter& p = *sparse[j];
      const Eigen::Index cols = p.grad.cols();
      const int32_t n = counts[r * s + j];
      for (int32_t i = 0; i < n; ++i, ++id, value += cols) {
        if (*id < 0 || *id >= p.grad.rows()) {
          throw Error(ErrorCode::kInternal, "GradientExchange: a row id out of range");
        }
        float* row = p.grad.data() + static_cast<Eigen::Index>(*id) * cols;
        for (Eigen::Index c = 0; c < cols; ++c) row[c] += value[c];
        p.touched_rows.push_back(*id);
      }
    }
  }
}

uint64_t ParameterFingerprint(const std::vector<nn::Parameter*>& params) {
  uint32_t crc = 0;
  uint64_t sizes = 0;
  for (const nn::Parameter* p : params) {
    crc = Crc32c(crc, p->value.data(), static_cast<size_t>(p->value.size()) * sizeof(float));
    sizes = sizes * 1000003u + static_cast<uint64_t>(p->value.size());
  }
  return (sizes << 32) ^ crc;
}

}  // namespace twotower::train
