// twotower embed: every item through the item tower, to .npy + ids or Parquet.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/app.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"

namespace twotower::cli {
namespace {

struct EmbedArgs {
  std::string model, items, out = "item_embeddings.npy";
};

int RunEmbed(const EmbedArgs& a) {
  const app::EmbedResult r = app::EmbedItemsToFile(a.model, a.items, a.out);
  if (r.untrained > 0) {
    std::cout << r.untrained
              << " items left out: no trained embedding (their id is not in the model's "
                 "training interactions, and the item tower is the id alone)\n";
  }
  if (r.parquet) {
    std::cout << "wrote " << a.out << " (" << r.rows << " rows: item_id, e0 .. e" << r.dim - 1
              << " float32; model " << ShortFingerprint(r.model_fingerprint) << ")\n";
    return 0;
  }
  std::cout << "wrote " << a.out << " (" << r.rows << " x " << r.dim << " float32) and "
            << app::IdsPath(a.out) << " (model " << ShortFingerprint(r.model_fingerprint) << ")\n";
  return 0;
}

}  // namespace

Registered DefineEmbed(CLI::App* app, Common* common) {
  auto em_p = std::make_shared<EmbedArgs>();
  EmbedArgs& em = *em_p;
  auto* embed = app->add_subcommand("embed", "write all item embeddings as .npy plus an ids file");
  embed->add_option("--model", em.model, "model file (.safetensors)")->required();
  embed->add_option("--items", em.items, "items CSV (default: the model's training data)");
  embed
      ->add_option("--out", em.out,
                   "output .npy (ids go to <out>.ids.txt), or .parquet (item_id, e0, e1, ...)")
      ->capture_default_str();
  embed->add_option("--threads", common->threads, "threads (0 = all cores)");
  return {embed, [em_p] { return RunEmbed(*em_p); }};
}

}  // namespace twotower::cli
