// twotower data movielens: a MovieLens release in the lab's layout.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/train.h"
#include "twotower/core/error.h"
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

}  // namespace

Registered DefineData(CLI::App* app, Common* /*common*/) {
  auto* data_cmd = app->add_subcommand("data", "convert public data sets to the lab's layout");
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
  return {data_cmd, [ml_p, ml_seed_p] {
            MovieLensArgs& ml = *ml_p;
            ml.options.seed = app::ParseSeed(*ml_seed_p, "--seed");
            return RunMovieLens(ml);
          }};
}

}  // namespace twotower::cli
