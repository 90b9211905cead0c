// The training step allocates nothing once its buffers exist (DESIGN.md, "Engine"). Counted by
// interposing malloc for this test binary: every allocation path (operator new, Eigen's aligned
// allocator) ends in malloc.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <vector>

#include "twotower/core/threads.h"
#include "twotower/model/two_tower.h"
#include "twotower/nn/adam.h"
#include "twotower/train/loss.h"

static std::atomic<long> g_mallocs{0};
#if !defined(__SANITIZE_ADDRESS__)
// AddressSanitizer owns malloc in sanitizer builds; there the test is skipped (it says so).
extern "C" void* __libc_malloc(size_t size);
extern "C" void* malloc(size_t size) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(size);
}
#endif

namespace twotower {
namespace {

TEST(TrainingStepTest, AllocatesNothingAfterTheFirstStep) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "malloc is AddressSanitizer's in this build; counted in normal builds";
#endif
  SetThreads(1);
  model::ModelConfig config;  // the lab's towers: 256-128, embedding 128, dropout 0.3
  Rng rng(3);
  model::TwoTowerModel net(config, 12, 9, &rng);
  auto params = net.TrainableParameters();
  nn::Adam adam(params, {1e-3});
  const int batch = 64;
  Matrix xu = Matrix::Random(batch, 12), xi = Matrix::Random(batch, 9);
  std::vector<float> y(batch);
  for (int i = 0; i < batch; ++i) y[i] = static_cast<float>(i % 2);
  model::ModelContext ctx;
  Vector dz;
  auto step = [&] {
    const Vector& z = net.Forward(xu, xi, &ctx, &rng);
    train::BinaryCrossEntropyWithLogits(z, y.data(), &dz);
    nn::ZeroGrad(params);
    net.Backward(&ctx, dz);
    adam.Step();
  };
  step();  // sizes every buffer
  const long sizing = g_mallocs.load();
  ASSERT_GT(sizing, 0) << "the malloc counter is not interposed";
  const long before = g_mallocs.load();
  for (int s = 0; s < 5; ++s) step();
  EXPECT_EQ(g_mallocs.load() - before, 0) << "allocations in 5 steady-state training steps";
  SetThreads(0);
}

}  // namespace
}  // namespace twotower
