#include "twotower/model/model_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "testing/fixtures.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/model/safetensors.h"

namespace twotower::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::MakeTable;
using twotower::testing::TempDir;

// A tiny model: users (age numeric, gender one-hot F/M) -> width 3; items (genre one-hot
// Action/Drama, year numeric) -> width 3; towers 3 -> 6 -> 4 and 3 -> 5 -> 4.
struct Fixture {
  data::FeatureSchema schema;
  data::FeatureEncoder encoder;
  data::Table users, items;
  ModelConfig config;
  std::unique_ptr<TwoTowerModel> model;
  nlohmann::json train_config = {{"seed", 5}, {"data", {{"dir", "somewhere"}}}};

  explicit Fixture(ScoreMode mode = ScoreMode::kLearned) {
    schema.user.id_column = "user_id";
    schema.user.features = {{"age", data::FeatureType::kNumeric},
                            {"gender", data::FeatureType::kCategorical}};
    schema.item.id_column = "movie_id";
    schema.item.features = {{"genre", data::FeatureType::kCategorical},
                            {"year", data::FeatureType::kNumeric}};
    users = MakeTable("users.csv", {"user_id", "age", "gender"},
                      {{"u1", "20", "F"}, {"u2", "35", "M"}, {"u3", "61", "F"}});
    items = MakeTable("movies.csv", {"movie_id", "genre", "year"},
                      {{"m1", "Action", "1990"}, {"m2", "Drama", "2015"}, {"m3", "Drama", "1971"}});
    encoder.user = data::EntityEncoder(schema.user);
    encoder.user.Fit(users, {0, 1, 2});
    encoder.item = data::EntityEncoder(schema.item);
    encoder.item.Fit(items, {0, 1, 2});
    config.embedding_dim = 4;
    config.user_hidden_dims = {6};
    config.item_hidden_dims = {5};
    config.dropout = 0.1;
    config.score = mode;
    config.initial_scale = 3.0;
    Rng rng(17);
    model = std::make_unique<TwoTowerModel>(config, 3, 3, &rng);
    for (const auto& t : model->NamedTensors()) {
      if (t.name == "scorer.bias") t.parameter->value(0, 0) = 0.25f;
    }
  }

  // Every (user, item) pair's features.
  void Pairs(Matrix* xu, Matrix* xi) const {
    Matrix u, v;
    encoder.user.Encode(users, &u);
    encoder.item.Encode(items, &v);
    xu->resize(9, u.cols());
    xi->resize(9, v.cols());
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) {
        xu->row(3 * a + b) = u.row(a);
        xi->row(3 * a + b) = v.row(b);
      }
    }
  }
};

// One tower computed straight from the file's tensors, as PyTorch would: weights [out, in].
std::vector<double> TowerFromFile(const SafetensorsFile& f, const std::string& prefix,
                                  const std::vector<float>& x) {
  auto linear = [&](const std::string& layer, const std::vector<double>& in) {
    const Tensor& w = f.tensors.at(prefix + layer + ".weight");
    const Tensor& b = f.tensors.at(prefix + layer + ".bias");
    const int64_t out_dim = w.shape[0], in_dim = w.shape[1];
    EXPECT_EQ(static_cast<int64_t>(in.size()), in_dim);
    std::vector<double> y(out_dim);
    for (int64_t o = 0; o < out_dim; ++o) {
      double s = b.data[o];
      for (int64_t i = 0; i < in_dim; ++i) s += w.data[o * in_dim + i] * in[i];
      y[o] = s;
    }
    return y;
  };
  std::vector<double> h = linear("0", std::vector<double>(x.begin(), x.end()));
  for (double& v : h) v = std::max(v, 0.0);  // ReLU; dropout is the identity at inference
  std::vector<double> out = linear("3", h);
  double norm = 0.0;
  for (double v : out) norm += v * v;
  norm = std::sqrt(norm);
  for (double& v : out) v /= norm;
  return out;
}

