#include "cli/commands.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/threads.h"
#include "twotower/data/csv.h"
#include "twotower/data/dataset.h"
#include "twotower/data/generator.h"
#include "twotower/data/npy.h"
#include "twotower/model/model_file.h"
#include "twotower/train/config.h"
#include "twotower/train/trainer.h"

namespace twotower::cli {
namespace {

std::string Fixed(double v, int digits = 4) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Data paths recorded in a model file's training config, with the defaults for absent keys.
data::DataPaths ModelDataPaths(const model::LoadedModel& loaded) {
  train::Config defaults;
  const nlohmann::json& j = loaded.config;
  if (j.contains("data") && j["data"].is_object()) {
    const nlohmann::json& d = j["data"];
    auto get = [&](const char* key, std::string* out) {
      if (d.contains(key) && d[key].is_string()) *out = d[key].get<std::string>();
    };
    get("dir", &defaults.data_dir);
    get("users", &defaults.users);
    get("items", &defaults.items);
    get("train", &defaults.train);
    get("val", &defaults.val);
    get("test", &defaults.test);
  }
  return defaults.ResolvedPaths();
}

void PrintEval(const std::string& name, const train::EvalMetrics& m) {
  std::cout << name << ": " << m.count << " interactions  loss " << Fixed(m.loss) << "  accuracy "
            << Fixed(m.accuracy) << "  AUC " << Fixed(m.auc);
  if (!std::isnan(m.oracle_auc)) std::cout << "  (oracle AUC " << Fixed(m.oracle_auc) << ")";
  std::cout << "\n";
}

// ---- generate ---------------------------------------------------------------------------------

struct GenerateArgs {
  data::GeneratorOptions options;
  std::string out = "data/recommendations/v1";
};

int RunGenerate(const GenerateArgs& a) {
  const data::GeneratorSummary s = data::GenerateLabData(a.options, a.out);
  std::cout << "wrote " << a.out << "/{users.csv, movies.csv, train|val|test/interactions.csv}\n"
            << "  users " << a.options.users << ", movies " << a.options.movies << ", interactions "
            << a.options.interactions << " (train " << s.train << ", val " << s.val << ", test "
            << s.test << "), liked " << Fixed(100 * s.liked_rate, 1) << "%\n";
  return 0;
}

// ---- train ------------------------------------------------------------------------------------

struct TrainArgs {
  std::string config_path = "config/ranking_config.yaml";
  std::vector<std::string> sets;
  std::vector<std::string> shortcuts;  // already "key=value"
  bool quiet = false;
};

int RunTrain(const TrainArgs& a) {
  train::Config config = train::Config::FromYamlFile(a.config_path);
  for (const std::string& s : a.shortcuts) config.Set(s, "command line");
  for (const std::string& s : a.sets) config.Set(s, "--set");
  const int threads = SetThreads(config.threads);

  std::cout << "== configuration (" << a.config_path << ", resolved)\n" << config.ToYaml();
  const data::Dataset d = data::LoadDataset(config.ResolvedPaths(), config.features);
  std::cout << "== data\n"
            << "  users " << d.users.num_rows() << " (" << d.encoder.user.width()
            << " features), movies " << d.items.num_rows() << " (" << d.encoder.item.width()
            << " features)\n"
            << "  interactions: train " << d.train.size() << ", val " << d.val.size() << ", test "
            << d.test.size() << "; positive rate train " << Fixed(d.train.PositiveRate(), 3)
            << ", val " << Fixed(d.val.PositiveRate(), 3) << ", test "
            << Fixed(d.test.PositiveRate(), 3) << "\n";
  const std::string run_dir = train::CreateRunDirectory(config);
  {
    Rng probe(0);
    model::TwoTowerModel shape(config.model, d.encoder.user.width(), d.encoder.item.width(),
                               &probe);
    std::cout << "== model (score: " << model::ScoreModeName(config.model.score) << ", "
              << shape.ParameterCount() << " trainable parameters, " << threads << " threads)\n"
              << "  user tower: " << shape.user_tower().Describe() << "\n"
              << "  item tower: " << shape.item_tower().Describe() << "\n";
  }
  std::cout << "== training (run folder " << run_dir << ")\n";
  train::TrainOptions options;
  options.progress = !a.quiet;
  options.log = &std::cout;
  options.run_dir = run_dir;
  const train::TrainResult r = train::Train(config, d, options);
  std::cout << "== test (best epoch " << r.best_epoch << ", trained in "
            << Fixed(r.train_seconds, 2) << "s)\n";
  PrintEval("test", r.test);
  std::cout << "run folder: " << run_dir << "/\n";
  return 0;
}

// ---- evaluate ---------------------------------------------------------------------------------

struct EvaluateArgs {
  std::string model, interactions, users, items;
};

int RunEvaluate(const EvaluateArgs& a) {
  const model::LoadedModel m = model::LoadModel(a.model);
  data::DataPaths paths = ModelDataPaths(m);
  if (!a.users.empty()) paths.users = a.users;
  if (!a.items.empty()) paths.items = a.items;
  const data::Table users = data::ReadTable(paths.users);
  const data::Table items = data::ReadTable(paths.items);
  const auto user_index = data::EntityIndex::FromTable(users, m.schema.user.id_column);
  const auto item_index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  const data::Interactions inter =
      data::ReadInteractions(a.interactions, m.schema, user_index, item_index);
  Matrix xu, xi;
  m.encoder.user.Encode(users, &xu);
  m.encoder.item.Encode(items, &xi);
  PrintEval(a.interactions, train::Evaluate(*m.model, xu, xi, inter));
  return 0;
}

// ---- embed ------------------------------------------------------------------------------------

struct EmbedArgs {
  std::string model, items, out = "item_embeddings.npy";
};

std::string IdsPath(const std::string& npy_path) {
  std::string base = npy_path;
  if (base.size() > 4 && base.compare(base.size() - 4, 4, ".npy") == 0)
    base.resize(base.size() - 4);
  return base + ".ids.txt";
}

int RunEmbed(const EmbedArgs& a) {
  const model::LoadedModel m = model::LoadModel(a.model);
  const std::string items_path = a.items.empty() ? ModelDataPaths(m).items : a.items;
  const data::Table items = data::ReadTable(items_path);
  const auto index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  Matrix x, v;
  m.encoder.item.Encode(items, &x);
  m.model->EncodeItems(x, &v);
  std::string ids;
  for (const std::string& id : index.ids) ids += id + "\n";
  data::WriteNpy(a.out, v);
  WriteFileAtomically(IdsPath(a.out), ids);
  std::cout << "wrote " << a.out << " (" << v.rows() << " x " << v.cols() << " float32) and "
            << IdsPath(a.out) << "\n";
  return 0;
}

// ---- recommend --------------------------------------------------------------------------------

struct RecommendArgs {
  std::string model, user_id, embeddings, users, items, train;
  int k = 10;
  bool exclude_seen = false;
};

int RunRecommend(const RecommendArgs& a) {
  const model::LoadedModel m = model::LoadModel(a.model);
  data::DataPaths paths = ModelDataPaths(m);
  if (!a.users.empty()) paths.users = a.users;
  if (!a.items.empty()) paths.items = a.items;
  if (!a.train.empty()) paths.train = a.train;
  const data::Table users = data::ReadTable(paths.users);
  const data::Table items = data::ReadTable(paths.items);
  const auto user_index = data::EntityIndex::FromTable(users, m.schema.user.id_column);
  const auto item_index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  const int32_t user_row = user_index.Find(a.user_id);
  if (user_row < 0) {
    throw Error("--user-id: " + Quote(a.user_id) + " is not in " + paths.users);
  }

  // The user's embedding from its raw row.
  std::vector<std::pair<std::string, std::string>> row;
  for (size_t c = 0; c < users.columns.size(); ++c) {
    row.emplace_back(users.columns[c], users.cells[c][user_row]);
  }
  Matrix xu(1, m.encoder.user.width()), u;
  m.encoder.user.EncodeRow(row, users.Where(user_row), xu.data());
  m.model->EncodeUsers(xu, &u);

  // Item embeddings: pre-computed or computed now.
  Matrix v;
  std::vector<std::string> ids;
  if (!a.embeddings.empty()) {
    v = data::ReadNpy(a.embeddings);
    if (v.cols() != m.model->embedding_dim()) {
      throw Error(a.embeddings + ": embeddings have dimension " + std::to_string(v.cols()) +
                  ", the model's is " + std::to_string(m.model->embedding_dim()));
    }
    const std::string ids_path = IdsPath(a.embeddings);
    std::string text = ReadFile(ids_path);
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      ids.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    if (static_cast<int64_t>(ids.size()) != v.rows()) {
      throw Error(ids_path + ": has " + std::to_string(ids.size()) + " ids, but " + a.embeddings +
                  " has " + std::to_string(v.rows()) + " rows");
    }
  } else {
    Matrix xi;
    m.encoder.item.Encode(items, &xi);
    m.model->EncodeItems(xi, &v);
    ids = item_index.ids;
  }

  std::vector<char> excluded(ids.size(), 0);
  int64_t seen = 0;
  if (a.exclude_seen) {
    const data::Interactions history =
        data::ReadInteractions(paths.train, m.schema, user_index, item_index);
    std::vector<char> seen_item(items.num_rows(), 0);
    for (int64_t i = 0; i < history.size(); ++i) {
      if (history.user_row[i] == user_row) seen_item[history.item_row[i]] = 1;
    }
    for (size_t j = 0; j < ids.size(); ++j) {
      const int32_t r = item_index.Find(ids[j]);
      if (r >= 0 && seen_item[r]) excluded[j] = 1, ++seen;
    }
  }

  const Vector scores = v * u.row(0).transpose();
  std::vector<int64_t> candidates;
  for (size_t j = 0; j < ids.size(); ++j) {
    if (!excluded[j]) candidates.push_back(static_cast<int64_t>(j));
  }
  const size_t k = std::min<size_t>(a.k, candidates.size());
  std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(),
                    [&](int64_t x, int64_t y) {
                      return scores[x] > scores[y] || (scores[x] == scores[y] && x < y);
                    });

