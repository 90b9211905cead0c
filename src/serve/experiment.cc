#include "twotower/serve/experiment.h"

namespace twotower::serve {
namespace {

nlohmann::json OrNull(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

}  // namespace

nlohmann::json ReadoutJson(const app::ExperimentReadout& r) {
  nlohmann::json out = {{"experiment", r.experiment},
                        {"variants", nlohmann::json::array()},
                        {"comparisons", nlohmann::json::array()}};
  for (const app::ArmReadout& a : r.arms) {
    const app::ArmCounts& v = a.counts;
    nlohmann::json j = {{"name", v.name},       {"weight", v.weight},
                        {"users", v.users},     {"impressions", v.impressions},
                        {"clicks", v.clicks},   {"likes", v.likes},
                        {"ctr", OrNull(a.ctr)}, {"ctr_ci95", nullptr}};
    if (a.ctr_lo && a.ctr_hi) j["ctr_ci95"] = {*a.ctr_lo, *a.ctr_hi};
    if (!a.problem.empty()) j["problem"] = a.problem;
    out["variants"].push_back(j);
  }
  for (const app::ArmComparison& c : r.comparisons) {
    nlohmann::json j = {
        {"variant", c.arm},         {"control", c.control}, {"ctr_diff", OrNull(c.ctr_diff)},
        {"ctr_diff_ci95", nullptr}, {"z", OrNull(c.z)},     {"p_value", OrNull(c.p_value)}};
    if (c.ctr_diff_lo && c.ctr_diff_hi) j["ctr_diff_ci95"] = {*c.ctr_diff_lo, *c.ctr_diff_hi};
    out["comparisons"].push_back(j);
  }
  const app::SampleRatio& s = r.sample_ratio;
  out["sample_ratio"] = {{"chi_square", OrNull(s.chi_square)},
                         {"df", s.df},
                         {"p_value", OrNull(s.p_value)},
                         {"mismatch", s.mismatch ? nlohmann::json(*s.mismatch) : nlohmann::json()}};
  if (!r.unlisted.empty()) {
    out["unlisted"] = nlohmann::json::array();
    for (const app::ArmCounts& v : r.unlisted) {
      out["unlisted"].push_back({{"name", v.name},
                                 {"users", v.users},
                                 {"impressions", v.impressions},
                                 {"clicks", v.clicks},
                                 {"likes", v.likes}});
    }
    out["warning"] = r.warning;
  }
  return out;
}

nlohmann::json Readout(const std::string& experiment, const std::vector<VariantCounts>& variants) {
  return ReadoutJson(app::ReadOut(experiment, variants));
}

}  // namespace twotower::serve
