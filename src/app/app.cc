#include "twotower/app/app.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/hash.h"
#include "twotower/core/parallel.h"
#include "twotower/core/progress.h"
#include "twotower/core/rng.h"
#include "twotower/core/text.h"
#include "twotower/data/history.h"
#include "twotower/data/npy.h"
#include "twotower/data/parquet.h"
#include "twotower/data/table.h"
#include "twotower/index/flat_index.h"
#include "twotower/index/index_file.h"
#include "twotower/train/config.h"
#include "twotower/train/ranker_trainer.h"
#include "twotower/train/tasks.h"

namespace twotower::app {
namespace {

// The first line of an ids file `twotower embed` writes: it ties the ids to the embeddings they
// were written with, so that a crash between the two renames (or a file copied from another run)
// cannot pair embeddings with ids of the same count but another order. Readers of the file as
// plain text skip it as a comment (numpy.loadtxt, pandas with comment="#").
constexpr std::string_view kIdsHeader = "# twotower-ids";

// The part of the first line that describes `v` itself.
std::string IdsHeader(const Matrix& v) {
  char crc[9];
  std::snprintf(crc, sizeof(crc), "%08x",
                Crc32c(0, v.data(), static_cast<size_t>(v.size()) * sizeof(float)));
  return std::string(kIdsHeader) + " rows=" + std::to_string(v.rows()) +
         " dim=" + std::to_string(v.cols()) + " crc32c=" + crc;
}
constexpr std::string_view kModelField = " model=sha256:";

// The ids file beside an embeddings .npy `v` (one id per line, row order, read as every text file
// is: core/text.h): `v.rows()` distinct ids. A first line from `twotower embed` (kIdsHeader) must
// describe `v`, and may end with the model's fingerprint (` model=sha256:<64 hex>`, returned in
// *model_fingerprint); a file without that line (written by hand or another tool) is taken as it
// is, its model unknown. Errors name the file and line.
std::vector<std::string> ReadIdsFile(const std::string& ids_path, const Matrix& v,
                                     const std::string& npy_path, std::string* model_fingerprint) {
  const int64_t rows = v.rows();
  TextLineReader lines(ids_path);
  std::vector<std::string> ids;
  std::unordered_map<std::string, int64_t> line_of;
  model_fingerprint->clear();
  std::string text;
  bool first = true;
  while (lines.Next(&text)) {
    if (first && text.rfind(kIdsHeader, 0) == 0) {
      first = false;
      const std::string expected = IdsHeader(v);
      const std::string rest = text.rfind(expected, 0) == 0 ? text.substr(expected.size()) : "";
      const bool model_ok = rest.rfind(kModelField, 0) == 0 &&
                            IsSha256Hex(std::string_view(rest).substr(kModelField.size()));
      if (text.rfind(expected, 0) != 0 || (!rest.empty() && !model_ok)) {
        throw Error(lines.Where() + ": written for other embeddings than " + npy_path + " (" +
                    Quote(text) + ", expected " + Quote(expected) +
                    " and optionally \" model=sha256:<64 hex digits>\"): run `twotower embed` "
                    "again to write both");
      }
      if (!rest.empty()) *model_fingerprint = rest.substr(kModelField.size());
      continue;
    }
    first = false;
    const int64_t line = lines.line();
    const auto [it, inserted] = line_of.emplace(text, line);
    if (!inserted) {
      throw Error(ids_path + ":" + std::to_string(line) + ": duplicate id " + Quote(text) +
                  " (also on line " + std::to_string(it->second) + ")");
    }
    ids.push_back(text);
  }
  if (static_cast<int64_t>(ids.size()) != rows) {
    throw Error(ids_path + ": has " + std::to_string(ids.size()) + " ids, but " + npy_path +
                " has " + std::to_string(rows) + " rows");
  }
  return ids;
}

}  // namespace

std::string MetaPath(const std::string& out_path) { return out_path + ".meta.json"; }

data::TypedTable ReadTypedTable(const std::string& path) {
  if (data::TableFormatOf(path) == data::TableFormat::kCsv) {
    return data::InferTypes(data::ReadTable(path));
  }
  data::ParquetReader reader(path);
  data::TypedTable out;
  for (const data::ParquetColumnInfo& info : reader.columns()) {
    if (!info.unsupported.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  path + ": column '" + info.name + "': " + info.unsupported +
                      " is not read by twotower (expected BOOLEAN, INT32, INT64, FLOAT, DOUBLE "
                      "or a UTF-8 BYTE_ARRAY)");
    }
    out.specs.push_back({info.name, info.type, info.optional});
    data::ParquetColumn& all = out.columns.emplace_back();
    all.type = info.type;
    all.is_unsigned = info.is_unsigned;
  }
  data::ParquetColumn part;
  for (int g = 0; g < reader.num_row_groups(); ++g) {
    for (size_t c = 0; c < out.columns.size(); ++c) {
      reader.ReadColumn(g, static_cast<int>(c), &part);
      data::ParquetColumn& all = out.columns[c];
      const int64_t before = all.size(), n = part.size();
      if (!part.valid.empty() || !all.valid.empty()) {
        all.valid.resize(static_cast<size_t>(before), 1);
        if (part.valid.empty()) {
          all.valid.insert(all.valid.end(), static_cast<size_t>(n), 1);
        } else {
          all.valid.insert(all.valid.end(), part.valid.begin(), part.valid.end());
        }
      }
      all.ints.insert(all.ints.end(), part.ints.begin(), part.ints.end());
      all.doubles.insert(all.doubles.end(), part.doubles.begin(), part.doubles.end());
      const auto offset = static_cast<int32_t>(all.strings.size());
      all.strings.insert(all.strings.end(), part.strings.begin(), part.strings.end());
      for (int32_t i : part.string_index) all.string_index.push_back(i + offset);
    }
  }
  return out;
}

void WriteTypedTable(const std::string& path, const data::TypedTable& table) {
  data::WriteTable(path, table);
}

data::Table ReadDataTable(const std::string& path, bool from_model, const char* flag,
                          const std::string& id_column,
                          const std::vector<std::string>& interaction_files) {
  try {
    if (path.empty()) return data::ReadEntities(path, id_column, interaction_files);
    return data::ReadTable(path);
  } catch (const Error& e) {
    if (!from_model) throw;
    throw Error(std::string(e.what()) + " (path from the model file's training config; pass " +
                flag + " to read another file)");
  }
}