  std::cout << "top " << k << " for user " << a.user_id;
  for (const auto& f : m.schema.user.features) {
    std::cout << "  " << f.column << "=" << users.Column(f.column)[user_row];
  }
  if (a.exclude_seen) std::cout << "  (" << seen << " seen in train excluded)";
  std::cout << "\n";
  std::printf("%4s  %-10s  %7s", "rank", m.schema.item.id_column.c_str(), "score");
  for (const auto& f : m.schema.item.features) std::printf("  %-10s", f.column.c_str());
  std::printf("\n");
  for (size_t r = 0; r < k; ++r) {
    const int64_t j = candidates[r];
    const double p = Sigmoid(m.model->scale() * scores[j] + m.model->bias());
    std::printf("%4zu  %-10s  %7.4f", r + 1, ids[j].c_str(), p);
    const int32_t item_row = item_index.Find(ids[j]);
    for (const auto& f : m.schema.item.features) {
      std::printf("  %-10s", item_row >= 0 ? items.Column(f.column)[item_row].c_str() : "?");
    }
    std::printf("\n");
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"twotower: train, evaluate and serve two-tower recommendation models"};
  app.require_subcommand(1);
  int threads = 0;

  GenerateArgs gen;
  auto* generate = app.add_subcommand("generate", "generate the lab's synthetic movie data set");
  generate->add_option("--out", gen.out, "output directory")->capture_default_str();
  generate->add_option("--users", gen.options.users, "number of users")->capture_default_str();
  generate->add_option("--movies", gen.options.movies, "number of movies")->capture_default_str();
  generate->add_option("--interactions", gen.options.interactions, "number of interactions")
      ->capture_default_str();
  generate->add_option("--seed", gen.options.seed, "random seed")->capture_default_str();

