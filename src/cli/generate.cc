// twotower generate: the lab's synthetic movie data set.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/train.h"
#include "twotower/core/error.h"
#include "twotower/data/generator.h"

namespace twotower::cli {
namespace {

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

}  // namespace

Registered DefineGenerate(CLI::App* app, Common* /*common*/) {
  auto gen_p = std::make_shared<GenerateArgs>();
  GenerateArgs& gen = *gen_p;
  auto* generate = app->add_subcommand("generate", "generate the lab's synthetic movie data set");
  generate->add_option("--out", gen.out, "output directory")->capture_default_str();
  generate->add_option("--users", gen.options.users, "number of users")->capture_default_str();
  generate->add_option("--movies", gen.options.movies, "number of movies")->capture_default_str();
  generate->add_option("--interactions", gen.options.interactions, "number of interactions")
      ->capture_default_str();
  auto gen_seed_p = std::make_shared<std::string>("42");
  std::string& gen_seed = *gen_seed_p;
  generate->add_option("--seed", gen_seed, "random seed")->capture_default_str();
  generate->add_option("--format", gen.options.format, "csv or parquet (the lab's file names)")
      ->capture_default_str();
  return {generate, [gen_p, gen_seed_p] {
            GenerateArgs& gen = *gen_p;
            gen.options.seed = app::ParseSeed(*gen_seed_p, "--seed");
            return RunGenerate(gen);
          }};
}

}  // namespace twotower::cli
