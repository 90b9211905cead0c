#include "cli/commands.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/progress.h"
#include "twotower/core/threads.h"
#include "twotower/data/csv.h"
#include "twotower/data/dataset.h"
#include "twotower/data/generator.h"
#include "twotower/data/movielens.h"
#include "twotower/data/npy.h"
#include "twotower/index/flat_index.h"
#include "twotower/index/index_file.h"
#include "twotower/index/item_index.h"
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

// Reads a table whose path came from the model file's training config unless the user gave
// `flag`; a failure then says where the path came from and how to override it.
data::Table ReadDataTable(const std::string& path, bool from_model, const char* flag) {
  try {
    return data::ReadTable(path);
  } catch (const Error& e) {
    if (!from_model) throw;
    throw Error(std::string(e.what()) + " (path from the model file's training config; pass " +
                flag + " to read another file)");
  }
}

void PrintEval(const std::string& name, const train::EvalMetrics& m) {
  std::cout << name << ": " << m.count << " interactions  loss " << Fixed(m.loss) << "  accuracy "
            << Fixed(m.accuracy) << "  AUC " << Fixed(m.auc);
  if (!std::isnan(m.oracle_auc)) std::cout << "  (oracle AUC " << Fixed(m.oracle_auc) << ")";
  std::cout << "\n";
}

std::string FeatureSummary(const data::EntityEncoder& e) {
  std::string out = std::to_string(e.width()) + " dense columns";
  for (const data::LearnedFeature& f : e.learned()) {
    out += ", " + f.column + " embedding " + std::to_string(f.rows) + "x" + std::to_string(f.dim);
  }
  return out;
}

// One line per metric: the model's value at each K, and MostPop's beside it when given.
void PrintRanking(const std::string& title, const train::RankingMetrics& m,
                  const train::RankingMetrics* baseline) {
  std::cout << title << "\n";
  std::printf("  %-10s", "metric");
  for (int k : m.ks) std::printf("  %8s", (std::string("@").append(std::to_string(k))).c_str());
  if (baseline != nullptr) {
    std::printf("   | MostPop");
    for (int k : baseline->ks)
      std::printf("  %8s", (std::string("@").append(std::to_string(k))).c_str());
  }
  std::printf("\n");
  const char* names[] = {"recall", "ndcg", "hitrate", "mrr", "coverage"};
  const char* shown[] = {"Recall", "NDCG", "HitRate", "MRR", "Coverage"};
  for (int i = 0; i < 5; ++i) {
    std::printf("  %-10s", shown[i]);
    // std::string::append, not operator+ on a char*: GCC 12 warns falsely on the latter
    // (-Wrestrict, GCC bug 105329).
    auto key = [&](int k) { return std::string(names[i]).append("@").append(std::to_string(k)); };
    for (int k : m.ks) std::printf("  %8.4f", m.Get(key(k)));
    if (baseline != nullptr) {
      std::printf("   |        ");
      for (int k : baseline->ks) std::printf("  %8.4f", baseline->Get(key(k)));
    }
    std::printf("\n");
  }
  std::fflush(stdout);
}