  TrainArgs tr;
  std::string seed, epochs, output_dir, train_threads;
  auto* train_cmd = app.add_subcommand("train", "train a model from a YAML config");
  train_cmd->add_option("--config", tr.config_path, "YAML config")->capture_default_str();
  train_cmd->add_option("--set", tr.sets, "override a setting: key=value (repeatable)");
  train_cmd->add_option("--seed", seed, "same as --set seed=N");
  train_cmd->add_option("--epochs", epochs, "same as --set training.epochs=N");
  train_cmd->add_option("--threads", train_threads, "same as --set threads=N (0 = all cores)");
  train_cmd->add_option("--output-dir", output_dir, "same as --set output.dir=DIR");
  train_cmd->add_flag("--quiet", tr.quiet, "no progress bars");
  bool list_settings = false;
  train_cmd->add_flag("--list-settings", list_settings, "print every setting and exit");

  EvaluateArgs ev;
  auto* evaluate = app.add_subcommand("evaluate", "score an interaction file with a model");
  evaluate->add_option("--model", ev.model, "model file (.safetensors)")->required();
  evaluate->add_option("--interactions", ev.interactions, "interactions CSV")->required();
  evaluate->add_option("--users", ev.users, "users CSV (default: the model's training data)");
  evaluate->add_option("--items", ev.items, "items CSV (default: the model's training data)");
  evaluate->add_option("--threads", threads, "threads (0 = all cores)");

