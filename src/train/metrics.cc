#include "twotower/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>

#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/index/item_index.h"

namespace twotower::train {

double Auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  const size_t n = scores.size();
  // NaN has no order; sorting it would be undefined behaviour. A NaN score means no AUC.
  for (float s : scores) {
    if (std::isnan(s)) return std::numeric_limits<double>::quiet_NaN();
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double positives = 0, rank_sum = 0;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j + 1 < n && scores[order[j + 1]] == scores[order[i]]) ++j;
    const double mid_rank = 0.5 * static_cast<double>(i + j) + 1.0;  // 1-based average rank
    for (size_t k = i; k <= j; ++k) {
      if (labels[order[k]] > 0.5f) {
        positives += 1;
        rank_sum += mid_rank;
      }
    }
    i = j + 1;
  }
  const double negatives = static_cast<double>(n) - positives;
  if (positives == 0 || negatives == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

double Accuracy(const std::vector<float>& logits, const std::vector<float>& labels) {
  if (logits.empty()) return std::numeric_limits<double>::quiet_NaN();
  size_t correct = 0;
  for (size_t i = 0; i < logits.size(); ++i) correct += (logits[i] >= 0.0f) == (labels[i] > 0.5f);
  return static_cast<double>(correct) / static_cast<double>(logits.size());
}

}  // namespace twotower::train

