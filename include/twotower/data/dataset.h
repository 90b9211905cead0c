// Loading a data set: entity tables (users, items) stored once as encoded feature matrices, and
// interactions stored as index arrays into them (user_row, item_row, label), so memory grows with
// the data and not with copies of it. Plain value types; const use is thread-safe.
#ifndef TWOTOWER_DATA_DATASET_H_
#define TWOTOWER_DATA_DATASET_H_

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/data/csv.h"
#include "twotower/data/encoder.h"
#include "twotower/data/schema.h"

namespace twotower::data {

// The longest id, in bytes, wherever ids enter (tables, request bodies, PUT rows): short enough
// that every route naming an id in its path (DELETE /v1/items/{id}, up to 3 characters a byte
// when percent-encoded) stays under the HTTP library's 8,192-character URI limit. An id is the
// text of its cell or JSON string, 1 to kMaxIdBytes bytes, compared byte for byte.
constexpr size_t kMaxIdBytes = 1024;

// Maps ids (as written in the files) to table rows.
struct EntityIndex {
  std::vector<std::string> ids;
  std::unordered_map<std::string, int32_t> row_of;

  // Throws Error("<file>:<line>: duplicate id ...") or for a missing id column, an empty id or
  // one over kMaxIdBytes.
  static EntityIndex FromTable(const Table& table, const std::string& id_column);
  int32_t Find(const std::string& id) const {
    const auto it = row_of.find(id);
    return it == row_of.end() ? -1 : it->second;
  }
};

struct Interactions {
  std::string source;
  std::vector<int32_t> user_row;
  std::vector<int32_t> item_row;
  std::vector<float> label;   // 0 or 1
  std::vector<float> p_true;  // empty when the file has no p_true column
  // One column per requested target column (ReadInteractions' target_columns), size() values
  // each: numbers a task trains against (e.g. rating).
  std::vector<std::vector<float>> targets;
  // Each interaction's time (the schema's timestamp column); empty when it names none.
  std::vector<double> timestamp;
  // Each interaction's weight (the schema's weight column: finite, >= 0); empty when it names
  // none.
  std::vector<float> weight;

  int64_t size() const { return static_cast<int64_t>(label.size()); }
  bool has_p_true() const { return !p_true.empty(); }
  bool has_timestamp() const { return !timestamp.empty(); }
  bool has_weight() const { return !weight.empty(); }
  double PositiveRate() const;
};

// The rows of `a` then those of `b` (source "a + b"). Timestamps and p_true are kept only when
// both have them; targets column by column.
Interactions Concatenate(const Interactions& a, const Interactions& b);

// Reads an interaction table, CSV or Parquet by suffix (id columns from the schema, the label
// column holding 0/1, optional p_true). Ids must exist in the entity indexes. Errors name the
// file's line (CSV) or row (Parquet) and the column. A Parquet id column may be integers or
// strings; each distinct id is looked up once. Each of target_columns must exist and hold finite
// numbers (Error naming the line or row and the column otherwise): Interactions::targets. So must
// the schema's timestamp column when it names one (Interactions::timestamp). The schema's weight
// column is read where the file has it (Interactions::weight: finite, >= 0, else an Error).
// With `user_part` (one part number per row of `users`, UserParts) only the rows whose user is
// in part `part` are kept, batch by batch as the file is read: a rank holds its part, not the
// file.
Interactions ReadInteractions(const std::string& path, const FeatureSchema& schema,
                              const EntityIndex& users, const EntityIndex& items,
                              const std::vector<std::string>& target_columns = {},
                              const std::vector<int32_t>* user_part = nullptr, int part = -1);

// The part of each user (row of `users`) when interactions are split by user into `shards`
// parts: CRC-32C (Castagnoli, RFC 3720) of the id's bytes, modulo shards. It depends on the id
// alone, not on the file's order or the vocabulary, so every rank computes it alike and a user's
// rows are all in one part. shards >= 1.
std::vector<int32_t> UserParts(const EntityIndex& users, int shards);

// The rows of `a` whose user is in part `part` (user_part as UserParts), in order.
Interactions KeepPart(const Interactions& a, const std::vector<int32_t>& user_part, int part);

// users / items empty: that side has no table (a tower that is its id alone; ReadEntities).
struct DataPaths {
  std::string users, items, train, val, test;
};

// The entity table of one side: the file at `path` (ReadTable), or, when `path` is empty, a table
// of one column, `id_column`, holding the distinct ids of that column in `interaction_files`
// (in order of first appearance, file by file; files that do not exist are skipped, except the
// first, the training split, which must exist). Its source names the files; its rows are
// numbered from 1. Throws ReadTable's or TableReader's Error, or one naming the file and the
// missing column.
Table ReadEntities(const std::string& path, const std::string& id_column,
                   const std::vector<std::string>& interaction_files);

// How the training split is held (data.shards): in `shards` parts by user (UserParts); `held`
// -1: every part (one process); >= 0: that part only (rank `held` of an mpirun with `shards`
// ranks, every rank calling LoadDataset).
struct DataShard {
  int shards = 1;
  int held = -1;
};

// A whole data set, with the encoder fitted on the entities that occur in the training split.
struct Dataset {
  // After LoadDataset: header, source and line numbers (num_rows, messages); the cells are
  // released once encoded into user_features / item_features.
  Table users, items;
  EntityIndex user_index, item_index;
  FeatureEncoder encoder;
  EncodedTable user_features;  // users.num_rows() rows: encoder.user.width() dense + bags
  EncodedTable item_features;  // items.num_rows() rows
  Interactions train, val, test;
  // The text of the items-table columns LoadDataset was asked to keep (item_columns), by name:
  // what an item_class task is fitted on after the other cells are released.
  std::map<std::string, std::vector<std::string>> item_text;
  // The training split's parts (LoadDataset's shard): user_part per user row when shards > 1
  // (empty otherwise); with held >= 0, `train` holds that part's rows only.
  DataShard shard;
  std::vector<int32_t> user_part;
  std::vector<int64_t> part_rows;  // shards > 1: the training rows of each part (every part's)
};

// Per user row, the item rows of `splits`' interactions (all of them with positives_only false;
// only label 1 with positives_only true), in file order, repeats kept. num_users entries.
std::vector<std::vector<int32_t>> ItemsByUser(const std::vector<const Interactions*>& splits,
                                              int64_t num_users, bool positives_only);

// target_columns: read from every interaction file (Interactions::targets); item_columns: kept as
// text (Dataset::item_text). The encoder (vocabularies, statistics) is fitted on the entities of
// the training split, and with fit_on_val (a run that refits on train + val) of the validation
// split too. Errors name the file and the column. With shard.held >= 0 (under mpirun, called by
// every rank) the training split keeps that part's rows, and the entities the encoder fits on
// are the union over the ranks (an allgather), so every rank fits the same vocabularies and
// statistics as one process reading the whole file.
Dataset LoadDataset(const DataPaths& paths, const FeatureSchema& schema,
                    const std::vector<std::string>& target_columns = {},
                    const std::vector<std::string>& item_columns = {}, bool fit_on_val = false,
                    DataShard shard = {});

// Rows of the entities referenced by `ids` (sorted, unique): the rows the encoder fits on.
std::vector<int64_t> ReferencedRows(const std::vector<int32_t>& ids, int64_t num_rows);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_DATASET_H_
