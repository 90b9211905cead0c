#include "twotower/data/schema.h"

#include <set>

#include "twotower/core/error.h"

namespace twotower::data {

const char* FeatureTypeName(FeatureType type) {
  return type == FeatureType::kNumeric ? "numeric" : "categorical";
}

FeatureType ParseFeatureType(const std::string& name, const std::string& where) {
  if (name == "numeric") return FeatureType::kNumeric;
  if (name == "categorical") return FeatureType::kCategorical;
  throw Error(where + ": unknown feature type " + Quote(name) +
              " (expected: numeric, categorical)");
}

FeatureSchema FeatureSchema::Lab() {
  FeatureSchema s;
  s.user.id_column = "user_id";
  s.user.features = {{"age", FeatureType::kNumeric},
                     {"gender", FeatureType::kCategorical},
                     {"favorite_genre", FeatureType::kCategorical},
                     {"activity_level", FeatureType::kCategorical}};
  s.item.id_column = "movie_id";
  s.item.features = {{"genre", FeatureType::kCategorical},
                     {"year", FeatureType::kNumeric},
                     {"duration", FeatureType::kNumeric},
                     {"avg_rating", FeatureType::kNumeric}};
  return s;
}

void FeatureSchema::Validate(const std::string& where) const {
  for (const auto* side : {&user, &item}) {
    const std::string name = side == &user ? "user" : "item";
    if (side->id_column.empty()) throw Error(where + ": features." + name + "_id is empty");
    if (side->features.empty()) {
      throw Error(where + ": features." + name + ": expected at least one feature column");
    }
    std::set<std::string> seen;
    for (const FeatureSpec& f : side->features) {
      if (f.column.empty()) throw Error(where + ": features." + name + ": empty column name");
      if (!seen.insert(f.column).second) {
        throw Error(where + ": features." + name + ": column '" + f.column + "' listed twice");
      }
      if (f.column == side->id_column) {
        throw Error(where + ": features." + name + ": the id column '" + f.column +
                    "' cannot also be a feature");
      }
    }
  }
  if (label_column.empty()) throw Error(where + ": features.label is empty");
}

namespace {

nlohmann::json SideToJson(const EntitySchema& side) {
  nlohmann::json features = nlohmann::json::array();
  for (const FeatureSpec& f : side.features) {
    features.push_back({{"column", f.column}, {"type", FeatureTypeName(f.type)}});
  }
  return {{"id", side.id_column}, {"features", features}};
}

EntitySchema SideFromJson(const nlohmann::json& j, const std::string& where) {
  EntitySchema side;
  try {
    side.id_column = j.at("id").get<std::string>();
    for (const auto& f : j.at("features")) {
      side.features.push_back({f.at("column").get<std::string>(),
                               ParseFeatureType(f.at("type").get<std::string>(), where)});
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed feature schema: " + e.what());
  }
  return side;
}

}  // namespace

nlohmann::json ToJson(const FeatureSchema& schema) {
  return {{"user", SideToJson(schema.user)},
          {"item", SideToJson(schema.item)},
          {"label", schema.label_column},
          {"p_true", schema.p_true_column}};
}

FeatureSchema FeatureSchemaFromJson(const nlohmann::json& json, const std::string& where) {
  FeatureSchema schema;
  if (!json.is_object() || !json.contains("user") || !json.contains("item")) {
    throw Error(where + ": malformed feature schema: expected 'user' and 'item'");
  }
  schema.user = SideFromJson(json["user"], where);
  schema.item = SideFromJson(json["item"], where);
  try {
    if (json.contains("label")) schema.label_column = json["label"].get<std::string>();
    if (json.contains("p_true")) schema.p_true_column = json["p_true"].get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed feature schema: " + e.what());
  }
  schema.Validate(where);
  return schema;
}

}  // namespace twotower::data
