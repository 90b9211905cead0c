// FeatureEncoder: turns raw user and item rows into what the towers read: dense float columns
// and, for learned features, embedding-bag indices.
//
// Dense columns (in schema order): a numeric column is (x - mean) / std with mean and
// (population) std fitted on the training rows only (a constant column gets std 1), followed by a
// 0/1 was-missing indicator under `missing: mean`; a one-hot categorical column is one column per
// value seen in the training rows (sorted, so the layout does not depend on row order), an unseen
// value encoding as all zeros, never an error.
// Learned features (id, categorical with `encoding: embedding`, multi_hot) each become one bag per
// row: the rows of that feature's embedding table to pool. Row 0 is the out-of-vocabulary row
// (values unseen in training); value k of the sorted training vocabulary is row k + 1. An id
// feature with `buckets: N` maps a value to row FNV-1a-64(value) mod N instead (no vocabulary).
// The fitted state serialises to JSON and is stored in the model file, so a model file alone can
// encode raw rows. Thread-safe for const use after Fit.
#ifndef TWOTOWER_DATA_ENCODER_H_
#define TWOTOWER_DATA_ENCODER_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/data/csv.h"
#include "twotower/data/schema.h"

namespace twotower::data {

// One learned feature of every row of a table, in compressed sparse row form: the table rows to
// pool for row r are ids[offsets[r] .. offsets[r + 1]). offsets has rows + 1 entries.
struct Bags {
  std::vector<int64_t> offsets = {0};
  std::vector<int32_t> ids;
  int64_t rows() const { return static_cast<int64_t>(offsets.size()) - 1; }
};

// A table after encoding: rows x dense_width floats plus one Bags per learned feature. A users
// table read by a model with a history feature also carries each user's history (history.h:
// item-embedding rows, oldest first; rows() bags), attached after encoding; otherwise `history`
// has no rows.
struct EncodedTable {
  Matrix dense;
  std::vector<Bags> bags;
  Bags history;
  int64_t rows() const { return dense.rows(); }
};

// What the model needs to know about one learned feature to build its embedding table.
struct LearnedFeature {
  std::string column;
  int64_t rows = 0;  // embedding table rows (vocabulary + 1, or buckets)
  int dim = 0;
  Pooling pooling = Pooling::kMean;
  // Row 0 is the out-of-vocabulary row (a vocabulary; false for hashed buckets). The towers start
  // it at zero, and no training row reaches it (vocabularies are fitted on the rows trained on),
  // so an unseen value contributes nothing learned.
  bool oov_row = true;
};

// The fitted encoder of one side (users or items).
class EntityEncoder {
 public:
  EntityEncoder() = default;
  explicit EntityEncoder(EntitySchema schema);

  // Fits means, stds and vocabularies on `rows` of `table` (row indices; the training rows).
  // Throws Error naming file:line and column for a non-numeric value in a numeric column, a
  // missing value under `missing: error`, or an empty multi-hot list; or the file and column for
  // a missing column.
  void Fit(const Table& table, const std::vector<int64_t>& rows);

  // Encodes every row of `table` (same errors as Fit).
  void Encode(const Table& table, EncodedTable* out) const;
  // The dense columns only (table.num_rows() x width()); throws Error if the side has learned
  // features.
  void Encode(const Table& table, Matrix* out) const;

  // Encodes one row given as column name -> value (e.g. an HTTP request) into a one-row table.
  // A missing column is an error; an unknown category or id encodes as unseen.
  void EncodeRow(const std::vector<std::pair<std::string, std::string>>& row,
                 const std::string& where, EncodedTable* out) const;
  // Dense-only variant: `out` has width() entries; throws Error if the side has learned features.
  void EncodeRow(const std::vector<std::pair<std::string, std::string>>& row,
                 const std::string& where, float* out) const;

  // Width of the dense columns.
  int width() const { return width_; }
  // True when the side's only feature is its id with a vocabulary (no buckets): a row whose id
  // is out of vocabulary then has nothing learned to be scored by.
  bool IdAlone() const;
  // The rows of `table` (encoded by this encoder) whose id column's value is out of vocabulary
  // (no training interaction): empty when the id is not a vocabulary feature.
  std::vector<int64_t> UnknownIdRows(const EncodedTable& table) const;
  // The learned features, in schema order (the order of EncodedTable::bags).
  const std::vector<LearnedFeature>& learned() const { return learned_; }
  const EntitySchema& schema() const { return schema_; }
  // Human-readable name of each dense output column: "age", "gender=F", "year_missing", ...
  std::vector<std::string> OutputNames() const;

  nlohmann::json ToJson() const;
  static EntityEncoder FromJson(const nlohmann::json& json, const std::string& where);

 private:
  struct Column {
    FeatureSpec spec;
    double mean = 0.0;
    double std = 1.0;
    std::vector<std::string> vocabulary;  // sorted
    int offset = 0;                       // first dense column, or the index of its bag
  };
  void Layout();
  int Lookup(const Column& column, const std::string& value) const;
  // Appends the table rows of `value` (one cell) for a learned column to `ids`.
  void AppendBag(const Column& column, const std::string& value, const std::string& where,
                 std::vector<int32_t>* ids) const;
  // Writes the dense columns of one cell.
  void EncodeDense(const Column& column, const std::string& value, const std::string& where,
                   float* row) const;

  EntitySchema schema_;
  std::vector<Column> columns_;
  std::vector<LearnedFeature> learned_;
  int width_ = 0;
};

struct FeatureEncoder {
  EntityEncoder user;
  EntityEncoder item;

  nlohmann::json ToJson() const;
  static FeatureEncoder FromJson(const nlohmann::json& json, const std::string& where);
};

// True for the cells a numeric column treats as missing: "", "NA", "NaN", "nan", "null".
bool IsMissingValue(const std::string& value);

// True when `text` is well-formed UTF-8 (RFC 3629 byte patterns; overlong forms not checked).
bool IsValidUtf8(std::string_view text);

// Splits a multi-hot cell on `delimiter`, trimming spaces; empty tokens are dropped. An empty
// delimiter gives the whole trimmed cell as one token.
std::vector<std::string> SplitList(const std::string& value, const std::string& delimiter);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_ENCODER_H_
