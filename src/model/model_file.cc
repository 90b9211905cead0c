#include "twotower/model/model_file.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/hash.h"
#include "twotower/core/json.h"
#include "twotower/model/safetensors.h"

namespace twotower::model {

namespace {

constexpr char kChecksumKey[] = "crc32c";  // ModelChecksum

// The history settings are stored twice (schema and encoder; the encoder's builds the tower):
// a file whose copies disagree was edited or damaged.
void CheckHistoryCopies(const std::string& path, const data::FeatureSchema& schema,
                        const data::FeatureEncoder& encoder) {
  const nlohmann::json a = data::ToJson(schema.user.history);
  const nlohmann::json b = data::ToJson(encoder.user.schema().history);
  if (a != b) {
    throw Error(path + ": __metadata__: the schema's user history " + a.dump() +
                " and the encoder's " + b.dump() + " disagree");
  }
}

// The PyTorch shape of a tensor: 0-d scorer values, 1-d biases, [out, in] weights.
std::vector<int64_t> TorchShape(const std::string& name, const Matrix& m) {
  if (name.rfind("scorer.", 0) == 0) return {};
  if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) return {m.size()};
  return {m.rows(), m.cols()};
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Checks the file's tensors against the model's (names, PyTorch shapes, finite values, no extra
// ones) and copies them in.
void CopyTensors(const std::string& path, const SafetensorsFile& file,
                 const std::vector<nn::NamedParameter>& named_tensors) {
  for (const auto& named : named_tensors) {
    const auto it = file.tensors.find(named.name);
    if (it == file.tensors.end()) throw Error(path + ": missing tensor '" + named.name + "'");
    Matrix& m = named.parameter->value;
    const std::vector<int64_t> expected = TorchShape(named.name, m);
    if (it->second.shape != expected) {
      throw Error(path + ": tensor '" + named.name + "' has shape " + ShapeText(it->second.shape) +
                  ", expected " + ShapeText(expected) + " for this model's config and encoder");
    }
    // A NaN or infinite weight would turn every score into NaN, silently: refused here, once.
    for (size_t k = 0; k < it->second.data.size(); ++k) {
      if (!std::isfinite(it->second.data[k])) {
        throw Error(path + ": tensor '" + named.name + "' has a non-finite value at element " +
                    std::to_string(k) + " (expected finite float32 weights)");
      }
    }
    std::memcpy(m.data(), it->second.data.data(), sizeof(float) * m.size());
  }
  if (file.tensors.size() != named_tensors.size()) {
    throw Error(path + ": has " + std::to_string(file.tensors.size()) + " tensors, expected " +
                std::to_string(named_tensors.size()));
  }
}

// Every tensor of a model into a safetensors file with the common metadata.
SafetensorsFile MakeFile(const std::vector<nn::NamedParameter>& named_tensors, const char* format,
                         int version, const ModelConfig& model, const data::FeatureEncoder& encoder,
                         const data::FeatureSchema& schema, const nlohmann::json& config) {
  SafetensorsFile file;
  for (const auto& named : named_tensors) {
    const Matrix& m = named.parameter->value;
    Tensor t;
    t.shape = TorchShape(named.name, m);
    t.data.assign(m.data(), m.data() + m.size());
    file.tensors[named.name] = std::move(t);
  }
  file.metadata["format"] = format;
  file.metadata["format_version"] = std::to_string(version);
  file.metadata["model"] = model.ToJson().dump();
  file.metadata["encoder"] = encoder.ToJson().dump();
  file.metadata["schema"] = data::ToJson(schema).dump();
  file.metadata["config"] = config.dump();
  file.metadata[kChecksumKey] = ModelChecksum(file);
  return file;
}

// A checksum must match wherever there is one (a version changed to an older one by a flipped
// byte does not skip it), and be there for the versions that write one (`required`).
void VerifyChecksum(const SafetensorsFile& file, const std::string& path, bool required) {
  const auto it = file.metadata.find(kChecksumKey);
  if (it == file.metadata.end()) {
    if (!required) return;
    throw Error(ErrorCode::kCorruptData,
                path +
                    ": __metadata__ has no crc32c, which its format version requires: the "
                    "file is corrupt or was changed by another program");
  }
  const std::string actual = ModelChecksum(file);
  if (it->second != actual) {
    throw Error(ErrorCode::kCorruptData,
                path + ": checksum mismatch (__metadata__.crc32c " + Quote(it->second) +
                    ", the contents give " + Quote(actual) +
                    "): the file is corrupt; restore it from a copy or train again");
  }
}

// The metadata value of `key`, or Error naming the file.
const std::string& Meta(const SafetensorsFile& file, const std::string& path,
                        const std::string& key) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end()) {
    throw Error(path + ": not a twotower model file (no '" + key + "' in __metadata__)");
  }
  return it->second;
}

constexpr char kTwoTowerFormat[] = "twotower.model";
constexpr char kRankerFormat[] = "twotower.ranker";

}  // namespace