data::DataPaths ModelDataPaths(const model::LoadedModel& loaded) {
  train::Config defaults;
  defaults.features = loaded.schema;  // which towers read a table (Config::ResolvedPaths)
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

Bundle LoadBundle(const std::string& model_path, const DataOverrides& o) {
  Bundle b;
  b.model_path = model_path;
  b.model = model::LoadModel(model_path);
  b.paths = ModelDataPaths(b.model);
  if (!o.users.empty()) b.paths.users = o.users;
  if (!o.items.empty()) b.paths.items = o.items;
  if (!o.train.empty()) b.paths.train = o.train;
  if (!o.val.empty()) b.paths.val = o.val;
  const std::vector<std::string> splits = {b.paths.train, b.paths.val, b.paths.test};
  b.users = ReadDataTable(b.paths.users, o.users.empty(), "--users", b.model.schema.user.id_column,
                          splits);
  b.items = ReadDataTable(b.paths.items, o.items.empty(), "--items", b.model.schema.item.id_column,
                          splits);
  b.user_index = data::EntityIndex::FromTable(b.users, b.model.schema.user.id_column);
  b.item_index = data::EntityIndex::FromTable(b.items, b.model.schema.item.id_column);
  b.model.encoder.user.Encode(b.users, &b.user_features);
  b.model.encoder.item.Encode(b.items, &b.item_features);
  const nlohmann::json& c = b.model.config;
  if (c.contains("training") && c["training"].is_object()) {
    const nlohmann::json& t = c["training"];
    if (t.contains("loss") && t["loss"].is_string()) {
      b.probabilities = t["loss"].get<std::string>() == "bce";
    }
    if (t.contains("positives") && t["positives"].is_string()) {
      b.positives_only = t["positives"].get<std::string>() == "liked";
    }
  }
  if (c.contains("evaluation") && c["evaluation"].is_object() && c["evaluation"].contains("k") &&
      c["evaluation"]["k"].is_array()) {
    try {
      b.ks = c["evaluation"]["k"].get<std::vector<int>>();
    } catch (const nlohmann::json::exception&) {
      throw Error(model_path + ": __metadata__.config: evaluation.k is not a list of integers");
    }
    for (int k : b.ks) {
      if (k < 1) throw Error(model_path + ": __metadata__.config: evaluation.k must be >= 1");
    }
  }
  if (b.model.encoder.user.schema().history.enabled()) {
    // The user-history feature reads what the user did before: the train and val files.
    std::vector<data::Interactions> earlier;
    for (const std::string& f : HistoryFiles(b, o)) {
      try {
        earlier.push_back(data::ReadInteractions(f, b.model.schema, b.user_index, b.item_index));
      } catch (const Error& e) {
        throw Error(std::string(e.what()) +
                    " (the model's user-history feature reads the train and val files; "
                    "--train / --val name others)");
      }
    }
    AttachHistory(b, earlier, &b.user_features);
  }
  return b;
}

void AttachHistory(const Bundle& b, const std::vector<data::Interactions>& earlier,
                   data::EncodedTable* users) {
  const data::HistorySpec& spec = b.model.encoder.user.schema().history;
  if (!spec.enabled()) return;
  std::vector<const data::Interactions*> sources;
  for (const data::Interactions& e : earlier) sources.push_back(&e);
  users->history = data::UserHistory(
      sources, b.users.num_rows(),
      b.item_features.bags.at(data::HistoryTableBag(b.model.encoder.item)), spec.length);
}

std::vector<std::string> HistoryFiles(const Bundle& bundle, const DataOverrides& overrides) {
  std::vector<std::string> files = {bundle.paths.train};
  std::error_code ec;
  if (!overrides.val.empty() || std::filesystem::exists(bundle.paths.val, ec)) {
    files.push_back(bundle.paths.val);
  }
  return files;
}

void RequireFiniteRows(const Matrix& v, const std::vector<std::string>& ids,
                       const std::string& source) {
  for (Eigen::Index r = 0; r < v.rows(); ++r) {
    if (v.row(r).allFinite()) continue;
    throw Error(ErrorCode::kInvalidArgument,
                source + ": item " + Quote(ids[static_cast<size_t>(r)]) +
                    ": the item tower's output is not finite: a feature value is too far "
                    "outside what the model was trained on");
  }
}

EmbedResult EmbedItemsToFile(const std::string& model_path, const std::string& items_path,
                             const std::string& out_path) {
  const model::LoadedModel m = model::LoadModel(model_path);
  const data::DataPaths paths = ModelDataPaths(m);
  const data::Table items =
      ReadDataTable(items_path.empty() ? paths.items : items_path, items_path.empty(), "--items",
                    m.schema.item.id_column, {paths.train, paths.val, paths.test});
  const auto index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  data::EncodedTable x;
  m.encoder.item.Encode(items, &x);
  Matrix v;
  m.model->EncodeItems(x, &v);
  std::vector<std::string> ids = index.ids;
  const std::vector<int64_t> untrained = UntrainedItemRows(m, x);
  DropRows(untrained, &v, &ids);
  RequireFiniteRows(v, ids, items_path.empty() ? paths.items : items_path);
  WriteItemEmbeddings(out_path, v, ids, m.fingerprint);
  EmbedResult r{v.rows(), static_cast<int64_t>(untrained.size()), static_cast<int>(v.cols()),
                m.fingerprint, data::TableFormatOf(out_path) == data::TableFormat::kParquet};
  return r;
}

// The footer key of a Parquet embeddings file that names its model.
constexpr std::string_view kParquetModelKey = "twotower.model_sha256";

std::string IdsPath(const std::string& npy_path) {
  std::string base = npy_path;
  if (base.size() > 4 && base.compare(base.size() - 4, 4, ".npy") == 0) {
    base.resize(base.size() - 4);
  }
  return base + ".ids.txt";
}

std::vector<int64_t> UntrainedItemRows(const model::LoadedModel& model,
                                       const data::EncodedTable& items) {
  if (!model.encoder.item.IdAlone()) return {};
  return model.encoder.item.UnknownIdRows(items);
}

void DropRows(const std::vector<int64_t>& rows, Matrix* v, std::vector<std::string>* ids) {
  if (rows.empty()) return;
  std::vector<char> drop(ids->size(), 0);
  for (int64_t r : rows) drop[static_cast<size_t>(r)] = 1;
  int64_t out = 0;
  for (int64_t r = 0; r < v->rows(); ++r) {
    if (drop[static_cast<size_t>(r)]) continue;
    if (out != r) {
      v->row(out) = v->row(r);
      (*ids)[static_cast<size_t>(out)] = std::move((*ids)[static_cast<size_t>(r)]);
    }
    ++out;
  }
  v->conservativeResize(out, v->cols());
  ids->resize(static_cast<size_t>(out));
}

Matrix EmbedItems(const model::LoadedModel& model, const data::Table& items) {
  data::EncodedTable x;
  model.encoder.item.Encode(items, &x);
  Matrix v;
  model.model->EncodeItems(x, &v);
  return v;
}

void WriteItemEmbeddings(const std::string& npy_path, const Matrix& vectors,
                         const std::vector<std::string>& ids,
                         const std::string& model_fingerprint) {
  if (!model_fingerprint.empty() && !IsSha256Hex(model_fingerprint)) {
    throw Error("WriteItemEmbeddings: model fingerprint " + Quote(model_fingerprint) +
                " is not a SHA-256");
  }
  if (static_cast<int64_t>(ids.size()) != vectors.rows()) {
    throw Error("WriteItemEmbeddings: " + std::to_string(ids.size()) + " ids for " +
                std::to_string(vectors.rows()) + " rows");
  }
  // The ids file is read as every text file is (core/text.h): an id it could not give back
  // unchanged is refused here rather than altered there.
  for (size_t r = 0; r < ids.size(); ++r) {
    const std::string& id = ids[r];
    if (id.empty() || id.find_first_of("\r\n") != std::string::npos || id.front() == ' ' ||
        id.front() == '\t' || id.back() == ' ' || id.back() == '\t' ||
        (r == 0 && id.rfind("#", 0) == 0)) {
      throw Error("WriteItemEmbeddings: id " + Quote(id) + " (row " + std::to_string(r) +
                  ") is empty, has a line break or blanks at either end" +
                  (r == 0 ? ", or starts with '#'" : "") + ": an ids file cannot keep it");
    }
  }
  if (data::TableFormatOf(npy_path) == data::TableFormat::kParquet) {
    // One table: the item id (STRING), then e0 .. e{D-1} (FLOAT), one row per item; the model's
    // SHA-256 in the footer's key-value metadata.
    data::TypedTable t;
    data::ParquetColumn& id_col = t.AddColumn("item_id", data::ParquetType::kString);
    id_col.strings = ids;
    for (size_t r = 0; r < ids.size(); ++r) id_col.string_index.push_back(static_cast<int32_t>(r));
    for (int64_t c = 0; c < vectors.cols(); ++c) {
      data::ParquetColumn& col = t.AddColumn("e" + std::to_string(c), data::ParquetType::kFloat);
      for (int64_t r = 0; r < vectors.rows(); ++r) col.doubles.push_back(vectors(r, c));
    }
    data::ParquetWriteOptions options;
    if (!model_fingerprint.empty()) {
      options.key_value_metadata.push_back({std::string(kParquetModelKey), model_fingerprint});
    }
    data::WriteTable(npy_path, t, options);
    return;
  }
  std::string text = IdsHeader(vectors);
  if (!model_fingerprint.empty()) text += std::string(kModelField) + model_fingerprint;
  text += "\n";
  for (const std::string& id : ids) text += id + "\n";
  // The embeddings first: a crash before the ids are renamed leaves old ids whose header names
  // other embeddings, which readers refuse. An interrupt waits until both are in place.
  InterruptHold hold;
  data::WriteNpy(npy_path, vectors);
  WriteFileAtomically(IdsPath(npy_path), text);
}

ItemEmbeddings ReadParquetEmbeddings(const std::string& path) {
  data::ParquetReader reader(path);
  const std::vector<data::ParquetColumnInfo>& columns = reader.columns();
  if (columns.size() < 2) {
    throw Error(path + ": expected an id column and at least one embedding column (e0, e1, ...)");
  }
  for (size_t c = 1; c < columns.size(); ++c) {
    const std::string want = "e" + std::to_string(c - 1);
    if (columns[c].name != want || columns[c].type != data::ParquetType::kFloat) {
      throw Error(path + ": column " + std::to_string(c + 1) + " is " + Quote(columns[c].name) +
                  " (" + data::ParquetTypeName(columns[c].type) + "), expected " + want +
                  " (FLOAT): the layout `twotower embed --out FILE.parquet` writes");
    }
  }
  if (reader.num_rows() == 0) throw Error(path + ": no items (expected at least one row)");
  ItemEmbeddings e;
  e.model_fingerprint = reader.KeyValue(std::string(kParquetModelKey));
  if (!e.model_fingerprint.empty() && !IsSha256Hex(e.model_fingerprint)) {
    throw Error(path + ": key-value metadata " + std::string(kParquetModelKey) + " is " +
                Quote(e.model_fingerprint) + ", expected a SHA-256 in hex");
  }
  e.vectors.resize(reader.num_rows(), static_cast<int64_t>(columns.size()) - 1);
  data::ParquetColumn col;
  std::unordered_map<std::string, int64_t> seen;
  int64_t first = 0;
  for (int g = 0; g < reader.num_row_groups(); ++g) {
    reader.ReadColumn(g, 0, &col);
    for (int64_t r = 0; r < col.size(); ++r) {
      if (col.IsNull(r)) throw Error(path + ": row " + std::to_string(first + r + 1) + ": null id");
      e.ids.push_back(col.Text(r));
      if (!seen.emplace(e.ids.back(), first + r).second) {
        throw Error(path + ": row " + std::to_string(first + r + 1) + ": id " +
                    Quote(e.ids.back()) + " repeats row " + std::to_string(seen[e.ids.back()] + 1));
      }
    }
    for (size_t c = 1; c < columns.size(); ++c) {
      reader.ReadColumn(g, static_cast<int>(c), &col);
      for (int64_t r = 0; r < col.size(); ++r) {
        if (col.IsNull(r)) {
          throw Error(path + ": row " + std::to_string(first + r + 1) + ": column " +
                      columns[c].name + " is null, expected a finite value");
        }
        e.vectors(first + r, static_cast<int64_t>(c) - 1) = static_cast<float>(col.doubles[r]);
      }
    }
    first += reader.row_group_rows(g);
  }
  return e;
}

ItemEmbeddings ReadItemEmbeddings(const std::string& npy_path) {
  ItemEmbeddings e;
  if (data::TableFormatOf(npy_path) == data::TableFormat::kParquet) {
    e = ReadParquetEmbeddings(npy_path);
  } else {
    e.vectors = data::ReadNpy(npy_path);
    e.ids = ReadIdsFile(IdsPath(npy_path), e.vectors, npy_path, &e.model_fingerprint);
  }
  // Checked here, at the boundary, so the message names the file. Rows count from 1, as in the
  // other messages about a table's rows; dimensions from 0, as the Parquet columns e0.. are named.
  for (int64_t r = 0; r < e.vectors.rows(); ++r) {
    for (int64_t c = 0; c < e.vectors.cols(); ++c) {
      if (!std::isfinite(e.vectors(r, c))) {
        throw Error(npy_path + ": row " + std::to_string(r + 1) + " (id " + Quote(e.ids[r]) +
                    "): value at dimension " + std::to_string(c) + " is " +
                    (std::isnan(e.vectors(r, c)) ? "NaN" : "infinite") +
                    ", expected finite embeddings");
      }
    }
  }
  return e;
}

void CheckSameModel(const std::string& file, const std::string& recorded,
                    const std::string& model_path, const model::LoadedModel& m,
                    bool allow_other_model) {
  if (allow_other_model || recorded == m.fingerprint) return;
  const std::string model = model_path + " (" + ShortFingerprint(m.fingerprint) + ")";
  const std::string remedy =
      ": run `twotower embed` and `twotower index build` with this model, or pass "
      "--allow-other-model if mixing the two is really wanted";
  if (recorded.empty()) {
    throw Error(file +
                ": records no model fingerprint (an index of format 1, one built from embeddings "
                "without a model, or one mixed by `index add --allow-other-model`; or embeddings "
                "whose ids file has no `# twotower-ids ... model=` line), so it cannot be checked "
                "against " +
                model + remedy);
  }
  throw Error(file + ": made by the model " + ShortFingerprint(recorded) + ", not by " + model +
              ": its item vectors live in another model's space" + remedy);
}

std::unique_ptr<index::ItemIndex> LoadIndexForModel(const std::string& path,
                                                    const std::string& model_path,
                                                    const model::LoadedModel& m,
                                                    bool allow_other_model) {
  const index::IndexInfo info = index::ReadIndexInfo(path);
  if (info.dim != m.model->embedding_dim()) {
    throw Error(path + ": index dimension " + std::to_string(info.dim) +
                " does not match the model's embedding_dim " +
                std::to_string(m.model->embedding_dim()) + " (" + model_path + ")");
  }
  std::unique_ptr<index::ItemIndex> index = index::LoadIndex(path, info.dim);
  CheckSameModel(path, index->model_fingerprint(), model_path, m, allow_other_model);
  return index;
}

std::unique_ptr<index::ItemIndex> OpenItemIndex(const Bundle& bundle, const std::string& index_path,
                                                const std::string& embeddings_path,
                                                bool allow_other_model, int64_t* untrained) {
  if (!index_path.empty() && !embeddings_path.empty()) {
    throw Error("give an index file or embeddings, not both");
  }
  if (!index_path.empty()) {
    return LoadIndexForModel(index_path, bundle.model_path, bundle.model, allow_other_model);
  }
  Matrix v;
  std::vector<std::string> ids;
  if (!embeddings_path.empty()) {
    ItemEmbeddings e = ReadItemEmbeddings(embeddings_path);
    CheckSameModel(embeddings_path, e.model_fingerprint, bundle.model_path, bundle.model,
                   allow_other_model);
    if (e.vectors.cols() != bundle.model.model->embedding_dim()) {
      throw Error(embeddings_path + ": embeddings have dimension " +
                  std::to_string(e.vectors.cols()) + ", the model's is " +
                  std::to_string(bundle.model.model->embedding_dim()));
    }
    v = std::move(e.vectors);
    ids = std::move(e.ids);
  } else {
    bundle.model.model->EncodeItems(bundle.item_features, &v);
    ids = bundle.item_index.ids;
    const std::vector<int64_t> rows = UntrainedItemRows(bundle.model, bundle.item_features);
    DropRows(rows, &v, &ids);
    RequireFiniteRows(v, ids, "the items table");
    if (untrained != nullptr) *untrained = static_cast<int64_t>(rows.size());
  }
  auto flat = std::make_unique<index::FlatIndex>(static_cast<int>(v.cols()));
  flat->Add(v.data(), v.rows(), ids);
  return flat;
}

std::vector<std::vector<int64_t>> SeenLabels(const Bundle& bundle, const index::ItemIndex& index,
                                             const std::vector<std::string>& files) {
  std::vector<std::vector<int64_t>> seen(static_cast<size_t>(bundle.users.num_rows()));
  std::vector<int64_t> label_of_row(static_cast<size_t>(bundle.items.num_rows()));
  for (int64_t r = 0; r < bundle.items.num_rows(); ++r) {
    label_of_row[r] = index.Find(bundle.item_index.ids[r]);
  }
  for (const std::string& file : files) {
    const data::Interactions history =
        data::ReadInteractions(file, bundle.model.schema, bundle.user_index, bundle.item_index);
    for (int64_t i = 0; i < history.size(); ++i) {
      const int64_t label = label_of_row[history.item_row[i]];
      if (label >= 0) seen[history.user_row[i]].push_back(label);
    }
  }
  for (std::vector<int64_t>& s : seen) {
    std::sort(s.begin(), s.end());
    s.erase(std::unique(s.begin(), s.end()), s.end());
  }
  return seen;
}

EvaluationReport EvaluateInteractions(const Bundle& b, const std::string& path,
                                      const std::vector<std::string>& exclude,
                                      const Reranker* reranker) {
  EvaluationReport r;
  const std::vector<model::TaskSpec>& tasks = b.model.model->config().tasks;
  const data::Interactions inter = data::ReadInteractions(
      path, b.model.schema, b.user_index, b.item_index, train::TaskTargetColumns(tasks));
  const model::TwoTowerModel& net = *b.model.model;
  // The files before this one: what the ranking excludes and what a user history reads (read only
  // when one of them needs them).
  const bool history = b.model.encoder.user.schema().history.enabled();
  const bool need_earlier = history || !b.ks.empty();
  for (const std::string& f : need_earlier ? exclude : std::vector<std::string>{}) {
    std::error_code ec;
    if (f == path || std::filesystem::equivalent(f, path, ec)) {
      throw Error("--exclude: " + f +
                  " is the file being evaluated (its items would all be "
                  "excluded; give the earlier splits, e.g. train and val)");
    }
  }
  std::vector<std::string> earlier_files = need_earlier ? exclude : std::vector<std::string>{};
  if (need_earlier && earlier_files.empty()) {
    for (const std::string* f : {&b.paths.train, &b.paths.val}) {
      std::error_code ec;
      if (std::filesystem::exists(*f, ec) && !std::filesystem::equivalent(*f, path, ec)) {
        earlier_files.push_back(*f);
      }
    }
  }
  std::vector<data::Interactions> earlier;
  for (const std::string& f : earlier_files) {
    earlier.push_back(data::ReadInteractions(f, b.model.schema, b.user_index, b.item_index));
  }
  Matrix u, v;  // every user and item once, for both evaluations
  if (history) {
    data::EncodedTable users = b.user_features;
    AttachHistory(b, earlier, &users);
    net.EncodeUsers(users, &u);
  } else {
    net.EncodeUsers(b.user_features, &u);
  }
  net.EncodeItems(b.item_features, &v);
  if (!tasks.empty()) {
    // The task heads on this file: regression targets from it, item classes from the items table.
    std::map<std::string, std::vector<std::string>> item_text;
    for (const std::string& c : train::TaskItemColumns(tasks)) {
      try {
        item_text[c] = b.items.Column(c);
      } catch (const Error& e) {
        throw Error(std::string(e.what()) + " (the model's task heads read it)");
      }
    }
    const std::vector<double> values =
        train::EvaluateTasks(net, train::TaskTargetsFor(tasks, item_text), u, v, inter);
    for (size_t t = 0; t < tasks.size(); ++t) {
      r.tasks.push_back({tasks[t].name, train::TaskMetricName(tasks[t]), values[t]});
    }
  }
  if (reranker != nullptr) {
    // The pairs' probabilities are the ranker's: the last stage decides what is shown.
    r.pointwise = train::EvaluateRanker(*reranker->ranker.model, reranker->user_features,
                                        reranker->item_features, inter);
  } else {
    r.pointwise = train::Evaluate(net, u, v, inter);
    if (!b.probabilities) r.pointwise.loss = r.pointwise.accuracy = std::nan("");
  }
  if (b.ks.empty()) return r;
  r.ranked = true;
  r.excluded = earlier_files;
  std::vector<const data::Interactions*> history_ptrs;
  for (const auto& h : earlier) history_ptrs.push_back(&h);
  const int64_t num_users = b.users.num_rows();
  const auto excluded = data::ItemsByUser(history_ptrs, num_users, false);
  const auto positives = data::ItemsByUser({&inter}, num_users, b.positives_only);
  if (reranker == nullptr) {
    r.ranking = train::EvaluateRanking(u, v, positives, excluded, b.ks, &r.per_user);
  } else {
    const int max_k = *std::max_element(b.ks.begin(), b.ks.end());
    if (reranker->candidates < max_k) {
      throw Error("--candidates " + std::to_string(reranker->candidates) +
                  " is fewer than the largest evaluation.k (" + std::to_string(max_k) +
                  "): a re-ranked list has at most --candidates items");
    }
    // The two stages exactly as `recommend --rerank` runs them: the top `candidates` items by
    // <u, v> (the user's history excluded, ties to the lower row, as the exact index), re-ordered
    // by the ranker's logit; every other item scores lowest().
    const int64_t num_items = v.rows();
    const int64_t c = std::min<int64_t>(reranker->candidates, num_items);
    std::vector<float> dot(num_items);
    std::vector<int32_t> order(num_items), users(c), items(c);
    std::vector<char> skip(num_items, 0);
    Vector logits;
    r.ranking = train::EvaluateRankingByScores(
        num_users, num_items,
        [&](int32_t user, float* scores) {
          Eigen::Map<Vector>(dot.data(), num_items).noalias() = v * u.row(user).transpose();
          std::fill(skip.begin(), skip.end(), 0);
          for (int32_t e : excluded[user]) skip[e] = 1;
          int64_t m = 0;
          for (int32_t i = 0; i < num_items; ++i) {
            if (!skip[i]) order[m++] = i;
          }
          const int64_t top = std::min(c, m);
          std::partial_sort(
              order.begin(), order.begin() + top, order.begin() + m,
              [&](int32_t x, int32_t y) { return dot[x] > dot[y] || (dot[x] == dot[y] && x < y); });
          std::fill(scores, scores + num_items, std::numeric_limits<float>::lowest());
          std::fill(users.begin(), users.end(), user);
          reranker->ranker.model->Score(reranker->user_features, users.data(),
                                        reranker->item_features, order.data(), top, &logits);
          // Rerank's order, written as descending ranks so the metrics' tie rule (the lower item
          // row) cannot reorder it.
          const std::vector<int64_t> rank_order =
              RerankOrder(logits.data(), top, reranker->path, [&](int64_t j) {
                return "item row " + std::to_string(order[j]) + " for user row " +
                       std::to_string(user);
              });
          for (int64_t j = 0; j < top; ++j) {
            scores[order[rank_order[j]]] = static_cast<float>(top - j);
          }
        },
        positives, excluded, b.ks, &r.per_user);
  }
  // MostPop's popularity: the positives of the excluded history, as in training's test report.
  std::vector<double> counts(b.items.num_rows(), 0.0);
  for (const data::Interactions& h : earlier) {
    for (int64_t i = 0; i < h.size(); ++i) {
      if (b.positives_only && h.label[i] != 1.0f) continue;
      counts[h.item_row[i]] += 1.0;
    }
  }
  r.most_popular = train::EvaluateMostPopular(counts, positives, excluded, b.ks);
  return r;
}

ModelComparison CompareModels(const Bundle& a, Bundle& b, const std::string& path,
                              const std::vector<std::string>& exclude, int resamples,
                              uint64_t seed) {
  if (resamples < 100)
    throw Error("compare: at least 100 bootstrap resamples, got " + std::to_string(resamples));
  b.ks = a.ks;
  if (a.ks.empty()) throw Error("compare: the first model's evaluation.k is empty");
  const EvaluationReport ra = EvaluateInteractions(a, path, exclude);
  const EvaluationReport rb = EvaluateInteractions(b, path, exclude);
  // Pair users by id.
  std::unordered_map<std::string, size_t> in_b;
  for (size_t i = 0; i < rb.per_user.users.size(); ++i) {
    in_b[b.user_index.ids[rb.per_user.users[i]]] = i;
  }
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t i = 0; i < ra.per_user.users.size(); ++i) {
    const auto it = in_b.find(a.user_index.ids[ra.per_user.users[i]]);
    if (it != in_b.end()) pairs.emplace_back(i, it->second);
  }
  if (pairs.empty()) throw Error("compare: no user of " + path + " is evaluated by both models");
  ModelComparison out;
  out.users = static_cast<int64_t>(pairs.size());
  out.resamples = resamples;
  const size_t n = pairs.size();
  // The resampled user positions, drawn once and shared by every metric (a paired bootstrap).
  Rng rng(seed);
  std::vector<std::vector<uint32_t>> draws(static_cast<size_t>(resamples));
  for (auto& d : draws) {
    d.resize(n);
    for (auto& x : d) x = static_cast<uint32_t>(rng.Below(n));
  }
  const std::pair<const char*, const std::vector<std::vector<double>> train::PerUserRanking::*>
      metrics[] = {{"recall", &train::PerUserRanking::recall},
                   {"ndcg", &train::PerUserRanking::ndcg},
                   {"hitrate", &train::PerUserRanking::hit_rate},
                   {"mrr", &train::PerUserRanking::mrr}};
  for (const auto& [name, member] : metrics) {
    for (size_t ki = 0; ki < a.ks.size(); ++ki) {
      const std::vector<double>& va = (ra.per_user.*member)[ki];
      const std::vector<double>& vb = (rb.per_user.*member)[ki];
      std::vector<double> d(n);
      MetricComparison m;
      m.metric = name;
      m.k = a.ks[ki];
      for (size_t i = 0; i < n; ++i) {
        m.a += va[pairs[i].first];
        m.b += vb[pairs[i].second];
        d[i] = vb[pairs[i].second] - va[pairs[i].first];
      }
      m.a /= static_cast<double>(n);
      m.b /= static_cast<double>(n);
      m.diff = m.b - m.a;
      std::vector<double> means(static_cast<size_t>(resamples));
      int better = 0;
      for (size_t r = 0; r < draws.size(); ++r) {
        double sum = 0;
        for (uint32_t x : draws[r]) sum += d[x];
        means[r] = sum / static_cast<double>(n);
        better += means[r] > 0;
      }
      std::sort(means.begin(), means.end());
      auto quantile = [&](double q) {
        const double pos = q * static_cast<double>(means.size() - 1);
        const size_t lo = static_cast<size_t>(pos);
        const size_t hi = std::min(lo + 1, means.size() - 1);
        return means[lo] + (pos - static_cast<double>(lo)) * (means[hi] - means[lo]);
      };
      m.lo = quantile(0.025);
      m.hi = quantile(0.975);
      m.b_better = static_cast<double>(better) / resamples;
      out.rows.push_back(m);
    }
  }
  return out;
}

