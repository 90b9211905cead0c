// twotower data interactions: any interaction log in the training layout, with a recipe config;
// twotower data movielens: a MovieLens release, the same way.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/train.h"
#include "twotower/core/error.h"
#include "twotower/data/importer.h"
#include "twotower/data/movielens.h"

namespace twotower::cli {
namespace {

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

struct InteractionsArgs {
  std::string out, names;
  data::ImportOptions options;
};

void PrintFeatures(const char* side, const std::vector<data::InferredFeature>& features) {
  for (const data::InferredFeature& f : features) {
    std::cout << "  " << side << " column " << f.column << ": "
              << (f.type.empty() ? "skipped" : f.type) << " (" << f.reason << ")\n";
  }
}

int RunInteractions(InteractionsArgs& a) {
  if (!a.names.empty()) {
    size_t start = 0;
    while (true) {
      const size_t end = a.names.find(',', start);
      a.options.names.push_back(
          a.names.substr(start, end == std::string::npos ? end : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  const data::ImportSummary s = data::ImportInteractions(a.out, a.options);
  const data::ImportOptions& o = a.options;
  std::cout << "read " << o.interactions << ": " << s.rows << " rows";
  if (s.merged > 0)
    std::cout << " (" << s.merged << " repeats of a pair summed into " << s.interactions << ")";
  std::cout << ", " << s.users << " users, " << s.items << " items";
  if (s.catalogue_items > 0) std::cout << " (of " << s.catalogue_items << " in " << o.items << ")";
  std::cout << ", positives (" << o.positive << ") "
            << Fixed(100.0 * static_cast<double>(s.positives) / static_cast<double>(s.interactions),
                     1)
            << "%\n";
  PrintFeatures("items", s.item_features);
  PrintFeatures("users", s.user_features);
  std::cout << "  " << o.split.split << " split: train " << s.train << ", val " << s.val
            << ", test " << s.test;
  if (s.moved_to_train > 0) {
    std::cout << "; " << s.moved_to_train
              << (s.moved_to_train == 1
                      ? " user whose rows all fell in val/test got the first one"
                      : " users whose rows all fell in val/test got their first one")
              << " back in train";
  }
  if (s.cold_users > 0) {
    std::cout << "; " << s.cold_users << (s.cold_users == 1 ? " user has" : " users have")
              << " no training row";
  }
  if (s.cold_items > 0) {
    std::cout << "; " << s.cold_items << (s.cold_items == 1 ? " item" : " items") << " of val/test "
              << (s.cold_items == 1 ? "has" : "have") << " no training row";
  }
  std::cout << "\nwrote";
  for (const std::string& f : s.written) std::cout << " " << f;
  std::cout << "\nnext: twotower train --config " << s.written.back() << "\n";
  return 0;
}

}  // namespace

Registered DefineData(CLI::App* app, Common* /*common*/) {
  auto* data_cmd = app->add_subcommand(
      "data", "import an interaction log (or a MovieLens release) for training");
  data_cmd->require_subcommand(1);
  auto ml_p = std::make_shared<MovieLensArgs>();
  MovieLensArgs& ml = *ml_p;
  auto ml_seed_p = std::make_shared<std::string>("0");
  std::string& ml_seed = *ml_seed_p;
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
  auto in_p = std::make_shared<InteractionsArgs>();
  InteractionsArgs& in = *in_p;
  auto in_seed_p = std::make_shared<std::string>("0");
  auto* inter = data_cmd->add_subcommand(
      "interactions",
      "any interaction log (CSV, TSV, Parquet) -> train / val / test splits, tables, "
      "twotower.yaml");
  inter
      ->add_option("--interactions", in.options.interactions,
                   "the log: one row per interaction (user, item, [rating], [weight], [time])")
      ->required();
  inter->add_option("--out", in.out, "output folder")->required();
  inter->add_option("--user", in.options.user, "the user id column")->capture_default_str();
  inter->add_option("--item", in.options.item, "the item id column")->capture_default_str();
  inter->add_option("--rating", in.options.rating, "an explicit rating column (kept)");
  inter->add_option("--weight", in.options.weight,
                    "an implicit-feedback weight column, e.g. play counts (kept; >= 0)");
  inter->add_option("--timestamp", in.options.timestamp,
                    "a time column (numbers; the temporal splits need it)");
  inter
      ->add_option("--positive", in.options.positive,
                   "all (every row is a positive) or COLUMN>=X / COLUMN>X (e.g. rating>=4)")
      ->capture_default_str();
  inter
      ->add_option("--duplicates", in.options.duplicates,
                   "a (user, item) pair on several rows: refuse, or sum (weights summed, "
                   "latest timestamp)")
      ->capture_default_str();
  inter->add_option("--items", in.options.items, "an items table (its id column is --item's)");
  inter->add_option("--users", in.options.users, "a users table (its id column is --user's)");
  inter
      ->add_option("--item-features", in.options.item_features,
                   "auto (inferred, shown), none, or COLUMN:TYPE,... (numeric, categorical, "
                   "multi_hot)")
      ->capture_default_str();
  inter->add_option("--user-features", in.options.user_features, "as --item-features")
      ->capture_default_str();
  inter->add_option("--delimiter", in.options.delimiter,
                    "field separator: , tab ; | (default: by suffix: .tsv/.tab tab, else comma)");
  inter->add_option("--names", in.names,
                    "the columns of a file without a header row, comma-separated "
                    "(e.g. user_id,item_id,rating,timestamp)");
  inter->add_option("--split", in.options.split.split, "random | user-temporal | global-temporal")
      ->capture_default_str();
  inter->add_option("--val", in.options.split.val, "validation fraction")->capture_default_str();
  inter->add_option("--test", in.options.split.test, "test fraction")->capture_default_str();
  inter->add_option("--seed", *in_seed_p, "seed of the random split")->capture_default_str();
  inter->add_option("--format", in.options.split.format, "csv or parquet")->capture_default_str();
  return {data_cmd, [ml_p, ml_seed_p, in_p, in_seed_p, movielens, inter] {
            if (inter->parsed()) {
              in_p->options.split.seed = app::ParseSeed(*in_seed_p, "--seed");
              return RunInteractions(*in_p);
            }
            MovieLensArgs& ml = *ml_p;
            ml.options.seed = app::ParseSeed(*ml_seed_p, "--seed");
            return RunMovieLens(ml);
          }};
}

}  // namespace twotower::cli
