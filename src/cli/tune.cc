// twotower tune: a hyperparameter search on the validation split (app::Tune), a line per trial,
// then the best configuration trained as `train` trains it.
#include "twotower/app/tune.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/core/error.h"
#include "twotower/core/settings.h"

namespace twotower::cli {
namespace {

struct TuneArgs {
  std::string config_path, budget, seed = "0";
  std::vector<std::string> sets, space;
  app::TuneRequest request;
  bool no_train = false, quiet = false;
};

// "90", "90s", "30m", "2h" -> seconds.
double ParseBudget(const std::string& text) {
  if (text.empty()) return 0;
  double unit = 1;
  std::string number = text;
  const char last = text.back();
  if (last == 's' || last == 'm' || last == 'h') {
    unit = last == 's' ? 1 : last == 'm' ? 60 : 3600;
    number.pop_back();
  }
  bool ok = false;
  const double v = ParseFiniteDouble(number, &ok);
  if (!ok || !(v > 0)) {
    throw Error("--budget: expected a duration like 90s, 30m or 2h, got " + Quote(text));
  }
  return v * unit;
}

class PrintingTuneObserver : public app::TuneObserver {
 public:
  void Planned(const std::vector<int>& epochs, const std::vector<int>& trials,
               const std::string& monitor, const std::string& out_dir) override {
    std::cout << "== tune: successive halving on " << monitor << " (" << out_dir << ")\n";
    for (size_t i = 0; i < epochs.size(); ++i) {
      std::cout << "  rung " << i << ": " << trials[i] << " trials x " << epochs[i] << " epochs\n";
    }
  }
  void Trial(const app::TrialResult& t, int of) override {
    ++shown_;
    std::cout << "trial " << shown_ << "/" << of << "  #" << t.trial << " rung " << t.rung << " ("
              << t.epochs << (t.epochs == 1 ? " epoch)" : " epochs)");
    for (const auto& [k, v] : t.params) {
      std::cout << "  " << k.substr(k.find('.') + 1) << "=" << v;
    }
    std::cout << "  -> " << Fixed(t.value) << " (best epoch " << t.best_epoch << ", "
              << Fixed(t.seconds, 1) << "s" << (t.reused ? ", from tune.csv" : "") << ")\n";
  }
  void BudgetSpent(double seconds) override {
    std::cout << "budget spent after " << Fixed(seconds, 0) << "s: no more trials\n";
  }
  void Best(const app::TrialResult& b) override {
    std::cout << "best: trial #" << b.trial << " at rung " << b.rung << " (" << Fixed(b.value)
              << ")\n";
  }
  void Training(const std::string& run_dir, bool /*ranker*/) override {
    std::cout << "== training the best (run folder " << run_dir << ")\n";
  }

 private:
  int shown_ = 0;
};

int RunTune(TuneArgs& a) {
  app::TuneRequest& r = a.request;
  r.config_path = a.config_path;
  for (const std::string& s : a.sets) r.settings.emplace_back(s, "--set");
  r.space = a.space;
  r.budget_seconds = ParseBudget(a.budget);
  r.seed = app::ParseSeed(a.seed, "--seed");
  r.refit_best = !a.no_train;
  r.progress = !a.quiet;
  PrintingTuneObserver printer;
  const app::TuneOutcome out = app::Tune(r, &printer);
  std::cout << "wrote " << out.out_dir << "/tune.csv, tune.svg, best.yaml\n";
  if (out.trained_final) {
    const app::TrainOutcome& f = out.final_run;
    if (!f.test_ranking.ks.empty()) {
      PrintRanking("test ranking of the best (" + std::to_string(f.test_ranking.users) +
                       " users; MostPop counts train+val)",
                   f.test_ranking, &f.test_most_popular);
    }
    std::cout << "run folder: " << f.run_dir << "/\n";
    if (f.refit) std::cout << "model: " << f.run_dir << "/model_refit.safetensors\n";
  }
  return 0;
}

}  // namespace

Registered DefineTune(CLI::App* app, Common* /*common*/) {
  auto p = std::make_shared<TuneArgs>();
  TuneArgs& a = *p;
  auto* cmd = app->add_subcommand(
      "tune", "hyperparameter search on validation (successive halving), then train the best");
  cmd->add_option("--config", a.config_path, "YAML config (the base of every trial)")->required();
  cmd->add_option("--set", a.sets, "override a base setting: key=value (repeatable)");
  cmd->add_option("--space", a.space,
                  "a dimension: key=lo:hi, key=lo:hi:log or key=a|b|c; key= removes a default "
                  "(repeatable; defaults: temperature, learning_rate, embedding_l2, "
                  "embedding_dim, batch_size, loss)");
  cmd->add_option("--trials", a.request.trials, "configurations drawn at the first rung")
      ->capture_default_str();
  cmd->add_option("--eta", a.request.eta, "keep the best 1/eta of each rung")
      ->capture_default_str();
  cmd->add_option("--budget", a.budget, "start no trial after this long (e.g. 30m)");
  cmd->add_option("--seed", a.seed, "seed of the draws")->capture_default_str();
  cmd->add_option("--out", a.request.out_dir,
                  "folder of tune.csv, tune.svg, best.yaml (default: <output.dir>/<name>_tune); "
                  "a rerun with the same folder resumes");
  cmd->add_flag("--no-train", a.no_train, "stop after the search (best.yaml written)");
  cmd->add_flag("--quiet", a.quiet, "no progress bars");
  return {cmd, [p] { return RunTune(*p); }};
}

}  // namespace twotower::cli
