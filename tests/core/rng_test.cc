#include "twotower/core/rng.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "twotower/core/error.h"

namespace twotower {
namespace {

// A generator restored from a saved state continues the original's stream exactly, including a
// Box-Muller normal left over from the last pair.
TEST(RngStateTest, RestoredGeneratorContinuesTheStream) {
  Rng a(7);
  for (int i = 0; i < 10; ++i) a.NextU64();
  a.Normal();  // leaves the pair's second value spare
  Rng b(12345);
  b.LoadState(a.SaveState());
  EXPECT_EQ(a.Normal(), b.Normal());  // the spare
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.NextU64(), b.NextU64()) << i;
  EXPECT_EQ(a.Normal(), b.Normal());
}

TEST(RngStateTest, MalformedStatesAreRefused) {
  Rng r(1);
  EXPECT_THROW(r.LoadState(""), Error);
  EXPECT_THROW(r.LoadState("1:2:3"), Error);
  const std::string good = r.SaveState();
  EXPECT_THROW(r.LoadState(good + ":0000000000000000"), Error);
  std::string zeros;
  for (int i = 0; i < 6; ++i) zeros += (i > 0 ? ":" : "") + std::string(16, '0');
  EXPECT_THAT([&] { r.LoadState(zeros); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("not a generator state")));
}

}  // namespace
}  // namespace twotower
