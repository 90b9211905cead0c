// EmbeddingBag: pooling by hand, gradients by finite differences, sparse bookkeeping.
#include "twotower/nn/embedding.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"

namespace twotower::nn {
namespace {

using ::testing::UnorderedElementsAre;

data::Bags MakeBags(const std::vector<std::vector<int32_t>>& rows) {
  data::Bags b;
  for (const auto& r : rows) {
    b.ids.insert(b.ids.end(), r.begin(), r.end());
    b.offsets.push_back(static_cast<int64_t>(b.ids.size()));
  }
  return b;
}

TEST(EmbeddingBagTest, MeanAndSumPoolingByHand) {
  const data::Bags bags = MakeBags({{0, 2}, {1}, {}});
  for (const data::Pooling pooling : {data::Pooling::kMean, data::Pooling::kSum}) {
    EmbeddingBag e(3, 2, pooling);
    e.weight().value << 1, 2, 3, 4, 5, 6;
    const std::vector<int32_t> rows = {0, 1, 2, 0};
    Matrix out(4, 2);
    e.Pool(bags, rows.data(), 4, out.data(), 2);
    const float k = pooling == data::Pooling::kMean ? 0.5f : 1.0f;
    EXPECT_FLOAT_EQ(out(0, 0), k * (1 + 5));
    EXPECT_FLOAT_EQ(out(0, 1), k * (2 + 6));
    EXPECT_FLOAT_EQ(out(1, 0), 3);
    EXPECT_FLOAT_EQ(out(2, 0), 0);  // an empty bag pools to zeros
    EXPECT_FLOAT_EQ(out(3, 1), out(0, 1));
  }
}

TEST(EmbeddingBagTest, BackwardMatchesFiniteDifferencesAndTouchesOnlyItsRows) {
  Rng rng(4);
  EmbeddingBag e(6, 3, data::Pooling::kMean);
  e.InitNormal(&rng, 1.0f);
  const data::Bags bags = MakeBags({{0, 2, 2}, {4}, {2, 5}});
  const std::vector<int32_t> rows = {2, 0, 1, 0};
  const Matrix r = testing::RandomNormal(4, 3, &rng);
  auto loss = [&] {
    Matrix out(4, 3);
    e.Pool(bags, rows.data(), 4, out.data(), 3);
    return testing::WeightedSum(out, r);
  };
  e.Backward(bags, rows.data(), 4, r.data(), 3);
  const Matrix grad = e.weight().grad;
  EXPECT_TRUE(testing::GradientNear(grad, testing::NumericalGradient(&e.weight().value, loss, 1e-3),
                                    1e-3, 1e-4));
  EXPECT_EQ(grad.row(1).norm(), 0.0f);  // rows 1 and 3 are in no bag of the batch
  EXPECT_EQ(grad.row(3).norm(), 0.0f);
  std::vector<int32_t> touched = e.weight().touched_rows;
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  EXPECT_THAT(touched, UnorderedElementsAre(0, 2, 4, 5));
  ZeroGrad({&e.weight()});
  EXPECT_EQ(e.weight().grad.norm(), 0.0f);
  EXPECT_TRUE(e.weight().touched_rows.empty());
}

TEST(EmbeddingBagTest, RejectsRowsOutsideTheTable) {
  EmbeddingBag e(2, 2, data::Pooling::kSum);
  const data::Bags bags = MakeBags({{5}});
  const std::vector<int32_t> rows = {0};
  Matrix out(1, 2);
  EXPECT_THROW(e.Pool(bags, rows.data(), 1, out.data(), 2), Error);
  EXPECT_THROW(EmbeddingBag(0, 2, data::Pooling::kSum), Error);
}

}  // namespace
}  // namespace twotower::nn
