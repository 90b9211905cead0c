// twotower compare: two models on the same interactions, paired bootstrap.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/app.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"

namespace twotower::cli {
namespace {

struct CompareArgs {
  std::vector<std::string> models, exclude;
  std::string interactions;
  int resamples = 1000;
  uint64_t seed = 0;
};

int RunCompare(const CompareArgs& a) {
  if (a.models.size() != 2) throw Error("compare: --models takes two model files");
  const app::Bundle first = app::LoadBundle(a.models[0], {});
  app::Bundle second = app::LoadBundle(a.models[1], {});
  const app::ModelComparison c =
      app::CompareModels(first, second, a.interactions, a.exclude, a.resamples, a.seed);
  std::cout << "A: " << a.models[0] << " (" << ShortFingerprint(first.model.fingerprint) << ")\n"
            << "B: " << a.models[1] << " (" << ShortFingerprint(second.model.fingerprint) << ")\n"
            << "on " << a.interactions << ": " << c.users << " users evaluated by both, "
            << c.resamples << " paired bootstrap resamples of them (seed " << a.seed << ")\n";
  std::printf("%-8s %4s  %8s  %8s  %8s  %-20s  %8s\n", "metric", "K", "A", "B", "B - A",
              "95% interval", "P(B > A)");
  for (const app::MetricComparison& m : c.rows) {
    const std::string interval = "[" + Signed(m.lo) + ", " + Signed(m.hi) + "]";
    std::printf("%-8s %4d  %8.4f  %8.4f  %8s  %-20s  %8.3f\n", m.metric.c_str(), m.k, m.a, m.b,
                Signed(m.diff).c_str(), interval.c_str(), m.b_better);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

Registered DefineCompare(CLI::App* app, Common* common) {
  auto cmp_p = std::make_shared<CompareArgs>();
  CompareArgs& cmp = *cmp_p;
  auto* compare = app->add_subcommand(
      "compare",
      "two models on the same interactions: ranking metrics, differences, bootstrap CIs");
  compare->add_option("--models", cmp.models, "two model files: A B")->required()->expected(2);
  compare->add_option("--interactions", cmp.interactions, "interactions CSV (e.g. test)")
      ->required();
  compare->add_option("--exclude", cmp.exclude,
                      "interactions whose items are excluded (default: each model's train and "
                      "val)");
  compare->add_option("--resamples", cmp.resamples, "bootstrap resamples")->capture_default_str();
  compare->add_option("--seed", cmp.seed, "bootstrap seed")->capture_default_str();
  compare->add_option("--threads", common->threads, "threads (0 = all cores)");
  return {compare, [cmp_p] { return RunCompare(*cmp_p); }};
}

}  // namespace twotower::cli
