#include "cli/commands.h"

#include <pthread.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "twotower/app/app.h"
#include "twotower/app/experiment.h"
#include "twotower/app/recommender.h"
#include "twotower/app/train.h"
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/hash.h"
#include "twotower/core/progress.h"
#include "twotower/core/threads.h"
#include "twotower/data/csv.h"
#include "twotower/data/dataset.h"
#include "twotower/data/generator.h"
#include "twotower/data/movielens.h"
#include "twotower/data/npy.h"
#include "twotower/data/parquet.h"
#include "twotower/data/table.h"
#include "twotower/index/flat_index.h"
#include "twotower/index/index_file.h"
#include "twotower/index/item_index.h"
#include "twotower/model/model_file.h"
#include "twotower/serve/events.h"
#include "twotower/serve/experiment.h"
#include "twotower/serve/server.h"
#include "twotower/train/config.h"
#include "twotower/train/ranker_trainer.h"
#include "twotower/train/tasks.h"
#include "twotower/train/trainer.h"

namespace twotower::cli {

int ExitCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kCorruptData:
    case ErrorCode::kIo:
    case ErrorCode::kConflict:
    case ErrorCode::kUnavailable:
      return 1;
    case ErrorCode::kInternal:
      return 2;
  }
  return 2;
}

namespace {

std::string Fixed(double v, int digits = 4) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Rethrows an app error whose field is `field` (its message "field: ...") as one about the
// command's flag ("--flag: ..."); any other error as it is.
[[noreturn]] void RethrowNamingFlag(const Error& e, const std::string& field,
                                    const std::string& flag) {
  if (e.field() != field) throw e;
  std::string message = e.what();
  if (message.rfind(field + ": ", 0) == 0) message = message.substr(field.size() + 2);
  throw Error(e.code(), flag + ": " + message, flag);
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

// ---- generate ---------------------------------------------------------------------------------

struct GenerateArgs {
  data::GeneratorOptions options;
  std::string out = "data/recommendations/v1";
};

int RunGenerate(const GenerateArgs& a) {
  const data::GeneratorSummary s = data::GenerateLabData(a.options, a.out);
  const std::string x = a.options.format == "parquet" ? ".parquet" : ".csv";
  std::cout << "wrote " << a.out << "/{users" << x << ", movies" << x
            << ", train|val|test/interactions" << x << "}\n"
            << "  users " << a.options.users << ", movies " << a.options.movies << ", interactions "
            << a.options.interactions << " (train " << s.train << ", val " << s.val << ", test "
            << s.test << "), liked " << Fixed(100 * s.liked_rate, 1) << "%\n";
  return 0;
}

// ---- convert ----------------------------------------------------------------------------------

struct ConvertArgs {
  std::string in, out;
  std::string compression = "snappy";
  int64_t row_group_rows = 1'000'000;
};

int RunConvert(const ConvertArgs& a, bool parquet_flags_given) {
  if (parquet_flags_given && !data::IsParquetPath(a.out)) {
    throw Error("convert: --compression and --row-group-rows apply to Parquet output, and " +
                a.out + " is written as CSV (its name does not end in .parquet)");
  }
  data::ParquetWriteOptions options;
  options.compression = data::ParseParquetCompression(a.compression, "--compression");
  options.row_group_rows = a.row_group_rows;
  const int64_t rows = data::ConvertTable(a.in, a.out, options);
  std::cout << "wrote " << a.out << ": " << rows << " rows\n";
  return 0;
}

// ---- data movielens ---------------------------------------------------------------------------

struct MovieLensArgs {
  std::string src, out;
  data::MovieLensOptions options;
};

int RunMovieLens(const MovieLensArgs& a) {
  const data::MovieLensSummary s = data::ConvertMovieLens(a.src, a.out, a.options);
  const std::string x = a.options.format == "parquet" ? ".parquet" : ".csv";
  std::cout << "read " << a.src << " (" << s.layout << "): " << s.users << " users, " << s.movies
            << " movies, " << s.ratings << " ratings, liked (rating >= " << a.options.like_threshold
            << ") " << Fixed(100 * s.liked_rate, 1) << "%\n"
            << "wrote " << a.out << "/{users" << x << ", movies" << x
            << ", train|val|test/interactions" << x << ", twotower.yaml}\n"
            << "  " << a.options.split << " split: train " << s.train << ", val " << s.val
            << ", test " << s.test;
  if (s.cold_users > 0) std::cout << "; " << s.cold_users << " users have no training rating";
  std::cout << "\nnext: twotower train --config " << a.out << "/twotower.yaml\n";
  return 0;
}

// ---- train ------------------------------------------------------------------------------------

struct TrainArgs {
  std::string config_path = "config/ranking_config.yaml";
  bool config_given = false;
  std::vector<std::string> sets;
  std::vector<std::string> shortcuts;  // already "key=value"
  std::string resume;                  // a run folder to continue
  bool quiet = false;
};

// A run's test section: the pointwise metrics and, when ranked, the ranking beside MostPop.
void PrintTest(const train::EvalMetrics& test, const train::RankingMetrics& ranking,
               const train::RankingMetrics& most_popular, const std::string& how) {
  PrintEval("test", test);
  if (ranking.ks.empty()) return;
  PrintRanking("test ranking (" + std::to_string(ranking.users) + " users, " + how +
                   ", train+val items excluded; MostPop counts train+val)",
               ranking, &most_popular);
}

// Prints each stage of app::Train as it comes.
class PrintingObserver : public app::TrainObserver {
 public:
  void Configured(const train::Config& config, const std::string& source) override {
    std::cout << "== configuration (" << source << ", resolved)\n" << config.ToYaml();
  }
  void DataLoaded(const data::Dataset& d) override {
    std::cout << "== data\n"
              << "  users " << d.users.num_rows() << " (" << FeatureSummary(d.encoder.user)
              << "), items " << d.items.num_rows() << " (" << FeatureSummary(d.encoder.item)
              << ")\n"
              << "  interactions: train " << d.train.size() << ", val " << d.val.size() << ", test "
              << d.test.size() << "; positive rate train " << Fixed(d.train.PositiveRate(), 3)
              << ", val " << Fixed(d.val.PositiveRate(), 3) << ", test "
              << Fixed(d.test.PositiveRate(), 3) << "\n";
  }
  void ModelBuilt(const app::ModelSummary& m) override {
    if (m.ranker) {
      std::cout << "== ranker (bce on labelled pairs, " << m.parameters << " trainable parameters, "
                << m.threads << " threads)\n"
                << "  " << m.ranker_layers << "\n";
      return;
    }
    std::cout << "== model (loss: " << m.loss << ", score: " << m.score << ", " << m.parameters
              << " trainable parameters, " << m.threads << " threads)\n"
              << "  user tower: " << m.user_tower << "\n"
              << "  item tower: " << m.item_tower << "\n";
    for (const model::TaskSpec& t : m.tasks) {
      std::cout << "  task " << t.name << ": " << t.type << " of '" << t.column << "'"
                << (t.type == "item_class" ? " (" + std::to_string(t.classes.size()) + " classes)"
                                           : std::string())
                << ", weight " << t.weight << "\n";
    }
  }
  void Warning(const std::string& message) override { std::cerr << "warning: " << message << "\n"; }
  void Training(const std::string& run_dir, bool ranker) override {
    std::cout << "== training (run folder " << run_dir
              << (ranker ? "; rankers write no checkpoint)\n" : ")\n");
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
  request.progress = !a.quiet;
  request.log = &std::cout;
  PrintingObserver printer;
  app::TrainOutcome r;
  try {
    r = app::Train(request, &printer);
  } catch (const Error& e) {
    RethrowNamingFlag(e, "resume", "--resume");
  }
  std::cout << "== test (best epoch " << r.best_epoch;
  if (r.refit) std::cout << ", refitted on train + val for " << r.best_epoch << " epochs";
  std::cout << ", trained in " << Fixed(r.train_seconds, 2) << "s)\n";
  PrintTest(r.test, r.test_ranking, r.test_most_popular,
            r.ranker ? "the ranker scoring every item" : "all items ranked");
  for (const train::TaskMetric& t : r.test_tasks) {
    std::cout << "test task " << t.name << ": " << t.metric << " " << Fixed(t.value) << "\n";
  }
  std::cout << "run folder: " << r.run_dir << "/\n";
  if (r.refit) std::cout << "model: " << r.run_dir << "/model_refit.safetensors\n";
  return 0;
}

// ---- evaluate ---------------------------------------------------------------------------------

struct EvaluateArgs {
  std::string model, interactions, users, items, rerank;
  int candidates = -1;  // -1 = not given (app::kDefaultCandidates)
  std::vector<std::string> exclude;
};

int RunEvaluate(const EvaluateArgs& a) {
  app::DataOverrides overrides;
  overrides.users = a.users;
  overrides.items = a.items;
  if (a.candidates != -1 && a.rerank.empty()) {
    throw Error(
        "evaluate: --candidates is how many retrieved items --rerank re-orders; add "
        "--rerank RANKER or leave it out");
  }
  const app::Bundle b = app::LoadBundle(a.model, overrides);
  std::unique_ptr<app::Reranker> reranker;
  if (!a.rerank.empty()) {
    reranker = std::make_unique<app::Reranker>(app::LoadReranker(
        a.rerank, b, nullptr, a.candidates == -1 ? app::kDefaultCandidates : a.candidates));
  }
  const app::EvaluationReport r =
      app::EvaluateInteractions(b, a.interactions, a.exclude, reranker.get());
  PrintEval(a.interactions + (reranker ? " (the ranker's scores)" : ""), r.pointwise);
  for (const train::TaskMetric& t : r.tasks) {
    std::cout << "task " << t.name << ": " << t.metric << " " << Fixed(t.value) << "\n";
  }
  if (!r.ranked) return 0;
  const std::string ranked =
      !reranker ? "all " + std::to_string(b.items.num_rows()) + " items ranked"
      : reranker->candidates >= b.items.num_rows()
          ? "the ranker scoring all " + std::to_string(b.items.num_rows()) + " items"
          : "the top " + std::to_string(reranker->candidates) + " of " +
                std::to_string(b.items.num_rows()) + " items by <u, v> re-ranked by the ranker";
  std::string title = "ranking (" + std::to_string(r.ranking.users) + " users with " +
                      (b.positives_only ? "liked" : "any") + " interactions, " + ranked +
                      ", excluded:";
  for (const std::string& f : r.excluded) title += " " + f;
  if (r.excluded.empty()) title += " nothing";
  PrintRanking(title + "; MostPop counts the excluded files)", r.ranking, &r.most_popular);
  return 0;
}

// ---- embed ------------------------------------------------------------------------------------

struct EmbedArgs {
  std::string model, items, out = "item_embeddings.npy";
};

int RunEmbed(const EmbedArgs& a) {
  const model::LoadedModel m = model::LoadModel(a.model);
  const data::Table items = app::ReadDataTable(
      a.items.empty() ? app::ModelDataPaths(m).items : a.items, a.items.empty(), "--items");
  const auto index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  const Matrix v = app::EmbedItems(m, items);
  app::WriteItemEmbeddings(a.out, v, index.ids, m.fingerprint);
  if (data::IsParquetPath(a.out)) {
    std::cout << "wrote " << a.out << " (" << v.rows() << " rows: item_id, e0 .. e" << v.cols() - 1
              << " float32; model " << ShortFingerprint(m.fingerprint) << ")\n";
    return 0;
  }
  std::cout << "wrote " << a.out << " (" << v.rows() << " x " << v.cols() << " float32) and "
            << app::IdsPath(a.out) << " (model " << ShortFingerprint(m.fingerprint) << ")\n";
  return 0;
}

// ---- index build / add --------------------------------------------------------------------------

struct IndexBuildArgs {
  std::string embeddings, type = "flat", out;
  bool quiet = false;
};

int RunIndexBuild(const IndexBuildArgs& a) {
  const app::IndexBuildResult r = app::BuildIndex(a.embeddings, a.type, a.out, !a.quiet);
  const index::ItemIndex& idx = *r.index;
  std::cout << "wrote " << a.out << " (" << idx.spec() << ", " << idx.size() << " items x "
            << idx.dim() << ", built in " << Fixed(r.seconds, 2) << "s, model "
            << (idx.model_fingerprint().empty() ? std::string("unknown")
                                                : ShortFingerprint(idx.model_fingerprint()))
            << ")\n";
  return 0;
}

struct IndexAddArgs {
  std::string model, index, items, out;
  bool allow_other_model = false;
};

int RunIndexAdd(const IndexAddArgs& a) {
  const std::string out = a.out.empty() ? a.index : a.out;
  const app::IndexAddResult r =
      app::AddToIndex(a.model, a.index, a.items, out, a.allow_other_model);
  std::cout << "added " << r.added.added << " new and updated " << r.added.updated
            << " existing items from " << a.items << "; wrote " << out << " (" << r.index->spec()
            << ", " << r.index->size() << " items)\n";
  return 0;
}

// ---- recommend --------------------------------------------------------------------------------

struct RecommendArgs {
  std::string model, user_id, embeddings, index, users, items, train, val, out;
  std::string rerank;   // a ranker re-ordering the retrieved candidates
  int candidates = -1;  // how many it re-orders; -1 = not given (app::kDefaultCandidates)
  int k = 10;
  bool exclude_seen = false;
  bool all_users = false;
  bool allow_other_model = false;
  bool quiet = false;
  std::vector<std::string> exclude_items, allow_items;  // with --user-id
  bool json = false;                                    // with --user-id
};

int RunRecommend(const RecommendArgs& a) {
  if (a.all_users == !a.user_id.empty()) {
    throw Error("recommend: give either --user-id ID or --all-users");
  }
  if (a.all_users && a.out.empty()) {
    throw Error("recommend --all-users: --out FILE is required (the CSV of recommendations)");
  }
  if (!a.all_users && !a.out.empty()) throw Error("recommend: --out goes with --all-users");
  if (a.all_users && (!a.exclude_items.empty() || !a.allow_items.empty() || a.json)) {
    throw Error("recommend: --exclude-items, --allow-items and --json go with --user-id");
  }
  if (!a.index.empty() && !a.embeddings.empty()) {
    throw Error("recommend: give --index or --embeddings, not both");
  }
  if (a.candidates != -1 && a.rerank.empty()) {
    throw Error(
        "recommend: --candidates is how many retrieved items --rerank re-orders; add "
        "--rerank RANKER or leave it out");
  }
  const int candidates = a.candidates == -1 ? app::kDefaultCandidates : a.candidates;
  if (!a.rerank.empty() && candidates < a.k) {
    throw Error("recommend: --candidates " + std::to_string(candidates) +
                (a.candidates == -1 ? " (the default)" : "") + " is fewer than --k " +
                std::to_string(a.k) + " (the ranker re-orders the candidates and keeps the top k)");
  }
  app::RecommenderOptions options;
  options.model = a.model;
  options.index = a.index;
  options.embeddings = a.embeddings;
  options.data = {a.users, a.items, a.train, a.val};
  options.allow_other_model = a.allow_other_model;
  options.rerank = a.rerank;
  options.candidates = candidates;
  // --exclude-seen needs the history files; without it they are not read for seen items.
  options.require_history = a.exclude_seen;
  // One user: its embedding computed in its block of users, as --all-users and serve compute it.
  if (!a.all_users) options.user_cache_mb = 0;
  const std::unique_ptr<app::Recommender> rec = app::Recommender::Open(options);
  const app::Bundle& b = rec->bundle();
  if (!a.exclude_seen && (!a.train.empty() || !a.val.empty()) && !rec->reads_history()) {
    throw Error(
        "recommend: --train and --val name the history --exclude-seen drops (and a user-history "
        "model reads); this model has no history feature: add --exclude-seen or leave them out");
  }
  int32_t user_row = -1;
  if (!a.all_users) {
    user_row = b.user_index.Find(a.user_id);
    if (user_row < 0) {
      throw Error(ErrorCode::kNotFound,
                  "--user-id: " + Quote(a.user_id) + " is not in " + b.paths.users, "--user-id");
    }
  }
  if (a.all_users) {
    const app::BatchResult r = rec->RecommendAll(a.k, a.exclude_seen, a.out, !a.quiet);
    std::cout << "wrote " << a.out << ": " << r.users << " users, top " << a.k << " (" << r.rows
              << " rows) from " << rec->index_spec() << " over " << rec->num_items() << " items";
    if (a.exclude_seen) std::cout << ", seen in train and val excluded";
    if (rec->reranks()) {
      std::cout << ", re-ranked by " << a.rerank << " from the top " << candidates;
    }
    std::cout << "; provenance in " << app::MetaPath(a.out);
    std::cout << "; " << Fixed(r.seconds, 2) << "s, "
              << Fixed(static_cast<double>(r.users) / std::max(r.seconds, 1e-9), 0) << " users/s\n";
    return 0;
  }

  app::RecommendRequest request;
  request.user.id = a.user_id;
  request.k = a.k;
  request.exclude_seen = a.exclude_seen;
  request.exclude = a.exclude_items;
  if (!a.allow_items.empty()) request.allow = a.allow_items;
  app::Recommendations recs;
  try {
    recs = rec->Recommend(request);
  } catch (const Error& e) {  // name the flag, not the request field
    const std::string& f = e.field();
    const std::string flag = f.rfind("exclude[", 0) == 0 ? "--exclude-items"
                             : f.rfind("allow[", 0) == 0 ? "--allow-items"
                                                         : "";
    if (flag.empty()) throw;
    throw Error(e.code(), flag + ": " + e.what(), flag);
  }
  if (a.json) {
    nlohmann::json out = {{"user_id", a.user_id}, {"items", nlohmann::json::array()}};
    for (const app::ScoredItem& item : recs.items) {
      out["items"].push_back({{"item_id", item.id}, {"score", item.score}});
    }
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  const std::vector<app::ScoredItem>& items = recs.items;
  const data::FeatureSchema& schema = b.model.schema;
  std::cout << "top " << items.size() << " for user " << a.user_id;
  for (const auto& f : schema.user.features) {
    if (f.column == schema.user.id_column) continue;
    std::cout << "  " << f.column << "=" << b.users.Column(f.column)[user_row];
  }
  if (a.exclude_seen) {
    std::cout << "  (" << recs.seen_excluded << " seen in train and val excluded)";
  }
  if (recs.reranked) {
    std::cout << "  (re-ranked by " << a.rerank << " from the top " << recs.retrieved
              << " retrieved; score: the ranker's probability)";
  }
  std::cout << "\n";
  // The item's feature columns, then its title, year and genres when the items table has them
  // (MovieLens).
  std::vector<std::string> shown;
  for (const auto& f : schema.item.features) {
    if (f.column != schema.item.id_column) shown.push_back(f.column);
  }
  for (const char* c : {"title", "year", "genres"}) {
    if (b.items.FindColumn(c) >= 0 && std::find(shown.begin(), shown.end(), c) == shown.end()) {
      shown.push_back(c);
    }
  }
  // Each column as wide as its widest cell (in characters: UTF-8 continuation bytes not
  // counted), at least 10.
  auto width = [](const std::string& text) {
    return static_cast<int>(std::count_if(text.begin(), text.end(), [](char ch) {
      return (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    }));
  };
  auto cell = [&](const std::string& c, size_t r) -> std::string {
    return items[r].item_row >= 0 ? b.items.Column(c)[items[r].item_row] : "?";
  };
  std::vector<int> widths;
  for (const std::string& c : shown) {
    int w = std::max(10, width(c));
    for (size_t r = 0; r < items.size(); ++r) w = std::max(w, width(cell(c, r)));
    widths.push_back(w);
  }
  auto padded = [&](const std::string& text, int w) {
    return text + std::string(static_cast<size_t>(std::max(0, w - width(text))), ' ');
  };
  std::printf("%4s  %-10s  %7s", "rank", schema.item.id_column.c_str(), "score");
  for (size_t i = 0; i < shown.size(); ++i)
    std::printf("  %s", padded(shown[i], widths[i]).c_str());
  std::printf("\n");
  for (size_t r = 0; r < items.size(); ++r) {
    std::printf("%4zu  %-10s  %7.4f", r + 1, items[r].id.c_str(), items[r].score);
    for (size_t i = 0; i < shown.size(); ++i) {
      std::printf("  %s", padded(cell(shown[i], r), widths[i]).c_str());
    }
    std::printf("\n");
  }
  std::fflush(stdout);
  return 0;
}

// ---- serve ------------------------------------------------------------------------------------

struct ServeArgs {
  std::string model, index, config, host, events, rerank;
  int port = -1, threads = -1, candidates = -1;
  bool no_live_history = false;
};

int RunServe(const ServeArgs& a) {
  serve::ServeConfig config;
  if (!a.config.empty()) {
    if (!a.model.empty() || !a.index.empty() || !a.rerank.empty() || a.candidates != -1) {
      throw Error(
          "serve: --config names the variants (serve.variants); --model, --index, --rerank "
          "and --candidates go without it");
    }
    config = serve::ServeConfig::FromYamlFile(a.config);
  } else {
    if (a.model.empty()) throw Error("serve: give --model (and --index), or --config");
    if (a.candidates != -1 && a.rerank.empty()) {
      throw Error(
          "serve: --candidates is how many retrieved items --rerank re-orders; add "
          "--rerank RANKER or leave it out");
    }
    config.variants.push_back({"default", a.model, a.index, 1.0, a.rerank,
                               a.candidates == -1 ? app::kDefaultCandidates : a.candidates});
  }
  if (!a.host.empty()) config.host = a.host;
  if (a.port >= 0) config.port = a.port;
  if (a.threads >= 0) config.threads = a.threads;
  if (!a.events.empty()) config.events = a.events;
  if (a.no_live_history) config.live_history = false;
  config.Validate();
  // Signals go to one thread, which reloads (SIGHUP) or stops (SIGTERM, SIGINT): blocked here,
  // before any thread exists, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  serve::Server server(config);
  const int port = server.Bind();
  std::cout << "serving on http://" << config.host << ":" << port << " (";
  for (size_t i = 0; i < config.variants.size(); ++i) {
    std::cout << (i ? ", " : "") << config.variants[i].name << ": " << config.variants[i].model;
    if (!config.variants[i].rerank.empty()) {
      std::cout << " re-ranked by " << config.variants[i].rerank << " (top "
                << config.variants[i].candidates << ")";
    }
  }
  std::cout << "; events " << config.events << ")" << std::endl;
  for (const std::string& note : server.notes()) std::cerr << note << std::endl;
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (done) return;
      if (sig == SIGHUP) {
        const std::string problem = server.Reload();
        std::cerr << (problem.empty()
                          ? std::string("reloaded")
                          : "reload failed, still serving the previous models: " + problem)
                  << std::endl;
        continue;
      }
      std::cerr << "stopping: finishing requests in flight" << std::endl;
      server.Stop();
      return;
    }
  });
  server.Run();
  done = true;
  pthread_kill(waiter.native_handle(), SIGTERM);  // wakes it if Run ended otherwise
  waiter.join();
  std::cout << "stopped" << std::endl;
  return 0;
}

// ---- compare / experiment report -------------------------------------------------------------

struct CompareArgs {
  std::vector<std::string> models, exclude;
  std::string interactions;
  int resamples = 1000;
  uint64_t seed = 0;
};

std::string Signed(double v) { return (v >= 0 ? "+" : "") + Fixed(v, 4); }

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
  int64_t torn = 0;
  const int64_t n = serve::ReadEvents(
      a.events, [&](const serve::Event& e) { experiment.Count(e.variant, e.user_id, e.event); },
      &torn);
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
  if (torn > 0) std::cout << " (and a torn last line of " << torn << " bytes, ignored)";
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
  generate->add_option("--format", gen.options.format, "csv or parquet (the lab's file names)")
      ->capture_default_str();

  ConvertArgs cv;
  auto* convert = app.add_subcommand(
      "convert", "convert a table between CSV and Parquet (by suffix: .parquet or other)");
  convert->add_option("in", cv.in, "input table (.csv or .parquet)")->required();
  convert->add_option("out", cv.out, "output table (.csv or .parquet)")->required();
  convert
      ->add_option("--compression", cv.compression,
                   "Parquet page codec: snappy, zstd, gzip, none (Parquet output only)")
      ->capture_default_str();
  convert->add_option("--row-group-rows", cv.row_group_rows, "rows per Parquet row group")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));

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
  movielens->add_option("--format", ml.options.format, "csv or parquet")->capture_default_str();
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
  train_cmd->add_option("--resume", tr.resume,
                        "continue the run in this folder from its checkpoint (after a crash or "
                        "a kill), with its own config.yaml");
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
  evaluate->add_option("--rerank", ev.rerank,
                       "a ranker (model.kind: ranker): evaluate the two stages, the model's "
                       "retrieval re-ordered by the ranker, as recommend --rerank");
  evaluate
      ->add_option("--candidates", ev.candidates,
                   "with --rerank: items retrieved per user (default " +
                       std::to_string(app::kDefaultCandidates) +
                       "; the catalogue "
                       "size or more: the ranker scores every item)")
      ->check(CLI::Range(1, 1000000000));
  evaluate->add_option("--threads", threads, "threads (0 = all cores)");

  EmbedArgs em;
  auto* embed = app.add_subcommand("embed", "write all item embeddings as .npy plus an ids file");
  embed->add_option("--model", em.model, "model file (.safetensors)")->required();
  embed->add_option("--items", em.items, "items CSV (default: the model's training data)");
  embed
      ->add_option("--out", em.out,
                   "output .npy (ids go to <out>.ids.txt), or .parquet (item_id, e0, e1, ...)")
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
  recommend->add_option("--train", rec.train,
                        "train interactions for --exclude-seen and a user-history model's "
                        "histories (default: the model's)");
  recommend->add_option("--val", rec.val,
                        "validation interactions for --exclude-seen and histories (default: the "
                        "model's, when the file exists)");
  recommend->add_flag("--allow-other-model", rec.allow_other_model,
                      "use --index / --embeddings made by another model (refused otherwise)");
  recommend->add_option("--rerank", rec.rerank,
                        "a ranker (model.kind: ranker) that re-orders the retrieved candidates");
  recommend
      ->add_option("--candidates", rec.candidates,
                   "with --rerank: how many items to retrieve for the ranker (default " +
                       std::to_string(app::kDefaultCandidates) + ")")
      ->check(CLI::Range(1, 1000000));
  recommend
      ->add_option("--exclude-items", rec.exclude_items,
                   "item ids never recommended to --user-id (comma-separated or repeated)")
      ->delimiter(',');
  recommend
      ->add_option("--allow-items", rec.allow_items,
                   "recommend --user-id only these item ids (comma-separated or repeated)")
      ->delimiter(',');
  recommend->add_flag("--json", rec.json,
                      "with --user-id: print {\"user_id\", \"items\": [{item_id, score}]} with "
                      "scores in full precision (what POST /v1/recommend answers), not the table");
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
  index_add->add_flag("--allow-other-model", ia.allow_other_model,
                      "add to an index made by another model (the result records no model)");
  index_add->add_option("--threads", threads, "threads (0 = all cores)");

  CompareArgs cmp;
  auto* compare = app.add_subcommand(
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
  compare->add_option("--threads", threads, "threads (0 = all cores)");

  ExperimentArgs ex;
  auto* experiment = app.add_subcommand("experiment", "A/B experiments");
  experiment->require_subcommand(1);
  auto* report = experiment->add_subcommand("report", "the readout of a serve event log, offline");
  report->add_option("--events", ex.events, "event log (JSON lines from twotower serve)")
      ->required();
  report->add_option("--config", ex.config, "the serve.yaml (experiment name, variant weights)");
  report->add_option("--control", ex.control,
                     "the variant the others are compared with (default: the config's first, "
                     "else the log's first)");

  ServeArgs sv;
  auto* serve_cmd = app.add_subcommand(
      "serve", "an HTTP recommendation service: recommend, score, similar, live items, A/B tests");
  serve_cmd->add_option("--model", sv.model, "model file (one variant, \"default\")");
  serve_cmd->add_option("--index", sv.index, "its index file (default: its items, exact)");
  serve_cmd->add_option("--config", sv.config,
                        "YAML file with a serve: section (variants, limits)");
  serve_cmd->add_option("--host", sv.host, "address to listen on (default 127.0.0.1)");
  serve_cmd->add_option("--port", sv.port, "port (default 8080; 0 = any free one)")
      ->check(CLI::Range(0, 65535));
  serve_cmd
      ->add_option("--threads", sv.threads,
                   "request threads, one per open connection (0 = 4 per core, at least 8)")
      ->check(CLI::Range(0, 1024));
  serve_cmd->add_option("--events", sv.events, "feedback event log (default events.jsonl)");
  serve_cmd->add_flag("--no-live-history", sv.no_live_history,
                      "likes sent to /v1/feedback do not join the users' histories and seen "
                      "items (serve.live_history: false)");
  serve_cmd->add_option("--rerank", sv.rerank,
                        "a ranker (model.kind: ranker) re-ordering what --model retrieves");
  serve_cmd->add_option("--candidates", sv.candidates,
                        "with --rerank: items retrieved per request (default " +
                            std::to_string(app::kDefaultCandidates) + ")");

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
    if (convert->parsed()) {
      return RunConvert(cv, convert->get_option("--compression")->count() > 0 ||
                                convert->get_option("--row-group-rows")->count() > 0);
    }
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
      tr.config_given = train_cmd->get_option("--config")->count() > 0;
      return RunTrain(tr);
    }
    if (evaluate->parsed()) return RunEvaluate(ev);
    if (embed->parsed()) return RunEmbed(em);
    if (recommend->parsed()) return RunRecommend(rec);
    if (index_build->parsed()) return RunIndexBuild(ib);
    if (index_add->parsed()) return RunIndexAdd(ia);
    if (serve_cmd->parsed()) return RunServe(sv);
    if (compare->parsed()) return RunCompare(cmp);
    if (report->parsed()) return RunExperimentReport(ex);
  } catch (const Error& e) {
    std::cout.flush();
    std::cerr << (e.code() == ErrorCode::kInternal ? "internal error: " : "error: ") << e.what()
              << "\n";
    return ExitCode(e.code());
  } catch (const std::bad_alloc&) {
    std::cout.flush();
    std::cerr << "error: out of memory (the request or the data needs more memory than this "
                 "machine has)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "internal error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

}  // namespace twotower::cli
