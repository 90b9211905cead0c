// twotower experiment report: the A/B readout of a serve event log, offline (app::Experiment).
#include "twotower/app/experiment.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/core/error.h"
#include "twotower/serve/events.h"
#include "twotower/serve/server.h"

namespace twotower::cli {
namespace {

struct ExperimentArgs {
  std::string events, config, control;
};

int RunExperimentReport(const ExperimentArgs& a) {
  std::string name = "default", salt;
  std::vector<app::Arm> arms;
  if (!a.config.empty()) {
    const serve::ServeConfig config = serve::ServeConfig::FromYamlFile(a.config);
    name = config.experiment;
    salt = config.salt;
    for (const serve::VariantConfig& v : config.variants) arms.push_back({v.name, v.weight});
  }
  // The tallies the server keeps, from the same log: live and offline readouts agree.
  app::Experiment experiment(name, salt, arms, a.config);
  const serve::ReadReport read = serve::ReadEvents(
      a.events, [&](const serve::Event& e) { experiment.Count(e.variant, e.user_id, e.event); });
  const int64_t n = read.events;
  app::ExperimentReadout r;
  try {
    r = experiment.Readout(a.events, a.control);
  } catch (const Error& e) {
    if (e.field() != "control") throw;
    throw Error(e.code(), std::string("--") + e.what(), "--control");
  }
  const std::string control_from = !a.control.empty() ? "--control"
                                   : a.config.empty() ? "the first variant in the log"
                                                      : "the first variant of " + a.config;
  std::cout << "experiment " << name << ": " << n << " events in " << a.events;
  if (read.torn_bytes > 0) {
    std::cout << " (and a torn last line of " << read.torn_bytes << " bytes, ignored)";
  }
  if (read.unterminated) std::cout << " (the last one without its newline)";
  if (a.config.empty()) std::cout << "; weights taken as equal (give --config for the real ones)";
  std::cout << "\n";
  if (!r.arms.empty()) {
    std::cout << "control: " << r.arms[0].counts.name << " (" << control_from << ")\n";
  }
  auto num = [](const std::optional<double>& v, int digits) {
    return v ? Fixed(*v, digits) : std::string("n/a");
  };
  std::printf("%-12s %7s %8s %11s %8s %7s %8s  %s\n", "variant", "weight", "users", "impressions",
              "clicks", "likes", "CTR", "95% interval");
  auto row = [](const app::ArmCounts& c, const std::string& weight, const std::string& ctr,
                const std::string& ci) {
    std::printf("%-12s %7s %8lld %11lld %8lld %7lld %8s  %s\n", c.name.c_str(), weight.c_str(),
                static_cast<long long>(c.users), static_cast<long long>(c.impressions),
                static_cast<long long>(c.clicks), static_cast<long long>(c.likes), ctr.c_str(),
                ci.c_str());
  };
  for (const app::ArmReadout& v : r.arms) {
    const std::string ci =
        v.ctr_lo ? "[" + num(v.ctr_lo, 4) + ", " + num(v.ctr_hi, 4) + "]" : std::string("n/a");
    row(v.counts, Fixed(v.counts.weight, 1), num(v.ctr, 4), ci);
  }
  for (const app::ArmCounts& c : r.unlisted) row(c, "-", "-", "(not in the config)");
  for (const app::ArmReadout& v : r.arms) {
    if (!v.problem.empty()) std::cout << v.counts.name << ": " << v.problem << "\n";
  }
  for (const app::ArmComparison& c : r.comparisons) {
    std::cout << c.arm << " vs " << c.control << ": CTR difference "
              << (c.ctr_diff ? Signed(*c.ctr_diff) : std::string("n/a"));
    if (c.ctr_diff_lo) {
      std::cout << " [" << Signed(*c.ctr_diff_lo) << ", " << Signed(*c.ctr_diff_hi) << "]";
    }
    std::cout << ", z-test p " << num(c.p_value, 4) << "\n";
  }
  const app::SampleRatio& srm = r.sample_ratio;
  std::cout << "sample ratio: chi-square " << num(srm.chi_square, 3) << " on " << srm.df
            << " df, p " << num(srm.p_value, 4)
            << (srm.mismatch.value_or(false)
                    ? "  MISMATCH: the assignment is broken; do not read the result"
                    : "")
            << "\n";
  std::cout.flush();
  if (!r.warning.empty()) std::cerr << "warning: " << r.warning << std::endl;
  return 0;
}

}  // namespace

Registered DefineExperiment(CLI::App* app, Common* /*common*/) {
  auto ex_p = std::make_shared<ExperimentArgs>();
  ExperimentArgs& ex = *ex_p;
  auto* experiment = app->add_subcommand("experiment", "A/B experiments");
  experiment->require_subcommand(1);
  auto* report = experiment->add_subcommand("report", "the readout of a serve event log, offline");
  report->add_option("--events", ex.events, "event log (JSON lines from twotower serve)")
      ->required();
  report->add_option("--config", ex.config, "the serve.yaml (experiment name, variant weights)");
  report->add_option("--control", ex.control,
                     "the variant the others are compared with (default: the config's first, "
                     "else the log's first)");
  return {experiment, [ex_p] { return RunExperimentReport(*ex_p); }};
}

}  // namespace twotower::cli