double DisplayScore(const Bundle& bundle, float inner_product) {
  if (!bundle.probabilities) return inner_product;
  return Sigmoid(bundle.model.model->scale() * inner_product + bundle.model.model->bias());
}

std::vector<Recommendation> RecommendForUser(const Bundle& b, const index::ItemIndex& index,
                                             int32_t user_row, int k,
                                             const std::vector<int64_t>* exclude) {
  if (user_row < 0 || user_row >= b.users.num_rows()) {
    throw Error("RecommendForUser: user row out of range");
  }
  // The user's embedding from its encoded row (the same arithmetic as a batch of one).
  std::vector<std::pair<std::string, std::string>> row;
  for (size_t c = 0; c < b.users.columns.size(); ++c) {
    row.emplace_back(b.users.columns[c], b.users.cells[c][user_row]);
  }
  data::EncodedTable xu;
  b.model.encoder.user.EncodeRow(row, b.users.Where(user_row), &xu);
  if (b.user_features.history.rows() > 0) {  // the user's history, as attached at load
    const data::Bags& h = b.user_features.history;
    xu.history.ids.assign(h.ids.begin() + h.offsets[user_row],
                          h.ids.begin() + h.offsets[user_row + 1]);
    xu.history.offsets = {0, static_cast<int64_t>(xu.history.ids.size())};
  }
  Matrix u;
  b.model.model->EncodeUsers(xu, &u);
  index::SearchFilter filter;
  if (exclude != nullptr) filter.exclude = *exclude;
  // Buffers sized by what can be returned, not by the request (k may exceed the catalogue).
  k = static_cast<int>(std::min<int64_t>(k, std::max<int64_t>(index.size(), 1)));
  std::vector<int64_t> labels(static_cast<size_t>(k));
  std::vector<float> scores(static_cast<size_t>(k));
  index.Search(u.data(), 1, k, exclude != nullptr ? &filter : nullptr, labels.data(),
               scores.data());
  std::vector<Recommendation> out;
  for (int r = 0; r < k && labels[r] >= 0; ++r) out.push_back({labels[r], scores[r]});
  return out;
}