  EmbedArgs em;
  auto* embed = app.add_subcommand("embed", "write all item embeddings as .npy plus an ids file");
  embed->add_option("--model", em.model, "model file (.safetensors)")->required();
  embed->add_option("--items", em.items, "items CSV (default: the model's training data)");
  embed->add_option("--out", em.out, "output .npy (ids go to <out>.ids.txt)")
      ->capture_default_str();
  embed->add_option("--threads", threads, "threads (0 = all cores)");

  RecommendArgs rec;
  auto* recommend = app.add_subcommand("recommend", "top-k items for a user");
  recommend->add_option("--model", rec.model, "model file (.safetensors)")->required();
  recommend->add_option("--user-id", rec.user_id, "the user's id")->required();
  recommend->add_option("--k", rec.k, "number of items")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  recommend->add_option("--embeddings", rec.embeddings, "pre-computed item embeddings (.npy)");
  recommend->add_flag("--exclude-seen", rec.exclude_seen, "drop items the user rated in train");
  recommend->add_option("--users", rec.users, "users CSV (default: the model's training data)");
  recommend->add_option("--items", rec.items, "items CSV (default: the model's training data)");
  recommend->add_option("--train", rec.train, "train interactions for --exclude-seen");
  recommend->add_option("--threads", threads, "threads (0 = all cores)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (threads < 0) throw Error("--threads: expected 0 (all cores) or a positive count");
    SetThreads(threads);
    if (generate->parsed()) return RunGenerate(gen);
    if (train_cmd->parsed()) {
      if (list_settings) {
        for (const std::string& line : train::SettingsHelp()) std::cout << line << "\n";
        return 0;
      }
      if (!seed.empty()) tr.shortcuts.push_back("seed=" + seed);
      if (!epochs.empty()) tr.shortcuts.push_back("training.epochs=" + epochs);
      if (!train_threads.empty()) tr.shortcuts.push_back("threads=" + train_threads);
      if (!output_dir.empty()) tr.shortcuts.push_back("output.dir=" + output_dir);
      return RunTrain(tr);
    }
    if (evaluate->parsed()) return RunEvaluate(ev);
    if (embed->parsed()) return RunEmbed(em);
    if (recommend->parsed()) return RunRecommend(rec);
  } catch (const Error& e) {
    std::cout.flush();
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "internal error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

}  // namespace twotower::cli
