// A/B testing: assigning users to variants and reading out an experiment.
//
// Assignment: a user's bucket is the first 8 bytes of SHA-256(salt "\n" user_id), read as a
// big-endian integer, modulo 10,000; variants own contiguous ranges of buckets in their order,
// in proportion to their weights. The same user always lands in the same variant, and changing
// only the weights moves the fewest users possible (only the buckets at the moved boundaries).
//
// Readout, per variant: users (distinct users with an event), impressions, clicks, likes, CTR =
// clicks / impressions with a Wilson score 95% interval (Wilson 1927); for each variant after
// the first (the control): the difference in CTR with an unpooled Wald 95% interval, and the
// two-sided two-proportion z-test p-value with the pooled proportion (Newcombe 1998 compares
// the intervals); and a sample-ratio-mismatch check: Pearson's chi-square test of the users per
// variant against the weights (Fabijan et al., "Diagnosing Sample Ratio Mismatch", KDD 2019),
// with the distributions from Boost.Math. Thread-safe: free functions.
#ifndef TWOTOWER_SERVE_EXPERIMENT_H_
#define TWOTOWER_SERVE_EXPERIMENT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace twotower::serve {

constexpr int kBuckets = 10000;

// The user's bucket in [0, kBuckets).
int Bucket(const std::string& salt, const std::string& user_id);

// The index of the variant owning `bucket`: variant i owns [floor(B * W_i / W), floor(B * W_{i+1}
// / W)) with W_i the sum of the weights before i. Weights are >= 0 with a positive sum (checked by
// the config). A variant of weight 0 gets no user.
int AssignVariant(int bucket, const std::vector<double>& weights);

struct VariantCounts {
  std::string name;
  double weight = 1.0;
  int64_t users = 0, impressions = 0, clicks = 0, likes = 0;
};

// The readout above as JSON: {"experiment", "variants": [{name, weight, users, impressions,
// clicks, likes, ctr, ctr_ci95: [lo, hi]} ...], "comparisons": [{variant, control, ctr_diff,
// ctr_diff_ci95, z, p_value}], "sample_ratio": {chi_square, df, p_value, mismatch (p < 0.001)}}.
// A rate with no impressions is null, and so is a test without data; a variant with more clicks
// than impressions gets "problem" instead of a rate, and no test.
nlohmann::json Readout(const std::string& experiment, const std::vector<VariantCounts>& variants);

}  // namespace twotower::serve

#endif  // TWOTOWER_SERVE_EXPERIMENT_H_
