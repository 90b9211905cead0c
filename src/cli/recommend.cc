// twotower recommend: one user's top k, or every user's (app::Recommender).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/recommender.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"

namespace twotower::cli {
namespace {

struct RecommendArgs {
  std::string model, user_id, embeddings, index, users, items, train, val, out;
  std::string rerank;   // a ranker re-ordering the retrieved candidates
  int candidates = -1;  // how many it re-orders; -1 = not given (app::kDefaultCandidates)
  int k = 10;
  bool exclude_seen = false;
  bool all_users = false;
  bool user_id_given = false;  // --user-id was on the command line (perhaps empty)
  bool allow_other_model = false;
  bool quiet = false;
  std::vector<std::string> exclude_items, allow_items;  // with --user-id
  bool json = false;                                    // with --user-id
};

int RunRecommend(const RecommendArgs& a) {
  if (a.user_id_given && a.user_id.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--user-id: empty; expected a user's id", "--user-id");
  }
  if (a.all_users == a.user_id_given) {
    throw Error("recommend: give either --user-id ID or --all-users");
  }
  if (dist::Distributed() && !a.all_users) {
    throw Error(
        "recommend: under mpirun only --all-users runs data-parallel (one user is one "
        "process's work)");
  }
  if (a.all_users && a.out.empty()) {
    throw Error("recommend --all-users: --out FILE is required (the CSV of recommendations)");
  }
  if (!a.all_users && !a.out.empty()) throw Error("recommend: --out goes with --all-users");
  for (const auto& [flag, ids] : {std::pair{"--exclude-items", &a.exclude_items},
                                  std::pair{"--allow-items", &a.allow_items}}) {
    for (const std::string& id : *ids) {
      if (id.empty()) {
        throw Error(std::string(flag) + ": an empty item id (expected item ids, comma-separated)");
      }
    }
  }
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
  options.load_seen = a.exclude_seen;
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
                  "--user-id: " + Quote(a.user_id) + " is not in " + b.users.source, "--user-id");
    }
  }
  if (a.all_users) {
    const app::BatchResult r = rec->RecommendAll(a.k, a.exclude_seen, a.out, !a.quiet);
    std::cout << "wrote " << a.out << ": " << r.users << " users, top " << a.k << " (" << r.rows
              << " rows) from " << rec->index_spec() << " over " << rec->num_items() << " items";
    if (a.exclude_seen) std::cout << ", seen in train and val excluded";
    if (r.fallback_users > 0) {
      std::cout << "; " << r.fallback_users
                << " users in no training interaction got the most popular items (fallback)";
    }
    if (rec->untrained_items() > 0) {
      std::cout << "; " << rec->untrained_items()
                << " items without a trained embedding never recommended";
    }
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
  if (recs.untrained_excluded > 0) {
    std::cout << "  (" << recs.untrained_excluded
              << " items without a trained embedding never recommended)";
  }
  if (!recs.fallback.empty()) {
    std::cout << "  (fallback: " << recs.fallback
              << ": the user is in no training interaction; score: the item's share)";
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

}  // namespace

Registered DefineRecommend(CLI::App* app, Common* common) {
  auto rec_p = std::make_shared<RecommendArgs>();
  RecommendArgs& rec = *rec_p;
  auto* recommend = app->add_subcommand("recommend", "top-k items for a user, or for every user");
  recommend->add_option("--model", rec.model, "model file (.safetensors)")->required();
  CLI::Option* user_id = recommend->add_option("--user-id", rec.user_id, "the user's id");
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
  recommend->add_option("--threads", common->threads, "threads (0 = all cores)");
  return {recommend, [rec_p, user_id] {
            rec_p->user_id_given = user_id->count() > 0;
            return RunRecommend(*rec_p);
          }};
}

}  // namespace twotower::cli
