// Data and models trained once per test process by the real binary, shared by the tests of the
// server and of the application core (a lab model twice, a user-history model, a ranker).
#ifndef TWOTOWER_TESTS_TESTING_TRAINED_MODELS_H_
#define TWOTOWER_TESTS_TESTING_TRAINED_MODELS_H_

#include <memory>
#include <string>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"

namespace twotower::testing {

// The model file of the run `twotower train` reports in its "run folder: " line, or "".
inline std::string RunModel(const CliResult& r) {
  for (const std::string& line : Lines(r.out)) {
    if (line.rfind("run folder: ", 0) == 0) return line.substr(12) + "model_best.safetensors";
  }
  return "";
}

// Data and two models (different seeds) made once by the real binary.
struct Models {
  TempDir dir;
  std::string data, a, b;
  bool ok = false;
};

inline std::string Train(TempDir& dir, const std::string& data, const std::string& seed) {
  const auto r = RunCli({"train",
                         "--config",
                         std::string(TWOTOWER_SOURCE_DIR) + "/config/ranking_config.yaml",
                         "--set",
                         "data.dir=" + data,
                         "--set",
                         "model.embedding_dim=8",
                         "--set",
                         "model.user_hidden_dims=16",
                         "--set",
                         "model.item_hidden_dims=16",
                         "--epochs",
                         "2",
                         "--threads",
                         "1",
                         "--seed",
                         seed,
                         "--quiet",
                         "--output-dir",
                         dir.File("runs_" + seed)},
                        dir);
  return RunModel(r);
}

inline Models& Shared() {
  static const std::unique_ptr<Models> m = [] {
    auto s = std::make_unique<Models>();
    s->data = s->dir.File("data");
    const auto g = RunCli({"generate", "--out", s->data, "--users", "200", "--movies", "100",
                           "--interactions", "2000", "--seed", "5"},
                          s->dir);
    s->a = Train(s->dir, s->data, "3");
    s->b = Train(s->dir, s->data, "4");
    s->ok = g.code == 0 && !s->a.empty() && !s->b.empty();
    return s;
  }();
  return *m;
}

// A model with an attention history over the last 4 likes, trained once by the real binary.
inline const std::string& HistoryModel() {
  static const std::string model = [] {
    TempDir& dir = Shared().dir;
    const std::string yaml = dir.Write(
        "history.yaml",
        "data: {dir: " + Shared().data +
            ", users: users.csv, items: movies.csv}\n"
            "features:\n"
            "  user_id: user_id\n"
            "  item_id: movie_id\n"
            "  history: {length: 4, pooling: attention, heads: 2}\n"
            "  user: [{column: age, type: numeric}, {column: gender, type: categorical},\n"
            "         {column: favorite_genre, type: categorical},\n"
            "         {column: activity_level, type: categorical}]\n"
            "  item: [{column: movie_id, type: id, dim: 8}, {column: genre, type: categorical}]\n"
            "model: {embedding_dim: 8, user_hidden_dims: [16], item_hidden_dims: [16], dropout: "
            "0}\n"
            "training: {epochs: 2, batch_size: 64}\n");
    const auto trained = RunCli(
        {"train", "--config", yaml, "--threads", "1", "--quiet", "--output-dir", dir.File("hist")},
        dir);
    for (const std::string& line : Lines(trained.out)) {
      if (line.rfind("run folder: ", 0) == 0) return line.substr(12) + "model_best.safetensors";
    }
    return std::string();
  }();
  return model;
}

// The history model's settings trained again with another seed: the same schema, other weights
// (a model "retrained": another SHA-256).
inline const std::string& RetrainedHistoryModel() {
  static const std::string model = [] {
    TempDir& dir = Shared().dir;
    HistoryModel();  // writes history.yaml
    return RunModel(RunCli({"train", "--config", dir.File("history.yaml"), "--threads", "1",
                            "--seed", "9", "--quiet", "--output-dir", dir.File("hist_retrained")},
                           dir));
  }();
  return model;
}

// A ranker (model.kind: ranker) over the shared data.
inline const std::string& Ranker() {
  static const std::string model = [] {
    TempDir& dir = Shared().dir;
    return RunModel(RunCli(
        {"train", "--config", std::string(TWOTOWER_SOURCE_DIR) + "/config/ranking_config.yaml",
         "--set", "data.dir=" + Shared().data, "--set", "model.kind=ranker", "--set",
         "model.ranker_hidden_dims=16", "--epochs", "2", "--threads", "1", "--quiet",
         "--output-dir", dir.File("ranker")},
        dir));
  }();
  return model;
}

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_TRAINED_MODELS_H_
