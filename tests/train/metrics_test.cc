#include "twotower/train/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "testing/reference_metrics.h"
#include "twotower/core/rng.h"

namespace twotower::train {
namespace {

using twotower::testing::PairwiseAuc;

TEST(AucTest, PerfectRankingIsOne) {
  EXPECT_DOUBLE_EQ(Auc({0.1f, 0.2f, 0.7f, 0.9f, 0.3f}, {0, 0, 1, 1, 0}), 1.0);
}

TEST(AucTest, ReversedRankingIsZero) {
  EXPECT_DOUBLE_EQ(Auc({0.9f, 0.8f, 0.2f, 0.1f, 0.7f}, {0, 0, 1, 1, 0}), 0.0);
}

TEST(AucTest, AllTiesIsOneHalf) {
  EXPECT_DOUBLE_EQ(Auc({0.4f, 0.4f, 0.4f, 0.4f, 0.4f}, {1, 0, 0, 1, 0}), 0.5);
}

TEST(AucTest, TiesCountOneHalf) {
  // Positives score 0.4, 0.8, 0.4; negatives 0.1, 0.4, 0.2. The 9 pairs:
  //   pos 0.4: beats 0.1 (1), ties 0.4 (1/2), beats 0.2 (1)  -> 2.5
  //   pos 0.8: beats all three                                -> 3
  //   pos 0.4: as the first                                   -> 2.5
  // AUC = 8 / 9.
  EXPECT_NEAR(Auc({0.1f, 0.4f, 0.4f, 0.8f, 0.4f, 0.2f}, {0, 1, 0, 1, 1, 0}), 8.0 / 9.0, 1e-12);
}

TEST(AucTest, MixedOrderWithTies) {
  // Positives 0.3, 0.1, 0.5; negatives 0.3, 0.9. The 6 pairs:
  //   pos 0.3: ties 0.3 (1/2), loses to 0.9 (0) -> 0.5
  //   pos 0.1: loses to both                    -> 0
  //   pos 0.5: beats 0.3 (1), loses to 0.9 (0)  -> 1
  // AUC = 1.5 / 6 = 0.25.
  EXPECT_NEAR(Auc({0.3f, 0.3f, 0.9f, 0.1f, 0.5f}, {1, 0, 0, 1, 1}), 0.25, 1e-12);
}

TEST(AucTest, MatchesPairCountingOnRandomScoresWithManyTies) {
  Rng rng(21);
  std::vector<float> scores, labels;
  for (int i = 0; i < 300; ++i) {
    scores.push_back(static_cast<float>(rng.Below(12)) / 4.0f);  // 12 distinct values
    labels.push_back(rng.Uniform() < 0.2 + 0.2 * scores.back() ? 1.0f : 0.0f);
  }
  const double expected = PairwiseAuc(scores, labels);
  EXPECT_GT(expected, 0.5);  // the labels do depend on the scores
  EXPECT_NEAR(Auc(scores, labels), expected, 1e-12);
}

TEST(AucTest, SingleClassIsNaN) {
  EXPECT_TRUE(std::isnan(Auc({0.1f, 0.5f, 0.9f}, {1, 1, 1})));
  EXPECT_TRUE(std::isnan(Auc({0.1f, 0.5f, 0.9f}, {0, 0, 0})));
}

TEST(AccuracyTest, CountsLogitsWithTheLabelsSign) {
  // 2 -> 1 right; -1 -> 0 right; 0 -> 1 (>= 0 predicts 1) right; -0.5 -> 0 wrong; 3 -> 1 wrong.
  EXPECT_DOUBLE_EQ(Accuracy({2.0f, -1.0f, 0.0f, -0.5f, 3.0f}, {1, 0, 1, 1, 0}), 3.0 / 5.0);
}

TEST(AccuracyTest, ZeroLogitPredictsPositive) {
  EXPECT_DOUBLE_EQ(Accuracy({0.0f}, {1}), 1.0);
  EXPECT_DOUBLE_EQ(Accuracy({0.0f}, {0}), 0.0);
}

TEST(AccuracyTest, AllRightAndAllWrong) {
  EXPECT_DOUBLE_EQ(Accuracy({5.0f, -5.0f, 0.1f}, {1, 0, 1}), 1.0);
  EXPECT_DOUBLE_EQ(Accuracy({5.0f, -5.0f, 0.1f}, {0, 1, 0}), 0.0);
}

}  // namespace
}  // namespace twotower::train

namespace twotower::train {
namespace {

TEST(AucReviewTest, NaNScoreGivesNaN) {
  EXPECT_TRUE(std::isnan(Auc({0.1f, std::nanf(""), 0.3f}, {0.0f, 1.0f, 1.0f})));
}

}  // namespace
}  // namespace twotower::train