Reranker LoadReranker(const std::string& path, const Bundle& b, const index::ItemIndex* index,
                      int candidates) {
  if (candidates < 1) {
    throw Error("--candidates: expected at least 1, got " + std::to_string(candidates));
  }
  Reranker r;
  r.path = path;
  r.candidates = candidates;
  r.ranker = model::LoadRanker(path);
  try {
    r.ranker.encoder.user.Encode(b.users, &r.user_features);
    r.ranker.encoder.item.Encode(b.items, &r.item_features);
  } catch (const Error& e) {
    throw Error(path + ": the ranker cannot read the two-tower model's tables: " + e.what());
  }
  if (index == nullptr) return r;
  r.label_rows.resize(static_cast<size_t>(index->size()));
  for (int64_t label = 0; label < index->size(); ++label) {
    const int32_t row = b.item_index.Find(index->ids()[label]);
    if (row < 0) {
      throw Error("--rerank: item " + Quote(index->ids()[label]) + " of the index is not in " +
                  b.items.source +
                  ", so the ranker has no features for it (pass --items with "
                  "the table the index was built from)");
    }
    r.label_rows[label] = row;
  }
  return r;
}

std::vector<int64_t> RerankOrder(const float* logits, int64_t n, const std::string& ranker_path,
                                 const std::function<std::string(int64_t)>& name) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(logits[i])) {
      throw Error(ErrorCode::kCorruptData, ranker_path + ": the ranker scored " + name(i) + " as " +
                                               std::to_string(logits[i]) +
                                               " (expected a finite logit)");
    }
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t c) { return logits[a] > logits[c]; });
  return order;
}