TEST(ModelFileTest, RoundTripGivesIdenticalScoresAndState) {
  TempDir dir;
  Fixture fx;
  const std::string path = dir.File("model.safetensors");
  SaveModel(path, *fx.model, fx.encoder, fx.schema, fx.train_config);
  const LoadedModel loaded = LoadModel(path);

  Matrix xu, xi;
  fx.Pairs(&xu, &xi);
  Vector before, after;
  fx.model->Predict(xu, xi, &before);
  loaded.model->Predict(xu, xi, &after);
  ASSERT_EQ(after.size(), 9);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(before[i], after[i]) << i;

  EXPECT_EQ(loaded.encoder.ToJson(), fx.encoder.ToJson());
  EXPECT_EQ(data::ToJson(loaded.schema), data::ToJson(fx.schema));
  EXPECT_EQ(loaded.config, fx.train_config);
  EXPECT_EQ(loaded.model->config().ToJson(), fx.config.ToJson());
  EXPECT_FLOAT_EQ(loaded.model->scale(), 3.0f);
  EXPECT_FLOAT_EQ(loaded.model->bias(), 0.25f);
  EXPECT_EQ(loaded.model->user_input_dim(), 3);
  EXPECT_EQ(loaded.model->item_input_dim(), 3);
}

TEST(ModelFileTest, FileHoldsPyTorchNamedTensorsAndMetadata) {
  TempDir dir;
  Fixture fx;
  const std::string path = dir.File("model.safetensors");
  SaveModel(path, *fx.model, fx.encoder, fx.schema, fx.train_config);
  const SafetensorsFile f = ReadSafetensors(path);
  std::vector<std::string> names;
  for (const auto& [name, t] : f.tensors) names.push_back(name);
  EXPECT_THAT(names, ElementsAre("item_tower.layers.0.bias", "item_tower.layers.0.weight",
                                 "item_tower.layers.3.bias", "item_tower.layers.3.weight",
                                 "scorer.bias", "scorer.log_scale", "user_tower.layers.0.bias",
                                 "user_tower.layers.0.weight", "user_tower.layers.3.bias",
                                 "user_tower.layers.3.weight"));
  EXPECT_THAT(f.tensors.at("user_tower.layers.0.weight").shape, ElementsAre(6, 3));
  EXPECT_THAT(f.tensors.at("user_tower.layers.0.bias").shape, ElementsAre(6));
  EXPECT_THAT(f.tensors.at("user_tower.layers.3.weight").shape, ElementsAre(4, 6));
  EXPECT_THAT(f.tensors.at("item_tower.layers.0.weight").shape, ElementsAre(5, 3));
  EXPECT_THAT(f.tensors.at("item_tower.layers.3.weight").shape, ElementsAre(4, 5));
  EXPECT_TRUE(f.tensors.at("scorer.log_scale").shape.empty());
  EXPECT_FLOAT_EQ(f.tensors.at("scorer.log_scale").data.at(0), std::log(3.0f));
  EXPECT_FLOAT_EQ(f.tensors.at("scorer.bias").data.at(0), 0.25f);
  EXPECT_EQ(f.metadata.at("format"), "twotower.model");
  EXPECT_EQ(f.metadata.at("format_version"), "3");
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("encoder")), fx.encoder.ToJson());
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("config")), fx.train_config);
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("model"))["embedding_dim"], 4);

  // Scores recomputed from the raw tensors match the model's.
  Matrix xu, xi;
  fx.Pairs(&xu, &xi);
  Vector logits;
  fx.model->Predict(xu, xi, &logits);
  const double scale = std::exp(f.tensors.at("scorer.log_scale").data[0]);
  const double bias = f.tensors.at("scorer.bias").data[0];
  for (int i = 0; i < 9; ++i) {
    const std::vector<float> xu_row(xu.row(i).data(), xu.row(i).data() + xu.cols());
    const std::vector<float> xi_row(xi.row(i).data(), xi.row(i).data() + xi.cols());
    const std::vector<double> u = TowerFromFile(f, "user_tower.layers.", xu_row);
    const std::vector<double> v = TowerFromFile(f, "item_tower.layers.", xi_row);
    double dot = 0.0;
    for (size_t k = 0; k < u.size(); ++k) dot += u[k] * v[k];
    EXPECT_NEAR(logits[i], scale * dot + bias, 1e-5) << i;
  }
}

