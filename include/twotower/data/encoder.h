// FeatureEncoder: turns raw user and item rows into the dense float vectors the towers read.
//
// Numeric columns: (x - mean) / std with mean and (population) std fitted on the training rows
// only; a constant column gets std 1. Categorical columns: one-hot over the vocabulary seen in the
// training rows (sorted, so the layout does not depend on row order); a value not in the
// vocabulary encodes as all zeros, never an error. The fitted state serialises to JSON and is
// stored in the model file, so a model file alone can score raw rows.
// Thread-safe for const use after Fit.
#ifndef TWOTOWER_DATA_ENCODER_H_
#define TWOTOWER_DATA_ENCODER_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/data/csv.h"
#include "twotower/data/schema.h"

namespace twotower::data {

// The fitted encoder of one side (users or items).
class EntityEncoder {
 public:
  EntityEncoder() = default;
  explicit EntityEncoder(EntitySchema schema);

  // Fits means, stds and vocabularies on `rows` of `table` (row indices; the training rows).
  // Throws Error naming file:line and column for a non-numeric value in a numeric column, or the
  // file and column for a missing column.
  void Fit(const Table& table, const std::vector<int64_t>& rows);

  // Encodes every row of `table` into `out` (table.num_rows() x width()).
  void Encode(const Table& table, Matrix* out) const;

  // Encodes one row given as column name -> value (e.g. an HTTP request). A missing column is an
  // error; an unknown category encodes as zeros. `out` has width() entries.
  void EncodeRow(const std::vector<std::pair<std::string, std::string>>& row,
                 const std::string& where, float* out) const;

  int width() const { return width_; }
  const EntitySchema& schema() const { return schema_; }
  // Human-readable name of each output column: "age", "gender=F", ...
  std::vector<std::string> OutputNames() const;

  nlohmann::json ToJson() const;
  static EntityEncoder FromJson(const nlohmann::json& json, const std::string& where);

 private:
  struct Column {
    FeatureSpec spec;
    double mean = 0.0;
    double std = 1.0;
    std::vector<std::string> vocabulary;  // sorted
    int offset = 0;                       // first output column
  };
  void Layout();
  int Lookup(const Column& column, const std::string& value) const;

  EntitySchema schema_;
  std::vector<Column> columns_;
  int width_ = 0;
};

struct FeatureEncoder {
  EntityEncoder user;
  EntityEncoder item;

  nlohmann::json ToJson() const;
  static FeatureEncoder FromJson(const nlohmann::json& json, const std::string& where);
};

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_ENCODER_H_
