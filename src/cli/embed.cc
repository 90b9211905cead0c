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
#include "twotower/data/parquet.h"
#include "twotower/model/model_file.h"

namespace twotower::cli {
namespace {

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
