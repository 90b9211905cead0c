#include "twotower/model/model_file.h"

#include <cstring>

#include "twotower/core/error.h"
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
  SafetensorsFile file = ReadSafetensors(path);
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
  if (meta("format_version") != std::to_string(kModelFormatVersion)) {
    throw Error(path + ": model format version " + meta("format_version") +
                " is not supported (expected " + std::to_string(kModelFormatVersion) + ")");
  }
  auto parse = [&](const std::string& key) {
    try {
      return nlohmann::json::parse(meta(key));
    } catch (const nlohmann::json::exception&) {
      throw Error(path + ": __metadata__." + key + " is not valid JSON");
    }
  };
  LoadedModel loaded;
  const ModelConfig config = ModelConfig::FromJson(parse("model"), path + ": __metadata__.model");
  loaded.encoder =
      data::FeatureEncoder::FromJson(parse("encoder"), path + ": __metadata__.encoder");
  loaded.schema = data::FeatureSchemaFromJson(parse("schema"), path + ": __metadata__.schema");
  loaded.config = file.metadata.count("config") ? parse("config") : nlohmann::json::object();
  Rng unused(0);
  loaded.model = std::make_unique<TwoTowerModel>(config, loaded.encoder.user.width(),
                                                 loaded.encoder.item.width(), &unused);
  for (const auto& named : loaded.model->NamedTensors()) {
    const auto it = file.tensors.find(named.name);
    if (it == file.tensors.end()) throw Error(path + ": missing tensor '" + named.name + "'");
    Matrix& m = named.parameter->value;
    const std::vector<int64_t> expected = TorchShape(named.name, m);
    if (it->second.shape != expected) {
      throw Error(path + ": tensor '" + named.name + "' has shape " + ShapeText(it->second.shape) +
                  ", expected " + ShapeText(expected) + " for this model's config and encoder");
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
