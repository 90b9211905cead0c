#include "twotower/data/dataset.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <memory>
#include <tuple>

#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"
#include "twotower/data/parquet.h"
#include "twotower/data/table.h"

namespace twotower::data {

EntityIndex EntityIndex::FromTable(const Table& table, const std::string& id_column) {
  EntityIndex index;
  const std::vector<std::string>& ids = table.Column(id_column);
  index.ids = ids;
  index.row_of.reserve(ids.size());
  for (size_t r = 0; r < ids.size(); ++r) {
    if (ids[r].empty()) throw Error(table.Where(r) + ": column '" + id_column + "': empty id");
    if (ids[r].size() > kMaxIdBytes) {
      throw Error(table.Where(r) + ": column '" + id_column + "': an id of " +
                  std::to_string(ids[r].size()) + " bytes " + Quote(ids[r]) + ", at most " +
                  std::to_string(kMaxIdBytes));
    }
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

namespace {

// Maps a Parquet id column to entity rows, looking each distinct id up once: a dictionary entry
// once per chunk, an integer once per file (a table indexed by value for small values, which
// ids usually are), anything else once per row as its text.
class IdMapper {
 public:
  IdMapper(const EntityIndex& index, std::string column, std::string table)
      : index_(index), column_(std::move(column)), table_(std::move(table)) {
    dense_.assign(2 * index.ids.size() + 1024, kUnseen);
  }

  // Rows of `col`'s values into out[first..]; `where(r)` names row r for messages.
  template <typename Where>
  void Map(const ParquetColumn& col, std::vector<int32_t>* out, Where where) {
    const int64_t n = col.size();
    if (col.type == ParquetType::kString) {
      entry_rows_.assign(col.strings.size(), kUnseen);
      for (int64_t r = 0; r < n; ++r) {
        Null(col, r, where);
        const int32_t e = col.string_index[r];
        if (entry_rows_[e] == kUnseen) entry_rows_[e] = Lookup(col.strings[e], where, r);
        out->push_back(entry_rows_[e]);
      }
    } else if (col.type == ParquetType::kInt32 || col.type == ParquetType::kInt64) {
      char buf[32];
      for (int64_t r = 0; r < n; ++r) {
        Null(col, r, where);
        const int64_t v = col.ints[r];
        int32_t* slot = nullptr;
        if (v >= 0 && static_cast<uint64_t>(v) < dense_.size()) {
          slot = &dense_[v];
        } else {
          slot = &sparse_.try_emplace(v, kUnseen).first->second;
        }
        if (*slot == kUnseen) {
          const auto res = col.is_unsigned
                               ? std::to_chars(buf, buf + sizeof(buf), static_cast<uint64_t>(v))
                               : std::to_chars(buf, buf + sizeof(buf), v);
          *slot = Lookup(std::string(buf, res.ptr), where, r);
        }
        out->push_back(*slot);
      }
    } else {
      for (int64_t r = 0; r < n; ++r) {
        Null(col, r, where);
        out->push_back(Lookup(col.Text(r), where, r));
      }
    }
  }

 private:
  static constexpr int32_t kUnseen = -2;

  template <typename Where>
  void Null(const ParquetColumn& col, int64_t r, Where where) const {
    if (col.IsNull(r))
      throw Error(where(r) + ": column '" + column_ + "': null id (expected an id)");
  }

  template <typename Where>
  int32_t Lookup(const std::string& id, Where where, int64_t r) const {
    const int32_t row = index_.Find(id);
    if (row < 0) {
      throw Error(where(r) + ": column '" + column_ + "': unknown id " + Quote(id) +
                  " (not in the " + table_ + " table)");
    }
    return row;
  }

  const EntityIndex& index_;
  std::string column_, table_;
  std::vector<int32_t> dense_, entry_rows_;
  std::unordered_map<int64_t, int32_t> sparse_;
};

// Reads a label column chunk: 0 / 1 as BOOLEAN, integers, floats or the CSV reader's strings.
template <typename Where>
void MapLabels(const ParquetColumn& col, const std::string& column, std::vector<float>* out,
               Where where) {
  for (int64_t r = 0; r < col.size(); ++r) {
    if (col.IsNull(r))
      throw Error(where(r) + ": column '" + column + "': null label (expected 0 or 1)");
    double v = -1.0;
    if (col.type == ParquetType::kString) {
      const std::string& y = col.strings[col.string_index[r]];
      if (y == "1" || y == "true" || y == "True") v = 1.0;
      if (y == "0" || y == "false" || y == "False") v = 0.0;
    } else if (col.type == ParquetType::kFloat || col.type == ParquetType::kDouble) {
      v = col.doubles[r];
    } else {
      v = col.is_unsigned && col.ints[r] < 0 ? -1.0 : static_cast<double>(col.ints[r]);
    }
    if (v != 0.0 && v != 1.0) {
      throw Error(where(r) + ": column '" + column + "': expected 0 or 1, got " +
                  Quote(col.Text(r)));
    }
    out->push_back(static_cast<float>(v));
  }
}

// A number column's row r as a double: NaN for a null, a string parsed as ParseNumber does
// (refusing what is not a finite number, naming `where(r)` and `column`).
template <typename Where>
double NumberAt(const ParquetColumn& col, int64_t r, const std::string& column, Where where) {
  if (col.IsNull(r)) return std::nan("");
  switch (col.type) {
    case ParquetType::kFloat:
    case ParquetType::kDouble:
      return col.doubles[r];
    case ParquetType::kString:
      return ParseNumber(col.strings[col.string_index[r]], where(r), column);
    default:
      return col.is_unsigned ? static_cast<double>(static_cast<uint64_t>(col.ints[r]))
                             : static_cast<double>(col.ints[r]);
  }
}

}  // namespace

// One body for every format: TableReader gives batches of columns (CSV: text, Parquet: typed),
// and each column is mapped by its type.
Interactions ReadInteractions(const std::string& path, const FeatureSchema& schema,
                              const EntityIndex& users, const EntityIndex& items,
                              const std::vector<std::string>& target_columns,
                              const std::vector<int32_t>* user_part, int part) {
  const std::unique_ptr<TableReader> reader = TableReader::Open(path);
  // Wanted columns, in the order they are checked: targets, timestamp, user, item, label, p_true.
  std::vector<int> wanted;
  for (const std::string& c : target_columns) wanted.push_back(reader->RequireColumn(c));
  const bool has_time = !schema.timestamp_column.empty();
  if (has_time) wanted.push_back(reader->RequireColumn(schema.timestamp_column));
  // Weights are read where the file has the column (training requires it: Trainer); files that
  // are only evaluated need none.
  const int weight_col =
      schema.weight_column.empty() ? -1 : reader->FindColumn(schema.weight_column);
  const bool has_weight = weight_col >= 0;
  if (has_weight) wanted.push_back(weight_col);
  const size_t user_at = wanted.size();
  wanted.push_back(reader->RequireColumn(schema.user.id_column));
  wanted.push_back(reader->RequireColumn(schema.item.id_column));
  wanted.push_back(reader->RequireColumn(schema.label_column));
  const int p_col = reader->FindColumn(schema.p_true_column);
  if (p_col >= 0) wanted.push_back(p_col);
  const size_t num_targets = target_columns.size();

  Interactions out;
  out.source = path;
  out.targets.resize(num_targets);
  if (reader->num_rows_hint() >= 0) {
    const int64_t n = reader->num_rows_hint();
    out.user_row.reserve(n);
    out.item_row.reserve(n);
    out.label.reserve(n);
    if (p_col >= 0) out.p_true.reserve(n);
    if (has_time) out.timestamp.reserve(n);
    if (has_weight) out.weight.reserve(n);
    for (std::vector<float>& t : out.targets) t.reserve(n);
  }
  IdMapper user_ids(users, schema.user.id_column, "users");
  IdMapper item_ids(items, schema.item.id_column, "items");
  std::vector<ParquetColumn> batch;
  auto where = [&](int64_t r) { return reader->Where(r); };
  const bool filtered = user_part != nullptr;
  if (filtered) {
    // A part is a share of the file: no room reserved for the whole of it.
    for (auto* v : {&out.user_row, &out.item_row}) std::vector<int32_t>().swap(*v);
    for (auto* v : {&out.label, &out.p_true, &out.weight}) std::vector<float>().swap(*v);
    std::vector<double>().swap(out.timestamp);
    for (std::vector<float>& t : out.targets) std::vector<float>().swap(t);
  }
  int64_t kept = 0;  // rows kept before this batch
  while (reader->Next(wanted, &batch) > 0) {
    user_ids.Map(batch[user_at], &out.user_row, where);
    item_ids.Map(batch[user_at + 1], &out.item_row, where);
    MapLabels(batch[user_at + 2], schema.label_column, &out.label, where);
    if (p_col >= 0) {
      const ParquetColumn& col = batch[user_at + 3];
      for (int64_t r = 0; r < col.size(); ++r) {
        const double p = NumberAt(col, r, schema.p_true_column, where);
        if (!(p >= 0.0 && p <= 1.0)) {
          throw Error(where(r) + ": column '" + schema.p_true_column +
                      "': expected a probability in [0, 1], got " + Quote(col.Text(r)));
        }
        out.p_true.push_back(static_cast<float>(p));
      }
    }
    for (size_t t = 0; t < num_targets; ++t) {
      const ParquetColumn& col = batch[t];
      for (int64_t r = 0; r < col.size(); ++r) {
        const double v = NumberAt(col, r, target_columns[t], where);
        if (!std::isfinite(static_cast<float>(v))) {  // finite, and within float32's range
          throw Error(where(r) + ": column '" + target_columns[t] +
                      "': expected a number within float32's range, got " + Quote(col.Text(r)));
        }
        out.targets[t].push_back(static_cast<float>(v));
      }
    }
    if (has_time) {
      const ParquetColumn& col = batch[num_targets];
      for (int64_t r = 0; r < col.size(); ++r) {
        // In double precision: seconds or milliseconds since 1970 need more than a float holds.
        const double v = NumberAt(col, r, schema.timestamp_column, where);
        if (!std::isfinite(v)) {
          throw Error(where(r) + ": column '" + schema.timestamp_column +
                      "': expected a finite number, got " + Quote(col.Text(r)));
        }
        out.timestamp.push_back(v);
      }
    }
    if (has_weight) {
      const ParquetColumn& col = batch[num_targets + (has_time ? 1 : 0)];
      for (int64_t r = 0; r < col.size(); ++r) {
        const double v = NumberAt(col, r, schema.weight_column, where);
        if (!(v >= 0.0) || !std::isfinite(static_cast<float>(v))) {
          throw Error(where(r) + ": column '" + schema.weight_column +
                      "': expected a weight >= 0 within float32's range, got " +
                      Quote(col.Text(r)));
        }
        out.weight.push_back(static_cast<float>(v));
      }
    }
    if (filtered) {
      // Every row was checked above; the batch's rows of other parts go.
      const int64_t end = static_cast<int64_t>(out.user_row.size());
      int64_t to = kept;
      for (int64_t i = kept; i < end; ++i) {
        if ((*user_part)[out.user_row[i]] != part) continue;
        out.user_row[to] = out.user_row[i];
        out.item_row[to] = out.item_row[i];
        out.label[to] = out.label[i];
        if (p_col >= 0) out.p_true[to] = out.p_true[i];
        if (has_time) out.timestamp[to] = out.timestamp[i];
        if (has_weight) out.weight[to] = out.weight[i];
        for (std::vector<float>& t : out.targets) t[to] = t[i];
        ++to;
      }
      out.user_row.resize(to);
      out.item_row.resize(to);
      out.label.resize(to);
      if (p_col >= 0) out.p_true.resize(to);
      if (has_time) out.timestamp.resize(to);
      if (has_weight) out.weight.resize(to);
      for (std::vector<float>& t : out.targets) t.resize(to);
      kept = to;
    }
  }
  if (out.size() == 0 && !filtered) {
    throw Error(path + ": no interactions (expected at least one row)");
  }
  // Growth by doubling (CSV, whose row count is not known ahead) leaves up to half of each column
  // unused: for 10,000,000 interactions that is about 100 MB held for the whole run.
  out.user_row.shrink_to_fit();
  out.item_row.shrink_to_fit();
  out.label.shrink_to_fit();
  out.p_true.shrink_to_fit();
  out.timestamp.shrink_to_fit();
  out.weight.shrink_to_fit();
  for (std::vector<float>& t : out.targets) t.shrink_to_fit();
  return out;
}

std::vector<int32_t> UserParts(const EntityIndex& users, int shards) {
  if (shards < 1) throw Error(ErrorCode::kInvalidArgument, "UserParts: shards must be >= 1");
  std::vector<int32_t> part(users.ids.size());
  for (size_t r = 0; r < part.size(); ++r) {
    const std::string& id = users.ids[r];
    part[r] = static_cast<int32_t>(Crc32c(0, id.data(), id.size()) % static_cast<uint32_t>(shards));
  }
  return part;
}

Interactions KeepPart(const Interactions& a, const std::vector<int32_t>& user_part, int part) {
  Interactions out;
  out.source = a.source;
  out.targets.resize(a.targets.size());
  for (int64_t i = 0; i < a.size(); ++i) {
    if (user_part.at(a.user_row[i]) != part) continue;
    out.user_row.push_back(a.user_row[i]);
    out.item_row.push_back(a.item_row[i]);
    out.label.push_back(a.label[i]);
    if (a.has_p_true()) out.p_true.push_back(a.p_true[i]);
    if (a.has_timestamp()) out.timestamp.push_back(a.timestamp[i]);
    if (a.has_weight()) out.weight.push_back(a.weight[i]);
    for (size_t t = 0; t < a.targets.size(); ++t) out.targets[t].push_back(a.targets[t][i]);
  }
  return out;
}

Interactions Concatenate(const Interactions& a, const Interactions& b) {
  Interactions out = a;
  out.source = a.source + " + " + b.source;
  out.user_row.insert(out.user_row.end(), b.user_row.begin(), b.user_row.end());
  out.item_row.insert(out.item_row.end(), b.item_row.begin(), b.item_row.end());
  out.label.insert(out.label.end(), b.label.begin(), b.label.end());
  // An optional column is kept when both sides have it; a side without rows has every column
  // (a rank's empty part of the validation split must not drop the training rows' weights).
  const auto join = [&](auto member) {
    const auto& x = a.*member;
    const auto& y = b.*member;
    auto& o = out.*member;
    if ((!x.empty() || a.size() == 0) && (!y.empty() || b.size() == 0)) {
      o.insert(o.end(), y.begin(), y.end());
    } else {
      o.clear();
    }
  };
  join(&Interactions::timestamp);
  join(&Interactions::weight);
  join(&Interactions::p_true);
  if (a.size() == 0 && out.targets.size() < b.targets.size()) out.targets.resize(b.targets.size());
  for (size_t t = 0; t < out.targets.size() && t < b.targets.size(); ++t) {
    out.targets[t].insert(out.targets[t].end(), b.targets[t].begin(), b.targets[t].end());
  }
  return out;
}

Table ReadEntities(const std::string& path, const std::string& id_column,
                   const std::vector<std::string>& interaction_files) {
  if (!path.empty()) return ReadTable(path);
  Table t;
  t.columns = {id_column};
  t.cells.resize(1);
  t.numbered_rows = true;
  std::unordered_map<std::string, int32_t> seen;
  std::vector<ParquetColumn> batch;
  for (size_t f = 0; f < interaction_files.size(); ++f) {
    const std::string& file = interaction_files[f];
    std::error_code ec;
    if (f > 0 && !std::filesystem::exists(file, ec)) continue;
    const std::unique_ptr<TableReader> reader = TableReader::Open(file);
    const int column = reader->RequireColumn(id_column);
    t.source += (t.source.empty() ? "" : ", ") + file;
    while (const int64_t n = reader->Next({column}, &batch)) {
      for (int64_t r = 0; r < n; ++r) {
        std::string id = batch[0].Text(r);
        if (id.empty() || id.size() > kMaxIdBytes) {
          throw Error(
              reader->Where(r) + ": column '" + id_column + "': expected an id of 1 to " +
              std::to_string(kMaxIdBytes) + " bytes, got " +
              (id.empty() ? std::string("an empty cell") : std::to_string(id.size()) + " bytes"));
        }
        if (seen.emplace(id, static_cast<int32_t>(t.cells[0].size())).second) {
          t.cells[0].push_back(std::move(id));
          t.lines.push_back(static_cast<int64_t>(t.lines.size()) + 1);
        }
      }
    }
  }
  t.source = "the " + id_column + " ids of " + t.source;
  return t;
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

Dataset LoadDataset(const DataPaths& paths, const FeatureSchema& schema,
                    const std::vector<std::string>& target_columns,
                    const std::vector<std::string>& item_columns, bool fit_on_val,
                    DataShard shard) {
  if (shard.shards < 1 || shard.held < -1 || shard.held >= shard.shards) {
    throw Error(ErrorCode::kInvalidArgument, "LoadDataset: part " + std::to_string(shard.held) +
                                                 " of " + std::to_string(shard.shards) +
                                                 " shards does not exist");
  }
  Dataset d;
  d.shard = shard;
  // Without a table a side has its id and nothing else (the ids come from the interactions).
  for (const auto& [key, table, side] :
       {std::tuple<const char*, const std::string*, const EntitySchema*>{"users", &paths.users,
                                                                         &schema.user},
        {"items", &paths.items, &schema.item}}) {
    if (!table->empty()) continue;
    for (const FeatureSpec& f : side->features) {
      if (f.column == side->id_column) continue;
      throw Error(std::string("data.") + key + ": not set, so the " +
                  (side == &schema.user ? "user" : "item") + " tower can only be its id ('" +
                  side->id_column + "'); its feature '" + f.column + "' needs a " + key +
                  " table: set data." + key);
    }
  }
  const std::vector<std::string> splits = {paths.train, paths.val, paths.test};
  d.users = ReadEntities(paths.users, schema.user.id_column, splits);
  d.items = ReadEntities(paths.items, schema.item.id_column, splits);
  d.user_index = EntityIndex::FromTable(d.users, schema.user.id_column);
  d.item_index = EntityIndex::FromTable(d.items, schema.item.id_column);
  // Check every feature column exists before reading the big files.
  for (const FeatureSpec& f : schema.user.features) d.users.Column(f.column);
  for (const FeatureSpec& f : schema.item.features) d.items.Column(f.column);
  for (const std::string& c : item_columns) d.item_text[c] = d.items.Column(c);
  if (shard.shards > 1) d.user_part = UserParts(d.user_index, shard.shards);
  if (shard.held >= 0) {
    d.train = ReadInteractions(paths.train, schema, d.user_index, d.item_index, target_columns,
                               &d.user_part, shard.held);
  } else {
    d.train = ReadInteractions(paths.train, schema, d.user_index, d.item_index, target_columns);
  }
  d.val = ReadInteractions(paths.val, schema, d.user_index, d.item_index, target_columns);
  d.test = ReadInteractions(paths.test, schema, d.user_index, d.item_index, target_columns);
  // Fit on the training split (and val, for a refit): statistics of test entities must not leak in.
  d.encoder.user = EntityEncoder(schema.user);
  d.encoder.item = EntityEncoder(schema.item);
  // With a refit the final model trains on train + val: its vocabularies must hold the val ids,
  // or every val-only id would train the one shared out-of-vocabulary row.
  std::vector<int32_t> fit_users = d.train.user_row, fit_items = d.train.item_row;
  if (fit_on_val) {
    fit_users.insert(fit_users.end(), d.val.user_row.begin(), d.val.user_row.end());
    fit_items.insert(fit_items.end(), d.val.item_row.begin(), d.val.item_row.end());
  }
  if (shard.held >= 0 && dist::Distributed()) {
    // The entities of every rank's part: the rows one process would fit on.
    for (std::vector<int32_t>* rows : {&fit_users, &fit_items}) {
      std::sort(rows->begin(), rows->end());
      rows->erase(std::unique(rows->begin(), rows->end()), rows->end());
      const std::vector<int64_t> counts =
          dist::Allgather(static_cast<int64_t>(rows->size()), dist::Traffic::kOther);
      int64_t total = 0;
      for (int64_t c : counts) total += c;
      std::vector<int32_t> all(static_cast<size_t>(total));
      dist::Allgatherv(rows->data(), counts, all.data(), dist::Traffic::kOther);
      rows->swap(all);
    }
  }
  if (shard.held >= 0) {
    d.part_rows = dist::Allgather(d.train.size(), dist::Traffic::kOther);
  } else if (shard.shards > 1) {
    d.part_rows.assign(static_cast<size_t>(shard.shards), 0);
    for (int32_t u : d.train.user_row) ++d.part_rows[d.user_part[u]];
  }
  if (d.train.size() == 0 && shard.held < 0) {
    throw Error(paths.train + ": no interactions (expected at least one row)");
  }
  d.encoder.user.Fit(d.users, ReferencedRows(fit_users, d.users.num_rows()));
  d.encoder.item.Fit(d.items, ReferencedRows(fit_items, d.items.num_rows()));
  d.encoder.user.Encode(d.users, &d.user_features);
  d.encoder.item.Encode(d.items, &d.item_features);
  // Training reads the encoded features only: the text cells go (320 MB for 1,000,000 users
  // and items of five columns). Header, source and line numbers stay for num_rows and messages.
  std::vector<std::vector<std::string>>().swap(d.users.cells);
  std::vector<std::vector<std::string>>().swap(d.items.cells);
  return d;
}

}  // namespace twotower::data