// True when the model was trained with a pointwise loss, so that sigmoid(scale <u,v> + bias) is
// a probability; other losses train <u, v> only, and scores are shown as inner products.
bool HasProbabilities(const model::LoadedModel& m) {
  const nlohmann::json& j = m.config;
  if (j.contains("training") && j["training"].is_object() && j["training"].contains("loss") &&
      j["training"]["loss"].is_string()) {
    return j["training"]["loss"].get<std::string>() == "bce";
  }
  return true;
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

// ---- data movielens ---------------------------------------------------------------------------

struct MovieLensArgs {
  std::string src, out;
  data::MovieLensOptions options;
};

int RunMovieLens(const MovieLensArgs& a) {
  const data::MovieLensSummary s = data::ConvertMovieLens(a.src, a.out, a.options);
  std::cout << "read " << a.src << " (" << s.layout << "): " << s.users << " users, " << s.movies
            << " movies, " << s.ratings << " ratings, liked (rating >= " << a.options.like_threshold
            << ") " << Fixed(100 * s.liked_rate, 1) << "%\n"
            << "wrote " << a.out << "/{users.csv, movies.csv, train|val|test/interactions.csv, "
            << "twotower.yaml}\n"
            << "  " << a.options.split << " split: train " << s.train << ", val " << s.val
            << ", test " << s.test;
  if (s.cold_users > 0) std::cout << "; " << s.cold_users << " users have no training rating";
  std::cout << "\nnext: twotower train --config " << a.out << "/twotower.yaml\n";
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
  // The model file records the data paths for evaluate/embed/recommend: absolute, so those work
  // from any directory.
  if (!config.data_dir.empty()) {
    config.data_dir = std::filesystem::absolute(config.data_dir).lexically_normal().string();
  }
  const int threads = SetThreads(config.threads);

  std::cout << "== configuration (" << a.config_path << ", resolved)\n" << config.ToYaml();
  const data::Dataset d = data::LoadDataset(config.ResolvedPaths(), config.features);
  std::cout << "== data\n"
            << "  users " << d.users.num_rows() << " (" << FeatureSummary(d.encoder.user)
            << "), items " << d.items.num_rows() << " (" << FeatureSummary(d.encoder.item) << ")\n"
            << "  interactions: train " << d.train.size() << ", val " << d.val.size() << ", test "
            << d.test.size() << "; positive rate train " << Fixed(d.train.PositiveRate(), 3)
            << ", val " << Fixed(d.val.PositiveRate(), 3) << ", test "
            << Fixed(d.test.PositiveRate(), 3) << "\n";
  const std::string run_dir = train::CreateRunDirectory(config);
  {
    Rng probe(0);
    model::TwoTowerModel shape(config.model, d.encoder, &probe);
    std::cout << "== model (loss: " << config.training.loss
              << ", score: " << model::ScoreModeName(config.model.score) << ", "
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
  std::cout << "== test (best epoch " << r.best_epoch;
  if (r.refit) std::cout << ", refitted on train + val for " << r.best_epoch << " epochs";
  std::cout << ", trained in " << Fixed(r.train_seconds, 2) << "s)\n";
  PrintEval("test", r.test);
  if (!r.test_ranking.ks.empty()) {
    PrintRanking("test ranking (" + std::to_string(r.test_ranking.users) +
                     " users, all items ranked, train+val items excluded; MostPop counts " +
                     (r.refit ? "train+val" : "train") + ")",
                 r.test_ranking, &r.test_most_popular);
  }
  std::cout << "run folder: " << run_dir << "/\n";
  if (r.refit) std::cout << "model: " << run_dir << "/model_refit.safetensors\n";
  return 0;
}

// ---- evaluate ---------------------------------------------------------------------------------

struct EvaluateArgs {
  std::string model, interactions, users, items;
  std::vector<std::string> exclude;
};

int RunEvaluate(const EvaluateArgs& a) {
  const model::LoadedModel m = model::LoadModel(a.model);
  data::DataPaths paths = ModelDataPaths(m);
  if (!a.users.empty()) paths.users = a.users;
  if (!a.items.empty()) paths.items = a.items;
  const data::Table users = ReadDataTable(paths.users, a.users.empty(), "--users");
  const data::Table items = ReadDataTable(paths.items, a.items.empty(), "--items");
  const auto user_index = data::EntityIndex::FromTable(users, m.schema.user.id_column);
  const auto item_index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  const data::Interactions inter =
      data::ReadInteractions(a.interactions, m.schema, user_index, item_index);
  data::EncodedTable xu, xi;
  m.encoder.user.Encode(users, &xu);
  m.encoder.item.Encode(items, &xi);
  train::EvalMetrics pointwise = train::Evaluate(*m.model, xu, xi, inter);
  if (!HasProbabilities(m)) pointwise.loss = pointwise.accuracy = std::nan("");
  PrintEval(a.interactions, pointwise);

  // Ranking: every item ranked for each user with positives in the file, the items of the
  // model's earlier splits excluded (train and validation, or the --exclude files), as in
  // training's test report.
  train::Config settings;
  if (m.config.contains("training") && m.config["training"].is_object()) {
    const nlohmann::json& t = m.config["training"];
    if (t.contains("positives") && t["positives"].is_string()) {
      settings.training.positives = t["positives"].get<std::string>();
    }
  }
  if (m.config.contains("evaluation") && m.config["evaluation"].is_object() &&
      m.config["evaluation"].contains("k") && m.config["evaluation"]["k"].is_array()) {
    settings.evaluation.k = m.config["evaluation"]["k"].get<std::vector<int>>();
  }
  if (settings.evaluation.k.empty()) return 0;
  std::vector<std::string> exclude = a.exclude;
  if (exclude.empty()) {
    for (const std::string* f : {&paths.train, &paths.val}) {
      std::error_code ec;
      if (std::filesystem::exists(*f, ec) && !std::filesystem::equivalent(*f, a.interactions, ec)) {
        exclude.push_back(*f);
      }
    }
  }
  std::vector<data::Interactions> history;
  for (const std::string& f : exclude) {
    history.push_back(data::ReadInteractions(f, m.schema, user_index, item_index));
  }
  std::vector<const data::Interactions*> history_ptrs;
  for (const auto& h : history) history_ptrs.push_back(&h);
  const bool positives_only = settings.training.positives == "liked";
  const auto excluded = data::ItemsByUser(history_ptrs, users.num_rows(), false);
  const auto positives = data::ItemsByUser({&inter}, users.num_rows(), positives_only);
  Matrix u, v;
  m.model->EncodeUsers(xu, &u);
  m.model->EncodeItems(xi, &v);
  const train::RankingMetrics ranking =
      train::EvaluateRanking(u, v, positives, excluded, settings.evaluation.k);
  std::vector<double> counts(items.num_rows(), 0.0);
  if (!history.empty()) {
    const data::Interactions& train_split = history.front();
    for (int64_t i = 0; i < train_split.size(); ++i) {
      if (positives_only && train_split.label[i] != 1.0f) continue;
      counts[train_split.item_row[i]] += 1.0;
    }
  }
  const train::RankingMetrics popular =
      train::EvaluateMostPopular(counts, positives, excluded, settings.evaluation.k);
  std::string title = "ranking (" + std::to_string(ranking.users) + " users with " +
                      (positives_only ? "liked" : "any") + " interactions, all " +
                      std::to_string(items.num_rows()) + " items ranked, excluded:";
  for (const std::string& f : exclude) title += " " + f;
  if (exclude.empty()) title += " nothing";
  PrintRanking(title + "; MostPop counts " + (exclude.empty() ? "nothing" : exclude.front()) + ")",
               ranking, &popular);
  return 0;
}

// ---- embed ------------------------------------------------------------------------------------

struct EmbedArgs {
  std::string model, items, out = "item_embeddings.npy";
};

// The first line of an ids file `twotower embed` writes: it ties the ids to the embeddings they
// were written with, so that a crash between the two renames (or a file copied from another run)
// cannot pair embeddings with ids of the same count but another order. Readers of the file as
// plain text skip it as a comment (numpy.loadtxt, pandas with comment="#").
constexpr std::string_view kIdsHeader = "# twotower-ids";

uint32_t EmbeddingsCrc(const Matrix& v) {
  return index::Crc32c(0, v.data(), static_cast<size_t>(v.size()) * sizeof(float));
}

std::string IdsHeader(const Matrix& v) {
  char crc[9];
  std::snprintf(crc, sizeof(crc), "%08x", EmbeddingsCrc(v));
  return std::string(kIdsHeader) + " rows=" + std::to_string(v.rows()) +
         " dim=" + std::to_string(v.cols()) + " crc32c=" + crc;
}

std::string IdsPath(const std::string& npy_path) {
  std::string base = npy_path;
  if (base.size() > 4 && base.compare(base.size() - 4, 4, ".npy") == 0)
    base.resize(base.size() - 4);
  return base + ".ids.txt";
}

int RunEmbed(const EmbedArgs& a) {
  const model::LoadedModel m = model::LoadModel(a.model);
  const std::string items_path = a.items.empty() ? ModelDataPaths(m).items : a.items;
  const data::Table items = ReadDataTable(items_path, a.items.empty(), "--items");
  const auto index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  data::EncodedTable x;
  Matrix v;
  m.encoder.item.Encode(items, &x);
  m.model->EncodeItems(x, &v);
  std::string ids = IdsHeader(v) + "\n";
  for (const std::string& id : index.ids) ids += id + "\n";
  // The embeddings first: a crash before the ids are renamed leaves old ids whose header names
  // other embeddings, which readers refuse.
  data::WriteNpy(a.out, v);
  WriteFileAtomically(IdsPath(a.out), ids);
  std::cout << "wrote " << a.out << " (" << v.rows() << " x " << v.cols() << " float32) and "
            << IdsPath(a.out) << "\n";
  return 0;
}

// ---- item ids and indexes ----------------------------------------------------------------------

// The ids file beside an embeddings .npy `v` (one id per line, row order): `v.rows()` non-empty,
// distinct ids. A first line from `twotower embed` (kIdsHeader) must describe `v`; a file
// without one (written by hand or another tool) is taken as it is. Errors name the file and line.
std::vector<std::string> ReadIdsFile(const std::string& ids_path, const Matrix& v,
                                     const std::string& npy_path) {
  const int64_t rows = v.rows();
  const std::string text = ReadFile(ids_path);
  std::vector<std::string> ids;
  std::unordered_map<std::string, int64_t> line_of;
  size_t start = 0;
  int64_t header_lines = 0;
  if (text.rfind(kIdsHeader, 0) == 0) {
    size_t end = text.find('\n');
    if (end == std::string::npos) end = text.size();
    std::string header = text.substr(0, end);
    if (!header.empty() && header.back() == '\r') header.pop_back();
    if (header != IdsHeader(v)) {
      throw Error(ids_path + ":1: written for other embeddings than " + npy_path + " (" +
                  Quote(header) + ", expected " + Quote(IdsHeader(v)) +
                  "): run `twotower embed` again to write both");
    }
    start = end + 1;
    header_lines = 1;
  }
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string id = text.substr(start, end - start);
    if (!id.empty() && id.back() == '\r') id.pop_back();
    start = end + 1;
    const int64_t line = static_cast<int64_t>(ids.size()) + 1 + header_lines;
    if (id.empty()) throw Error(ids_path + ":" + std::to_string(line) + ": empty id");
    const auto [it, inserted] = line_of.emplace(id, line);
    if (!inserted) {
      throw Error(ids_path + ":" + std::to_string(line) + ": duplicate id " + Quote(id) +
                  " (also on line " + std::to_string(it->second) + ")");
    }
    ids.push_back(std::move(id));
  }
  if (static_cast<int64_t>(ids.size()) != rows) {
    throw Error(ids_path + ": has " + std::to_string(ids.size()) + " ids, but " + npy_path +
                " has " + std::to_string(rows) + " rows");
  }
  return ids;
}

// Item embeddings from `twotower embed` (.npy plus .ids.txt) as an exact in-memory index.
std::unique_ptr<index::ItemIndex> IndexFromEmbeddings(const std::string& npy_path, int dim) {
  const Matrix v = data::ReadNpy(npy_path);
  if (dim > 0 && v.cols() != dim) {
    throw Error(npy_path + ": embeddings have dimension " + std::to_string(v.cols()) +
                ", the model's is " + std::to_string(dim));
  }
  const std::vector<std::string> ids = ReadIdsFile(IdsPath(npy_path), v, npy_path);
  auto flat = std::make_unique<index::FlatIndex>(static_cast<int>(v.cols()));
  flat->Add(v.data(), v.rows(), ids);
  return flat;
}

// An index file for a model: its dimension must be the model's embedding_dim (checked from the
// header, before the payload is read).
std::unique_ptr<index::ItemIndex> LoadIndexForModel(const std::string& path,
                                                    const std::string& model_path,
                                                    const model::LoadedModel& m) {
  const index::IndexInfo info = index::ReadIndexInfo(path);
  if (info.dim != m.model->embedding_dim()) {
    throw Error(path + ": index dimension " + std::to_string(info.dim) +
                " does not match the model's embedding_dim " +
                std::to_string(m.model->embedding_dim()) + " (" + model_path + ")");
  }
  return index::LoadIndex(path, info.dim);
}

// ---- index build / add --------------------------------------------------------------------------

struct IndexBuildArgs {
  std::string embeddings, type = "flat", out;
  bool quiet = false;
};

int RunIndexBuild(const IndexBuildArgs& a) {
  const Matrix v = data::ReadNpy(a.embeddings);
  const std::vector<std::string> ids = ReadIdsFile(IdsPath(a.embeddings), v, a.embeddings);
  std::unique_ptr<index::ItemIndex> idx = index::MakeIndex(a.type, static_cast<int>(v.cols()));
  const auto start = std::chrono::steady_clock::now();
  {
    // In chunks, for the progress bar: an HNSW build of a million items takes minutes.
    constexpr int64_t kChunk = 16384;
    ProgressBar bar("index", v.rows(), !a.quiet);
    for (int64_t first = 0; first < v.rows(); first += kChunk) {
      const int64_t n = std::min(kChunk, v.rows() - first);
      const std::vector<std::string> chunk(ids.begin() + first, ids.begin() + first + n);
      idx->Add(v.data() + first * v.cols(), n, chunk);
      bar.Update(first + n);
    }
    bar.Finish();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  idx->Save(a.out);
  std::cout << "wrote " << a.out << " (" << idx->spec() << ", " << idx->size() << " items x "
            << idx->dim() << ", built in " << Fixed(seconds, 2) << "s)\n";
  return 0;
}

struct IndexAddArgs {
  std::string model, index, items, out;
};

int RunIndexAdd(const IndexAddArgs& a) {
  const model::LoadedModel m = model::LoadModel(a.model);
  std::unique_ptr<index::ItemIndex> idx = LoadIndexForModel(a.index, a.model, m);
  const data::Table items = data::ReadTable(a.items);
  const auto item_index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  data::EncodedTable x;
  Matrix v;
  m.encoder.item.Encode(items, &x);
  m.model->EncodeItems(x, &v);
  const index::ItemIndex::AddResult r = idx->Add(v.data(), v.rows(), item_index.ids);
  const std::string out = a.out.empty() ? a.index : a.out;
  idx->Save(out);
  std::cout << "added " << r.added << " new and updated " << r.updated << " existing items from "
            << a.items << "; wrote " << out << " (" << idx->spec() << ", " << idx->size()
            << " items)\n";
  return 0;
}

// ---- recommend --------------------------------------------------------------------------------

struct RecommendArgs {
  std::string model, user_id, embeddings, index, users, items, train, val, out;
  int k = 10;
  bool exclude_seen = false;
  bool all_users = false;
  bool quiet = false;
};

// Writes the top k of every user of `users` to a.out as CSV (user id, rank, item id, score),
// streamed in chunks of users through an AtomicFile.
void RecommendAllUsers(const RecommendArgs& a, const model::LoadedModel& m,
                       const data::Table& users, const index::ItemIndex& idx,
                       const std::vector<std::vector<int64_t>>& seen) {
  const auto start = std::chrono::steady_clock::now();
  data::EncodedTable xu_all;
  m.encoder.user.Encode(users, &xu_all);
  Matrix u_all;
  m.model->EncodeUsers(xu_all, &u_all);
  const bool probabilities = HasProbabilities(m);
  const std::vector<std::string>& user_ids = users.Column(m.schema.user.id_column);
  const int64_t n = users.num_rows();
  const int k = a.k;
  const double scale = m.model->scale(), bias = m.model->bias();

  AtomicFile file(a.out);
  file.Write(data::CsvField(m.schema.user.id_column) + ",rank," +
             data::CsvField(m.schema.item.id_column) + ",score\n");
  constexpr int64_t kChunk = 4096;
  Matrix u;
  std::vector<int64_t> ids(static_cast<size_t>(kChunk * k));
  std::vector<float> scores(static_cast<size_t>(kChunk * k));
  std::vector<index::SearchFilter> filters;
  std::vector<std::string> lines(kChunk);
  int64_t rows = 0;
  ProgressBar bar("recommend", n, !a.quiet);
  for (int64_t first = 0; first < n; first += kChunk) {
    const int64_t c = std::min(kChunk, n - first);
    u = u_all.middleRows(first, c);
    if (a.exclude_seen) {
      filters.assign(static_cast<size_t>(c), {});
      for (int64_t i = 0; i < c; ++i) filters[i].exclude = seen[first + i];
    }
    idx.Search(u.data(), c, k, a.exclude_seen ? filters.data() : nullptr, ids.data(),
               scores.data());
    // Formatting is as slow as a small search: one line buffer per user, filled in parallel.
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < c; ++i) {
      std::string& text = lines[i];
      text.clear();
      const std::string user = data::CsvField(user_ids[first + i]);
      char buf[64];
      for (int r = 0; r < k; ++r) {
        const int64_t label = ids[i * k + r];
        if (label < 0) break;
        std::snprintf(buf, sizeof(buf), ",%d,", r + 1);
        text += user;
        text += buf;
        text += data::CsvField(idx.ids()[label]);
        const double score = scores[i * k + r];
        std::snprintf(buf, sizeof(buf), ",%.6f\n",
                      probabilities ? Sigmoid(scale * score + bias) : score);
        text += buf;
      }
    }
    for (int64_t i = 0; i < c; ++i) {
      file.Write(lines[i]);
      rows += std::count(lines[i].begin(), lines[i].end(), '\n');
    }
    bar.Update(first + c);
  }
  file.Commit();
  bar.Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "wrote " << a.out << ": " << n << " users, top " << k << " (" << rows
            << " rows) from " << idx.spec() << " over " << idx.size() << " items";
  if (a.exclude_seen) std::cout << ", seen in train and val excluded";
  std::cout << "; " << Fixed(seconds, 2) << "s, " << Fixed(n / std::max(seconds, 1e-9), 0)
            << " users/s\n";
}

int RunRecommend(const RecommendArgs& a) {
  if (a.all_users == !a.user_id.empty()) {
    throw Error("recommend: give either --user-id ID or --all-users");
  }
  if (a.all_users && a.out.empty()) {
    throw Error("recommend --all-users: --out FILE is required (the CSV of recommendations)");
  }
  if (!a.all_users && !a.out.empty()) throw Error("recommend: --out goes with --all-users");
  if (!a.index.empty() && !a.embeddings.empty()) {
    throw Error("recommend: give --index or --embeddings, not both");
  }
  const model::LoadedModel m = model::LoadModel(a.model);
  data::DataPaths paths = ModelDataPaths(m);
  if (!a.users.empty()) paths.users = a.users;
  if (!a.items.empty()) paths.items = a.items;
  if (!a.train.empty()) paths.train = a.train;
  if (!a.val.empty()) paths.val = a.val;
  const data::Table users = ReadDataTable(paths.users, a.users.empty(), "--users");
  const data::Table items = ReadDataTable(paths.items, a.items.empty(), "--items");
  const auto user_index = data::EntityIndex::FromTable(users, m.schema.user.id_column);
  const auto item_index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  int32_t user_row = -1;
  if (!a.all_users) {
    user_row = user_index.Find(a.user_id);
    if (user_row < 0) {
      throw Error("--user-id: " + Quote(a.user_id) + " is not in " + paths.users);
    }
  }

  // The items: an index file, pre-computed embeddings, or the item tower over the items file.
  std::unique_ptr<index::ItemIndex> idx;
  if (!a.index.empty()) {
    idx = LoadIndexForModel(a.index, a.model, m);
  } else if (!a.embeddings.empty()) {
    idx = IndexFromEmbeddings(a.embeddings, m.model->embedding_dim());
  } else {
    data::EncodedTable xi;
    Matrix v;
    m.encoder.item.Encode(items, &xi);
    m.model->EncodeItems(xi, &v);
    auto flat = std::make_unique<index::FlatIndex>(static_cast<int>(v.cols()));
    flat->Add(v.data(), v.rows(), item_index.ids);
    idx = std::move(flat);
  }

  // Per user, the index labels of the items rated in train and validation: the history that the
  // test evaluation excludes.
  std::vector<std::vector<int64_t>> seen(static_cast<size_t>(users.num_rows()));
  if (a.exclude_seen) {
    std::vector<int64_t> label_of_row(static_cast<size_t>(items.num_rows()));
    for (int64_t r = 0; r < items.num_rows(); ++r) label_of_row[r] = idx->Find(item_index.ids[r]);
    std::vector<std::string> files = {paths.train};
    std::error_code ec;
    if (!a.val.empty() || std::filesystem::exists(paths.val, ec)) files.push_back(paths.val);
    for (const std::string& file : files) {
      const data::Interactions history =
          data::ReadInteractions(file, m.schema, user_index, item_index);
      for (int64_t i = 0; i < history.size(); ++i) {
        const int64_t label = label_of_row[history.item_row[i]];
        if (label >= 0) seen[history.user_row[i]].push_back(label);
      }
    }
    for (std::vector<int64_t>& s : seen) {
      std::sort(s.begin(), s.end());
      s.erase(std::unique(s.begin(), s.end()), s.end());
    }
  }

  if (a.all_users) {
    RecommendAllUsers(a, m, users, *idx, seen);
    return 0;
  }

  // The user's embedding from its raw row.
  std::vector<std::pair<std::string, std::string>> row;
  for (size_t c = 0; c < users.columns.size(); ++c) {
    row.emplace_back(users.columns[c], users.cells[c][user_row]);
  }
  data::EncodedTable xu;
  Matrix u;
  m.encoder.user.EncodeRow(row, users.Where(user_row), &xu);
  m.model->EncodeUsers(xu, &u);

  index::SearchFilter filter;
  filter.exclude = seen[user_row];
  std::vector<int64_t> labels(static_cast<size_t>(a.k));
  std::vector<float> scores(static_cast<size_t>(a.k));
  idx->Search(u.data(), 1, a.k, a.exclude_seen ? &filter : nullptr, labels.data(), scores.data());
  const size_t k = static_cast<size_t>(
      std::count_if(labels.begin(), labels.end(), [](int64_t l) { return l >= 0; }));

  std::cout << "top " << k << " for user " << a.user_id;
  for (const auto& f : m.schema.user.features) {
    std::cout << "  " << f.column << "=" << users.Column(f.column)[user_row];
  }
  if (a.exclude_seen) {
    std::cout << "  (" << filter.exclude.size() << " seen in train and val excluded)";
  }
  std::cout << "\n";
  std::printf("%4s  %-10s  %7s", "rank", m.schema.item.id_column.c_str(), "score");
  for (const auto& f : m.schema.item.features) std::printf("  %-10s", f.column.c_str());
  std::printf("\n");
  for (size_t r = 0; r < k; ++r) {
    const std::string& id = idx->ids()[labels[r]];
    const double p =
        HasProbabilities(m) ? Sigmoid(m.model->scale() * scores[r] + m.model->bias()) : scores[r];
    std::printf("%4zu  %-10s  %7.4f", r + 1, id.c_str(), p);
    const int32_t item_row = item_index.Find(id);
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
  std::string gen_seed = "42";
  generate->add_option("--seed", gen_seed, "random seed")->capture_default_str();

  auto* data_cmd = app.add_subcommand("data", "convert public data sets to the lab's layout");
  data_cmd->require_subcommand(1);
  MovieLensArgs ml;
  std::string ml_seed = "0";
  auto* movielens = data_cmd->add_subcommand(
      "movielens",
      "MovieLens (100k, 1m, 10m, latest, 20m, 25m, 32m) -> users, movies, splits, "
      "twotower.yaml");
  movielens->add_option("--src", ml.src, "the release's folder (e.g. ml-100k/)")->required();
  movielens->add_option("--out", ml.out, "output folder")->required();
  movielens->add_option("--split", ml.options.split, "random | user-temporal | global-temporal")
      ->capture_default_str();
  movielens->add_option("--val", ml.options.val, "validation fraction")->capture_default_str();
  movielens->add_option("--test", ml.options.test, "test fraction")->capture_default_str();
  movielens->add_option("--seed", ml_seed, "seed of the random split")->capture_default_str();
  movielens->add_option("--like-threshold", ml.options.like_threshold, "liked = rating >= this")
      ->capture_default_str();

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
  evaluate->add_option("--exclude", ev.exclude,
                       "interaction files whose items are excluded from each user's ranking, the "
                       "first also counted for MostPop (repeatable; default: the model's train "
                       "and val files, less the evaluated file)");
  evaluate->add_option("--threads", threads, "threads (0 = all cores)");

  EmbedArgs em;
  auto* embed = app.add_subcommand("embed", "write all item embeddings as .npy plus an ids file");
  embed->add_option("--model", em.model, "model file (.safetensors)")->required();
  embed->add_option("--items", em.items, "items CSV (default: the model's training data)");
  embed->add_option("--out", em.out, "output .npy (ids go to <out>.ids.txt)")
      ->capture_default_str();
  embed->add_option("--threads", threads, "threads (0 = all cores)");

  RecommendArgs rec;
  auto* recommend = app.add_subcommand("recommend", "top-k items for a user, or for every user");
  recommend->add_option("--model", rec.model, "model file (.safetensors)")->required();
  recommend->add_option("--user-id", rec.user_id, "the user's id");
  recommend->add_flag("--all-users", rec.all_users,
                      "recommend for every user of the users file into --out (CSV)");
  recommend->add_option("--out", rec.out,
                        "with --all-users: output CSV (user_id,rank,movie_id,score)");
  recommend->add_option("--k", rec.k, "number of items")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  recommend->add_option("--index", rec.index, "item index file (twotower index build)");
  recommend->add_option("--embeddings", rec.embeddings, "pre-computed item embeddings (.npy)");
  recommend->add_flag("--exclude-seen", rec.exclude_seen,
                      "drop items the user rated in train and val (the history the test "
                      "evaluation excludes)");
  recommend->add_option("--users", rec.users, "users CSV (default: the model's training data)");
  recommend->add_option("--items", rec.items, "items CSV (default: the model's training data)");
  recommend->add_option("--train", rec.train, "train interactions for --exclude-seen");
  recommend->add_option("--val", rec.val,
                        "validation interactions for --exclude-seen (default: the model's, "
                        "when the file exists)");
  recommend->add_flag("--quiet", rec.quiet, "no progress bar");
  recommend->add_option("--threads", threads, "threads (0 = all cores)");

  auto* index_cmd = app.add_subcommand("index", "build and extend item indexes");
  index_cmd->require_subcommand(1);
  IndexBuildArgs ib;
  auto* index_build =
      index_cmd->add_subcommand("build", "build an index file from item embeddings (.npy)");
  index_build
      ->add_option("--embeddings", ib.embeddings,
                   "item embeddings from `twotower embed` (ids from <name>.ids.txt)")
      ->required();
  index_build
      ->add_option("--type", ib.type,
                   "flat (exact) or hnsw[:M=32,ef_construction=200,ef_search=64]")
      ->capture_default_str();
  index_build->add_option("--out", ib.out, "index file to write")->required();
  index_build->add_flag("--quiet", ib.quiet, "no progress bar");
  index_build->add_option("--threads", threads, "threads (0 = all cores)");
  IndexAddArgs ia;
  auto* index_add = index_cmd->add_subcommand(
      "add", "encode items with a model's item tower and add them (an existing id is updated)");
  index_add->add_option("--model", ia.model, "model file (.safetensors)")->required();
  index_add->add_option("--index", ia.index, "index file to extend")->required();
  index_add->add_option("--items", ia.items, "items CSV with the model's item columns")->required();
  index_add->add_option("--out", ia.out, "write the result here (default: over --index)");
  index_add->add_option("--threads", threads, "threads (0 = all cores)");

  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
      known |= sub->get_name() == argv[1];
    }
    if (!known) {
      std::cerr << "error: unknown command " << Quote(argv[1]) << " (expected: " << names << ")\n";
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Usage errors look like every other error: one line, "error:", status 1.
    std::cerr << "error: " << e.what() << " (see twotower --help)\n";
    return 1;
  }

  try {
    // --threads and --seed go through the settings table, so every command checks them alike.
    {
      train::Config probe;
      probe.Set("threads=" + std::to_string(threads), "--threads");
      if (generate->parsed()) {
        probe.Set("seed=" + gen_seed, "--seed");
        gen.options.seed = probe.seed;
      }
    }
    SetThreads(threads);
    if (generate->parsed()) return RunGenerate(gen);
    if (movielens->parsed()) {
      train::Config probe;
      probe.Set("seed=" + ml_seed, "--seed");
      ml.options.seed = probe.seed;
      return RunMovieLens(ml);
    }
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
    if (index_build->parsed()) return RunIndexBuild(ib);
    if (index_add->parsed()) return RunIndexAdd(ia);
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
