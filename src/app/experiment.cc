#include "twotower/app/experiment.h"

#include <algorithm>
#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/normal.hpp>
#include <cmath>

#include "twotower/core/error.h"
#include "twotower/core/hash.h"

namespace twotower::app {

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

ExperimentReadout ReadOut(const std::string& experiment, const std::vector<ArmCounts>& arms) {
  const boost::math::normal normal;
  const double z95 = boost::math::quantile(normal, 0.975);
  ExperimentReadout out;
  out.experiment = experiment;
  for (const ArmCounts& v : arms) {
    ArmReadout r;
    r.counts = v;
    if (v.clicks > v.impressions) {
      // Clicks without their impressions: CTR is not a proportion, and no interval or test on
      // it means anything. Said, not computed.
      r.problem = "more clicks (" + std::to_string(v.clicks) + ") than impressions (" +
                  std::to_string(v.impressions) + "): report an impression for every item shown";
    } else if (v.impressions > 0) {
      const double n = static_cast<double>(v.impressions);
      const double p = static_cast<double>(v.clicks) / n;
      const double denom = 1 + z95 * z95 / n;
      const double centre = (p + z95 * z95 / (2 * n)) / denom;
      const double half = z95 * std::sqrt(p * (1 - p) / n + z95 * z95 / (4 * n * n)) / denom;
      r.ctr = p;
      r.ctr_lo = centre - half;
      r.ctr_hi = centre + half;
    }
    out.arms.push_back(r);
  }
  if (!arms.empty()) {
    const ArmCounts& c = arms[0];
    for (size_t i = 1; i < arms.size(); ++i) {
      const ArmCounts& t = arms[i];
      ArmComparison j;
      j.arm = t.name;
      j.control = c.name;
      if (c.impressions > 0 && t.impressions > 0 && c.clicks <= c.impressions &&
          t.clicks <= t.impressions) {
        const double n1 = static_cast<double>(c.impressions),
                     n2 = static_cast<double>(t.impressions);
        const double p1 = static_cast<double>(c.clicks) / n1;
        const double p2 = static_cast<double>(t.clicks) / n2;
        const double diff = p2 - p1;
        const double se = std::sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2);
        j.ctr_diff = diff;
        j.ctr_diff_lo = diff - z95 * se;
        j.ctr_diff_hi = diff + z95 * se;
        const double pooled = static_cast<double>(c.clicks + t.clicks) / (n1 + n2);
        const double se0 = std::sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
        if (se0 > 0) {
          const double z = diff / se0;
          j.z = z;
          j.p_value = 2 * boost::math::cdf(boost::math::complement(normal, std::fabs(z)));
        }
      }
      out.comparisons.push_back(j);
    }
  }
  // Sample-ratio mismatch over the arms with a positive weight.
  double total_weight = 0, total_users = 0;
  int k = 0;
  for (const ArmCounts& v : arms) {
    if (v.weight > 0) {
      total_weight += v.weight;
      total_users += static_cast<double>(v.users);
      ++k;
    }
  }
  out.sample_ratio.df = k - 1;
  if (k >= 2 && total_users > 0) {
    double chi = 0;
    for (const ArmCounts& v : arms) {
      if (v.weight <= 0) continue;
      const double expected = total_users * v.weight / total_weight;
      chi += (static_cast<double>(v.users) - expected) * (static_cast<double>(v.users) - expected) /
             expected;
    }
    const boost::math::chi_squared dist(k - 1);
    const double p = boost::math::cdf(boost::math::complement(dist, chi));
    out.sample_ratio.chi_square = chi;
    out.sample_ratio.p_value = p;
    out.sample_ratio.mismatch = p < 0.001;
  }
  return out;
}

Experiment::Experiment(std::string name, std::string salt, std::vector<Arm> arms,
                       std::string config_source)
    : name_(std::move(name)),
      salt_(std::move(salt)),
      config_source_(std::move(config_source)),
      arms_(std::move(arms)) {
  for (const Arm& a : arms_) weights_.push_back(a.weight);
}

int Experiment::Assign(const std::string& user_key) const {
  if (arms_.empty()) throw Error(ErrorCode::kInternal, "Experiment::Assign: no arms configured");
  return AssignVariant(Bucket(salt_, user_key), weights_);
}

void Experiment::Count(const std::string& arm, const std::string& user_id,
                       const std::string& event) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, inserted] = tallies_.try_emplace(arm);
  if (inserted) seen_order_.push_back(arm);
  Tally& t = it->second;
  t.users.insert(user_id);
  if (event == "impression") ++t.impressions;
  if (event == "click") ++t.clicks;
  if (event == "like") ++t.likes;
  ++events_;
}

int64_t Experiment::events() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_;
}

std::vector<ArmCounts> Experiment::Unlisted() const {
  std::vector<ArmCounts> out;
  if (config_source_.empty()) return out;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& name : seen_order_) {
    const bool listed =
        std::any_of(arms_.begin(), arms_.end(), [&](const Arm& a) { return a.name == name; });
    if (listed) continue;
    const Tally& t = tallies_.at(name);
    out.push_back(
        {name, 0.0, static_cast<int64_t>(t.users.size()), t.impressions, t.clicks, t.likes});
  }
  return out;
}

std::string Experiment::UnlistedMessage(const std::string& events_source) const {
  std::string out;
  for (const ArmCounts& c : Unlisted()) {
    out += (out.empty() ? events_source + ": " : "; ") +
           std::to_string(c.impressions + c.clicks + c.likes) + " events name variant " +
           Quote(c.name) + ", which " + config_source_ + " does not list";
  }
  if (!out.empty()) {
    out +=
        " (renamed, or a log of another experiment?); shown apart, outside the comparisons "
        "and the sample-ratio test";
  }
  return out;
}

std::vector<ArmCounts> Experiment::Counts() const {
  std::vector<Arm> arms = arms_;
  std::lock_guard<std::mutex> lock(mutex_);
  if (config_source_.empty() && arms.empty()) {
    for (const std::string& name : seen_order_) arms.push_back({name, 1.0});
  }
  std::vector<ArmCounts> out;
  for (const Arm& a : arms) {
    ArmCounts c;
    c.name = a.name;
    c.weight = a.weight;
    const auto it = tallies_.find(a.name);
    if (it != tallies_.end()) {
      c.users = static_cast<int64_t>(it->second.users.size());
      c.impressions = it->second.impressions;
      c.clicks = it->second.clicks;
      c.likes = it->second.likes;
    }
    out.push_back(c);
  }
  return out;
}

ExperimentReadout Experiment::Readout(const std::string& events_source,
                                      const std::string& control) const {
  std::vector<ArmCounts> counts = Counts();
  if (!control.empty()) {
    const auto it = std::find_if(counts.begin(), counts.end(),
                                 [&](const ArmCounts& c) { return c.name == control; });
    if (it == counts.end()) {
      std::string names;
      for (const auto& v : counts) names += (names.empty() ? "" : ", ") + v.name;
      throw Error(ErrorCode::kInvalidArgument,
                  "control: no variant " + Quote(control) + " (the variants: " + names + ")",
                  "control");
    }
    std::rotate(counts.begin(), it, it + 1);
  }
  ExperimentReadout r = ReadOut(name_, counts);
  r.unlisted = Unlisted();
  r.warning = UnlistedMessage(events_source);
  return r;
}

}  // namespace twotower::app
