// app::Experiment: A/B testing, once for the server and for `twotower experiment report`:
// assigning users to arms (variants) and reading out what was logged.
//
// Assignment: a user's bucket is the first 8 bytes of SHA-256(salt "\n" key), read as a
// big-endian integer, modulo 10,000, where the key is app::AssignmentKey of the user
// (recommender.h: its id, however a request names it); arms own contiguous ranges of buckets in
// their order, in proportion to their weights. The same user always lands in the same arm, and
// changing only the weights moves the fewest users possible (only the buckets at the moved
// boundaries). Feedback is credited by the same function of the same key.
//
// Readout, per arm: users (distinct users with an event), impressions, clicks, likes, CTR =
// clicks / impressions with a Wilson score 95% interval (Wilson 1927); for each arm after the
// first (the control): the difference in CTR with an unpooled Wald 95% interval, and the
// two-sided two-proportion z-test p-value with the pooled proportion (Newcombe 1998 compares the
// intervals); and a sample-ratio-mismatch check: Pearson's chi-square test of the users per arm
// against the weights (Fabijan et al., "Diagnosing Sample Ratio Mismatch", KDD 2019), with the
// distributions from Boost.Math.
//
// Thread-safety: the free functions are pure; an Experiment may be counted into and read from
// many threads at once (an internal mutex).
#ifndef TWOTOWER_APP_EXPERIMENT_H_
#define TWOTOWER_APP_EXPERIMENT_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace twotower::app {

constexpr int kBuckets = 10000;

// The key's bucket in [0, kBuckets).
int Bucket(const std::string& salt, const std::string& key);

// The index of the arm owning `bucket`: arm i owns [floor(B * W_i / W), floor(B * W_{i+1} / W))
// with W_i the sum of the weights before i. Weights are >= 0 with a positive sum (checked by the
// config). An arm of weight 0 gets no user.
int AssignVariant(int bucket, const std::vector<double>& weights);

struct Arm {
  std::string name;
  double weight = 1.0;
};

struct ArmCounts {
  std::string name;
  double weight = 1.0;
  int64_t users = 0, impressions = 0, clicks = 0, likes = 0;
};

struct ArmReadout {
  ArmCounts counts;
  // No rate without impressions; none either (and `problem` says why) with more clicks than
  // impressions.
  std::optional<double> ctr, ctr_lo, ctr_hi;
  std::string problem;
};
struct ArmComparison {
  std::string arm, control;
  std::optional<double> ctr_diff, ctr_diff_lo, ctr_diff_hi, z, p_value;
};
struct SampleRatio {
  std::optional<double> chi_square, p_value;
  int df = 0;
  std::optional<bool> mismatch;  // p < 0.001
};
struct ExperimentReadout {
  std::string experiment;
  std::vector<ArmReadout> arms;  // the control first
  std::vector<ArmComparison> comparisons;
  SampleRatio sample_ratio;  // over `arms`
  // Arms the log names that the config does not list (renamed, or another experiment's log):
  // shown, never dropped, outside the comparisons and the sample-ratio test; `warning` says so.
  std::vector<ArmCounts> unlisted;
  std::string warning;
};

// The readout above of `arms` (the first is the control).
ExperimentReadout ReadOut(const std::string& experiment, const std::vector<ArmCounts>& arms);

class Experiment {
 public:
  // `arms` as configured ("" config_source and no arms: an offline report without a config,
  // whose arms are those the events name, in first-seen order, each of weight 1).
  Experiment(std::string name, std::string salt, std::vector<Arm> arms, std::string config_source);

  const std::string& name() const { return name_; }
  const std::vector<Arm>& arms() const { return arms_; }

  // The arm of the user with this AssignmentKey (requires configured arms).
  int Assign(const std::string& user_key) const;

  // One logged event (impression, click or like) of `user_id` credited to `arm`.
  void Count(const std::string& arm, const std::string& user_id, const std::string& event);
  int64_t events() const;

  // The counts of the arms the events name that the config does not list, in first-seen
  // order (none without a config).
  std::vector<ArmCounts> Unlisted() const;
  // The same as a sentence naming `events_source` and the config, "" when there are none.
  std::string UnlistedMessage(const std::string& events_source) const;

  // The counts of every configured arm, in the config's order (without a config: every arm the
  // events name, in first-seen order, weight 1).
  std::vector<ArmCounts> Counts() const;

  // ReadOut of Counts() with `control` (default: the first arm) moved first, and the unlisted
  // arms with UnlistedMessage(events_source): a readout never hides events. Throws
  // Error(kInvalidArgument, field "control") for a control that is not an arm.
  ExperimentReadout Readout(const std::string& events_source,
                            const std::string& control = "") const;

 private:
  std::string name_, salt_, config_source_;
  std::vector<Arm> arms_;
  std::vector<double> weights_;
  mutable std::mutex mutex_;
  struct Tally {
    std::set<std::string> users;
    int64_t impressions = 0, clicks = 0, likes = 0;
  };
  std::map<std::string, Tally> tallies_;
  std::vector<std::string> seen_order_;  // arms in the order events first named them
  int64_t events_ = 0;
};

}  // namespace twotower::app

#endif  // TWOTOWER_APP_EXPERIMENT_H_
