// twotower train: a model from a YAML config (app::Train), printed stage by stage.
#include "twotower/app/train.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/data/dataset.h"

namespace twotower::cli {
namespace {

struct TrainArgs {
  std::string config_path = "config/ranking_config.yaml";
  bool config_given = false;
  std::vector<std::string> sets;
  std::vector<std::string> shortcuts;  // already "key=value"
  std::string resume;                  // a run folder to continue
  bool quiet = false;
};

// A run's test section: the pointwise metrics and, when ranked, the ranking beside MostPop.
void PrintTest(const app::EvalMetrics& test, const app::RankingMetrics& ranking,
               const app::RankingMetrics& most_popular, const std::string& how) {
  PrintEval("test", test);
  if (ranking.ks.empty()) return;
  PrintRanking("test ranking (" + std::to_string(ranking.users) + " users, " + how +
                   ", train+val items excluded; MostPop counts train+val)",
               ranking, &most_popular);
}

// Prints each stage of app::Train as it comes.
class PrintingObserver : public app::TrainObserver {
 public:
  void Configured(const app::TrainConfig& config, const std::string& source) override {
    std::cout << "== configuration (" << source << ", resolved)\n" << config.ToYaml();
  }
  void DataLoaded(const data::Dataset& d) override {
    std::cout << "== data\n"
              << "  users " << d.users.num_rows() << " (" << FeatureSummary(d.encoder.user)
              << "), items " << d.items.num_rows() << " (" << FeatureSummary(d.encoder.item)
              << ")\n"
              << "  interactions: train " << TrainRows(d) << ", val " << d.val.size() << ", test "
              << d.test.size() << "; positive rate train"
              << (d.shard.held >= 0 ? " (rank 0's part) " : " ") << Fixed(d.train.PositiveRate(), 3)
              << ", val " << Fixed(d.val.PositiveRate(), 3) << ", test "
              << Fixed(d.test.PositiveRate(), 3) << "\n";
    if (!d.part_rows.empty()) {
      std::cout << "  training rows in " << d.part_rows.size() << " parts by user (data.shards):";
      for (size_t k = 0; k < d.part_rows.size(); ++k) {
        std::cout << (k == 0 ? " " : " + ") << d.part_rows[k];
      }
      std::cout << (d.shard.held >= 0 ? "; each rank reads its part only\n" : "\n");
    }
  }
  static int64_t TrainRows(const data::Dataset& d) {
    int64_t n = 0;
    for (int64_t rows : d.part_rows) n += rows;
    return d.part_rows.empty() ? d.train.size() : n;
  }
  void ModelBuilt(const app::ModelSummary& m) override {
    const std::string precision =
        m.precision == "fp32" ? "" : ", training products in " + m.precision;
    if (m.ranker) {
      std::cout << "== ranker (bce on labelled pairs, " << m.parameters << " trainable parameters, "
                << m.threads << (m.threads == 1 ? " thread" : " threads") << precision << ")\n"
                << "  " << m.ranker_layers << "\n";
      return;
    }
    std::cout << "== model (loss: " << m.loss << ", score: " << m.score << ", " << m.parameters
              << " trainable parameters, " << m.threads << (m.threads == 1 ? " thread" : " threads")
              << precision << ")\n"
              << "  user tower: " << m.user_tower << "\n"
              << "  item tower: " << m.item_tower << "\n";
    for (const app::TaskSpec& t : m.tasks) {
      std::cout << "  task " << t.name << ": " << t.type << " of '" << t.column << "'"
                << (t.type == "item_class" ? " (" + std::to_string(t.classes.size()) + " classes)"
                                           : std::string())
                << ", weight " << t.weight << "\n";
    }
  }
  void Warning(const std::string& message) override {
    if (dist::IsRoot()) std::cerr << "warning: " << message << "\n";
  }
  void Training(const std::string& run_dir, bool /*ranker*/) override {
    std::cout << "== training (run folder " << run_dir << ")\n";
    if (dist::Distributed()) {
      std::cout << "  data-parallel over " << dist::Size()
                << " MPI ranks: each runs training.batch_size examples of a global batch "
                << dist::Size() << " times as large\n";
    }
  }
};

int RunTrain(const TrainArgs& a) {
  if (!a.resume.empty() && (a.config_given || !a.sets.empty() || !a.shortcuts.empty())) {
    throw Error(
        "train --resume: the run continues with the settings in its config.yaml; --config, "
        "--set, --seed, --epochs, --threads and --output-dir cannot change them");
  }
  app::TrainRequest request;
  request.config_path = a.config_path;
  for (const std::string& s : a.shortcuts) request.settings.emplace_back(s, "command line");
  for (const std::string& s : a.sets) request.settings.emplace_back(s, "--set");
  request.resume = a.resume;
  request.progress = !a.quiet && dist::IsRoot();  // mpirun: rank 0's bars only
  request.log = &std::cout;
  request.stop = StopOnFirstInterrupt();
  PrintingObserver printer;
  app::TrainOutcome r;
  try {
    r = app::Train(request, &printer);
  } catch (const Error& e) {
    if (request.stop != nullptr && request.stop->load() && e.code() == ErrorCode::kUnavailable) {
      // Ctrl-C: the message names what the run folder keeps; 130 is a shell's status for it.
      std::cout.flush();
      std::cerr << "error: " << e.what() << "\n";
      return 130;
    }
    RethrowNamingFlag(e, "resume", "--resume");
  }
  std::cout << "== test (best epoch " << r.best_epoch;
  if (r.refit) {
    std::cout << ", refitted on train + val for " << r.best_epoch
              << (r.best_epoch == 1 ? " epoch" : " epochs");
  }
  std::cout << ", trained in " << Fixed(r.train_seconds, 2) << "s)\n";
  PrintTest(r.test, r.test_ranking, r.test_most_popular,
            r.ranker ? "the ranker scoring every item" : "all items ranked");
  for (const app::TaskMetric& t : r.test_tasks) {
    std::cout << "test task " << t.name << ": " << t.metric << " " << Fixed(t.value) << "\n";
  }
  if (dist::Distributed()) {
    // What this rank sent through MPI (all ranks send alike: each its share).
    const dist::TrafficCounts t = dist::TrafficSoFar();
    const auto mib = [](int64_t bytes) { return Fixed(static_cast<double>(bytes) / 1048576.0, 2); };
    std::cout << "MPI traffic sent by rank 0: dense gradients " << mib(t.dense)
              << " MiB, embedding-table rows " << mib(t.sparse) << " MiB, tower outputs "
              << mib(t.embeddings) << " MiB, other " << mib(t.other) << " MiB, in " << t.calls
              << " collectives\n";
  }
  std::cout << "run folder: " << r.run_dir << "/\n";
  if (r.refit) std::cout << "model: " << r.run_dir << "/model_refit.safetensors\n";
  return 0;
}

}  // namespace

Registered DefineTrain(CLI::App* app, Common* /*common*/) {
  auto tr_p = std::make_shared<TrainArgs>();
  TrainArgs& tr = *tr_p;
  auto seed_p = std::make_shared<std::string>();
  auto epochs_p = std::make_shared<std::string>();
  auto output_dir_p = std::make_shared<std::string>();
  auto train_threads_p = std::make_shared<std::string>();
  std::string& seed = *seed_p;
  std::string& epochs = *epochs_p;
  std::string& output_dir = *output_dir_p;
  std::string& train_threads = *train_threads_p;
  auto* train_cmd = app->add_subcommand("train", "train a model from a YAML config");
  train_cmd->add_option("--config", tr.config_path, "YAML config")->capture_default_str();
  train_cmd->add_option("--set", tr.sets, "override a setting: key=value (repeatable)");
  train_cmd->add_option("--seed", seed, "same as --set seed=N");
  train_cmd->add_option("--epochs", epochs, "same as --set training.epochs=N");
  train_cmd->add_option("--threads", train_threads, "same as --set threads=N (0 = all cores)");
  train_cmd->add_option("--output-dir", output_dir, "same as --set output.dir=DIR");
  train_cmd->add_option("--resume", tr.resume,
                        "continue the run in this folder from its checkpoint (after a crash or "
                        "a kill), with its own config.yaml");
  train_cmd->add_flag("--quiet", tr.quiet, "no progress bars");
  auto list_settings_p = std::make_shared<bool>(false);
  bool& list_settings = *list_settings_p;
  train_cmd->add_flag("--list-settings", list_settings, "print every setting and exit");
  return {train_cmd, [=] {
            TrainArgs& tr = *tr_p;
            if (*list_settings_p) {
              for (const std::string& line : app::SettingsHelp()) std::cout << line << "\n";
              return 0;
            }
            if (!seed_p->empty()) tr.shortcuts.push_back("seed=" + *seed_p);
            if (!epochs_p->empty()) tr.shortcuts.push_back("training.epochs=" + *epochs_p);
            if (!train_threads_p->empty()) tr.shortcuts.push_back("threads=" + *train_threads_p);
            if (!output_dir_p->empty()) tr.shortcuts.push_back("output.dir=" + *output_dir_p);
            tr.config_given = train_cmd->get_option("--config")->count() > 0;
            return RunTrain(tr);
          }};
}

}  // namespace twotower::cli
