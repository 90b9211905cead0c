// Attention pooling of a history: a hand-computed softmax (query and recency bias), mean pooling,
// empty histories, finite-difference gradients of every parameter, of the query input and of the
// table rows (repeats included), Infer == Forward, and input errors.
#include "twotower/nn/attention.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"

namespace twotower::nn {
namespace {

using ::testing::HasSubstr;
using twotower::testing::GradientNear;
using twotower::testing::NumericalGradient;
using twotower::testing::RandomNormal;
using twotower::testing::WeightedSum;

data::Bags MakeBags(const std::vector<std::vector<int32_t>>& lists) {
  data::Bags b;
  for (const auto& l : lists) {
    b.ids.insert(b.ids.end(), l.begin(), l.end());
    b.offsets.push_back(static_cast<int64_t>(b.ids.size()));
  }
  return b;
}

Parameter* Find(AttentionPooling* pool, const std::string& name) {
  for (const NamedParameter& p : pool->NamedParameters("")) {
    if (p.name == name) return p.parameter;
  }
  return nullptr;
}

TEST(AttentionPoolingTest, SoftmaxOfQueryAndRecencyByHand) {
  // dim 2, one head: rows e0 = [1, 0] (older), e1 = [0, 1] (newest). q = [sqrt(2) ln 3, 0]:
  // scores <q, e> / sqrt(2) = [ln 3, 0], weights [3/4, 1/4], out = [0.75, 0.25].
  AttentionPooling pool(AttentionPooling::Mode::kAttention, 2, 1, 3, 0);
  Matrix table(2, 2);
  table << 1, 0, 0, 1;
  Find(&pool, "query")->value << std::sqrt(2.0f) * std::log(3.0f), 0;
  const data::Bags bags = MakeBags({{0, 1}});
  const int32_t row = 0;
  Matrix out(1, 2), none;
  pool.Infer(table, bags, &row, 1, none, out.data(), 2);
  EXPECT_NEAR(out(0, 0), 0.75f, 1e-6f);
  EXPECT_NEAR(out(0, 1), 0.25f, 1e-6f);
  // A recency bias of ln 3 on the most recent entry (index 0 = one step back is the newest)
  // evens the scores: weights [1/2, 1/2].
  Find(&pool, "recency")->value(0, 0) = std::log(3.0f);
  pool.Infer(table, bags, &row, 1, none, out.data(), 2);
  EXPECT_NEAR(out(0, 0), 0.5f, 1e-6f);
  EXPECT_NEAR(out(0, 1), 0.5f, 1e-6f);
}

TEST(AttentionPoolingTest, MeanModeAveragesAndEmptyHistoryIsZero) {
  AttentionPooling pool(AttentionPooling::Mode::kMean, 2, 1, 4, 3);
  EXPECT_TRUE(pool.NamedParameters("").empty());
  Matrix table(3, 2);
  table << 1, 2, 3, 4, 5, 6;
  const data::Bags bags = MakeBags({{0, 2, 2}, {}});
  const std::vector<int32_t> rows = {0, 1};
  Matrix out(2, 2), x = Matrix::Zero(2, 3);
  pool.Infer(table, bags, rows.data(), 2, x, out.data(), 2);
  EXPECT_NEAR(out(0, 0), (1 + 5 + 5) / 3.0f, 1e-6f);
  EXPECT_NEAR(out(0, 1), (2 + 6 + 6) / 3.0f, 1e-6f);
  EXPECT_EQ(out(1, 0), 0.0f);
  EXPECT_EQ(out(1, 1), 0.0f);
}

// loss = sum(out .* r) over a batch with histories of several lengths (0, 1, full, repeats).
void CheckGradients(AttentionPooling::Mode mode, int heads) {
  const int dim = 6, length = 4, query_dim = 3;
  AttentionPooling pool(mode, dim, heads, length, query_dim);
  Rng rng(11 + heads);
  pool.InitPyTorchDefault(&rng);
  for (Parameter* p : pool.Parameters())
    p->value = RandomNormal(p->value.rows(), p->value.cols(), &rng);
  Parameter table{"weight", RandomNormal(7, dim, &rng), Matrix::Zero(7, dim), true, {}};
  const data::Bags bags = MakeBags({{3, 1, 5, 1}, {}, {6}, {0, 2, 4}, {2, 2}});
  const std::vector<int32_t> rows = {0, 3, 1, 2, 4, 0};
  const int64_t n = static_cast<int64_t>(rows.size());
  Matrix x = RandomNormal(n, query_dim, &rng);
  const Matrix r = RandomNormal(n, dim, &rng);
  auto loss = [&] {
    Matrix out(n, dim);
    pool.Infer(table.value, bags, rows.data(), n, x, out.data(), dim);
    return WeightedSum(out, r);
  };
  ZeroGrad(pool.Parameters());
  AttentionContext ctx;
  Matrix out(n, dim);
  pool.Forward(table.value, bags, rows.data(), n, x, out.data(), dim, &ctx);
  Matrix inferred(n, dim);
  pool.Infer(table.value, bags, rows.data(), n, x, inferred.data(), dim);
  EXPECT_TRUE(out.isApprox(inferred, 1e-6f));
  EXPECT_EQ(out.row(2), RowVector::Zero(dim)) << "an empty history pools to zeros";
  Matrix dx = Matrix::Zero(n, query_dim);
  pool.Backward(&ctx, r.data(), dim, &dx);
  AttentionPooling::ScatterTableGradient(ctx, &table);
  EXPECT_TRUE(GradientNear(table.grad, NumericalGradient(&table.value, loss, 1e-2), 1e-2, 1e-3))
      << "table";
  if (mode == AttentionPooling::Mode::kAttention) {
    EXPECT_TRUE(GradientNear(dx, NumericalGradient(&x, loss, 1e-2), 1e-2, 1e-3)) << "query input";
    for (const NamedParameter& p : pool.NamedParameters("")) {
      EXPECT_TRUE(GradientNear(p.parameter->grad,
                               NumericalGradient(&p.parameter->value, loss, 1e-2), 1e-2, 1e-3))
          << p.name << ", " << heads << " heads";
    }
  } else {
    EXPECT_EQ(dx, Matrix::Zero(n, query_dim)) << "mean pooling has no query";
  }
}

TEST(AttentionPoolingTest, GradientsMatchFiniteDifferences) {
  CheckGradients(AttentionPooling::Mode::kAttention, 1);
  CheckGradients(AttentionPooling::Mode::kAttention, 2);
  CheckGradients(AttentionPooling::Mode::kAttention, 3);
}

TEST(AttentionPoolingTest, MeanPoolingTableGradientMatchesFiniteDifferences) {
  CheckGradients(AttentionPooling::Mode::kMean, 1);
}

TEST(AttentionPoolingTest, BackwardAddsIntoGradients) {
  AttentionPooling pool(AttentionPooling::Mode::kAttention, 4, 2, 3, 2);
  Rng rng(5);
  pool.InitPyTorchDefault(&rng);
  const Matrix table = RandomNormal(5, 4, &rng);
  const data::Bags bags = MakeBags({{1, 2, 3}, {4}});
  const std::vector<int32_t> rows = {0, 1};
  const Matrix x = RandomNormal(2, 2, &rng);
  const Matrix r = RandomNormal(2, 4, &rng);
  Matrix out(2, 4);
  ZeroGrad(pool.Parameters());
  AttentionContext ctx;
  pool.Forward(table, bags, rows.data(), 2, x, out.data(), 4, &ctx);
  pool.Backward(&ctx, r.data(), 4, nullptr);
  const Matrix once = Find(&pool, "recency")->grad;
  pool.Backward(&ctx, r.data(), 4, nullptr);
  EXPECT_TRUE(Find(&pool, "recency")->grad.isApprox(2 * once, 1e-6f));
  EXPECT_GT(once.cwiseAbs().maxCoeff(), 0.0f);
}

TEST(AttentionPoolingTest, RefusesBadInputs) {
  AttentionPooling pool(AttentionPooling::Mode::kAttention, 4, 2, 2, 0);
  const Matrix table = Matrix::Zero(3, 4);
  Matrix out(1, 4), none;
  const int32_t row = 0;
  EXPECT_THAT(
      [&] {
        pool.Infer(table, MakeBags({{0, 1, 2}}), &row, 1, none, out.data(), 4);
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("longer than the length 2")));
  EXPECT_THAT([&] { pool.Infer(table, MakeBags({{3}}), &row, 1, none, out.data(), 4); },
              ::testing::ThrowsMessage<Error>(HasSubstr("table row 3 out of range")));
  const int32_t bad = 1;
  EXPECT_THAT([&] { pool.Infer(table, MakeBags({{0}}), &bad, 1, none, out.data(), 4); },
              ::testing::ThrowsMessage<Error>(HasSubstr("history row 1 out of range")));
  EXPECT_THAT(
      [&] { pool.Infer(Matrix::Zero(3, 5), MakeBags({{0}}), &row, 1, none, out.data(), 4); },
      ::testing::ThrowsMessage<Error>(HasSubstr("5 wide, expected 4")));
  EXPECT_THROW(AttentionPooling(AttentionPooling::Mode::kAttention, 6, 4, 2, 0), Error);
  EXPECT_THROW(AttentionPooling(AttentionPooling::Mode::kAttention, 6, 2, 0, 0), Error);
}

}  // namespace
}  // namespace twotower::nn