TEST(ModelFileTest, CosineModeRoundTrips) {
  TempDir dir;
  Fixture fx(ScoreMode::kCosine);
  const std::string path = dir.File("cos.safetensors");
  SaveModel(path, *fx.model, fx.encoder, fx.schema, nlohmann::json::object());
  const LoadedModel loaded = LoadModel(path);
  EXPECT_EQ(loaded.model->config().score, ScoreMode::kCosine);
  EXPECT_FLOAT_EQ(loaded.model->scale(), 1.0f);
  Matrix xu, xi;
  fx.Pairs(&xu, &xi);
  Vector before, after;
  fx.model->Predict(xu, xi, &before);
  loaded.model->Predict(xu, xi, &after);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(before[i], after[i]);
}

class ModelFileErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("model.safetensors");
    SaveModel(path_, *fx_.model, fx_.encoder, fx_.schema, fx_.train_config);
    file_ = ReadSafetensors(path_);
  }
  // Writes the (edited) file_ and returns LoadModel's error.
  // The checksum is recomputed: each edit stands for a writer that made a consistent but wrong
  // file, which the checks after the checksum must catch (a changed byte is a test of its own).
  std::string LoadError() {
    Rechecksum();
    WriteSafetensors(path_, file_);
    return ErrorMessage([&] { LoadModel(path_); });
  }
  void Rechecksum() {
    if (file_.metadata.count("crc32c")) file_.metadata["crc32c"] = ModelChecksum(file_);
  }

  TempDir dir_;
  Fixture fx_;
  std::string path_;
  SafetensorsFile file_;
};

TEST_F(ModelFileErrorTest, MissingTensor) {
  file_.tensors.erase("item_tower.layers.3.bias");
  EXPECT_EQ(LoadError(), path_ + ": missing tensor 'item_tower.layers.3.bias'");
}

TEST_F(ModelFileErrorTest, MisShapedTensor) {
  file_.tensors["user_tower.layers.0.weight"].shape = {3, 6};
  EXPECT_EQ(LoadError(), path_ +
                             ": tensor 'user_tower.layers.0.weight' has shape [3, 6], expected "
                             "[6, 3] for this model's config and encoder");
}

TEST_F(ModelFileErrorTest, TensorsNotMatchingTheEncoderWidth) {
  // The encoder claims a third gender, so the user tower would read 4 inputs.
  nlohmann::json enc = nlohmann::json::parse(file_.metadata["encoder"]);
  enc["user"]["columns"][1]["vocabulary"] = {"F", "M", "X"};
  file_.metadata["encoder"] = enc.dump();
  EXPECT_THAT(LoadError(), HasSubstr(path_ + ": tensor 'user_tower.layers.0.weight' has shape "
                                             "[6, 3], expected [6, 4]"));
}

TEST_F(ModelFileErrorTest, ExtraTensor) {
  file_.tensors["extra.weight"] = {{1}, {0.0f}};
  EXPECT_EQ(LoadError(), path_ + ": has 11 tensors, expected 10");
}

TEST_F(ModelFileErrorTest, NoTwotowerMetadata) {
  file_.metadata.clear();
  EXPECT_EQ(LoadError(), path_ + ": not a twotower model file (no 'format' in __metadata__)");
}

TEST_F(ModelFileErrorTest, WrongFormatOrVersion) {
  file_.metadata["format"] = "pt";
  EXPECT_EQ(LoadError(), path_ + ": not a twotower model file (format \"pt\")");
  file_.metadata["format"] = "twotower.model";
  file_.metadata["format_version"] = "4";
  EXPECT_EQ(LoadError(), path_ + ": model format version 4 is not supported (expected 1 to 3)");
}

