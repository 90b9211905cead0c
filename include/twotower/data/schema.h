// FeatureSchema: which columns of the user and item tables feed the towers, and how.
//
// Feature types (the `type:` of a column in the config's `features:` section):
//   numeric      standardised, (x - mean) / std, fitted on the training split. `missing: error`
//                (default) refuses an empty or "NA" cell; `missing: mean` encodes it as the mean
//                (0 after standardising) and adds a 0/1 was-missing indicator column.
//   categorical  `encoding: one_hot` (default): one dense column per value seen in training (an
//                unseen value encodes as zeros); `encoding: embedding`: a learned `dim`-wide
//                embedding row per value, unseen values share the out-of-vocabulary row 0.
//   id           a learned embedding table with one row per id seen in training (the user's or the
//                movie's identity, or any id-like column); unseen ids go to the out-of-vocabulary
//                row 0. `buckets: N` hashes every value into N rows instead (no vocabulary).
//   multi_hot    a `delimiter`-separated list (default "|", e.g. "Action|Comedy") pooled by
//                `pooling: mean` (default) or `sum` over learned `dim`-wide rows: an embedding bag.
//                An empty list is an error.
// The learned (embedding) features of one side are concatenated after its dense columns and feed
// the tower's MLP; a tower may consist of one id feature alone. The schema comes from the config,
// so a new data set needs no code. Plain value type; thread-safe for const use.
#ifndef TWOTOWER_DATA_SCHEMA_H_
#define TWOTOWER_DATA_SCHEMA_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace twotower::data {

enum class FeatureType { kNumeric, kCategorical, kId, kMultiHot };
enum class Encoding { kOneHot, kEmbedding };
enum class Pooling { kMean, kSum };
enum class Missing { kError, kMean };

const char* FeatureTypeName(FeatureType type);
// Parses "numeric", "categorical", "id" or "multi_hot"; throws
// Error("<where>: unknown feature type \"x\" (expected: numeric, categorical, id, multi_hot)").
FeatureType ParseFeatureType(const std::string& name, const std::string& where);

struct FeatureSpec {
  std::string column;
  FeatureType type = FeatureType::kNumeric;
  Encoding encoding = Encoding::kOneHot;  // categorical only
  Pooling pooling = Pooling::kMean;       // multi_hot only
  Missing missing = Missing::kError;      // numeric only
  std::string delimiter = "|";            // multi_hot only
  int64_t buckets = 0;                    // id only: 0 = a vocabulary of the training ids
  int dim = 32;                           // embedding width of learned features

  // True when the feature is a learned embedding (bag) rather than dense columns.
  bool learned() const {
    return type == FeatureType::kId || type == FeatureType::kMultiHot ||
           (type == FeatureType::kCategorical && encoding == Encoding::kEmbedding);
  }
};

// One side (users or items): the id column that interactions refer to, and the feature columns.
struct EntitySchema {
  std::string id_column;
  std::vector<FeatureSpec> features;
};

struct FeatureSchema {
  EntitySchema user;
  EntitySchema item;
  std::string label_column = "liked";    // 0/1 in the interaction files
  std::string p_true_column = "p_true";  // optional: the generator's true probability

  // The lab's features: user age, gender, favorite_genre, activity_level; movie genre, year,
  // duration, avg_rating.
  static FeatureSchema Lab();
  // Throws Error if a side has no features, a column is listed twice, a name is empty or a
  // setting is out of range.
  void Validate(const std::string& where) const;
};

// Throws Error("<where>: ...") for a dim outside 1..65536 (learned features), buckets outside
// 0..2^31-1 or an empty multi-hot delimiter.
void ValidateFeatureSpec(const FeatureSpec& spec, const std::string& where);

nlohmann::json ToJson(const FeatureSpec& spec);
// Throws Error("<where>: ...") naming the offending field.
FeatureSpec FeatureSpecFromJson(const nlohmann::json& json, const std::string& where);
nlohmann::json ToJson(const FeatureSchema& schema);
FeatureSchema FeatureSchemaFromJson(const nlohmann::json& json, const std::string& where);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_SCHEMA_H_
