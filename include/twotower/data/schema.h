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

// The user-history feature (the config's `features.history`): per user (per training example: as
// of that example's timestamp, data/history.h), the item-embedding rows of the user's last
// `length` positive interactions, embedded with the item tower's id table (the item side's `id`
// feature on its id column; shared, not copied) and pooled into one more block of the user
// tower's input:
//   attention  multi-head attention pooling with the user tower's candidate-free query, as in
//              nn/attention.h (a learned query plus a projection of the user's other inputs, a
//              learned recency bias per head and position)
//   mean       the average of the history rows (the baseline attention is measured against)
// length 0 means no history feature.
struct HistorySpec {
  int length = 0;                     // 0..10000: the most recent positives kept
  std::string pooling = "attention";  // "attention" | "mean"
  int heads = 1;                      // attention heads; must divide the item id feature's dim
  bool enabled() const { return length > 0; }
};

// One side (users or items): the id column that interactions refer to, and the feature columns.
// `history` is set on the user side only.
struct EntitySchema {
  std::string id_column;
  std::vector<FeatureSpec> features;
  HistorySpec history;
};

struct FeatureSchema {
  EntitySchema user;
  EntitySchema item;
  std::string label_column = "liked";    // 0/1 in the interaction files
  std::string p_true_column = "p_true";  // optional: the generator's true probability
  // Optional: a numeric column of the interaction files giving each interaction's time (any
  // unit); orders the user-history feature. Empty: the files' row order is the time order.
  std::string timestamp_column;
  // Optional: a numeric column of the interaction files holding each interaction's weight
  // (implicit feedback: play counts, watch time; finite, >= 0), which training turns into the
  // row's weight in every loss (TrainingConfig::weight_transform). Empty: every row weighs 1.
  std::string weight_column;

  // The lab's features: user age, gender, favorite_genre, activity_level; movie genre, year,
  // duration, avg_rating.
  static FeatureSchema Lab();
  // Throws Error if a side has no features, a column is listed twice, a name is empty or a
  // setting is out of range; or for a history (user.history) without an item `id` feature on
  // the item id column to embed it, a length outside 0..10000, an unknown pooling, or heads < 1
  // or not dividing that feature's dim.
  void Validate(const std::string& where) const;
};

// Throws Error("<where>: ...") for a dim outside 1..65536 (learned features), buckets outside
// 0..2^31-1 or an empty multi-hot delimiter.
void ValidateFeatureSpec(const FeatureSpec& spec, const std::string& where);

nlohmann::json ToJson(const FeatureSpec& spec);
// Throws Error("<where>: ...") naming the offending field.
FeatureSpec FeatureSpecFromJson(const nlohmann::json& json, const std::string& where);
nlohmann::json ToJson(const FeatureSchema& schema);
// The history spec as JSON ({length, pooling, heads}) and back; HistorySpecFromJson throws
// Error("<where>: ...") naming the key for a malformed or out-of-range value.
nlohmann::json ToJson(const HistorySpec& history);
HistorySpec HistorySpecFromJson(const nlohmann::json& json, const std::string& where);
// The index (in item.features) of the item-side `id` feature on the item id column, the table a
// history is embedded with; -1 when there is none.
int HistoryTableFeature(const EntitySchema& item);
FeatureSchema FeatureSchemaFromJson(const nlohmann::json& json, const std::string& where);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_SCHEMA_H_
