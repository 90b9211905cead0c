// twotower index build / add: item index files (app::BuildIndex, app::AddToIndex).
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/train.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"

namespace twotower::cli {
namespace {

struct IndexBuildArgs {
  std::string embeddings, type = "flat", out;
  bool quiet = false;
};

int RunIndexBuild(const IndexBuildArgs& a) {
  const app::IndexBuildResult r = app::BuildIndex(a.embeddings, a.type, a.out, !a.quiet);
  const app::ItemIndex& idx = *r.index;
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
  if (r.untrained > 0) {
    std::cout << r.untrained
              << " items left out: no trained embedding (their id is not in the model's "
                 "training interactions, and the item tower is the id alone)\n";
  }
  return 0;
}

}  // namespace

Registered DefineIndex(CLI::App* app, Common* common) {
  auto* index_cmd = app->add_subcommand("index", "build and extend item indexes");
  index_cmd->require_subcommand(1);
  auto ib_p = std::make_shared<IndexBuildArgs>();
  IndexBuildArgs& ib = *ib_p;
  auto* index_build =
      index_cmd->add_subcommand("build", "build an index file from item embeddings (.npy)");
  index_build
      ->add_option("--embeddings", ib.embeddings,
                   "item embeddings from `twotower embed` (ids from <name>.ids.txt)")
      ->required();
  index_build
      ->add_option("--type", ib.type,
                   "flat[:storage=fp32|bf16|int8] (exact; bf16 / int8 scan 2x / 4x fewer bytes "
                   "and re-score in fp32, same results) or "
                   "hnsw[:M=32,ef_construction=200,ef_search=64,storage=fp32|bf16|int8] "
                   "(approximate; bf16 / int8 codes in the graph, candidates re-scored in fp32)")
      ->capture_default_str();
  index_build->add_option("--out", ib.out, "index file to write")->required();
  index_build->add_flag("--quiet", ib.quiet, "no progress bar");
  index_build->add_option("--threads", common->threads, "threads (0 = all cores)");
  auto ia_p = std::make_shared<IndexAddArgs>();
  IndexAddArgs& ia = *ia_p;
  auto* index_add = index_cmd->add_subcommand(
      "add", "encode items with a model's item tower and add them (an existing id is updated)");
  index_add->add_option("--model", ia.model, "model file (.safetensors)")->required();
  index_add->add_option("--index", ia.index, "index file to extend")->required();
  index_add->add_option("--items", ia.items, "items CSV with the model's item columns")->required();
  index_add->add_option("--out", ia.out, "write the result here (default: over --index)");
  index_add->add_flag("--allow-other-model", ia.allow_other_model,
                      "add to an index made by another model (the result records no model)");
  index_add->add_option("--threads", common->threads, "threads (0 = all cores)");
  return {index_cmd, [ib_p, ia_p, index_build] {
            return index_build->parsed() ? RunIndexBuild(*ib_p) : RunIndexAdd(*ia_p);
          }};
}

}  // namespace twotower::cli