std::string ModelChecksum(const SafetensorsFile& file) {
  uint32_t crc = 0;
  const char nul = '\0';
  auto add = [&crc](const void* data, size_t size) { crc = Crc32c(crc, data, size); };
  for (const auto& [name, tensor] : file.tensors) {
    add(name.data(), name.size());
    add(&nul, 1);
    for (const int64_t d : tensor.shape) {
      unsigned char le[8];
      for (int i = 0; i < 8; ++i)
        le[i] = static_cast<unsigned char>(static_cast<uint64_t>(d) >> (8 * i));
      add(le, 8);
    }
    add(tensor.data.data(), tensor.data.size() * sizeof(float));
  }
  for (const auto& [key, value] : file.metadata) {
    if (key == kChecksumKey) continue;
    add(key.data(), key.size());
    add(&nul, 1);
    add(value.data(), value.size());
    add(&nul, 1);
  }
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08x", crc);
  return hex;
}

void SaveModel(const std::string& path, TwoTowerModel& model, const data::FeatureEncoder& encoder,
               const data::FeatureSchema& schema, const nlohmann::json& config) {
  WriteSafetensors(path, MakeFile(model.NamedTensors(), kTwoTowerFormat, kModelFormatVersion,
                                  model.config(), encoder, schema, config));
}

LoadedModel LoadModel(const std::string& path) {
  const std::string bytes = ReadFile(path);
  SafetensorsFile file = ParseSafetensors(bytes, path);
  auto meta = [&](const std::string& key) -> const std::string& { return Meta(file, path, key); };
  if (meta("format") == kRankerFormat) {
    throw Error(path +
                ": is a ranker (model.kind: ranker), not a two-tower model: it re-ranks "
                "what a two-tower model retrieves (`recommend --model TWO_TOWER --rerank " +
                path + "`)");
  }
  if (meta("format") != kTwoTowerFormat) {
    throw Error(path + ": not a twotower model file (format " + Quote(meta("format")) + ")");
  }
  // Version 1 (dense towers only) is a subset of version 2, and 2 is 3 without the checksum:
  // their metadata reads the same way.
  const std::string& version = meta("format_version");
  if (version != "1" && version != "2" && version != std::to_string(kModelFormatVersion)) {
    throw Error(path + ": model format version " + version + " is not supported (expected 1 to " +
                std::to_string(kModelFormatVersion) + ")");
  }
  VerifyChecksum(file, path, version == std::to_string(kModelFormatVersion));
  auto parse = [&](const std::string& key) {
    return ParseJsonStrict(meta(key), path + ": __metadata__." + key);
  };
  LoadedModel loaded;
  loaded.fingerprint = Sha256Hex(bytes);
  const ModelConfig config = ModelConfig::FromJson(parse("model"), path + ": __metadata__.model");
  if (config.kind != "two_tower") {
    throw Error(path + ": __metadata__.model: kind is " + Quote(config.kind) +
                " in a two-tower model file (expected \"two_tower\")");
  }
  loaded.encoder =
      data::FeatureEncoder::FromJson(parse("encoder"), path + ": __metadata__.encoder");
  loaded.schema = data::FeatureSchemaFromJson(parse("schema"), path + ": __metadata__.schema");
  CheckHistoryCopies(path, loaded.schema, loaded.encoder);
  loaded.config = file.metadata.count("config") ? parse("config") : nlohmann::json::object();
  // Check the file's tensors against the shapes the metadata implies before allocating the
  // model: a corrupt or hostile config must not make us allocate terabytes. The names follow the
  // towers' layout (Linear at PyTorch indices 0, 3, 6, ...; see two_tower.h).
  std::map<std::string, std::vector<int64_t>> expected;
  for (const bool user : {true, false}) {
    TowerSpec spec;
    try {
      spec = MakeTowerSpec(config, loaded.encoder, user);
    } catch (const Error& e) {
      throw Error(path + ": __metadata__.encoder: " + e.what());
    }
    const std::string prefix = user ? "user_tower." : "item_tower.";
    int64_t prev = spec.dense_dim;
    for (const data::LearnedFeature& f : spec.learned) {
      if (f.rows < 1 || f.rows > (int64_t{1} << 31)) {
        throw Error(path + ": __metadata__.encoder: feature '" + f.column + "' has " +
                    std::to_string(f.rows) + " embedding rows (expected 1 .. 2^31)");
      }
      expected[prefix + "embeddings." + f.column + ".weight"] = {f.rows, f.dim};
      prev += f.dim;
    }
    if (spec.history.enabled()) {
      const data::HistorySpec& h = spec.history;
      if (h.pooling == "attention" && spec.history_dim % h.heads != 0) {
        throw Error(path + ": __metadata__.encoder: history heads " + std::to_string(h.heads) +
                    " do not divide the item id feature's dim " + std::to_string(spec.history_dim));
      }
      if (h.pooling == "attention") {
        expected[prefix + "history.query"] = {1, spec.history_dim};
        if (prev > 0) expected[prefix + "history.query_proj.weight"] = {spec.history_dim, prev};
        expected[prefix + "history.recency"] = {h.heads, h.length};
      }
      prev += spec.history_dim;
    }
    std::vector<int> dims = spec.hidden_dims;
    if (spec.projection) dims.push_back(config.embedding_dim);
    for (size_t i = 0; i < dims.size(); ++i) {
      const std::string name = prefix + "layers." + std::to_string(3 * i);
      expected[name + ".weight"] = {dims[i], prev};
      expected[name + ".bias"] = {dims[i]};
      prev = dims[i];
    }
  }
  expected["scorer.log_scale"] = {};
  expected["scorer.bias"] = {};
  for (const TaskSpec& t : config.tasks) {
    expected["tasks." + t.name + ".weight"] = {t.outputs(), config.embedding_dim};
    expected["tasks." + t.name + ".bias"] = {t.outputs()};
  }
  for (const auto& [name, shape] : expected) {
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) throw Error(path + ": missing tensor '" + name + "'");
    if (it->second.shape != shape) {
      throw Error(path + ": tensor '" + name + "' has shape " + ShapeText(it->second.shape) +
                  ", expected " + ShapeText(shape) + " for this model's config and encoder");
    }
  }
  if (file.tensors.size() != expected.size()) {
    throw Error(path + ": has " + std::to_string(file.tensors.size()) + " tensors, expected " +
                std::to_string(expected.size()));
  }
  Rng unused(0);
  try {
    loaded.model = std::make_unique<TwoTowerModel>(config, loaded.encoder, &unused);
  } catch (const Error& e) {
    throw Error(path + ": __metadata__.model: " + e.what());
  }
  CopyTensors(path, file, loaded.model->NamedTensors());
  return loaded;
}

