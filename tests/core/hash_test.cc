#include "twotower/core/hash.h"

#include <gtest/gtest.h>

#include <string>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower {
namespace {

// Expected digests: the examples of FIPS 180-2, appendix B (SHA-256), and of the empty message.
TEST(Sha256Test, MatchesTheStandardsExamples) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, FilesHashAsTheirBytes) {
  testing::TempDir dir;
  const std::string big(3 * (1 << 20) + 5, 'a');  // more than one 1 MiB piece
  EXPECT_EQ(Sha256FileHex(dir.Write("big", big)), Sha256Hex(big));
  EXPECT_EQ(Sha256FileHex(dir.Write("abc", "abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_THROW(Sha256FileHex(dir.File("missing")), Error);
}

TEST(Sha256Test, RecognisesItsOwnForm) {
  EXPECT_TRUE(IsSha256Hex(Sha256Hex("x")));
  EXPECT_FALSE(IsSha256Hex(""));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a')));
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'A')));  // lowercase only
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'g')));
  EXPECT_EQ(ShortFingerprint(Sha256Hex("abc")), "sha256:ba7816bf8f01");
}

TEST(Crc32cTest, MatchesTheStandardCheckValue) {
  // The CRC-32C check value from the catalogue of parametrised CRC algorithms.
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xE3069283u);
  // Continuing over pieces gives the checksum of the whole.
  EXPECT_EQ(Crc32c(Crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
  EXPECT_EQ(Crc32c(0, "", 0), 0u);
}

}  // namespace
}  // namespace twotower