std::vector<Recommendation> Rerank(const Reranker& r, int32_t user_row,
                                   const std::vector<Recommendation>& candidates, int k) {
  const int64_t n = static_cast<int64_t>(candidates.size());
  std::vector<int32_t> users(n, user_row), items(n);
  for (int64_t i = 0; i < n; ++i) items[i] = r.label_rows.at(candidates[i].label);
  Vector logits;
  r.ranker.model->Score(r.user_features, users.data(), r.item_features, items.data(), n, &logits);
  const std::vector<int64_t> order = RerankOrder(logits.data(), n, r.path, [&](int64_t i) {
    return "item row " + std::to_string(items[i]) + " for user row " + std::to_string(user_row);
  });
  std::vector<Recommendation> out;
  for (int64_t i = 0; i < std::min<int64_t>(k, n); ++i) {
    out.push_back({candidates[order[i]].label, logits[order[i]]});
  }
  return out;
}

void EncodeKnownUsers(const Bundle& b, int64_t first, int64_t n, Matrix* out) {
  const int64_t total = b.users.num_rows();
  if (first < 0 || n < 0 || first + n > total) {
    throw Error(ErrorCode::kInternal, "EncodeKnownUsers: rows [" + std::to_string(first) + ", " +
                                          std::to_string(first + n) + ") out of range (" +
                                          std::to_string(total) + " users)");
  }
  out->resize(n, b.model.model->embedding_dim());
  std::vector<int32_t> rows;
  Matrix block;
  // Whole blocks through the tower: a GEMM's rounding can depend on how many rows it multiplies
  // (Eigen picks other kernels for one row), so each user is always computed in the same block.
  for (int64_t bf = first / kUserBlock * kUserBlock; bf < first + n; bf += kUserBlock) {
    const int64_t m = std::min(kUserBlock, total - bf);
    rows.resize(static_cast<size_t>(m));
    std::iota(rows.begin(), rows.end(), static_cast<int32_t>(bf));
    b.model.model->EncodeUsers(b.user_features, rows.data(), m, &block);
    const int64_t lo = std::max(first, bf), hi = std::min(first + n, bf + m);
    out->middleRows(lo - first, hi - lo) = block.middleRows(lo - bf, hi - lo);
  }
}