void SaveRanker(const std::string& path, Ranker& ranker, const data::FeatureEncoder& encoder,
                const data::FeatureSchema& schema, const nlohmann::json& config) {
  WriteSafetensors(path, MakeFile(ranker.NamedTensors(), kRankerFormat, kRankerFormatVersion,
                                  ranker.config(), encoder, schema, config));
}

LoadedRanker LoadRanker(const std::string& path) {
  const std::string bytes = ReadFile(path);
  SafetensorsFile file = ParseSafetensors(bytes, path);
  const std::string& format = Meta(file, path, "format");
  if (format == kTwoTowerFormat) {
    throw Error(path +
                ": is a two-tower model, not a ranker: --rerank takes a model trained "
                "with model.kind: ranker");
  }
  if (format != kRankerFormat) {
    throw Error(path + ": not a twotower ranker file (format " + Quote(format) + ")");
  }
  const std::string& version = Meta(file, path, "format_version");
  if (version != "1" && version != std::to_string(kRankerFormatVersion)) {
    throw Error(path + ": ranker format version " + version + " is not supported (expected 1 or " +
                std::to_string(kRankerFormatVersion) + ")");
  }
  VerifyChecksum(file, path, version == std::to_string(kRankerFormatVersion));
  auto parse = [&](const std::string& key) {
    return ParseJsonStrict(Meta(file, path, key), path + ": __metadata__." + key);
  };
  LoadedRanker loaded;
  loaded.fingerprint = Sha256Hex(bytes);
  const ModelConfig config = ModelConfig::FromJson(parse("model"), path + ": __metadata__.model");
  if (config.kind != "ranker") {
    throw Error(path + ": __metadata__.model: kind is " + Quote(config.kind) +
                ", expected \"ranker\"");
  }
  loaded.encoder =
      data::FeatureEncoder::FromJson(parse("encoder"), path + ": __metadata__.encoder");
  loaded.schema = data::FeatureSchemaFromJson(parse("schema"), path + ": __metadata__.schema");
  CheckHistoryCopies(path, loaded.schema, loaded.encoder);
  loaded.config = file.metadata.count("config") ? parse("config") : nlohmann::json::object();
  // Shapes before allocation, as LoadModel does.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  try {
    expected = RankerTensorShapes(config, loaded.encoder);
  } catch (const Error& e) {
    throw Error(path + ": __metadata__.encoder: " + e.what());
  }
  for (const auto& [name, shape] : expected) {
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) throw Error(path + ": missing tensor '" + name + "'");
    if (it->second.shape != shape) {
      throw Error(path + ": tensor '" + name + "' has shape " + ShapeText(it->second.shape) +
                  ", expected " + ShapeText(shape) + " for this ranker's config and encoder");
    }
  }
  Rng unused(0);
  try {
    loaded.model = std::make_unique<Ranker>(config, loaded.encoder, &unused);
  } catch (const Error& e) {
    throw Error(path + ": __metadata__.model: " + e.what());
  }
  CopyTensors(path, file, loaded.model->NamedTensors());
  return loaded;
}

}  // namespace twotower::model