// A byte changed anywhere a reader looks (a tensor's value, a vocabulary word in the metadata, a
// key of the embedded config) is refused: such a file used to load and recommend other items.
// CRC-32C of "123456789" is E3069283 (RFC 3720's check value), through core/hash.h.
TEST_F(ModelFileErrorTest, AChangedByteIsRefusedByTheChecksum) {
  const std::string bytes = twotower::testing::ReadBytes(path_);
  ASSERT_EQ(file_.metadata.at("format_version"), "3");
  ASSERT_EQ(file_.metadata.at("crc32c").size(), 8u);
  EXPECT_EQ(file_.metadata.at("crc32c"), ModelChecksum(file_));
  // Each flip lands in one region: the JSON text of the metadata (ids, keys), or a tensor.
  size_t data_start = 8;  // safetensors: an 8-byte little-endian header length, then the header
  for (int i = 0; i < 8; ++i) {
    data_start += static_cast<size_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  // A vocabulary word of the encoder, whose JSON is a string in the header's JSON: \"F\".
  const size_t in_encoder = bytes.find(R"(\"F\")");
  const size_t in_config = bytes.find("embedding_dim");  // a key of the model config
  ASSERT_NE(in_encoder, std::string::npos);
  ASSERT_NE(in_config, std::string::npos);
  ASSERT_LT(in_config, data_start);
  for (const size_t at : {in_encoder + 2, in_config + 2, data_start + 5, bytes.size() - 3}) {
    std::string flipped = bytes;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x04);
    dir_.Write("model.safetensors", flipped);
    EXPECT_THAT(ErrorMessage([&] { LoadModel(path_); }),
                HasSubstr(path_ + ": checksum mismatch (__metadata__.crc32c \""))
        << "flip at byte " << at << " of " << bytes.size();
  }
  // A version-3 file without its checksum is refused; a version-2 file (written before
  // checksums) loads.
  file_.metadata.erase("crc32c");
  WriteSafetensors(path_, file_);
  EXPECT_THAT(ErrorMessage([&] { LoadModel(path_); }),
              HasSubstr(path_ + ": __metadata__ has no crc32c, which its format version requires"));
  file_.metadata["format_version"] = "2";
  WriteSafetensors(path_, file_);
  EXPECT_NO_THROW(LoadModel(path_));
}

TEST_F(ModelFileErrorTest, MissingOrBrokenMetadataEntries) {
  file_.metadata.erase("model");
  EXPECT_EQ(LoadError(), path_ + ": not a twotower model file (no 'model' in __metadata__)");
  SetUp();
  file_.metadata["encoder"] = "{broken";
  EXPECT_THAT(
      LoadError(),
      ::testing::StartsWith(path_ + ": __metadata__.encoder: invalid JSON: parse error at line 1"));
  SetUp();
  file_.metadata["model"] = R"({"embedding_dim": 4})";
  EXPECT_THAT(LoadError(), HasSubstr(path_ + ": __metadata__.model: malformed model config"));
  SetUp();
  nlohmann::json model = nlohmann::json::parse(file_.metadata["model"]);
  model["score"] = "magic";
  file_.metadata["model"] = model.dump();
  EXPECT_THAT(LoadError(), HasSubstr(path_ + ": __metadata__.model: unknown score mode \"magic\""));
}

TEST_F(ModelFileErrorTest, ConfigMetadataIsOptional) {
  file_.metadata.erase("config");
  Rechecksum();
  WriteSafetensors(path_, file_);
  const LoadedModel loaded = LoadModel(path_);
  EXPECT_EQ(loaded.config, nlohmann::json::object());
}

TEST_F(ModelFileErrorTest, NotASafetensorsFile) {
  dir_.Write("model.safetensors", "hello, I am a CSV file\n1,2,3\n");
  EXPECT_THAT(ErrorMessage([&] { LoadModel(path_); }),
              HasSubstr(path_ + ": not a safetensors file"));
  const std::string missing = dir_.File("missing.safetensors");
  EXPECT_THAT(ErrorMessage([&] { LoadModel(missing); }), HasSubstr(missing + ": cannot open"));
}

TEST_F(ModelFileErrorTest, TruncatedFile) {
  const std::string bytes = twotower::testing::ReadBytes(path_);
  dir_.Write("model.safetensors", bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(ErrorMessage([&] { LoadModel(path_); }), HasSubstr(path_ + ": "));
  dir_.Write("model.safetensors", bytes.substr(0, bytes.size() - 1));
  EXPECT_THAT(ErrorMessage([&] { LoadModel(path_); }), HasSubstr("(truncated file?)"));
}

}  // namespace
}  // namespace twotower::model
