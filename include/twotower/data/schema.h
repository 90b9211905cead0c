// FeatureSchema: which columns of the user and item tables feed the towers, and how.
//
// A numeric column is standardised ((x - mean) / std, fitted on the train split); a categorical
// column is one-hot over a vocabulary fitted on the train split. The schema comes from the
// config's `features:` section, so a new data set needs no code. Plain value type; thread-safe for
// const use.
#ifndef TWOTOWER_DATA_SCHEMA_H_
#define TWOTOWER_DATA_SCHEMA_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace twotower::data {

enum class FeatureType { kNumeric, kCategorical };

const char* FeatureTypeName(FeatureType type);
// Parses "numeric" or "categorical"; throws Error("<where>: unknown feature type ...").
FeatureType ParseFeatureType(const std::string& name, const std::string& where);

struct FeatureSpec {
  std::string column;
  FeatureType type = FeatureType::kNumeric;
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
  // Throws Error if a side has no features, a column is listed twice or a name is empty.
  void Validate(const std::string& where) const;
};

nlohmann::json ToJson(const FeatureSchema& schema);
// Throws Error("<where>: ...") naming the offending field.
FeatureSchema FeatureSchemaFromJson(const nlohmann::json& json, const std::string& where);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_SCHEMA_H_
