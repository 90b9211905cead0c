#include "twotower/data/npy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "testing/fixtures.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::data {
namespace {

using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::FloatBytes;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

// A version 1.0 .npy file as numpy.save writes it: magic, version, 2-byte LE header length,
// the header dict padded with spaces and ended by '\n' so the data starts at a multiple of 64.
std::string NpyV1(const std::string& dict, const std::string& data) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

Matrix Sample(int rows, int cols) {
  Matrix m(rows, cols);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) m(r, c) = static_cast<float>(r * 10 + c) + 0.5f - (r == 1);
  }
  return m;
}

TEST(NpyTest, RoundTrip) {
  TempDir dir;
  for (auto [rows, cols] : {std::pair{3, 4}, std::pair{1, 1}, std::pair{7, 128}}) {
    const Matrix m = Sample(rows, cols);
    const std::string path = dir.File("m.npy");
    WriteNpy(path, m);
    const Matrix back = ReadNpy(path);
    ASSERT_EQ(back.rows(), rows);
    ASSERT_EQ(back.cols(), cols);
    EXPECT_EQ(back, m);
  }
}

TEST(NpyTest, ZeroRowsRoundTrip) {
  TempDir dir;
  const std::string path = dir.File("empty.npy");
  WriteNpy(path, Matrix(0, 5));
  const Matrix back = ReadNpy(path);
  EXPECT_EQ(back.rows(), 0);
  EXPECT_EQ(back.cols(), 5);
}

TEST(NpyTest, HeaderIsNumpyVersion1PaddedTo64Bytes) {
  TempDir dir;
  const std::string path = dir.File("m.npy");
  WriteNpy(path, Sample(2, 3));
  const std::string bytes = ReadBytes(path);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(bytes[6], '\x01');
  EXPECT_EQ(bytes[7], '\x00');
  const size_t header_len =
      static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  const size_t prefix = 10 + header_len;
  EXPECT_EQ(prefix % 64, 0u);
  ASSERT_EQ(bytes.size(), prefix + 6 * 4);
  const std::string header = bytes.substr(10, header_len);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_THAT(header, HasSubstr("'descr': '<f4'"));
  EXPECT_THAT(header, HasSubstr("'fortran_order': False"));
  EXPECT_THAT(header, HasSubstr("'shape': (2, 3)"));
  // Row-major float32 data: (0,0) (0,1) (0,2) (1,0) ...; Sample gives r*10+c+0.5, minus 1 on row 1.
  EXPECT_EQ(bytes.substr(prefix), FloatBytes({0.5f, 1.5f, 2.5f, 9.5f, 10.5f, 11.5f}));
}

TEST(NpyTest, ReadsAHandBuiltNumpyFile) {
  TempDir dir;
  const std::string path =
      dir.Write("hand.npy", NpyV1("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                  FloatBytes({1.0f, -2.0f, 3.25f, 4.0f, 5.0f, 1e-3f})));
  const Matrix m = ReadNpy(path);
  ASSERT_EQ(m.rows(), 2);
  ASSERT_EQ(m.cols(), 3);
  EXPECT_EQ(m(0, 1), -2.0f);
  EXPECT_EQ(m(0, 2), 3.25f);
  EXPECT_EQ(m(1, 0), 4.0f);
  EXPECT_EQ(m(1, 2), 1e-3f);
}

TEST(NpyTest, ReadsAVersion2Header) {
  TempDir dir;
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
  while ((12 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += '\x02';
  bytes += '\x00';
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>((len >> (8 * i)) & 0xff);
  const std::string path = dir.Write("v2.npy", bytes + header + FloatBytes({7.0f, 8.0f}));
  const Matrix m = ReadNpy(path);
  ASSERT_EQ(m.rows(), 1);
  ASSERT_EQ(m.cols(), 2);
  EXPECT_EQ(m(0, 1), 8.0f);
}

TEST(NpyTest, WrongDtypeThrowsNamingThePath) {
  TempDir dir;
  const std::string path = dir.Write(
      "f8.npy",
      NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }", std::string(8, '\0')));
  const std::string message = ErrorMessage([&] { ReadNpy(path); });
  EXPECT_THAT(message, HasSubstr(path + ": "));
  EXPECT_THAT(message, HasSubstr("float32"));
}

TEST(NpyTest, FortranOrderAndNon2DShapesThrow) {
  TempDir dir;
  const std::string fortran =
      dir.Write("f.npy", NpyV1("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                               FloatBytes({1, 2, 3, 4})));
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(fortran); }), HasSubstr(fortran + ": expected C order"));
  const std::string one_d = dir.Write(
      "v.npy",
      NpyV1("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", FloatBytes({1, 2, 3, 4})));
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(one_d); }), HasSubstr(one_d + ": expected a 2-D"));
}

TEST(NpyTest, TruncatedDataThrowsNamingThePath) {
  TempDir dir;
  const std::string path = dir.File("m.npy");
  WriteNpy(path, Sample(2, 3));
  const std::string bytes = ReadBytes(path);
  dir.Write("m.npy", bytes.substr(0, bytes.size() - 4));
  EXPECT_EQ(ErrorMessage([&] { ReadNpy(path); }),
            path + ": expected 24 data bytes for shape (2, 3), found 20");
  // Trailing garbage is as wrong as missing bytes.
  dir.Write("m.npy", bytes + "xx");
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(path); }), HasSubstr(path + ": expected 24 data bytes"));
}

TEST(NpyTest, TruncatedHeaderBadMagicAndMissingFileThrow) {
  TempDir dir;
  const std::string path = dir.File("m.npy");
  WriteNpy(path, Sample(2, 3));
  const std::string bytes = ReadBytes(path);
  dir.Write("m.npy", bytes.substr(0, 40));
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(path); }), HasSubstr(path + ": truncated .npy header"));
  dir.Write("m.npy", bytes.substr(0, 5));
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(path); }), HasSubstr(path + ": not a .npy file"));
  const std::string text = dir.Write("t.npy", "user_id,age\n1,2\n");
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(text); }), HasSubstr(text + ": not a .npy file"));
  std::string v9 = bytes;
  v9[6] = '\x09';
  dir.Write("m.npy", v9);
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(path); }),
              HasSubstr(path + ": unsupported .npy version 9"));
  const std::string missing = dir.File("missing.npy");
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(missing); }), HasSubstr(missing + ": cannot open"));
}

TEST(NpyTest, AbsurdShapeThrowsErrorNamingThePath) {
  TempDir dir;
  // More digits than int64 holds.
  const std::string huge =
      dir.Write("huge.npy", NpyV1("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                  "(99999999999999999999, 1), }",
                                  ""));
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(huge); }), HasSubstr(huge + ": "));
  // rows * cols * 4 wraps around to 0 in 64 bits, matching an empty data section.
  const std::string wraps =
      dir.Write("wraps.npy", NpyV1("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                   "(4611686018427387904, 4), }",
                                   ""));
  EXPECT_THAT(ErrorMessage([&] { ReadNpy(wraps); }), HasSubstr(wraps + ": "));
}

TEST(NpyTest, WriteIsAtomicAndCreatesDirectories) {
  TempDir dir;
  const std::string path = dir.File("sub/dir/m.npy");
  WriteNpy(path, Sample(2, 2));
  EXPECT_EQ(ReadNpy(path), Sample(2, 2));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() / "sub/dir")) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

}  // namespace
}  // namespace twotower::data
