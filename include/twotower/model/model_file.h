// Model files: a TwoTowerModel's weights plus everything needed to score raw rows.
//
// A .safetensors file with PyTorch-compatible tensor names (see two_tower.h) and __metadata__:
//   format: "twotower.model", format_version: "3", crc32c, model: ModelConfig JSON,
//   encoder: FeatureEncoder JSON (vocabularies, means, stds), schema: FeatureSchema JSON,
//   config: the resolved training config JSON (informative; data paths for the CLI's defaults).
// A ranker (ranker.h) is stored the same way with format "twotower.ranker", format_version "2";
// each loader refuses the other's files with a message saying what the file is.
// Thread-safe: free functions with no shared state.
#ifndef TWOTOWER_MODEL_MODEL_FILE_H_
#define TWOTOWER_MODEL_MODEL_FILE_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "twotower/data/encoder.h"
#include "twotower/data/schema.h"
#include "twotower/model/ranker.h"
#include "twotower/model/safetensors.h"
#include "twotower/model/two_tower.h"

namespace twotower::model {

// 2: towers with embedding bags (`<tower>.embeddings.<column>.weight`), feature specs with
// per-type settings. 3: the same with a checksum, __metadata__.crc32c (ModelChecksum): a byte
// changed anywhere in the tensors or the metadata is refused at load. Files of versions 1 and 2
// still load (checked only if they hold a crc32c).
constexpr int kModelFormatVersion = 3;

// The checksum of a model or ranker file's contents: CRC-32C (RFC 3720's polynomial, core/hash.h)
// over each tensor in name order (its name, a NUL, its shape as 64-bit little-endian integers,
// its float32 data as stored) and then each __metadata__ entry other than "crc32c" in key order
// (key, NUL, value, NUL), written as 8 lowercase hex digits. Independent of how the JSON header
// is spelled (spaces, key order), so it covers what a reader uses.
std::string ModelChecksum(const SafetensorsFile& file);

struct LoadedModel {
  std::unique_ptr<TwoTowerModel> model;
  data::FeatureEncoder encoder;
  data::FeatureSchema schema;
  nlohmann::json config;  // the training config; an empty object when absent
  // SHA-256 of the file's bytes, 64 hex digits (what `sha256sum` prints): the model's identity,
  // recorded in every file derived from it (core/hash.h).
  std::string fingerprint;
};

// Writes atomically.
void SaveModel(const std::string& path, TwoTowerModel& model, const data::FeatureEncoder& encoder,
               const data::FeatureSchema& schema, const nlohmann::json& config);

// Throws Error("<path>: ...") for a file that is missing, truncated, not safetensors, not a
// twotower model (a ranker is named as such), of an unknown version, whose checksum does not
// match its contents (kCorruptData), or whose tensors are missing, mis-shaped or not finite.
LoadedModel LoadModel(const std::string& path);

// 2: with __metadata__.crc32c (ModelChecksum); version 1 still loads (unchecked).
constexpr int kRankerFormatVersion = 2;

struct LoadedRanker {
  std::unique_ptr<Ranker> model;
  data::FeatureEncoder encoder;
  data::FeatureSchema schema;
  nlohmann::json config;    // the training config; an empty object when absent
  std::string fingerprint;  // SHA-256 of the file's bytes, as LoadedModel's
};

// Writes atomically.
void SaveRanker(const std::string& path, Ranker& ranker, const data::FeatureEncoder& encoder,
                const data::FeatureSchema& schema, const nlohmann::json& config);
// Throws Error("<path>: ...") as LoadModel does; a two-tower model file is named as such.
LoadedRanker LoadRanker(const std::string& path);

}  // namespace twotower::model

#endif  // TWOTOWER_MODEL_MODEL_FILE_H_
