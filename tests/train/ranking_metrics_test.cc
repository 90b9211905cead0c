// Ranking metrics against hand computations (formulas in metrics.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "twotower/core/error.h"
#include "twotower/train/metrics.h"

namespace twotower::train {
namespace {

// One-dimensional embeddings: user [1], item i [score_i], so the ranking is by score.
Matrix Column(const std::vector<float>& v) {
  Matrix m(static_cast<Eigen::Index>(v.size()), 1);
  for (size_t i = 0; i < v.size(); ++i) m(static_cast<Eigen::Index>(i), 0) = v[i];
  return m;
}

TEST(RankingMetricsTest, OneUserByHand) {
  // Items by score: 4 (0.9), 1 (0.8), 3 (0.7), 0 (0.6), 2 (0.5), 5 (0.4). Item 4 is excluded
  // (seen), so the list is 1, 3, 0, 2, 5. Positives {3, 2, 9?}: 3 at rank 2, 2 at rank 4.
  const Matrix items = Column({0.6f, 0.8f, 0.5f, 0.7f, 0.9f, 0.4f});
  const Matrix users = Column({1.0f});
  const RankingMetrics m = EvaluateRanking(users, items, {{3, 2}}, {{4}}, {1, 2, 4});
  ASSERT_EQ(m.users, 1);
  // K = 1: no hit. K = 2: one hit of min(2, 2) = 2. K = 4: two hits of 2.
  EXPECT_DOUBLE_EQ(m.recall[0], 0.0);
  EXPECT_DOUBLE_EQ(m.recall[1], 0.5);
  EXPECT_DOUBLE_EQ(m.recall[2], 1.0);
  const double idcg2 = 1.0 + 1.0 / std::log2(3.0);
  EXPECT_NEAR(m.ndcg[1], (1.0 / std::log2(3.0)) / idcg2, 1e-12);
  EXPECT_NEAR(m.ndcg[2], (1.0 / std::log2(3.0) + 1.0 / std::log2(5.0)) / idcg2, 1e-12);
  EXPECT_DOUBLE_EQ(m.hit_rate[0], 0.0);
  EXPECT_DOUBLE_EQ(m.hit_rate[1], 1.0);
  EXPECT_DOUBLE_EQ(m.mrr[0], 0.0);
  EXPECT_DOUBLE_EQ(m.mrr[2], 0.5);
  // Coverage@2: items 1 and 3 of 6.
  EXPECT_DOUBLE_EQ(m.coverage[1], 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(m.Get("recall@4"), 1.0);
  EXPECT_TRUE(std::isnan(m.Get("recall@3")));
}

TEST(RankingMetricsTest, RecallDividesByMinOfPositivesAndKAndSkipsUsersWithoutPositives) {
  // Two users ranking the same list 0, 1, 2, 3 (scores 4, 3, 2, 1). User 0: positives
  // {0, 1, 2} at K = 2 -> 2 / min(3, 2) = 1. User 1: positives {3} -> 0. User 2: no positives.
  const Matrix items = Column({4, 3, 2, 1});
  const Matrix users = Column({1, 1, 1});
  const RankingMetrics m = EvaluateRanking(users, items, {{0, 1, 2}, {3}, {}}, {{}, {}, {}}, {2});
  EXPECT_EQ(m.users, 2);
  EXPECT_DOUBLE_EQ(m.recall[0], (1.0 + 0.0) / 2);
  EXPECT_DOUBLE_EQ(m.ndcg[0], (1.0 + 0.0) / 2);
}

TEST(RankingMetricsTest, MostPopularRanksByCountWithTiesToTheLowerRow) {
  // Counts 2, 5, 5, 0: order 1, 2 (tie: lower row first), 0, 3.
  const RankingMetrics m = EvaluateMostPopular({2, 5, 5, 0}, {{2}, {1}}, {{}, {}}, {1});
  // User 0 (positive 2) misses at K = 1; user 1 (positive 1) hits.
  EXPECT_DOUBLE_EQ(m.recall[0], 0.5);
  EXPECT_DOUBLE_EQ(m.coverage[0], 0.25);
}

TEST(RankingMetricsTest, RejectsBadArguments) {
  const Matrix items = Column({1, 2});
  const Matrix users = Column({1});
  EXPECT_THROW(EvaluateRanking(users, items, {{0}}, {{}}, {}), Error);
  EXPECT_THROW(EvaluateRanking(users, items, {{0}}, {{}}, {0}), Error);
  EXPECT_THROW(EvaluateRanking(users, items, {{7}}, {{}}, {1}), Error);
  EXPECT_THROW(EvaluateRanking(users, items, {{0}, {1}}, {{}}, {1}), Error);
}

}  // namespace
}  // namespace twotower::train
