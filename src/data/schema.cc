#include "twotower/data/schema.h"

#include <set>

#include "twotower/core/error.h"

namespace twotower::data {

const char* FeatureTypeName(FeatureType type) {
  switch (type) {
    case FeatureType::kNumeric:
      return "numeric";
    case FeatureType::kCategorical:
      return "categorical";
    case FeatureType::kId:
      return "id";
    case FeatureType::kMultiHot:
      return "multi_hot";
  }
  return "";
}

FeatureType ParseFeatureType(const std::string& name, const std::string& where) {
  if (name == "numeric") return FeatureType::kNumeric;
  if (name == "categorical") return FeatureType::kCategorical;
  if (name == "id") return FeatureType::kId;
  if (name == "multi_hot") return FeatureType::kMultiHot;
  throw Error(where + ": unknown feature type " + Quote(name) +
              " (expected: numeric, categorical, id, multi_hot)");
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

void ValidateFeatureSpec(const FeatureSpec& f, const std::string& w) {
  if (f.learned() && (f.dim < 1 || f.dim > 65536)) {
    throw Error(w + ": dim " + std::to_string(f.dim) + " is out of range (expected 1..65536)");
  }
  if (f.buckets < 0 || f.buckets > (int64_t{1} << 31) - 1) {
    throw Error(w + ": buckets " + std::to_string(f.buckets) +
                " is out of range (expected 1..2147483647, or 0 for a vocabulary)");
  }
  if (f.type == FeatureType::kMultiHot && f.delimiter.empty()) {
    throw Error(w + ": the delimiter is empty");
  }
}

void FeatureSchema::Validate(const std::string& where) const {
  for (const auto* side : {&user, &item}) {
    const std::string name = side == &user ? "user" : "item";
    if (side->id_column.empty()) throw Error(where + ": features." + name + "_id is empty");
    if (side->features.empty()) {
      throw Error(where + ": features." + name +
                  ": expected at least one feature column (a table without features can use its "
                  "id column: {column: " +
                  side->id_column + ", type: id})");
    }
    std::set<std::string> seen;
    for (const FeatureSpec& f : side->features) {
      const std::string w = where + ": features." + name + ": column '" + f.column + "'";
      if (f.column.empty()) throw Error(where + ": features." + name + ": empty column name");
      if (!seen.insert(f.column).second) throw Error(w + " listed twice");
      ValidateFeatureSpec(f, w);
    }
  }
  if (label_column.empty()) throw Error(where + ": features.label is empty");
  if (item.history.enabled()) throw Error(where + ": a history belongs to the user side");
  if (user.history.enabled()) {
    const std::string w = where + ": features.history";
    const int f = HistoryTableFeature(item);
    if (f < 0) {
      throw Error(w +
                  ": the history is embedded with the item id table, and the item side has "
                  "no `id` feature on its id column (add {column: " +
                  item.id_column + ", type: id} to features.item)");
    }
    const int dim = item.features[f].dim;
    if (user.history.pooling == "attention" &&
        (user.history.heads < 1 || dim % user.history.heads != 0)) {
      throw Error(w + ": heads " + std::to_string(user.history.heads) +
                  " must be at least 1 and divide the item id feature's dim (" +
                  std::to_string(dim) + ")");
    }
  }
}

int HistoryTableFeature(const EntitySchema& item) {
  for (size_t f = 0; f < item.features.size(); ++f) {
    if (item.features[f].column == item.id_column && item.features[f].type == FeatureType::kId) {
      return static_cast<int>(f);
    }
  }
  return -1;
}

nlohmann::json ToJson(const HistorySpec& h) {
  return {{"length", h.length}, {"pooling", h.pooling}, {"heads", h.heads}};
}

HistorySpec HistorySpecFromJson(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": expected {length, pooling, heads}");
  HistorySpec h;
  // Integers in range only: a float, a boolean or a value beyond int would otherwise be
  // truncated or wrapped by the JSON library's conversion.
  auto integer = [&](const std::string& key, const nlohmann::json& v, int64_t lo, int64_t hi) {
    if (!v.is_number_integer() || v.get<int64_t>() < lo ||
        (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(hi)
                                : v.get<int64_t>() > hi)) {
      throw Error(where + ": " + key + " " + v.dump() + " is not an integer in " +
                  std::to_string(lo) + ".." + std::to_string(hi));
    }
    return static_cast<int>(v.get<int64_t>());
  };
  for (const auto& [key, value] : j.items()) {
    if (key == "length") {
      h.length = integer(key, value, 0, 10000);
    } else if (key == "heads") {
      h.heads = integer(key, value, 1, 65536);
    } else if (key == "pooling") {
      if (!value.is_string()) throw Error(where + ": pooling " + value.dump() + " is not a string");
      h.pooling = value.get<std::string>();
    } else {
      throw Error(where + ": unknown key '" + key + "' (expected: length, pooling, heads)");
    }
  }
  if (h.pooling != "attention" && h.pooling != "mean") {
    throw Error(where + ": pooling " + Quote(h.pooling) +
                " is unknown (expected: attention, mean)");
  }
  return h;
}

nlohmann::json ToJson(const FeatureSpec& f) {
  nlohmann::json j = {{"column", f.column}, {"type", FeatureTypeName(f.type)}};
  switch (f.type) {
    case FeatureType::kNumeric:
      j["missing"] = f.missing == Missing::kMean ? "mean" : "error";
      break;
    case FeatureType::kCategorical:
      j["encoding"] = f.encoding == Encoding::kEmbedding ? "embedding" : "one_hot";
      break;
    case FeatureType::kId:
      j["buckets"] = f.buckets;
      break;
    case FeatureType::kMultiHot:
      j["delimiter"] = f.delimiter;
      j["pooling"] = f.pooling == Pooling::kSum ? "sum" : "mean";
      break;
  }
  if (f.learned()) j["dim"] = f.dim;
  return j;
}

FeatureSpec FeatureSpecFromJson(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("column") || !j.contains("type")) {
    throw Error(where + ": expected {column: NAME, type: numeric|categorical|id|multi_hot}");
  }
  FeatureSpec f;
  try {
    f.column = j.at("column").get<std::string>();
    const std::string w = where + ": column '" + f.column + "'";
    f.type = ParseFeatureType(j.at("type").get<std::string>(), w);
    // Which keys each type takes; any other key is refused rather than silently ignored.
    std::set<std::string> allowed = {"column", "type"};
    switch (f.type) {
      case FeatureType::kNumeric:
        allowed.insert("missing");
        break;
      case FeatureType::kCategorical:
        allowed.insert({"encoding", "dim"});
        break;
      case FeatureType::kId:
        allowed.insert({"buckets", "dim"});
        break;
      case FeatureType::kMultiHot:
        allowed.insert({"delimiter", "pooling", "dim"});
        break;
    }
    for (const auto& [key, value] : j.items()) {
      if (allowed.count(key) == 0) {
        std::string expected;
        for (const std::string& k : allowed) expected += (expected.empty() ? "" : ", ") + k;
        throw Error(w + ": unknown key '" + key + "' for type " + FeatureTypeName(f.type) +
                    " (expected: " + expected + ")");
      }
    }
    auto choice = [&](const char* key, std::initializer_list<const char*> options) -> int {
      if (!j.contains(key)) return 0;
      const std::string v = j.at(key).get<std::string>();
      int i = 0;
      std::string list;
      for (const char* o : options) {
        if (v == o) return i;
        list += (list.empty() ? "" : ", ") + std::string(o);
        ++i;
      }
      throw Error(w + ": '" + key + "': unknown value " + Quote(v) + " (expected: " + list + ")");
    };
    f.missing = choice("missing", {"error", "mean"}) == 1 ? Missing::kMean : Missing::kError;
    f.encoding = choice("encoding", {"one_hot", "embedding"}) == 1 ? Encoding::kEmbedding
                                                                   : Encoding::kOneHot;
    if (f.type == FeatureType::kCategorical && f.encoding == Encoding::kOneHot &&
        j.contains("dim")) {
      throw Error(w +
                  ": 'dim' goes with encoding: embedding (one-hot columns have no width to set)");
    }
    f.pooling = choice("pooling", {"mean", "sum"}) == 1 ? Pooling::kSum : Pooling::kMean;
    if (j.contains("delimiter")) f.delimiter = j.at("delimiter").get<std::string>();
    if (j.contains("buckets")) f.buckets = j.at("buckets").get<int64_t>();
    if (j.contains("dim")) f.dim = j.at("dim").get<int>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed feature: " + e.what());
  }
  ValidateFeatureSpec(f, where + ": column '" + f.column + "'");
  return f;
}

