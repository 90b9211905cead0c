#include "twotower/core/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/core/rng.h"

namespace twotower {
namespace {

using testing::ErrorMessage;
using ::testing::HasSubstr;
using testing::ReadBytes;
using testing::TempDir;

std::vector<std::string> ListDirectory(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(WriteFileAtomicallyTest, ContentLandsAndParentsAreCreated) {
  TempDir dir;
  const std::string path = dir.File("a/b/c.txt");
  WriteFileAtomically(path, "hello\nworld\n");
  EXPECT_EQ(ReadBytes(path), "hello\nworld\n");
  EXPECT_EQ(ListDirectory(dir.path() / "a/b"), std::vector<std::string>{"c.txt"});
}

TEST(WriteFileAtomicallyTest, OverwritesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.Write("f.txt", "old content that is longer");
  WriteFileAtomically(path, "new");
  EXPECT_EQ(ReadBytes(path), "new");
  EXPECT_EQ(ListDirectory(dir.path()), std::vector<std::string>{"f.txt"});
}

TEST(WriteFileAtomicallyTest, BinaryBytesRoundTrip) {
  TempDir dir;
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  bytes += std::string("\0\0\r\n", 4);
  const std::string path = dir.File("bin");
  WriteFileAtomically(path, bytes);
  EXPECT_EQ(ReadBytes(path), bytes);
  EXPECT_EQ(ReadFile(path), bytes);
}

TEST(AtomicFileTest, CommitReplacesTargetAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.Write("model.bin", "old");
  {
    AtomicFile file(path);
    file.Write("new ");
    const int32_t x = 7;
    file.Write(&x, sizeof(x));
    // Until Commit the target is untouched.
    EXPECT_EQ(ReadBytes(path), "old");
    file.Commit();
  }
  std::string expected = "new ";
  expected += std::string("\x07\x00\x00\x00", 4);
  EXPECT_EQ(ReadBytes(path), expected);
  EXPECT_EQ(ListDirectory(dir.path()), std::vector<std::string>{"model.bin"});
}

TEST(AtomicFileTest, ReplacedFileKeepsItsPermissionsAndANewOneGets0644) {
  namespace fs = std::filesystem;
  TempDir dir;
  const std::string path = dir.Write("private.csv", "old");
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);  // 0600
  {
    AtomicFile file(path);
    file.Write("new");
    file.Commit();
  }
  EXPECT_EQ(ReadBytes(path), "new");
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  const std::string fresh = dir.File("fresh.csv");
  {
    AtomicFile file(fresh);
    file.Write("x");
    file.Commit();
  }
  EXPECT_EQ(fs::status(fresh).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                fs::perms::others_read);
}

TEST(AtomicFileTest, UncommittedFileLeavesOldTargetIntactAndNoTemporary) {
  TempDir dir;
  const std::string path = dir.Write("model.bin", "old");
  {
    AtomicFile file(path);
    file.Write("half-written new content");
  }
  EXPECT_EQ(ReadBytes(path), "old");
  EXPECT_EQ(ListDirectory(dir.path()), std::vector<std::string>{"model.bin"});
}

TEST(AtomicFileTest, UncommittedFileCreatesNoTarget) {
  TempDir dir;
  const std::string path = dir.File("never.bin");
  {
    AtomicFile file(path);
    file.Write("x");
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(ListDirectory(dir.path()).empty());
}

TEST(AtomicFileTest, ExceptionBeforeCommitKeepsOldTarget) {
  TempDir dir;
  const std::string path = dir.Write("out.csv", "a,b\n1,2\n");
  try {
    AtomicFile file(path);
    file.Write("a,b\n");
    throw Error("simulated failure while writing");
  } catch (const Error&) {
  }
  EXPECT_EQ(ReadBytes(path), "a,b\n1,2\n");
  EXPECT_EQ(ListDirectory(dir.path()), std::vector<std::string>{"out.csv"});
}

TEST(AtomicFileTest, TwoWritersToTheSameTargetDoNotInterleave) {
  // Each AtomicFile needs its own temporary file: otherwise the two writers share one inode, the
  // second overwrites the first's bytes in place and finds its temporary file gone at Commit.
  TempDir dir;
  const std::string path = dir.Write("metrics.csv", "old\n");
  {
    AtomicFile first(path);
    AtomicFile second(path);
    first.Write("first version, longer\n");
    second.Write("second\n");
    first.Commit();
    EXPECT_EQ(ReadBytes(path), "first version, longer\n");
    EXPECT_NO_THROW(second.Commit());
  }
  EXPECT_EQ(ReadBytes(path), "second\n");
  EXPECT_EQ(ListDirectory(dir.path()), std::vector<std::string>{"metrics.csv"});
}

TEST(AtomicFileTest, WriteAfterCommitAndDoubleCommitThrow) {
  TempDir dir;
  const std::string path = dir.File("f");
  AtomicFile file(path);
  file.Write("x");
  file.Commit();
  EXPECT_THAT(ErrorMessage([&] { file.Write("y"); }), HasSubstr(path));
  EXPECT_THAT(ErrorMessage([&] { file.Commit(); }), HasSubstr(path));
  EXPECT_EQ(ReadBytes(path), "x");
}

TEST(AtomicFileTest, UnwritableLocationThrowsNamingThePath) {
  TempDir dir;
  // A regular file where a directory is needed.
  const std::string blocker = dir.Write("blocker", "I am a file");
  const std::string path = blocker + "/sub/out.txt";
  const std::string message = ErrorMessage([&] { WriteFileAtomically(path, "x"); });
  EXPECT_THAT(message, HasSubstr(blocker));
  EXPECT_EQ(ReadBytes(blocker), "I am a file");
}

TEST(ReadFileTest, MissingFileThrowsNamingThePath) {
  TempDir dir;
  const std::string path = dir.File("does_not_exist.csv");
  const std::string message = ErrorMessage([&] { ReadFile(path); });
  EXPECT_THAT(message, HasSubstr(path + ": cannot open"));
  EXPECT_THAT(message, HasSubstr("No such file"));
}

TEST(ReadFileTest, DirectoryThrowsNamingThePath) {
  TempDir dir;
  const std::string message = ErrorMessage([&] { ReadFile(dir.path().string()); });
  EXPECT_THAT(message, HasSubstr(dir.path().string()));
  EXPECT_THAT(message, HasSubstr("directory"));
}

TEST(ReadFileTest, EmptyFileIsEmptyString) {
  TempDir dir;
  EXPECT_EQ(ReadFile(dir.Write("empty", "")), "");
}

TEST(MakeDirectoriesTest, CreatesNestedAndRejectsPathThroughAFile) {
  TempDir dir;
  MakeDirectories(dir.File("x/y/z"));
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() / "x/y/z"));
  MakeDirectories(dir.File("x/y/z"));  // existing: no error
  const std::string blocker = dir.Write("file", "");
  EXPECT_THAT(ErrorMessage([&] { MakeDirectories(blocker + "/d"); }), HasSubstr(blocker + "/d"));
}

// ---- Rng --------------------------------------------------------------------------------------

// The published reference algorithms (https://prng.di.unimi.it/), written out independently:
// SplitMix64 seeds the four words of xoshiro256**.
struct ReferenceXoshiro {
  uint64_t s[4];
  explicit ReferenceXoshiro(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& w : s) {
      uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      w = z ^ (z >> 31);
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

TEST(RngTest, SplitMixSeedingMatchesPublishedFirstValue) {
  // SplitMix64 from state 0 yields 0xe220a8397b1dcdaf first (reference test vector).
  ReferenceXoshiro ref(0);
  EXPECT_EQ(ref.s[0], 0xe220a8397b1dcdafULL);
}

TEST(RngTest, MatchesReferenceXoshiro256StarStar) {
  for (uint64_t seed : {0ULL, 1ULL, 42ULL, 0xdeadbeefcafef00dULL}) {
    Rng rng(seed);
    ReferenceXoshiro ref(seed);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(rng.NextU64(), ref.next()) << "seed " << seed;
  }
}

TEST(RngTest, SameSeedSameSequenceDifferentSeedDifferent) {
  Rng a(123), b(123), c(124);
  int equal_to_c = 0;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.NextU64();
    EXPECT_EQ(x, b.NextU64());
    equal_to_c += x == c.NextU64();
  }
  EXPECT_EQ(equal_to_c, 0);
  Rng d(7), e(7);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(d.Normal(), e.Normal());
    EXPECT_EQ(d.Below(1000), e.Below(1000));
    EXPECT_EQ(d.Uniform(), e.Uniform());
  }
}

TEST(RngTest, UniformInUnitInterval) {
  Rng rng(5);
  double sum = 0.0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = rng.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    const float f = rng.UniformFloat();
    ASSERT_GE(f, 0.0f);
    ASSERT_LT(f, 1.0f);
    const double w = rng.Uniform(-2.0, 3.0);
    ASSERT_GE(w, -2.0);
    ASSERT_LT(w, 3.0);
    sum += u;
  }
  // The mean of n uniforms has standard deviation sqrt(1/12/n) ~ 0.0009.
  EXPECT_NEAR(sum / n, 0.5, 0.005);
}

