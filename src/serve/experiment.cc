#include "twotower/serve/experiment.h"

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/normal.hpp>
#include <cmath>

#include "twotower/core/hash.h"

namespace twotower::serve {

int Bucket(const std::string& salt, const std::string& user_id) {
  const std::string hex = Sha256Hex(salt + "\n" + user_id);
  const uint64_t top = std::stoull(hex.substr(0, 16), nullptr, 16);
  return static_cast<int>(top % kBuckets);
}

int AssignVariant(int bucket, const std::vector<double>& weights) {
  double total = 0.0;
  for (double w : weights) total += w;
  double before = 0.0;
  for (size_t i = 0; i < weights.size(); ++i) {
    before += weights[i];
    const auto end = static_cast<int>(std::floor(kBuckets * before / total));
    if (weights[i] > 0 && bucket < end) return static_cast<int>(i);
  }
  for (size_t i = weights.size(); i-- > 0;) {
    if (weights[i] > 0) return static_cast<int>(i);
  }
  return 0;
}

nlohmann::json Readout(const std::string& experiment, const std::vector<VariantCounts>& variants) {
  const boost::math::normal normal;
  const double z95 = boost::math::quantile(normal, 0.975);
  nlohmann::json out = {{"experiment", experiment},
                        {"variants", nlohmann::json::array()},
                        {"comparisons", nlohmann::json::array()}};
  for (const VariantCounts& v : variants) {
    nlohmann::json j = {{"name", v.name},     {"weight", v.weight},
                        {"users", v.users},   {"impressions", v.impressions},
                        {"clicks", v.clicks}, {"likes", v.likes},
                        {"ctr", nullptr},     {"ctr_ci95", nullptr}};
    if (v.clicks > v.impressions) {
      // Clicks without their impressions: CTR is not a proportion, and no interval or test on
      // it means anything. Said, not computed.
      j["problem"] = "more clicks (" + std::to_string(v.clicks) + ") than impressions (" +
                     std::to_string(v.impressions) + "): report an impression for every item shown";
    } else if (v.impressions > 0) {
      const double n = static_cast<double>(v.impressions);
      const double p = static_cast<double>(v.clicks) / n;
      const double denom = 1 + z95 * z95 / n;
      const double centre = (p + z95 * z95 / (2 * n)) / denom;
      const double half = z95 * std::sqrt(p * (1 - p) / n + z95 * z95 / (4 * n * n)) / denom;
      j["ctr"] = p;
      j["ctr_ci95"] = {centre - half, centre + half};
    }
    out["variants"].push_back(j);
  }
  if (!variants.empty()) {
    const VariantCounts& c = variants[0];
    for (size_t i = 1; i < variants.size(); ++i) {
      const VariantCounts& t = variants[i];
      nlohmann::json j = {{"variant", t.name},        {"control", c.name}, {"ctr_diff", nullptr},
                          {"ctr_diff_ci95", nullptr}, {"z", nullptr},      {"p_value", nullptr}};
      if (c.impressions > 0 && t.impressions > 0 && c.clicks <= c.impressions &&
          t.clicks <= t.impressions) {
        const double n1 = static_cast<double>(c.impressions),
                     n2 = static_cast<double>(t.impressions);
        const double p1 = static_cast<double>(c.clicks) / n1;
        const double p2 = static_cast<double>(t.clicks) / n2;
        const double diff = p2 - p1;
        const double se = std::sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2);
        j["ctr_diff"] = diff;
        j["ctr_diff_ci95"] = {diff - z95 * se, diff + z95 * se};
        const double pooled = static_cast<double>(c.clicks + t.clicks) / (n1 + n2);
        const double se0 = std::sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
        if (se0 > 0) {
          const double z = diff / se0;
          j["z"] = z;
          j["p_value"] = 2 * boost::math::cdf(boost::math::complement(normal, std::fabs(z)));
        }
      }
      out["comparisons"].push_back(j);
    }
  }
  // Sample-ratio mismatch over the variants with a positive weight.
  double total_weight = 0, total_users = 0;
  int k = 0;
  for (const VariantCounts& v : variants) {
    if (v.weight > 0) {
      total_weight += v.weight;
      total_users += static_cast<double>(v.users);
      ++k;
    }
  }
  nlohmann::json srm = {
      {"chi_square", nullptr}, {"df", k - 1}, {"p_value", nullptr}, {"mismatch", nullptr}};
  if (k >= 2 && total_users > 0) {
    double chi = 0;
    for (const VariantCounts& v : variants) {
      if (v.weight <= 0) continue;
      const double expected = total_users * v.weight / total_weight;
      chi += (static_cast<double>(v.users) - expected) * (static_cast<double>(v.users) - expected) /
             expected;
    }
    const boost::math::chi_squared dist(k - 1);
    const double p = boost::math::cdf(boost::math::complement(dist, chi));
    srm["chi_square"] = chi;
    srm["p_value"] = p;
    srm["mismatch"] = p < 0.001;
  }
  out["sample_ratio"] = srm;
  return out;
}

}  // namespace twotower::serve
