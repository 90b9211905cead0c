#include "twotower/serve/experiment.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace twotower::serve {
namespace {

// Expected buckets from Python's hashlib: int(sha256(b"twotower\n42").hexdigest()[:16], 16) %
// 10000.
TEST(ExperimentTest, BucketsAreTheSaltedSha256OfTheUser) {
  EXPECT_EQ(Bucket("twotower", "42"), 5808);
  EXPECT_EQ(Bucket("salt-a", "user-7"), 7172);
}

TEST(ExperimentTest, AssignmentFollowsTheWeightsAndMovesFewUsersWhenTheyChange) {
  int in_first = 0, moved = 0;
  for (int u = 0; u < 10000; ++u) {
    const int b = Bucket("s", "user" + std::to_string(u));
    const int a = AssignVariant(b, {70, 30});
    in_first += a == 0;
    moved += AssignVariant(b, {60, 40}) != a;
    EXPECT_EQ(AssignVariant(b, {70, 30}), a);  // stable
    EXPECT_EQ(AssignVariant(b, {0, 1}), 1);    // weight 0 gets no user
  }
  // Binomial(10000, 0.7): sd 45.8, so within 4 sd.
  EXPECT_NEAR(in_first, 7000, 183);
  // Only the buckets between 6000 and 7000 move: about 10%.
  EXPECT_NEAR(moved, 1000, 120);
}

// Expected values computed by hand with Python's math module (erfc for the normal tail, and
// exp(-x/2) for the chi-square tail with 2 degrees of freedom), independently of Boost.
TEST(ExperimentTest, ReadoutMatchesTheFormulas) {
  std::vector<VariantCounts> v(2);
  v[0] = {"control", 50, 5100, 1000, 100, 7};
  v[1] = {"treatment", 50, 4900, 1000, 130, 9};
  const nlohmann::json r = Readout("home", v);
  EXPECT_EQ(r["experiment"], "home");
  EXPECT_DOUBLE_EQ(r["variants"][0]["ctr"].get<double>(), 0.1);
  EXPECT_NEAR(r["variants"][0]["ctr_ci95"][0].get<double>(), 0.08290944359309571, 1e-12);
  EXPECT_NEAR(r["variants"][0]["ctr_ci95"][1].get<double>(), 0.1201519631953484, 1e-12);
  EXPECT_NEAR(r["variants"][1]["ctr_ci95"][0].get<double>(), 0.11056377462484193, 1e-12);
  const nlohmann::json& c = r["comparisons"][0];
  EXPECT_EQ(c["variant"], "treatment");
  EXPECT_NEAR(c["ctr_diff"].get<double>(), 0.03, 1e-12);
  EXPECT_NEAR(c["ctr_diff_ci95"][0].get<double>(), 0.0020679344393763656, 1e-12);
  EXPECT_NEAR(c["ctr_diff_ci95"][1].get<double>(), 0.057932065560623636, 1e-12);
  EXPECT_NEAR(c["z"].get<double>(), 2.102740605622114, 1e-9);
  EXPECT_NEAR(c["p_value"].get<double>(), 0.03548845046647473, 1e-9);
  // 5100 / 4900 users against 50 / 50: chi-square 4 on 1 df, p = erfc(sqrt(2)).
  EXPECT_NEAR(r["sample_ratio"]["chi_square"].get<double>(), 4.0, 1e-12);
  EXPECT_NEAR(r["sample_ratio"]["p_value"].get<double>(), 0.045500263896358396, 1e-9);
  EXPECT_EQ(r["sample_ratio"]["mismatch"], false);
  // Three variants, 2 df: p = exp(-chi / 2).
  std::vector<VariantCounts> w = {{"a", 1, 1050}, {"b", 1, 950}, {"c", 1, 1000}};
  const nlohmann::json r3 = Readout("x", w);
  EXPECT_NEAR(r3["sample_ratio"]["chi_square"].get<double>(), 5.0, 1e-12);
  EXPECT_NEAR(r3["sample_ratio"]["p_value"].get<double>(), std::exp(-2.5), 1e-9);
  // More clicks than impressions: no rate and no test, and the readout says why.
  std::vector<VariantCounts> broken = {{"a", 1, 1, 1, 3}, {"b", 1, 1, 2, 1}};
  const nlohmann::json rb = Readout("x", broken);
  EXPECT_TRUE(rb["variants"][0]["ctr"].is_null());
  EXPECT_NE(rb["variants"][0]["problem"].get<std::string>().find("more clicks"), std::string::npos);
  EXPECT_TRUE(rb["comparisons"][0]["p_value"].is_null());
  // No impressions: rates are null, not 0.
  EXPECT_TRUE(r3["variants"][0]["ctr"].is_null());
  EXPECT_TRUE(r3["comparisons"][0]["p_value"].is_null());
}

}  // namespace
}  // namespace twotower::serve