namespace {

nlohmann::json SideToJson(const EntitySchema& side) {
  nlohmann::json features = nlohmann::json::array();
  for (const FeatureSpec& f : side.features) features.push_back(ToJson(f));
  nlohmann::json j = {{"id", side.id_column}, {"features", features}};
  if (side.history.enabled()) j["history"] = ToJson(side.history);
  return j;
}

EntitySchema SideFromJson(const nlohmann::json& j, const std::string& where) {
  EntitySchema side;
  try {
    side.id_column = j.at("id").get<std::string>();
    for (const auto& f : j.at("features")) side.features.push_back(FeatureSpecFromJson(f, where));
    if (j.contains("history"))
      side.history = HistorySpecFromJson(j["history"], where + ": history");
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed feature schema: " + e.what());
  }
  return side;
}

}  // namespace

nlohmann::json ToJson(const FeatureSchema& schema) {
  nlohmann::json j = {{"user", SideToJson(schema.user)},
                      {"item", SideToJson(schema.item)},
                      {"label", schema.label_column},
                      {"p_true", schema.p_true_column},
                      {"timestamp", schema.timestamp_column}};
  // Only when set: a model without weights keeps the metadata it had before weights existed.
  if (!schema.weight_column.empty()) j["weight"] = schema.weight_column;
  return j;
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
    if (json.contains("timestamp")) {
      schema.timestamp_column = json["timestamp"].get<std::string>();
    }
    if (json.contains("weight")) schema.weight_column = json["weight"].get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed feature schema: " + e.what());
  }
  schema.Validate(where);
  return schema;
}

}  // namespace twotower::data