namespace twotower::train {

double RankingMetrics::Get(const std::string& name) const {
  const auto at = name.find('@');
  if (at == std::string::npos) return std::numeric_limits<double>::quiet_NaN();
  const std::string metric = name.substr(0, at);
  int k = 0;
  try {
    k = std::stoi(name.substr(at + 1));
  } catch (...) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  for (size_t i = 0; i < ks.size(); ++i) {
    if (ks[i] != k) continue;
    if (metric == "recall") return recall[i];
    if (metric == "ndcg") return ndcg[i];
    if (metric == "hitrate") return hit_rate[i];
    if (metric == "mrr") return mrr[i];
    if (metric == "coverage") return coverage[i];
  }
  return std::numeric_limits<double>::quiet_NaN();
}

namespace {

// The top-`max_k` item rows (best first, -1 padding) of a chunk of evaluated user rows, written
// to labels[q * max_k ...].
using TopK = std::function<void(const int32_t* users, int64_t n, int max_k, int64_t* labels)>;

// The metrics of metrics.h for the users with positives, from their top lists.
RankingMetrics Accumulate(int64_t num_users, int64_t num_items,
                          const std::vector<std::vector<int32_t>>& positives,
                          const std::vector<int>& ks, PerUserRanking* per_user, int64_t chunk,
                          const TopK& top_k, bool across_ranks = false,
                          const std::vector<int32_t>* user_part = nullptr) {
  if (ks.empty()) throw Error("EvaluateRanking: no cut-off K given");
  for (int k : ks) {
    if (k < 1) throw Error("EvaluateRanking: K must be >= 1, got " + std::to_string(k));
  }
  const int max_k = *std::max_element(ks.begin(), ks.end());
  RankingMetrics m;
  m.ks = ks;
  const size_t nk = ks.size();
  m.recall.assign(nk, 0.0);
  m.ndcg.assign(nk, 0.0);
  m.hit_rate.assign(nk, 0.0);
  m.mrr.assign(nk, 0.0);
  m.coverage.assign(nk, 0.0);

  std::vector<int32_t> evaluated;
  for (int64_t u = 0; u < num_users; ++u) {
    for (int32_t p : positives[u]) {
      if (p < 0 || p >= num_items) throw Error("EvaluateRanking: positive item row out of range");
    }
    if (!positives[u].empty()) evaluated.push_back(static_cast<int32_t>(u));
  }
  const int64_t num_evaluated = static_cast<int64_t>(evaluated.size());
  // Across ranks, this rank ranks a contiguous share of the evaluated users, or with user_part
  // the users of its part (listed part by part in `ranked`); the per-user values are then
  // gathered and summed in user order, the order of the one-process sums.
  const bool shared = across_ranks && dist::Distributed();
  std::vector<int32_t> ranked = evaluated;  // the order values are computed and gathered in
  std::vector<int64_t> counts;              // evaluated users per rank
  dist::Range share{0, num_evaluated};
  if (shared) {
    const int size = dist::Size();
    counts.assign(static_cast<size_t>(size), 0);
    if (user_part != nullptr) {
      if (static_cast<int64_t>(user_part->size()) != num_users) {
        throw Error(ErrorCode::kInternal, "EvaluateRanking: user_part has the wrong size");
      }
      std::stable_sort(ranked.begin(), ranked.end(),
                       [&](int32_t a, int32_t b) { return (*user_part)[a] < (*user_part)[b]; });
      for (int32_t u : ranked) {
        const int32_t part = (*user_part)[u];
        if (part < 0 || part >= size) {
          throw Error(ErrorCode::kInternal, "EvaluateRanking: a user's part is not a rank");
        }
        ++counts[part];
      }
    } else {
      for (int r = 0; r < size; ++r) counts[r] = dist::Share(num_evaluated, r, size).size();
    }
    for (int r = 0; r < dist::Rank(); ++r) share.begin += counts[r];
    share.end = share.begin + counts[dist::Rank()];
  }
  // Per-user values [K index][evaluated user], kept when asked for or to be gathered.
  PerUserRanking values;
  const bool keep = per_user != nullptr || shared;
  if (keep) {
    values.users = evaluated;
    for (auto* v : {&values.recall, &values.ndcg, &values.hit_rate, &values.mrr}) {
      v->assign(nk, std::vector<double>(evaluated.size(), 0.0));
    }
  }
  std::vector<std::vector<char>> seen(nk, std::vector<char>(num_items, 0));
  std::vector<int64_t> labels;
  std::vector<double> discount(max_k + 1);
  for (int r = 1; r <= max_k; ++r) discount[r] = 1.0 / std::log2(r + 1.0);
  for (int64_t c = share.begin; c < share.end; c += chunk) {
    const int64_t n = std::min<int64_t>(chunk, share.end - c);
    labels.assign(n * max_k, -1);
    top_k(ranked.data() + c, n, max_k, labels.data());
    for (int64_t q = 0; q < n; ++q) {
      const int32_t u = ranked[c + q];
      std::vector<int32_t> pos = positives[u];
      std::sort(pos.begin(), pos.end());
      pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
      for (size_t ki = 0; ki < nk; ++ki) {
        const int k = ks[ki];
        int hits = 0;
        double dcg = 0.0, rr = 0.0;
        for (int r = 0; r < k; ++r) {
          const int64_t label = labels[q * max_k + r];
          if (label < 0) break;
          seen[ki][label] = 1;
          if (std::binary_search(pos.begin(), pos.end(), static_cast<int32_t>(label))) {
            ++hits;
            dcg += discount[r + 1];
            if (rr == 0.0) rr = 1.0 / (r + 1);
          }
        }
        const int ideal = std::min<int>(k, static_cast<int>(pos.size()));
        double idcg = 0.0;
        for (int r = 1; r <= ideal; ++r) idcg += discount[r];
        const double recall = static_cast<double>(hits) / ideal, ndcg = dcg / idcg;
        const double hit = hits > 0 ? 1.0 : 0.0;
        if (keep) {
          const size_t i = static_cast<size_t>(c + q);
          values.recall[ki][i] = recall;
          values.ndcg[ki][i] = ndcg;
          values.hit_rate[ki][i] = hit;
          values.mrr[ki][i] = rr;
        } else {
          m.recall[ki] += recall;
          m.ndcg[ki] += ndcg;
          m.hit_rate[ki] += hit;
          m.mrr[ki] += rr;
        }
      }
    }
  }
  if (shared) {
    // Position i of `ranked` is user ranked[i]: its place among `evaluated` (ascending).
    std::vector<int64_t> place(ranked.size());
    for (size_t i = 0; i < ranked.size(); ++i) {
      place[i] =
          std::lower_bound(evaluated.begin(), evaluated.end(), ranked[i]) - evaluated.begin();
    }
    std::vector<double> all(static_cast<size_t>(num_evaluated));
    for (auto* v : {&values.recall, &values.ndcg, &values.hit_rate, &values.mrr}) {
      for (std::vector<double>& per_k : *v) {
        dist::Allgatherv(per_k.data() + share.begin, counts, all.data(), dist::Traffic::kOther);
        for (size_t i = 0; i < place.size(); ++i) per_k[place[i]] = all[i];
      }
    }
    // Coverage: the union of every rank's top-K items, as counts summed over ranks.
    std::vector<float> union_counts(nk * static_cast<size_t>(num_items));
    for (size_t ki = 0; ki < nk; ++ki) {
      for (int64_t i = 0; i < num_items; ++i) union_counts[ki * num_items + i] = seen[ki][i];
    }
    dist::AllreduceSum(union_counts.data(), static_cast<int64_t>(union_counts.size()),
                       dist::Traffic::kOther);
    for (size_t ki = 0; ki < nk; ++ki) {
      for (int64_t i = 0; i < num_items; ++i) seen[ki][i] = union_counts[ki * num_items + i] > 0;
    }
  }
  if (keep) {
    for (size_t ki = 0; ki < nk; ++ki) {
      for (int64_t i = 0; i < num_evaluated; ++i) {
        m.recall[ki] += values.recall[ki][i];
        m.ndcg[ki] += values.ndcg[ki][i];
        m.hit_rate[ki] += values.hit_rate[ki][i];
        m.mrr[ki] += values.mrr[ki][i];
      }
    }
    if (per_user != nullptr) *per_user = std::move(values);
  }
  m.users = num_evaluated;
  for (size_t ki = 0; ki < nk; ++ki) {
    const double users = std::max<double>(1.0, static_cast<double>(m.users));
    m.recall[ki] /= users;
    m.ndcg[ki] /= users;
    m.hit_rate[ki] /= users;
    m.mrr[ki] /= users;
    int64_t covered = 0;
    for (char s : seen[ki]) covered += s;
    m.coverage[ki] = num_items > 0 ? static_cast<double>(covered) / num_items : 0.0;
  }
  if (m.users == 0) {
    for (auto* v : {&m.recall, &m.ndcg, &m.hit_rate, &m.mrr}) {
      v->assign(nk, std::numeric_limits<double>::quiet_NaN());
    }
  }
  return m;
}

}  // namespace

namespace {
// Ranks by the exact index (EvaluateRanking's protocol), shared across ranks when asked.
RankingMetrics RankByIndex(const Matrix& user_embeddings, const Matrix& item_embeddings,
                           const std::vector<std::vector<int32_t>>& positives,
                           const std::vector<std::vector<int32_t>>& exclude,
                           const std::vector<int>& ks, PerUserRanking* per_user, bool across_ranks,
                           const std::vector<int32_t>* user_part = nullptr);
}  // namespace

RankingMetrics EvaluateRanking(const Matrix& user_embeddings, const Matrix& item_embeddings,
                               const std::vector<std::vector<int32_t>>& positives,
                               const std::vector<std::vector<int32_t>>& exclude,
                               const std::vector<int>& ks, PerUserRanking* per_user) {
  return RankByIndex(user_embeddings, item_embeddings, positives, exclude, ks, per_user, false);
}

RankingMetrics EvaluateRankingAcrossRanks(const Matrix& user_embeddings,
                                          const Matrix& item_embeddings,
                                          const std::vector<std::vector<int32_t>>& positives,
                                          const std::vector<std::vector<int32_t>>& exclude,
                                          const std::vector<int>& ks,
                                          const std::vector<int32_t>* user_part) {
  return RankByIndex(user_embeddings, item_embeddings, positives, exclude, ks, nullptr, true,
                     user_part);
}

namespace {

RankingMetrics RankByIndex(const Matrix& user_embeddings, const Matrix& item_embeddings,
                           const std::vector<std::vector<int32_t>>& positives,
                           const std::vector<std::vector<int32_t>>& exclude,
                           const std::vector<int>& ks, PerUserRanking* per_user, bool across_ranks,
                           const std::vector<int32_t>* user_part) {
  const int64_t num_users = user_embeddings.rows();
  const int64_t num_items = item_embeddings.rows();
  if (static_cast<int64_t>(positives.size()) != num_users ||
      static_cast<int64_t>(exclude.size()) != num_users ||
      user_embeddings.cols() != item_embeddings.cols()) {
    throw Error("EvaluateRanking: sizes do not match");
  }
  if (ks.empty()) throw Error("EvaluateRanking: no cut-off K given");
  auto index = index::MakeIndex("flat", static_cast<int>(item_embeddings.cols()));
  std::vector<std::string> ids(num_items);
  for (int64_t i = 0; i < num_items; ++i) ids[i] = std::to_string(i);
  const Matrix items = item_embeddings;  // contiguous row-major copy
  index->Add(items.data(), num_items, ids);
  // Users in chunks: the index searches a chunk of queries at once on all threads.
  Matrix queries;
  std::vector<index::SearchFilter> filters;
  std::vector<float> scores;
  return Accumulate(
      num_users, num_items, positives, ks, per_user, 1024,
      [&](const int32_t* users, int64_t n, int max_k, int64_t* labels) {
        queries.resize(n, user_embeddings.cols());
        filters.assign(n, {});
        for (int64_t q = 0; q < n; ++q) {
          queries.row(q) = user_embeddings.row(users[q]);
          filters[q].exclude.assign(exclude[users[q]].begin(), exclude[users[q]].end());
        }
        scores.resize(n * max_k);
        index->Search(queries.data(), n, max_k, filters.data(), labels, scores.data());
      },
      across_ranks, user_part);
}

}  // namespace

RankingMetrics EvaluateRankingByScores(
    int64_t num_users, int64_t num_items,
    const std::function<void(int32_t user, float* scores)>& score_items,
    const std::vector<std::vector<int32_t>>& positives,
    const std::vector<std::vector<int32_t>>& exclude, const std::vector<int>& ks,
    PerUserRanking* per_user, bool across_ranks) {
  if (static_cast<int64_t>(positives.size()) != num_users ||
      static_cast<int64_t>(exclude.size()) != num_users) {
    throw Error("EvaluateRankingByScores: sizes do not match");
  }
  std::vector<float> scores(num_items);
  std::vector<int32_t> order(num_items);
  return Accumulate(
      num_users, num_items, positives, ks, per_user, 1,
      [&](const int32_t* users, int64_t /*n*/, int max_k, int64_t* labels) {
        const int32_t u = users[0];
        score_items(u, scores.data());
        int64_t m = 0;
        std::vector<char> excluded(num_items, 0);
        for (int32_t e : exclude[u]) {
          if (e >= 0 && e < num_items) excluded[e] = 1;
        }
        for (int32_t i = 0; i < num_items; ++i) {
          if (excluded[i]) continue;
          if (std::isnan(scores[i])) {
            throw Error("EvaluateRankingByScores: item row " + std::to_string(i) +
                        " scored NaN for user row " + std::to_string(u));
          }
          order[m++] = i;
        }
        const int64_t top = std::min<int64_t>(max_k, m);
        // Higher score first; ties to the lower item row, as the exact index.
        std::partial_sort(order.begin(), order.begin() + top, order.begin() + m,
                          [&](int32_t a, int32_t b) {
                            return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
                          });
        for (int64_t r = 0; r < top; ++r) labels[r] = order[r];
      },
      across_ranks);
}

RankingMetrics EvaluateMostPopular(const std::vector<double>& item_counts,
                                   const std::vector<std::vector<int32_t>>& positives,
                                   const std::vector<std::vector<int32_t>>& exclude,
                                   const std::vector<int>& ks,
                                   const std::vector<int32_t>* user_part) {
  // A one-dimensional inner product: every user's vector is [1], every item's [count], so the
  // exact index ranks by count with the usual tie rule.
  const Matrix users = Matrix::Ones(static_cast<Eigen::Index>(positives.size()), 1);
  Matrix items(static_cast<Eigen::Index>(item_counts.size()), 1);
  for (size_t i = 0; i < item_counts.size(); ++i) items(i, 0) = static_cast<float>(item_counts[i]);
  if (user_part != nullptr) {
    return RankByIndex(users, items, positives, exclude, ks, nullptr, true, user_part);
  }
  return EvaluateRanking(users, items, positives, exclude, ks);
}

}  // namespace twotower::train
