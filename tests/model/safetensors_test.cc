#include "twotower/model/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "testing/fixtures.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::FloatBytes;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

std::string Le64(uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file assembled by hand: 8-byte LE header length, JSON header, data.
std::string Assemble(const std::string& header, const std::string& data) {
  return Le64(header.size()) + header + data;
}

SafetensorsFile SampleFile() {
  SafetensorsFile f;
  f.tensors["layer.weight"] = {{2, 3}, {1, 2, 3, 4, 5, 6}};
  f.tensors["layer.bias"] = {{3}, {-1.5f, 0.0f, 1e-7f}};
  f.tensors["scale"] = {{}, {2.5f}};
  f.tensors["empty"] = {{0, 4}, {}};
  f.metadata["format"] = "test";
  f.metadata["note"] = "with \"quotes\" and unicode \xc3\xa9";
  return f;
}

TEST(SafetensorsTest, RoundTrip) {
  TempDir dir;
  const std::string path = dir.File("t.safetensors");
  const SafetensorsFile f = SampleFile();
  WriteSafetensors(path, f);
  const SafetensorsFile back = ReadSafetensors(path);
  EXPECT_EQ(back.metadata, f.metadata);
  ASSERT_EQ(back.tensors.size(), f.tensors.size());
  for (const auto& [name, t] : f.tensors) {
    ASSERT_TRUE(back.tensors.count(name)) << name;
    EXPECT_EQ(back.tensors.at(name).shape, t.shape) << name;
    EXPECT_EQ(back.tensors.at(name).data, t.data) << name;
  }
}

TEST(SafetensorsTest, WrittenLayoutFollowsTheFormat) {
  TempDir dir;
  const std::string path = dir.File("t.safetensors");
  WriteSafetensors(path, SampleFile());
  const std::string bytes = ReadBytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  EXPECT_EQ(n % 8, 0u);  // data aligned to 8 bytes
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  // Tensors in name order: empty (0 bytes), layer.bias (12), layer.weight (24), scale (4).
  EXPECT_EQ(header["empty"]["dtype"], "F32");
  EXPECT_EQ(header["empty"]["shape"], nlohmann::json({0, 4}));
  EXPECT_EQ(header["empty"]["data_offsets"], nlohmann::json({0, 0}));
  EXPECT_EQ(header["layer.bias"]["data_offsets"], nlohmann::json({0, 12}));
  EXPECT_EQ(header["layer.weight"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(header["layer.weight"]["data_offsets"], nlohmann::json({12, 36}));
  EXPECT_EQ(header["scale"]["shape"], nlohmann::json::array());
  EXPECT_EQ(header["scale"]["data_offsets"], nlohmann::json({36, 40}));
  EXPECT_EQ(header["__metadata__"]["format"], "test");
  ASSERT_EQ(bytes.size(), 8 + n + 40);
  EXPECT_EQ(bytes.substr(8 + n), FloatBytes({-1.5f, 0.0f, 1e-7f, 1, 2, 3, 4, 5, 6, 2.5f}));
}

TEST(SafetensorsTest, ReadsAHandBuiltFile) {
  TempDir dir;
  // Data stored in another order than the names, header not padded, metadata present.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("__metadata__":{"format":"pt"}})";
  const std::string path =
      dir.Write("hand.safetensors", Assemble(header, FloatBytes({0.5f, -0.5f, 1, 2, 3, 4})));
  const SafetensorsFile f = ReadSafetensors(path);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_THAT(f.tensors.at("w").shape, ElementsAre(2, 2));
  EXPECT_THAT(f.tensors.at("w").data, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(f.tensors.at("b").shape, ElementsAre(2));
  EXPECT_THAT(f.tensors.at("b").data, ElementsAre(0.5f, -0.5f));
  EXPECT_EQ(f.metadata.at("format"), "pt");
}

TEST(SafetensorsTest, ReadsAFileWithoutMetadataOrTensors) {
  TempDir dir;
  const std::string path = dir.Write("e.safetensors", Assemble("{}      ", ""));
  const SafetensorsFile f = ReadSafetensors(path);
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_TRUE(f.metadata.empty());
}

class SafetensorsErrorTest : public ::testing::Test {
 protected:
  // Writes `bytes` and returns ReadSafetensors' error message.
  void SetUp() override { path_ = dir_.File("bad.safetensors"); }
  std::string Error(const std::string& bytes) {
    dir_.Write("bad.safetensors", bytes);
    return ErrorMessage([&] { ReadSafetensors(path_); });
  }
  std::string Tensor(const std::string& entry) { return R"({"t":)" + entry + "}"; }

  TempDir dir_;
  std::string path_;
};

TEST_F(SafetensorsErrorTest, MissingFile) {
  const std::string missing = dir_.File("nope.safetensors");
  EXPECT_THAT(ErrorMessage([&] { ReadSafetensors(missing); }),
              HasSubstr(missing + ": cannot open"));
}

TEST_F(SafetensorsErrorTest, ShorterThanTheLengthField) {
  EXPECT_EQ(Error("abc"),
            path_ + ": not a safetensors file (shorter than the 8-byte header length)");
  EXPECT_THAT(Error(""), HasSubstr(path_ + ": not a safetensors file"));
}

TEST_F(SafetensorsErrorTest, GarbageFile) {
  const std::string m = Error("this is a text file, certainly not a model\n");
  EXPECT_THAT(m, HasSubstr(path_ + ": not a safetensors file"));
}

TEST_F(SafetensorsErrorTest, HeaderLengthLargerThanFile) {
  const std::string m = Error(Le64(1000) + R"({"a":1})");
  EXPECT_EQ(
      m, path_ + ": not a safetensors file or truncated (header length 1000, file has 15 bytes)");
  EXPECT_THAT(Error(Le64(~uint64_t{0}) + "{}"), HasSubstr(path_ + ": not a safetensors file"));
  EXPECT_THAT(Error(Le64(0) + "{}"), HasSubstr(path_ + ": not a safetensors file"));
}

// RFC 8259 leaves a repeated name to the reader; nlohmann keeps the last silently. A tensor
// named twice would then take whichever entry came last: refused, naming the key.
TEST_F(SafetensorsErrorTest, KeyGivenTwiceIsRefused) {
  EXPECT_EQ(Error(Assemble(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                           std::string(4, '\0'))),
            path_ +
                ": safetensors header: duplicate key \"w\" in the top-level object (a key "
                "may appear once per object)");
  EXPECT_THAT(Error(Assemble(R"({"w":{"dtype":"F32","dtype":"F16","shape":[1],)"
                             R"("data_offsets":[0,4]}})",
                             std::string(4, '\0'))),
              HasSubstr("duplicate key \"dtype\" in the object at /w"));
}

TEST_F(SafetensorsErrorTest, HeaderNotJsonOrNotAnObject) {
  EXPECT_THAT(
      Error(Assemble("{not json", "")),
      HasSubstr(path_ + ": safetensors header: invalid JSON: parse error at line 1, column 3"));
  EXPECT_EQ(Error(Assemble("[1, 2]", "")),
            path_ + ": not a safetensors file (header is not an object)");
}

TEST_F(SafetensorsErrorTest, NonF32Dtype) {
  const std::string m =
      Error(Assemble(Tensor(R"({"dtype":"F16","shape":[2],"data_offsets":[0,4]})"), "abcd"));
  EXPECT_EQ(m, path_ + ": tensor 't': dtype \"F16\" is not supported (expected F32)");
  EXPECT_THAT(
      Error(Assemble(Tensor(R"({"dtype":"I64","shape":[1],"data_offsets":[0,8]})"), "abcdefgh")),
      HasSubstr(path_ + ": tensor 't': dtype \"I64\" is not supported"));
}

TEST_F(SafetensorsErrorTest, OffsetsOutOfRange) {
  const std::string m = Error(
      Assemble(Tensor(R"({"dtype":"F32","shape":[100],"data_offsets":[0,400]})"), FloatBytes({1})));
  EXPECT_EQ(m, path_ + ": tensor 't': data offsets [0, 400) lie outside the 4 data bytes " +
                   "(truncated file?)");
  EXPECT_THAT(Error(Assemble(Tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), "")),
              HasSubstr(path_ + ": tensor 't': data offsets"));
  EXPECT_THAT(
      Error(Assemble(Tensor(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})"), "12345678")),
      HasSubstr(path_ + ": tensor 't': data offsets"));
}

TEST_F(SafetensorsErrorTest, SizeNotMatchingShape) {
  EXPECT_EQ(Error(Assemble(Tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"),
                           FloatBytes({1, 2, 3}))),
            path_ + ": tensor 't': 8 bytes do not match its shape");
}

TEST_F(SafetensorsErrorTest, MalformedEntries) {
  EXPECT_THAT(Error(Assemble(Tensor(R"({"dtype":"F32","shape":[1]})"), "abcd")),
              HasSubstr(path_ + ": tensor 't': expected dtype, shape and data_offsets"));
  EXPECT_THAT(Error(Assemble(Tensor("7"), "")),
              HasSubstr(path_ + ": tensor 't': expected dtype, shape and data_offsets"));
  EXPECT_THAT(
      Error(Assemble(Tensor(R"({"dtype":"F32","shape":"big","data_offsets":[0,4]})"), "abcd")),
      HasSubstr(path_ + ": tensor 't': malformed shape or data_offsets"));
  EXPECT_THAT(
      Error(Assemble(Tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})"), "abcd")),
      HasSubstr(path_ + ": tensor 't': data_offsets must have two entries"));
  EXPECT_THAT(
      Error(Assemble(Tensor(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), "abcd")),
      HasSubstr(path_ + ": tensor 't': invalid shape"));
  EXPECT_THAT(Error(Assemble(R"({"__metadata__":{"k":1}})", "")),
              HasSubstr(path_ + ": __metadata__.k: expected a string value"));
  EXPECT_THAT(Error(Assemble(R"({"__metadata__":[1]})", "")),
              HasSubstr(path_ + ": __metadata__ must be an object"));
}

TEST_F(SafetensorsErrorTest, OverlappingTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_EQ(Error(Assemble(header, FloatBytes({1, 2, 3}))), path_ + ": tensors overlap");
}

TEST_F(SafetensorsErrorTest, ShapeWhoseElementCountOverflows) {
  // 2^40 * 2^40 * 2^40 elements: the product wraps to 0 in 64 bits, which must not be taken to
  // match an empty data range.
  const std::string m =
      Error(Assemble(Tensor(R"({"dtype":"F32","shape":[1099511627776,1099511627776,1099511627776],)"
                            R"("data_offsets":[0,0]})"),
                     ""));
  EXPECT_THAT(m, HasSubstr(path_ + ": tensor 't'"));
}

TEST_F(SafetensorsErrorTest, TruncatedRealFile) {
  const std::string good = dir_.File("good.safetensors");
  WriteSafetensors(good, SampleFile());
  const std::string bytes = ReadBytes(good);
  // Cut inside the data, inside the header, inside the length.
  EXPECT_THAT(Error(bytes.substr(0, bytes.size() - 4)), HasSubstr(path_ + ": tensor '"));
  EXPECT_THAT(Error(bytes.substr(0, 50)), HasSubstr(path_ + ": not a safetensors file"));
  EXPECT_THAT(Error(bytes.substr(0, 5)), HasSubstr(path_ + ": not a safetensors file"));
}

}  // namespace
}  // namespace twotower::model
