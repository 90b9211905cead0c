// SampledLoss (mixed, bpr, triplet; softmax with hard negatives or history): each objective
// against a hand computation from its definition in loss.h, gradients against finite
// differences for every objective x sampler x hard negatives, the samplers' draws against their
// distributions, and in-batch softmax against the independent InBatchSoftmaxLoss.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"
#include "twotower/core/rng.h"
#include "twotower/core/threads.h"
#include "twotower/train/loss.h"

namespace twotower::train {
namespace {

using testing::GradientNear;
using testing::NumericalGradient;
using testing::RandomNormal;

struct Result {
  double loss;
  Matrix du, dv;
};

Result Compute(SampledLoss* loss, const Matrix& u, const Matrix& v,
               const std::vector<int32_t>& items, const std::vector<int32_t>& users = {},
               uint64_t seed = 0) {
  LossBatch b;
  b.seed = seed;
  b.u = &u;
  b.v = &v;
  b.item_rows = items.data();
  b.user_rows = users.empty() ? nullptr : users.data();
  LossOutput out;
  loss->Compute(b, &out);
  return {out.loss, out.du, out.dv};
}

std::vector<double> Uniform(int n) { return std::vector<double>(n, 1.0 / n); }

double Softplus(double x) { return std::log1p(std::exp(x)); }

// Two users, their positives 0 and 1, one drawn negative (item 2), temperature 1:
// s = U V^T with u0 = [1, 0], u1 = [0, 1]; v = [[1, 0], [0, 2], [0.5, 0.5]].
struct Tiny {
  Matrix u{2, 2}, v{3, 2};
  std::vector<int32_t> items = {0, 1, 2};
  Tiny() {
    u << 1, 0, 0, 1;
    v << 1, 0, 0, 2, 0.5, 0.5;
  }
};

TEST(SampledLossTest, BprMatchesHandComputation) {
  // Uniform sampler: the negative of both rows is item 2. Row 0: s+ = 1, s- = 0.5;
  // row 1: s+ = 2, s- = 0.5. loss = mean softplus(-(s+ - s-)).
  Tiny t;
  SampledLossOptions o;
  o.objective = Objective::kBpr;
  o.sampler = Sampler::kUniform;
  o.num_sampled = 1;
  o.num_items = 3;
  o.temperature = 1.0;
  SampledLoss loss(o);
  const double expected = (Softplus(-0.5) + Softplus(-1.5)) / 2;
  EXPECT_NEAR(Compute(&loss, t.u, t.v, t.items).loss, expected, 1e-6);
  // In-batch instead: each row's negative is the other row's positive.
  // Row 0: s+ = 1, s(0, v1) = 0; row 1: s+ = 2, s(1, v0) = 0. (v has no drawn row.)
  o.sampler = Sampler::kInBatch;
  o.num_sampled = 0;
  o.item_probability = Uniform(3);
  SampledLoss in_batch(o);
  const Matrix v2 = t.v.topRows(2);
  EXPECT_NEAR(Compute(&in_batch, t.u, v2, {0, 1}).loss, (Softplus(-1) + Softplus(-2)) / 2, 1e-6);
}

TEST(SampledLossTest, TripletMatchesHandComputation) {
  // margin 0.8: row 0 max(0, 0.8 - 1 + 0.5) = 0.3; row 1 max(0, 0.8 - 2 + 0.5) = 0.
  Tiny t;
  SampledLossOptions o;
  o.objective = Objective::kTriplet;
  o.sampler = Sampler::kUniform;
  o.num_sampled = 1;
  o.num_items = 3;
  o.margin = 0.8;
  SampledLoss loss(o);
  const Result r = Compute(&loss, t.u, t.v, t.items);
  EXPECT_NEAR(r.loss, 0.3 / 2, 1e-6);
  // Only row 0's hinge is active: d/du0 = (v2 - v0) / 2, d/du1 = 0.
  EXPECT_NEAR(r.du(0, 0), (0.5 - 1.0) / 2, 1e-6);
  EXPECT_NEAR(r.du(0, 1), (0.5 - 0.0) / 2, 1e-6);
  EXPECT_NEAR(r.du(1, 0), 0.0, 1e-7);
  EXPECT_NEAR(r.du(1, 1), 0.0, 1e-7);
}

TEST(SampledLossTest, MixedSoftmaxCorrectsEachSourceByItsExpectedCount) {
  // Mixed with logQ: in-batch columns by log(n q_j), the drawn column by log(m / N).
  // q = [0.5, 0.25, 0.25], n = 2, m = 1, N = 3, temperature 1.
  Tiny t;
  SampledLossOptions o;
  o.objective = Objective::kSoftmax;
  o.sampler = Sampler::kMixed;
  o.num_sampled = 1;
  o.num_items = 3;
  o.temperature = 1.0;
  o.item_probability = {0.5, 0.25, 0.25};
  SampledLoss loss(o);
  const double lq0 = std::log(2 * 0.5), lq1 = std::log(2 * 0.25), lq2 = std::log(1.0 / 3);
  auto lse = [](std::vector<double> x) {
    double s = 0;
    for (double v : x) s += std::exp(v);
    return std::log(s);
  };
  // Row 0: positive col 0 (s 1), negatives col 1 (s 0) and the drawn item (s 0.5).
  const double row0 = lse({1 - lq0, 0 - lq1, 0.5 - lq2}) - (1 - lq0);
  // Row 1: positive col 1 (s 2), negatives col 0 (s 0) and the drawn item (s 0.5).
  const double row1 = lse({2 - lq1, 0 - lq0, 0.5 - lq2}) - (2 - lq1);
  EXPECT_NEAR(Compute(&loss, t.u, t.v, t.items).loss, (row0 + row1) / 2, 1e-5);
}

TEST(SampledLossTest, InBatchSoftmaxAgreesWithTheInBatchSoftmaxLoss) {
  Rng rng(3);
  const Matrix u = RandomNormal(8, 6, &rng) * 0.4f, v = RandomNormal(8, 6, &rng) * 0.4f;
  const std::vector<int32_t> items = {0, 1, 2, 3, 1, 4, 5, 6};  // an accidental hit
  std::vector<double> q = {0.1, 0.2, 0.1, 0.15, 0.05, 0.2, 0.2};
  std::vector<float> log_q;
  // InBatchSoftmaxLoss subtracts log q; SampledLoss log(n q): a constant per row, same loss.
  for (double p : q) log_q.push_back(static_cast<float>(std::log(p)));
  InBatchSoftmaxLoss reference({0.2, log_q, true});
  SampledLossOptions o;
  o.sampler = Sampler::kInBatch;
  o.temperature = 0.2;
  o.item_probability = q;
  o.num_items = 7;
  SampledLoss loss(o);
  LossBatch b;
  b.u = &u;
  b.v = &v;
  b.item_rows = items.data();
  LossOutput expected;
  reference.Compute(b, &expected);
  const Result r = Compute(&loss, u, v, items);
  EXPECT_NEAR(r.loss, expected.loss, 1e-5);
  EXPECT_TRUE(GradientNear(r.du, expected.du.cast<double>(), 1e-4, 1e-6));
  EXPECT_TRUE(GradientNear(r.dv, expected.dv.cast<double>(), 1e-4, 1e-6));
}

TEST(SampledLossTest, HardNegativesKeepTheHighestScoringOnes) {
  // One row, four drawn negatives with scores 0.1, 0.9, 0.5, -0.3; h = 2 keeps 0.9 and 0.5:
  // BPR over those two equals BPR with only them drawn.
  Matrix u(1, 1), v(5, 1);
  u << 1;
  v << 1.0, 0.1, 0.9, 0.5, -0.3;
  SampledLossOptions o;
  o.objective = Objective::kBpr;
  o.sampler = Sampler::kUniform;
  o.num_sampled = 4;
  o.num_items = 10;
  o.temperature = 1.0;
  o.num_hard_negatives = 2;
  SampledLoss loss(o);
  const double expected = (Softplus(-(1.0 - 0.9)) + Softplus(-(1.0 - 0.5))) / 2;
  const Result r = Compute(&loss, u, v, {0, 1, 2, 3, 4});
  EXPECT_NEAR(r.loss, expected, 1e-6);
  EXPECT_EQ(r.dv(1, 0), 0.0f);  // dropped negatives get no gradient
  EXPECT_EQ(r.dv(4, 0), 0.0f);
  EXPECT_NE(r.dv(2, 0), 0.0f);
}

// Softmax, one row, temperature 1, no correction: positive score 1 and four drawn negatives
// scoring 0.9 (the hard one with h = 1) and 0.1, 0.5, -0.3 (the R = 3 others).
struct EasyCase {
  Matrix u{1, 1}, v{5, 1};
  std::vector<int32_t> items = {0, 1, 2, 3, 4};
  SampledLossOptions o;
  EasyCase() {
    u << 1;
    v << 1.0, 0.9, 0.1, 0.5, -0.3;
    o.objective = Objective::kSoftmax;
    o.sampler = Sampler::kUniform;
    o.num_sampled = 4;
    o.num_items = 10;
    o.temperature = 1.0;
    o.logq_correction = false;
    o.num_hard_negatives = 1;
  }
};

TEST(SampledLossTest, AllEasyNegativesGiveTheFullSoftmax) {
  // e = R: every negative is kept and each easy one stands for R / e = 1: the full softmax.
  EasyCase c;
  c.o.num_easy_negatives = 3;
  SampledLoss loss(c.o);
  const double z = std::exp(1.0) + std::exp(0.9) + std::exp(0.1) + std::exp(0.5) + std::exp(-0.3);
  EXPECT_NEAR(Compute(&loss, c.u, c.v, c.items, {}, 7).loss, std::log(z) - 1.0, 1e-6);
  c.o.num_easy_negatives = 10;  // more than R: all R, still weight 1
  SampledLoss more(c.o);
  EXPECT_NEAR(Compute(&more, c.u, c.v, c.items, {}, 7).loss, std::log(z) - 1.0, 1e-6);
}

TEST(SampledLossTest, OneEasyNegativeIsUniformAndItsNormaliserUnbiased) {
  // e = 1 of R = 3: the kept easy negative x gets weight 3, loss = log(e^1 + e^0.9 + 3 e^s_x) - 1,
  // one of three hand-computed values. Over seeds each x is chosen about a third of the time,
  // and the mean of the estimated normaliser exp(loss + 1) is the full one (its expectation).
  EasyCase c;
  c.o.num_easy_negatives = 1;
  SampledLoss loss(c.o);
  const double base = std::exp(1.0) + std::exp(0.9);
  const double rest[3] = {0.1, 0.5, -0.3};
  const double full = base + std::exp(0.1) + std::exp(0.5) + std::exp(-0.3);
  int chosen[3] = {0, 0, 0};
  double sum = 0.0;
  const int trials = 600;
  for (int seed = 0; seed < trials; ++seed) {
    const Result r = Compute(&loss, c.u, c.v, c.items, {}, static_cast<uint64_t>(seed) * 7919);
    int which = -1;
    for (int x = 0; x < 3; ++x) {
      if (std::abs(r.loss - (std::log(base + 3 * std::exp(rest[x])) - 1.0)) < 1e-5) which = x;
    }
    ASSERT_GE(which, 0) << "seed " << seed << ": loss " << r.loss << " is no hand value";
    ++chosen[which];
    // Only the hard negative (row 1) and the chosen easy one get a gradient.
    for (int x = 0; x < 3; ++x) EXPECT_EQ(r.dv(2 + x, 0) != 0.0f, x == which);
    EXPECT_NE(r.dv(1, 0), 0.0f);
    sum += std::exp(r.loss + 1.0);
  }
  // Binomial(600, 1/3): mean 200, standard deviation 11.5; 5 deviations either way.
  for (int x = 0; x < 3; ++x) EXPECT_NEAR(chosen[x], 200, 58) << "negative " << x;
  // The estimate's spread: values 3 e^s_x, standard deviation below 1.4 per draw.
  EXPECT_NEAR(sum / trials, full, 5 * 1.4 / std::sqrt(trials));
}

TEST(SampledLossTest, HardAndEasyNegativesDoNotDependOnTheThreadCount) {
  // 256 rows run on up to 4 threads: the draws come from (seed, row), the sparse gradients are
  // summed per row and scattered in row order, and the loss is summed per 64-row chunk with the
  // chunks added in order, so du, dv and the loss are bitwise equal for any thread count.
  const int n = 256, m = 32, d = 8, items = 300;
  SampledLossOptions o;
  o.sampler = Sampler::kMixed;
  o.num_sampled = m;
  o.num_items = items;
  o.item_probability = Uniform(items);
  o.temperature = 0.2;
  o.num_hard_negatives = 16;
  o.num_easy_negatives = 8;
  Rng rng(3);
  const Matrix u = RandomNormal(n, d, &rng), v = RandomNormal(n + m, d, &rng);
  std::vector<int32_t> rows(n + m);
  for (int i = 0; i < n + m; ++i) rows[i] = static_cast<int32_t>(rng.Below(items));
  std::vector<Result> results;
  for (int threads : {1, 2, 4}) {
    SetThreads(threads);
    SampledLoss loss(o);
    results.push_back(Compute(&loss, u, v, rows, {}, 42));
  }
  SetThreads(0);
  for (size_t r = 1; r < results.size(); ++r) {
    EXPECT_EQ(results[r].loss, results[0].loss) << (1 << r) << " threads";
    EXPECT_TRUE(results[r].du == results[0].du) << "du differs with " << (1 << r) << " threads";
    EXPECT_TRUE(results[r].dv == results[0].dv) << "dv differs with " << (1 << r) << " threads";
  }
}

TEST(SampledLossTest, EasyNegativesNeedHardOnes) {
  EasyCase c;
  c.o.num_hard_negatives = 0;
  c.o.num_easy_negatives = 2;
  EXPECT_THROW(SampledLoss{c.o}, Error);
}

TEST(SampledLossTest, HistoryAndAccidentalHitsAreNeverNegatives) {
  // Drawn negatives: item 5 (the row's own positive: an accidental hit), item 7 (in the user's
  // history) and item 8. Only item 8 counts, so the loss equals the loss with 8 alone drawn.
  Matrix u(1, 2), v(4, 2), v_alone(2, 2);
  u << 1, 0.5;
  v << 0.2, 0.1, 0.9, 0.3, 0.8, -0.2, -0.4, 0.6;
  v_alone << 0.2, 0.1, -0.4, 0.6;
  SampledLossOptions o;
  o.objective = Objective::kTriplet;
  o.sampler = Sampler::kUniform;
  o.num_sampled = 3;
  o.num_items = 10;
  o.margin = 1.0;
  o.history = {{}, {3, 7}};  // user 1 has seen items 3 and 7
  SampledLoss loss(o);
  const Result r = Compute(&loss, u, v, {5, 5, 7, 8}, {1});
  o.num_sampled = 1;
  o.history.clear();
  SampledLoss alone(o);
  EXPECT_NEAR(r.loss, Compute(&alone, u, v_alone, {5, 8}).loss, 1e-6);
  EXPECT_EQ(r.dv(1, 0), 0.0f);
  EXPECT_EQ(r.dv(2, 0), 0.0f);
  EXPECT_THROW(Compute(&loss, u, v, {5, 5, 7, 8}), Error);  // history needs the user rows
}

TEST(SampledLossTest, PopularityImportanceWeightsAreSelfNormalised) {
  // Triplet, popularity sampler with q = [0.1, 0.6, 0.3] over N = 3 and the drawn negatives
  // items 1 and 2 (both hinges active with margin 2): weights 1/(N q) = [1/1.8, 1/0.9],
  // normalised to mean 1: [2/3, 4/3].
  Matrix u(1, 1), v(3, 1);
  u << 1;
  v << 0.5, 0.2, -0.1;
  SampledLossOptions o;
  o.objective = Objective::kTriplet;
  o.sampler = Sampler::kPopularity;
  o.num_sampled = 2;
  o.num_items = 3;
  o.margin = 2.0;
  o.item_probability = {0.1, 0.6, 0.3};
  SampledLoss loss(o);
  const double h1 = 2.0 - 0.5 + 0.2, h2 = 2.0 - 0.5 - 0.1;
  EXPECT_NEAR(Compute(&loss, u, v, {0, 1, 2}).loss, (2.0 / 3 * h1 + 4.0 / 3 * h2) / 2, 1e-6);
  o.logq_correction = false;  // unweighted
  SampledLoss plain(o);
  EXPECT_NEAR(Compute(&plain, u, v, {0, 1, 2}).loss, (h1 + h2) / 2, 1e-6);
}

// Every objective x sampler, with and without hard negatives and history: d loss / d u and
// d loss / d v against central differences.
TEST(SampledLossTest, GradientsMatchFiniteDifferences) {
  const int n = 5, m = 4, d = 3, items = 12;
  std::vector<double> q(items);
  for (int j = 0; j < items; ++j) q[j] = (j + 1) / 78.0;  // sums to 1
  for (Objective obj : {Objective::kSoftmax, Objective::kBpr, Objective::kTriplet}) {
    for (Sampler s :
         {Sampler::kInBatch, Sampler::kUniform, Sampler::kPopularity, Sampler::kMixed}) {
      for (auto [hard, easy] : {std::pair{0, 0}, std::pair{2, 0}, std::pair{2, 1}}) {
        SCOPED_TRACE("objective " + std::to_string(static_cast<int>(obj)) + " sampler " +
                     std::to_string(static_cast<int>(s)) + " hard " + std::to_string(hard) +
                     " easy " + std::to_string(easy));
        SampledLossOptions o;
        o.objective = obj;
        o.sampler = s;
        o.num_sampled = s == Sampler::kInBatch ? 0 : m;
        o.num_items = items;
        o.item_probability = q;
        o.temperature = 0.5;
        o.margin = 1.5;  // most hinges active, none at the kink
        o.num_hard_negatives = hard;
        o.num_easy_negatives = easy;
        o.history = std::vector<std::vector<int32_t>>(3);
        o.history[2] = {4};
        SampledLoss loss(o);
        std::vector<int32_t> rows = {0, 1, 2, 1, 3};  // rows 1 and 3: an accidental hit
        std::vector<int32_t> drawn;
        loss.DrawNegatives(nullptr, rows.data(), n, 99, &drawn);
        ASSERT_EQ(static_cast<int>(drawn.size()), o.num_sampled);
        drawn.push_back(4);  // (replaced below when nothing is drawn)
        drawn.pop_back();
        rows.insert(rows.end(), drawn.begin(), drawn.end());
        const std::vector<int32_t> users = {0, 1, 2, 0, 2};
        Rng rng(17);
        Matrix u = RandomNormal(n, d, &rng) * 0.6f;
        Matrix v = RandomNormal(n + o.num_sampled, d, &rng) * 0.6f;
        const Result r = Compute(&loss, u, v, rows, users, 5);
        auto f = [&] { return Compute(&loss, u, v, rows, users, 5).loss; };
        EXPECT_TRUE(GradientNear(r.du, NumericalGradient(&u, f, 1e-3), 2e-2, 2e-4));
        EXPECT_TRUE(GradientNear(r.dv, NumericalGradient(&v, f, 1e-3), 2e-2, 2e-4));
      }
    }
  }
}

TEST(SampledLossTest, SamplersDrawFromTheirDistributions) {
  const int items = 4, draws = 200000;
  SampledLossOptions o;
  o.sampler = Sampler::kPopularity;
  o.objective = Objective::kBpr;
  o.num_sampled = draws;
  o.num_items = items;
  o.item_probability = {0.1, 0.2, 0.3, 0.4};
  SampledLoss pop(o);
  std::vector<int32_t> drawn;
  pop.DrawNegatives(nullptr, nullptr, 0, 1, &drawn);
  std::map<int32_t, int> count;
  for (int32_t r : drawn) ++count[r];
  for (int j = 0; j < items; ++j) {
    const double p = o.item_probability[j];
    const double sd = std::sqrt(draws * p * (1 - p));
    EXPECT_NEAR(count[j], draws * p, 5 * sd) << j;  // 5 standard deviations
  }
  o.sampler = Sampler::kUniform;
  SampledLoss uni(o);
  uni.DrawNegatives(nullptr, nullptr, 0, 1, &drawn);
  count.clear();
  for (int32_t r : drawn) ++count[r];
  for (int j = 0; j < items; ++j) {
    EXPECT_NEAR(count[j], draws / 4.0, 5 * std::sqrt(draws * 0.25 * 0.75)) << j;
  }
  // The same seed draws the same negatives; another seed others.
  std::vector<int32_t> again, other;
  uni.DrawNegatives(nullptr, nullptr, 0, 1, &again);
  uni.DrawNegatives(nullptr, nullptr, 0, 2, &other);
  EXPECT_EQ(again, drawn);
  EXPECT_NE(other, drawn);
}

TEST(SampledLossTest, OptionsThatCannotWorkAreRefused) {
  SampledLossOptions o;
  o.sampler = Sampler::kUniform;
  o.num_items = 5;
  o.num_sampled = 0;
  EXPECT_THROW(SampledLoss{o}, Error);  // draws nothing
  o.num_sampled = 2;
  o.temperature = 0;
  EXPECT_THROW(SampledLoss{o}, Error);
  o.temperature = 0.1;
  o.sampler = Sampler::kPopularity;  // no distribution
  EXPECT_THROW(SampledLoss{o}, Error);
  o.objective = Objective::kTriplet;
  o.sampler = Sampler::kUniform;
  o.margin = 0;
  EXPECT_THROW(SampledLoss{o}, Error);
}

}  // namespace
}  // namespace twotower::train