std::vector<std::pair<int64_t, double>> PopularityFallback::Top(const index::SearchFilter* filter,
                                                                int k) const {
  std::vector<std::pair<int64_t, double>> out;
  std::unordered_set<int64_t> excluded, allowed;
  if (filter != nullptr) {
    excluded.insert(filter->exclude.begin(), filter->exclude.end());
    if (filter->allow) allowed.insert(filter->allow->begin(), filter->allow->end());
  }
  for (int64_t label : order) {
    if (static_cast<int>(out.size()) >= k) break;
    if (excluded.count(label)) continue;
    if (filter != nullptr && filter->allow && !allowed.count(label)) continue;
    out.emplace_back(label, share[static_cast<size_t>(label)]);
  }
  return out;
}

PopularityFallback MakePopularityFallback(const Bundle& b, int64_t index_size,
                                          const std::vector<std::vector<int64_t>>& seen) {
  PopularityFallback f;
  if (!b.model.encoder.user.IdAlone()) return f;
  f.cold_user.assign(static_cast<size_t>(b.users.num_rows()), 0);
  for (int64_t r : b.model.encoder.user.UnknownIdRows(b.user_features)) {
    f.cold_user[static_cast<size_t>(r)] = 1;
    ++f.cold_users;
  }
  if (f.cold_users == 0 || seen.empty()) return f;  // nothing to fall back for, or from
  std::vector<int64_t> counts(static_cast<size_t>(index_size), 0);
  int64_t total = 0;
  for (const std::vector<int64_t>& labels : seen) {
    for (int64_t label : labels) {
      if (label >= 0 && label < index_size) ++counts[static_cast<size_t>(label)], ++total;
    }
  }
  f.order.resize(static_cast<size_t>(index_size));
  std::iota(f.order.begin(), f.order.end(), int64_t{0});
  std::stable_sort(f.order.begin(), f.order.end(), [&](int64_t a, int64_t c) {
    return counts[static_cast<size_t>(a)] > counts[static_cast<size_t>(c)];
  });
  f.share.resize(static_cast<size_t>(index_size));
  for (int64_t l = 0; l < index_size; ++l) {
    f.share[static_cast<size_t>(l)] =
        total > 0 ? static_cast<double>(counts[static_cast<size_t>(l)]) / total : 0.0;
  }
  return f;
}

