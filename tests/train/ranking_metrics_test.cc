// Ranking metrics against hand computations (formulas in metrics.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "testing/gradient_check.h"
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

TEST(RankingMetricsTest, ByScoresOneUserByHandWithTiesToTheLowerRow) {
  // The same user as OneUserByHand, scored by a function; items 0 and 5 tie at 0.6, so 0 comes
  // first: list 1, 3, 0, 5, 2. Positives {3, 2}: 3 at rank 2, 2 at rank 5.
  const std::vector<float> scores = {0.6f, 0.8f, 0.5f, 0.7f, 0.9f, 0.6f};
  int calls = 0;
  const RankingMetrics m =
      EvaluateRankingByScores(2, 6,
                              [&](int32_t u, float* out) {
                                EXPECT_EQ(u, 1);  // user 0 has no positives and is not scored
                                ++calls;
                                std::copy(scores.begin(), scores.end(), out);
                              },
                              {{}, {3, 2}}, {{}, {4}}, {2, 4, 5});
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(m.users, 1);
  EXPECT_DOUBLE_EQ(m.recall[0], 0.5);
  EXPECT_DOUBLE_EQ(m.recall[1], 0.5);
  EXPECT_DOUBLE_EQ(m.recall[2], 1.0);
  const double idcg2 = 1.0 + 1.0 / std::log2(3.0);
  EXPECT_NEAR(m.ndcg[2], (1.0 / std::log2(3.0) + 1.0 / std::log2(6.0)) / idcg2, 1e-12);
  EXPECT_DOUBLE_EQ(m.mrr[0], 0.5);
  // Coverage@4: 1, 3, 0, 5 of 6 items.
  EXPECT_DOUBLE_EQ(m.coverage[1], 4.0 / 6.0);
}

TEST(RankingMetricsTest, ByScoresAgreesWithTheInnerProductProtocol) {
  Rng rng(11);
  // Small integers: every inner product is exact in float32, so both paths see the same ties.
  const Matrix u = testing::RandomNormal(30, 4, &rng).array().round().matrix();
  const Matrix v = testing::RandomNormal(50, 4, &rng).array().round().matrix();
  std::vector<std::vector<int32_t>> positives(30), exclude(30);
  for (int q = 0; q < 30; ++q) {
    for (int j = 0; j < 3; ++j) positives[q].push_back(static_cast<int32_t>(rng.Below(50)));
    if (q % 3 == 0) positives[q].clear();
    for (int j = 0; j < 5; ++j) exclude[q].push_back(static_cast<int32_t>(rng.Below(50)));
  }
  const RankingMetrics a = EvaluateRanking(u, v, positives, exclude, {5, 10});
  const RankingMetrics b = EvaluateRankingByScores(30, 50,
                                                   [&](int32_t q, float* out) {
                                                     for (int i = 0; i < 50; ++i)
                                                       out[i] = u.row(q).dot(v.row(i));
                                                   },
                                                   positives, exclude, {5, 10});
  EXPECT_EQ(a.users, b.users);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_NEAR(a.recall[k], b.recall[k], 1e-12);
    EXPECT_NEAR(a.ndcg[k], b.ndcg[k], 1e-12);
    EXPECT_NEAR(a.coverage[k], b.coverage[k], 1e-12);
  }
}

TEST(RankingMetricsTest, ByScoresRefusesNaN) {
  EXPECT_THROW(
      EvaluateRankingByScores(1, 2, [](int32_t, float* out) { out[0] = out[1] = std::nanf(""); },
                              {{0}}, {{}}, {1}),
      Error);
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
