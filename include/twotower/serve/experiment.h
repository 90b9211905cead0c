// The A/B readout as the server and `experiment report` write it: app::ExperimentReadout
// (app/experiment.h, which assigns users and computes the statistics) as JSON.
// Thread-safety: free functions.
#ifndef TWOTOWER_SERVE_EXPERIMENT_H_
#define TWOTOWER_SERVE_EXPERIMENT_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "twotower/app/experiment.h"

namespace twotower::serve {

using app::AssignVariant;
using app::Bucket;
using app::kBuckets;
using VariantCounts = app::ArmCounts;

// {"experiment", "variants": [{name, weight, users, impressions, clicks, likes, ctr,
// ctr_ci95: [lo, hi]} ...], "comparisons": [{variant, control, ctr_diff, ctr_diff_ci95, z,
// p_value}], "sample_ratio": {chi_square, df, p_value, mismatch (p < 0.001)}}. A rate with no
// impressions is null, and so is a test without data; a variant with more clicks than
// impressions gets "problem" instead of a rate, and no test.
nlohmann::json ReadoutJson(const app::ExperimentReadout& readout);

// ReadoutJson(app::ReadOut(experiment, variants)).
nlohmann::json Readout(const std::string& experiment, const std::vector<VariantCounts>& variants);

}  // namespace twotower::serve

#endif  // TWOTOWER_SERVE_EXPERIMENT_H_
