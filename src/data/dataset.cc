#include "twotower/data/dataset.h"

#include "twotower/core/error.h"

namespace twotower::data {

EntityIndex EntityIndex::FromTable(const Table& table, const std::string& id_column) {
  EntityIndex index;
  const std::vector<std::string>& ids = table.Column(id_column);
  index.ids = ids;
  index.row_of.reserve(ids.size());
  for (size_t r = 0; r < ids.size(); ++r) {
    if (ids[r].empty()) throw Error(table.Where(r) + ": column '" + id_column + "': empty id");
    if (!index.row_of.emplace(ids[r], static_cast<int32_t>(r)).second) {
      throw Error(table.Where(r) + ": column '" + id_column + "': duplicate id " + Quote(ids[r]));
    }
  }
  return index;
}

double Interactions::PositiveRate() const {
  if (label.empty()) return 0.0;
  double sum = 0.0;
  for (float y : label) sum += y;
  return sum / static_cast<double>(label.size());
}

Interactions ReadInteractions(const std::string& path, const FeatureSchema& schema,
                              const EntityIndex& users, const EntityIndex& items) {
  CsvReader reader(path);
  const int user_col = reader.RequireColumn(schema.user.id_column);
  const int item_col = reader.RequireColumn(schema.item.id_column);
  const int label_col = reader.RequireColumn(schema.label_column);
  const int p_col = reader.FindColumn(schema.p_true_column);
  Interactions out;
  out.source = path;
  std::vector<std::string> f;
  while (reader.Next(&f)) {
    const int32_t u = users.Find(f[user_col]);
    if (u < 0) {
      throw Error(reader.Where() + ": column '" + schema.user.id_column + "': unknown id " +
                  Quote(f[user_col]) + " (not in the users table)");
    }
    const int32_t i = items.Find(f[item_col]);
    if (i < 0) {
      throw Error(reader.Where() + ": column '" + schema.item.id_column + "': unknown id " +
                  Quote(f[item_col]) + " (not in the items table)");
    }
    const std::string& y = f[label_col];
    float label;
    if (y == "1" || y == "true" || y == "True") {
      label = 1.0f;
    } else if (y == "0" || y == "false" || y == "False") {
      label = 0.0f;
    } else {
      throw Error(reader.Where() + ": column '" + schema.label_column + "': expected 0 or 1, got " +
                  Quote(y));
    }
    out.user_row.push_back(u);
    out.item_row.push_back(i);
    out.label.push_back(label);
    if (p_col >= 0) {
      const double p = ParseNumber(f[p_col], reader.Where(), schema.p_true_column);
      if (p < 0.0 || p > 1.0) {
        throw Error(reader.Where() + ": column '" + schema.p_true_column +
                    "': expected a probability in [0, 1], got " + Quote(f[p_col]));
      }
      out.p_true.push_back(static_cast<float>(p));
    }
  }
  if (out.size() == 0) throw Error(path + ": no interactions (expected at least one row)");
  // Growth by doubling leaves up to half of each column unused: for 10,000,000 interactions
  // that is about 100 MB held for the whole run.
  out.user_row.shrink_to_fit();
  out.item_row.shrink_to_fit();
  out.label.shrink_to_fit();
  out.p_true.shrink_to_fit();
  return out;
}

std::vector<int64_t> ReferencedRows(const std::vector<int32_t>& ids, int64_t num_rows) {
  std::vector<char> used(num_rows, 0);
  for (int32_t id : ids) used[id] = 1;
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < num_rows; ++r) {
    if (used[r]) rows.push_back(r);
  }
  return rows;
}

std::vector<std::vector<int32_t>> ItemsByUser(const std::vector<const Interactions*>& splits,
                                              int64_t num_users, bool positives_only) {
  std::vector<std::vector<int32_t>> out(num_users);
  for (const Interactions* split : splits) {
    for (int64_t i = 0; i < split->size(); ++i) {
      if (positives_only && split->label[i] != 1.0f) continue;
      out[split->user_row[i]].push_back(split->item_row[i]);
    }
  }
  return out;
}

Dataset LoadDataset(const DataPaths& paths, const FeatureSchema& schema) {
  Dataset d;
  d.users = ReadTable(paths.users);
  d.items = ReadTable(paths.items);
  d.user_index = EntityIndex::FromTable(d.users, schema.user.id_column);
  d.item_index = EntityIndex::FromTable(d.items, schema.item.id_column);
  // Check every feature column exists before reading the big files.
  for (const FeatureSpec& f : schema.user.features) d.users.Column(f.column);
  for (const FeatureSpec& f : schema.item.features) d.items.Column(f.column);
  d.train = ReadInteractions(paths.train, schema, d.user_index, d.item_index);
  d.val = ReadInteractions(paths.val, schema, d.user_index, d.item_index);
  d.test = ReadInteractions(paths.test, schema, d.user_index, d.item_index);
  // Fit on the training split only: statistics of val/test entities must not leak in.
  d.encoder.user = EntityEncoder(schema.user);
  d.encoder.item = EntityEncoder(schema.item);
  d.encoder.user.Fit(d.users, ReferencedRows(d.train.user_row, d.users.num_rows()));
  d.encoder.item.Fit(d.items, ReferencedRows(d.train.item_row, d.items.num_rows()));
  d.encoder.user.Encode(d.users, &d.user_features);
  d.encoder.item.Encode(d.items, &d.item_features);
  // Training reads the encoded features only: the text cells go (320 MB for 1,000,000 users
  // and items of five columns). Header, source and line numbers stay for num_rows and messages.
  std::vector<std::vector<std::string>>().swap(d.users.cells);
  std::vector<std::vector<std::string>>().swap(d.items.cells);
  return d;
}

}  // namespace twotower::data
