// Metrics: classification metrics for pointwise (user, item, liked) evaluation, and ranking
// metrics over a full ranking of the catalogue.
// Pure functions; thread-safe.
#ifndef TWOTOWER_TRAIN_METRICS_H_
#define TWOTOWER_TRAIN_METRICS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"

namespace twotower::train {

// The pointwise metrics of a split's labelled pairs: count, mean BCE loss, accuracy, AUC.
struct EvalMetrics {
  int64_t count = 0;
  double loss = 0, accuracy = 0, auc = 0;
  double oracle_auc = 0;  // AUC of p_true; NaN when the file has none
};

// One auxiliary task's test metric (tasks.h).
struct TaskMetric {
  std::string name, metric;  // the task, "rmse" or "accuracy"
  double value = 0;
};

// Area under the ROC curve: the probability that a random positive scores above a random
// negative, ties counting one half (Mann-Whitney U with mid-ranks). `labels` are 0/1.
// Returns NaN when all labels are equal (the AUC is undefined) or a score is NaN.
double Auc(const std::vector<float>& scores, const std::vector<float>& labels);

// Fraction of examples whose logit has the label's sign (logit >= 0 predicts 1).
double Accuracy(const std::vector<float>& logits, const std::vector<float>& labels);

// Ranking quality at several cut-offs K, averaged over the evaluated users (those with at least
// one positive). For a user with positives P and the top-K list R (best first, the user's
// excluded items never in it):
//   Recall@K   = |R ∩ P| / min(|P|, K)
//   NDCG@K     = sum_{r <= K, R_r in P} 1 / log2(r + 1)  /  sum_{r <= min(|P|, K)} 1 / log2(r + 1)
//   HitRate@K  = 1 if |R ∩ P| > 0 else 0
//   MRR@K      = 1 / (rank of the first positive in R), 0 if none
//   Coverage@K = |union of every evaluated user's R| / number of items (a catalogue property,
//                not averaged).
struct RankingMetrics {
  std::vector<int> ks;
  std::vector<double> recall, ndcg, hit_rate, mrr, coverage;  // one per K
  int64_t users = 0;                                          // users evaluated

  // The value of "recall@10", "ndcg@20", "hitrate@10", "mrr@10" or "coverage@10"; NaN when the
  // name or K is not there.
  double Get(const std::string& name) const;
};

// Ranks every item for every user with at least one positive by the inner product
// <user_embeddings.row(u), item_embeddings.row(i)>, exactly (index::FlatIndex; ties go to the
// lower item row), skipping exclude[u], and scores the top max(ks) against positives[u].
// user_embeddings: users x d; item_embeddings: items x d; positives and exclude: one list of item
// rows per user row (users entries each). `threads` as index::FlatIndex (0 = all).
// Throws Error for empty ks, K < 1, mismatched sizes or an item row out of range.
// Per evaluated user, the values EvaluateRanking averages (for paired comparisons of models).
struct PerUserRanking {
  std::vector<int32_t> users;                      // evaluated user rows, ascending
  std::vector<std::vector<double>> recall, ndcg;   // [K index][evaluated user]
  std::vector<std::vector<double>> hit_rate, mrr;  // [K index][evaluated user]
};
// per_user, when not null, receives each evaluated user's values.
RankingMetrics EvaluateRanking(const Matrix& user_embeddings, const Matrix& item_embeddings,
                               const std::vector<std::vector<int32_t>>& positives,
                               const std::vector<std::vector<int32_t>>& exclude,
                               const std::vector<int>& ks, PerUserRanking* per_user = nullptr);

// EvaluateRanking with the users shared across the ranks of an mpirun job (core/dist.h): each rank
// ranks a contiguous share of the evaluated users, the per-user values are gathered
// (MPI_Allgatherv) and summed in user order and the covered items summed over ranks, so every
// rank returns the metrics EvaluateRanking returns in one process, bit for bit. A collective:
// every rank calls it with the same arguments. Without mpirun it is EvaluateRanking.
// With user_part (a part number per user row, data::UserParts with as many parts as ranks) rank
// r ranks the evaluated users of part r instead: for training data held by part, a rank has
// the exclusions (the training items) of its own users only; the results are the same.
RankingMetrics EvaluateRankingAcrossRanks(const Matrix& user_embeddings,
                                          const Matrix& item_embeddings,
                                          const std::vector<std::vector<int32_t>>& positives,
                                          const std::vector<std::vector<int32_t>>& exclude,
                                          const std::vector<int>& ks,
                                          const std::vector<int32_t>* user_part = nullptr);

// The same protocol for a model that scores (user, item) pairs rather than embedding them (a
// ranker): score_items(u, scores) writes num_items scores (higher = better) for user row u, and
// the top max(ks) of the items not in exclude[u] are scored against positives[u] (ties to the
// lower item row). One call per evaluated user. Throws Error as EvaluateRanking does, and for a
// NaN score. With across_ranks (a collective under mpirun) each rank scores a contiguous share
// of the evaluated users and the values are gathered, as EvaluateRankingAcrossRanks.
RankingMetrics EvaluateRankingByScores(
    int64_t num_users, int64_t num_items,
    const std::function<void(int32_t user, float* scores)>& score_items,
    const std::vector<std::vector<int32_t>>& positives,
    const std::vector<std::vector<int32_t>>& exclude, const std::vector<int>& ks,
    PerUserRanking* per_user = nullptr, bool across_ranks = false);

// The MostPop baseline under the same protocol: every user gets the items ranked by
// item_counts (how often each item row is a positive in training), ties to the lower row.
// With user_part: shared across ranks by part, as EvaluateRankingAcrossRanks (a collective).
RankingMetrics EvaluateMostPopular(const std::vector<double>& item_counts,
                                   const std::vector<std::vector<int32_t>>& positives,
                                   const std::vector<std::vector<int32_t>>& exclude,
                                   const std::vector<int>& ks,
                                   const std::vector<int32_t>* user_part = nullptr);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_METRICS_H_
