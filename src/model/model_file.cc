#include "twotower/model/model_file.h"

#include <cmath>
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

}  // namespace

void SaveModel(const std::string& path, TwoTowerModel& model, const data::FeatureEncoder& encoder,
               const data::FeatureSchema& schema, const nlohmann::json& config) {
  SafetensorsFile file;
  for (const auto& named : model.NamedTensors()) {
    const Matrix& m = named.parameter->value;
    Tensor t;
    t.shape = TorchShape(named.name, m);
    t.data.assign(m.data(), m.data() + m.size());
    file.tensors[named.name] = std::move(t);
  }
  file.metadata["format"] = "twotower.model";
  file.metadata["format_version"] = std::to_string(kModelFormatVersion);
  file.metadata["model"] = model.config().ToJson().dump();
  file.metadata["encoder"] = encoder.ToJson().dump();
  file.metadata["schema"] = data::ToJson(schema).dump();
  file.metadata["config"] = config.dump();
  WriteSafetensors(path, file);
}

LoadedModel LoadModel(const std::string& path) {
  const std::string bytes = ReadFile(path);
  SafetensorsFile file = ParseSafetensors(bytes, path);
  auto meta = [&](const std::string& key) -> const std::string& {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) {
      throw Error(path + ": not a twotower model file (no '" + key + "' in __metadata__)");
    }
    return it->second;
  };
  if (meta("format") != "twotower.model") {
    throw Error(path + ": not a twotower model file (format " + Quote(meta("format")) + ")");
  }
  // Version 1 (dense towers only) is a subset of version 2: its metadata reads the same way.
  if (meta("format_version") != "1" &&
      meta("format_version") != std::to_string(kModelFormatVersion)) {
    throw Error(path + ": model format version " + meta("format_version") +
                " is not supported (expected 1 or " + std::to_string(kModelFormatVersion) + ")");
  }
  auto parse = [&](const std::string& key) {
    return ParseJsonStrict(meta(key), path + ": __metadata__." + key);
  };
  LoadedModel loaded;
  loaded.fingerprint = Sha256Hex(bytes);
  const ModelConfig config = ModelConfig::FromJson(parse("model"), path + ": __metadata__.model");
  loaded.encoder =
      data::FeatureEncoder::FromJson(parse("encoder"), path + ": __metadata__.encoder");
  loaded.schema = data::FeatureSchemaFromJson(parse("schema"), path + ": __metadata__.schema");
  loaded.config = file.metadata.count("config") ? parse("config") : nlohmann::json::object();
  // Check the file's tensors against the shapes the metadata implies before allocating the
  // model: a corrupt or hostile config must not make us allocate terabytes. The names follow the
  // towers' layout (Linear at PyTorch indices 0, 3, 6, ...; see two_tower.h).
  std::map<std::string, std::vector<int64_t>> expected;
  for (const bool user : {true, false}) {
    const TowerSpec spec =
        MakeTowerSpec(config, user ? loaded.encoder.user : loaded.encoder.item, user);
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
  for (const auto& named : loaded.model->NamedTensors()) {
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
  if (file.tensors.size() != loaded.model->NamedTensors().size()) {
    throw Error(path + ": has " + std::to_string(file.tensors.size()) + " tensors, expected " +
                std::to_string(loaded.model->NamedTensors().size()));
  }
  return loaded;
}

}  // namespace twotower::model