TEST(RngTest, BelowStaysInRangeAndIsRoughlyUniform) {
  Rng rng(9);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(rng.Below(1), 0u);
  const uint64_t big = (1ULL << 63) + 12345;
  for (int i = 0; i < 1000; ++i) EXPECT_LT(rng.Below(big), big);
  const int k = 10, n = 100000;
  std::vector<int> counts(k, 0);
  for (int i = 0; i < n; ++i) {
    const uint64_t x = rng.Below(k);
    ASSERT_LT(x, static_cast<uint64_t>(k));
    ++counts[x];
  }
  // Each count is Binomial(n, 1/k): mean 10000, standard deviation ~95.
  for (int c : counts) EXPECT_NEAR(c, n / k, 500);
  // Chi-square with 9 degrees of freedom: 99.99% quantile ~ 33.7.
  double chi2 = 0.0;
  for (int c : counts) chi2 += (c - n / k) * (c - n / k) / static_cast<double>(n / k);
  EXPECT_LT(chi2, 33.7);
}

TEST(RngTest, NormalHasZeroMeanUnitVarianceAndGaussianMass) {
  Rng rng(2024);
  const int n = 200000;
  double sum = 0.0, sq = 0.0;
  int within_one = 0;
  for (int i = 0; i < n; ++i) {
    const double x = rng.Normal();
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += x * x;
    within_one += std::abs(x) < 1.0;
  }
  const double mean = sum / n;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sq / n - mean * mean, 1.0, 0.02);
  // P(|X| < 1) = erf(1 / sqrt 2) = 0.682689...
  EXPECT_NEAR(static_cast<double>(within_one) / n, 0.682689, 0.005);
}

TEST(RngTest, LogisticHasZeroMeanAndVariancePiSquaredOverThree) {
  Rng rng(77);
  const int n = 200000;
  double sum = 0.0, sq = 0.0;
  for (int i = 0; i < n; ++i) {
    const double x = rng.Logistic();
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.03);
  EXPECT_NEAR(sq / n, M_PI * M_PI / 3.0, 0.06);
}

TEST(RngTest, SplitGivesAnIndependentReproducibleStream) {
  Rng a(11), b(11);
  Rng a1 = a.Split(), b1 = b.Split();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a1.NextU64(), b1.NextU64());
  // The child stream differs from the parent's continuation.
  int same = 0;
  for (int i = 0; i < 50; ++i) same += a.NextU64() == a1.NextU64();
  EXPECT_EQ(same, 0);
}

}  // namespace
}  // namespace twotower