BatchResult RecommendAllUsers(const Bundle& b, const index::ItemIndex& idx, int k,
                              const std::vector<std::vector<int64_t>>* seen,
                              const std::string& out_path, bool progress, const Reranker* reranker,
                              const Matrix* user_embeddings, const PopularityFallback* fallback) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string>& user_ids = b.user_index.ids;
  const int64_t n = b.users.num_rows();
  const data::FeatureSchema& schema = b.model.schema;

  const int requested_k = k;
  const bool parquet = data::TableFormatOf(out_path) == data::TableFormat::kParquet;
  // Under mpirun the ranks compute and rank 0 alone writes (dist::GatherToRoot below).
  const bool writes = dist::IsRoot();
  std::unique_ptr<AtomicFile> file;
  std::unique_ptr<data::ParquetWriter> parquet_file;
  std::vector<data::ParquetColumn> columns(4);
  if (!writes) {
  } else if (parquet) {
    // The same four columns as the CSV; ids as strings (as the index holds them), the score as
    // the FLOAT it is (the CSV rounds it to 6 decimals).
    parquet_file = std::make_unique<data::ParquetWriter>(
        out_path, std::vector<data::ParquetColumnSpec>{
                      {schema.user.id_column, data::ParquetType::kString, false},
                      {"rank", data::ParquetType::kInt32, false},
                      {schema.item.id_column, data::ParquetType::kString, false},
                      {"score", data::ParquetType::kFloat, false}});
    columns[0].type = columns[2].type = data::ParquetType::kString;
    columns[1].type = data::ParquetType::kInt32;
    columns[3].type = data::ParquetType::kFloat;
  } else {
    file = std::make_unique<AtomicFile>(out_path);
    file->Write(data::CsvField(schema.user.id_column) + ",rank," +
                data::CsvField(schema.item.id_column) + ",score\n");
  }
  // Buffers sized by what can be returned: at most the catalogue per user, and users in chunks
  // of at most 4M results (48 MiB of labels and scores) however large k is.
  k = static_cast<int>(std::min<int64_t>(k, std::max<int64_t>(idx.size(), 1)));
  // w: how many each user retrieves (the ranker's candidates when re-ranking); the first k of
  // each row of ids / scores are written, scores already as shown (DisplayScore, or the
  // ranker's probability).
  const int w = reranker == nullptr
                    ? k
                    : static_cast<int>(std::min<int64_t>(std::max(k, reranker->candidates),
                                                         std::max<int64_t>(idx.size(), 1)));
  int64_t kChunk = std::max<int64_t>(1, std::min<int64_t>(4096, (int64_t{1} << 22) / w));
  if (dist::Distributed()) {
    // Rank 0 gathers one chunk (16 bytes a result) from every rank at once: within MPI's int
    // counts. The chunking changes no user's result, so the file stays the same.
    const int64_t cap = (int64_t{1} << 30) / (int64_t{16} * w * dist::Size());
    kChunk = std::max<int64_t>(1, std::min(kChunk, cap));
  }
  std::vector<int64_t> ids(static_cast<size_t>(kChunk * w));
  std::vector<float> scores(static_cast<size_t>(kChunk * w));
  std::vector<double> shown(static_cast<size_t>(kChunk * w));
  std::vector<index::SearchFilter> filters;
  std::vector<std::string> lines(kChunk);
  if (user_embeddings != nullptr && user_embeddings->rows() != n) {
    throw Error(ErrorCode::kInternal, "RecommendAllUsers: user_embeddings has " +
                                          std::to_string(user_embeddings->rows()) + " rows, " +
                                          std::to_string(n) + " users");
  }
  Matrix u, block;
  int64_t block_first = -1;
  BatchResult result;
  ProgressBar bar("recommend", n, progress && dist::IsRoot());
  // One chunk of users [first, first + c): their top w into ids / shown (the first c * w);
  // returns how many had the popularity fallback.
  const auto compute = [&](int64_t first, int64_t c) {
    int64_t fallback_users = 0;
    if (seen != nullptr) {
      filters.assign(static_cast<size_t>(c), {});
      for (int64_t i = 0; i < c; ++i) filters[i].exclude = (*seen)[first + i];
    }
    // Users through the tower a block at a time (EncodeKnownUsers' blocks, so that each user's
    // embedding is the one every other path computes): memory does not grow with the user count.
    if (user_embeddings != nullptr) {
      u = user_embeddings->middleRows(first, c);
    } else {
      u.resize(c, b.model.model->embedding_dim());
      for (int64_t i = 0; i < c;) {
        const int64_t r = first + i;
        const int64_t bf = r / kUserBlock * kUserBlock;
        if (bf != block_first) {
          EncodeKnownUsers(b, bf, std::min(kUserBlock, n - bf), &block);
          block_first = bf;
        }
        const int64_t m = std::min(c - i, bf + block.rows() - r);
        u.middleRows(i, m) = block.middleRows(r - bf, m);
        i += m;
      }
    }
    idx.Search(u.data(), c, w, seen != nullptr ? filters.data() : nullptr, ids.data(),
               scores.data());
    if (reranker == nullptr) {
      for (int64_t i = 0; i < c * w; ++i) shown[i] = DisplayScore(b, scores[i]);
    } else {
      // Each user's candidates re-ordered by the ranker (Score is const: users in parallel,
      // core/parallel.h; the first user's error, if any, is rethrown here).
      const auto rerank_user = [&](int64_t i, int) {
        std::vector<Recommendation> candidates;
        for (int r = 0; r < w && ids[i * w + r] >= 0; ++r) {
          candidates.push_back({ids[i * w + r], scores[i * w + r]});
        }
        const std::vector<Recommendation> top =
            Rerank(*reranker, static_cast<int32_t>(first + i), candidates, k);
        for (int r = 0; r < w; ++r) {
          const bool have = r < static_cast<int>(top.size());
          ids[i * w + r] = have ? top[r].label : -1;
          shown[i * w + r] = have ? Sigmoid(top[r].score) : 0.0;
        }
      };
      ParallelFor(c, 0, IndexBody(rerank_user));
    }
    if (fallback != nullptr && fallback->enabled()) {
      // Users with no trained embedding: the popularity fallback (their own seen items excluded
      // as for everyone).
      for (int64_t i = 0; i < c; ++i) {
        if (!fallback->cold_user[static_cast<size_t>(first + i)]) continue;
        ++fallback_users;
        const auto top = fallback->Top(seen != nullptr ? &filters[i] : nullptr, w);
        for (int r = 0; r < w; ++r) {
          const bool have = r < static_cast<int>(top.size());
          ids[i * w + r] = have ? top[r].first : -1;
          shown[i * w + r] = have ? top[r].second : 0.0;
        }
      }
    }
    return fallback_users;
  };
  // The chunk's rows into the file, from ids / shown.
  const auto emit = [&](int64_t first, int64_t c) {
    if (parquet) {
      for (data::ParquetColumn& col : columns) col.Clear();
      for (int64_t i = 0; i < c; ++i) {
        columns[0].strings.push_back(user_ids[first + i]);
        const int32_t user_entry = static_cast<int32_t>(i);
        for (int r = 0; r < k; ++r) {
          const int64_t label = ids[i * w + r];
          if (label < 0) break;
          columns[0].string_index.push_back(user_entry);
          columns[1].ints.push_back(r + 1);
          columns[2].string_index.push_back(static_cast<int32_t>(columns[2].strings.size()));
          columns[2].strings.push_back(idx.ids()[label]);
          columns[3].doubles.push_back(shown[i * w + r]);
        }
      }
      parquet_file->Write(columns);
      result.rows += columns[1].size();
      bar.Update(first + c);
      return;
    }
    // Formatting is as slow as a small search: one line buffer per user, filled in parallel
    // (core/parallel.h, blocks of 64 users).
    ParallelBlocks(c, 64, 0, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        std::string& text = lines[i];
        text.clear();
        const std::string user = data::CsvField(user_ids[first + i]);
        char buf[64];
        for (int r = 0; r < k; ++r) {
          const int64_t label = ids[i * w + r];
          if (label < 0) break;
          std::snprintf(buf, sizeof(buf), ",%d,", r + 1);
          text += user;
          text += buf;
          text += data::CsvField(idx.ids()[label]);
          std::snprintf(buf, sizeof(buf), ",%.6f\n", shown[i * w + r]);
          text += buf;
        }
      }
    });
    for (int64_t i = 0; i < c; ++i) {
      file->Write(lines[i]);
      result.rows += std::count(lines[i].begin(), lines[i].end(), '\n');
    }
    bar.Update(first + c);
  };
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int ranks = dist::Size();
  if (ranks == 1) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t first = chunk * kChunk, c = std::min(kChunk, n - first);
      result.fallback_users += compute(first, c);
      emit(first, c);
    }
  } else {
    // Under mpirun: in each round rank r computes chunk round + r, and rank 0 gathers the
    // round's results and writes them in chunk order; each chunk's result does not depend on
    // who computed it, so the file is the one-process file byte for byte. The ranks must have
    // opened the same model, items and users (or they would loop a different number of rounds
    // or write a mixed file).
    {
      const std::string same = b.model.fingerprint + "\n" + idx.spec() + "\n" +
                               idx.model_fingerprint() + "\n" + std::to_string(idx.size()) + " " +
                               std::to_string(n) + " " + std::to_string(k) + " " +
                               std::to_string(w) + " " + std::to_string(seen != nullptr);
      dist::CheckSame(Crc32c(0, same.data(), same.size()),
                      "the model, items or users that recommend --all-users read",
                      "every rank must open the same files with the same flags");
    }
    std::string packed;
    for (int64_t round = 0; round < chunks; round += ranks) {
      const int64_t mine = round + dist::Rank();
      packed.clear();
      if (mine < chunks) {
        const int64_t first = mine * kChunk, c = std::min(kChunk, n - first);
        const int64_t fallback_users = compute(first, c);
        packed.append(reinterpret_cast<const char*>(&fallback_users), sizeof(int64_t));
        packed.append(reinterpret_cast<const char*>(ids.data()), c * w * sizeof(int64_t));
        packed.append(reinterpret_cast<const char*>(shown.data()), c * w * sizeof(double));
      }
      const std::vector<std::string> parts = dist::GatherToRoot(packed);
      for (size_t r = 0; r < parts.size() && round + static_cast<int64_t>(r) < chunks; ++r) {
        const int64_t first = (round + static_cast<int64_t>(r)) * kChunk;
        const int64_t c = std::min(kChunk, n - first);
        const std::string& part = parts[r];
        if (part.size() != sizeof(int64_t) + c * w * (sizeof(int64_t) + sizeof(double))) {
          throw Error(ErrorCode::kInternal, "RecommendAllUsers: a rank's chunk has the wrong size");
        }
        int64_t fallback_users = 0;
        std::memcpy(&fallback_users, part.data(), sizeof(int64_t));
        std::memcpy(ids.data(), part.data() + sizeof(int64_t), c * w * sizeof(int64_t));
        std::memcpy(shown.data(), part.data() + sizeof(int64_t) + c * w * sizeof(int64_t),
                    c * w * sizeof(double));
        result.fallback_users += fallback_users;
        emit(first, c);
      }
    }
    if (!dist::IsRoot()) {
      result.users = n;
      return result;  // rank 0 writes the file and its provenance
    }
  }
  // The new file, then its provenance: an interrupt waits until both are in place, and the
  // previous provenance goes first, so that a crash between the two leaves none rather than a
  // wrong one. (A failure before this point keeps the previous file and its provenance.)
  InterruptHold hold;
  std::remove(MetaPath(out_path).c_str());
  if (parquet) {
    parquet_file->Close();
  } else {
    file->Commit();
  }
  bar.Finish();
  result.users = n;
  // Provenance beside the CSV (which has no room for it): which model and items made it.
  nlohmann::json meta = {
      {"file", std::filesystem::path(out_path).filename().string()},
      {"model", std::filesystem::absolute(b.model_path).lexically_normal().string()},
      {"model_sha256", b.model.fingerprint},
      {"items",
       {{"index", idx.spec()},
        {"count", idx.size()},
        {"model_sha256", idx.model_fingerprint().empty()
                             ? nlohmann::json()
                             : nlohmann::json(idx.model_fingerprint())}}},
      {"rerank",
       reranker == nullptr
           ? nlohmann::json()
           : nlohmann::json{{"model",
                             std::filesystem::absolute(reranker->path).lexically_normal().string()},
                            {"model_sha256", reranker->ranker.fingerprint},
                            {"candidates", reranker->candidates}}},
      {"k", requested_k},
      {"exclude_seen", seen != nullptr},
      {"users", n},
      {"rows", result.rows}};
  WriteFileAtomically(MetaPath(out_path), meta.dump(2) + "\n");
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace twotower::app
