// The training step allocates nothing once its buffers exist (README, "Engine"), except the one
// aligned block oneDNN's sgemm allocates and frees inside most fp32 products (nn/gemm.h). Counted
// by interposing the C allocator's entry points for this test binary: operator new and Eigen's
// aligned allocator end in malloc; posix_memalign, aligned_alloc and memalign (oneDNN's buffers,
// aligned operator new) are counted apart, and so are calloc and realloc with malloc.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "twotower/core/threads.h"
#include "twotower/data/encoder.h"
#include "twotower/model/two_tower.h"
#include "twotower/nn/adam.h"
#include "twotower/nn/gemm.h"
#include "twotower/train/loss.h"
#include "twotower/train/tasks.h"
#include "twotower/train/trainer.h"

static std::atomic<long> g_mallocs{0};    // malloc, calloc, realloc
static std::atomic<long> g_aligned{0};    // posix_memalign, aligned_alloc, memalign
static std::atomic<size_t> g_largest{0};  // the largest malloc since the last reset
// AddressSanitizer: GCC defines __SANITIZE_ADDRESS__, clang answers __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define TWOTOWER_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TWOTOWER_TEST_ASAN 1
#endif
#endif
#if !defined(TWOTOWER_TEST_ASAN)
// AddressSanitizer owns the allocator in sanitizer builds; there the test is skipped (it says
// so).
extern "C" void* __libc_malloc(size_t size);
extern "C" void* __libc_calloc(size_t n, size_t size);
extern "C" void* __libc_realloc(void* p, size_t size);
extern "C" void* __libc_memalign(size_t alignment, size_t size);
extern "C" void* malloc(size_t size) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  size_t largest = g_largest.load(std::memory_order_relaxed);
  while (size > largest && !g_largest.compare_exchange_weak(largest, size)) {
  }
  return __libc_malloc(size);
}
extern "C" void* calloc(size_t n, size_t size) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
extern "C" void* realloc(void* p, size_t size) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, size);
}
extern "C" int posix_memalign(void** out, size_t alignment, size_t size) {
  g_aligned.fetch_add(1, std::memory_order_relaxed);
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr && size != 0) return ENOMEM;
  *out = p;
  return 0;
}
extern "C" void* aligned_alloc(size_t alignment, size_t size) {
  g_aligned.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
extern "C" void* memalign(size_t alignment, size_t size) {
  g_aligned.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
#endif

namespace twotower {
namespace {

// What 5 steady-state Trainer::Step calls allocated, after one sizing step.
struct Allocations {
  long mallocs = 0;         // malloc, calloc, realloc
  long aligned = 0;         // posix_memalign, aligned_alloc, memalign
  long sgemm_products = 0;  // fp32 products sent to oneDNN's sgemm meanwhile
};

struct Counter {
  long mallocs = g_mallocs.load(), aligned = g_aligned.load();
  uint64_t sgemm = nn::SgemmProductsRun();
  Allocations Since() const {
    return {g_mallocs.load() - mallocs, g_aligned.load() - aligned,
            static_cast<long>(nn::SgemmProductsRun() - sgemm)};
  }
};

// Nothing from malloc and its kin; at most one aligned block per sgemm product (oneDNN's
// packing buffer, nn/gemm.h).
void ExpectOnlySgemmBuffers(const Allocations& a, const std::string& what) {
  EXPECT_EQ(a.mallocs, 0) << "mallocs in 5 steady-state " << what;
  EXPECT_LE(a.aligned, a.sgemm_products) << "aligned blocks in 5 steady-state " << what;
}

Allocations SteadyStateMallocs(train::Trainer* trainer, const data::EncodedTable& users,
                               const data::EncodedTable& items,
                               const std::vector<int32_t>& user_rows,
                               const std::vector<int32_t>& item_rows, const std::vector<float>& y,
                               Rng* rng) {
  const int64_t n = static_cast<int64_t>(y.size());
  trainer->Step(users, user_rows.data(), items, item_rows.data(), y.data(), n, rng);
  const Counter before;
  for (int s = 0; s < 5; ++s) {
    trainer->Step(users, user_rows.data(), items, item_rows.data(), y.data(), n, rng);
  }
  return before.Since();
}

// A batch of `batch` random lab rows (12 user and 9 item dense columns), row i paired with row
// i, labels alternating 0 / 1.
struct LabBatch {
  data::EncodedTable users, items;
  std::vector<int32_t> rows;
  std::vector<float> y;
};

LabBatch MakeLabBatch(int batch) {
  LabBatch b;
  b.users.dense = Matrix::Random(batch, 12);
  b.items.dense = Matrix::Random(batch, 9);
  b.rows.resize(batch);
  b.y.resize(batch);
  for (int i = 0; i < batch; ++i) {
    b.rows[i] = i;
    b.y[i] = static_cast<float>(i % 2);
  }
  return b;
}

// The counters see every entry point (a step that allocated through one they missed would pass).
TEST(TrainingStepTest, TheCountersSeeEveryAllocationFunction) {
#if defined(TWOTOWER_TEST_ASAN)
  GTEST_SKIP() << "the allocator is AddressSanitizer's in this build; counted in normal builds";
#endif
  const long mallocs = g_mallocs.load(), aligned = g_aligned.load();
  // volatile: the compiler may not drop an allocation whose result is unused.
  void* volatile a = std::malloc(100);
  void* volatile b = std::calloc(10, 10);
  void* volatile c = std::realloc(a, 200);
  void* d = nullptr;
  ASSERT_EQ(posix_memalign(&d, 64, 4096), 0);
  void* volatile e = std::aligned_alloc(64, 4096);
  EXPECT_EQ(g_mallocs.load() - mallocs, 3);
  EXPECT_EQ(g_aligned.load() - aligned, 2);
  std::free(b);
  std::free(c);
  std::free(d);
  std::free(e);
}

TEST(TrainingStepTest, AllocatesNothingAfterTheFirstStep) {
#if defined(TWOTOWER_TEST_ASAN)
  GTEST_SKIP() << "malloc is AddressSanitizer's in this build; counted in normal builds";
#endif
  SetThreads(1);
  model::ModelConfig config;  // the lab's towers: 256-128, embedding 128, dropout 0.3
  Rng rng(3);
  model::TwoTowerModel net(config, 12, 9, &rng);
  train::Trainer trainer(&net, std::make_unique<train::BceLoss>(), {1e-3});
  const LabBatch b = MakeLabBatch(64);
  const long sizing = g_mallocs.load();
  ASSERT_GT(sizing, 0) << "the malloc counter is not interposed";
  const Allocations steps =
      SteadyStateMallocs(&trainer, b.users, b.items, b.rows, b.rows, b.y, &rng);
  ExpectOnlySgemmBuffers(steps, "training steps");
  // With oneDNN the products went to its sgemm (Bf16Unavailable names oneDNN's absence).
  if (nn::Bf16Unavailable().find("no oneDNN") == std::string::npos) {
    EXPECT_GE(steps.sgemm_products, 5 * 10) << "the towers' products in 5 steps";
  }
  SetThreads(0);
}

TEST(TrainingStepTest, TaskHeadsAllocateNothingAfterTheFirstStep) {
#if defined(TWOTOWER_TEST_ASAN)
  GTEST_SKIP() << "malloc is AddressSanitizer's in this build; counted in normal builds";
#endif
  SetThreads(1);
  // A regression head, a one-label and a multi-label item_class head on dense towers.
  model::ModelConfig config;
  config.embedding_dim = 16;
  config.user_hidden_dims = config.item_hidden_dims = {24};
  model::TaskSpec rating, genre, tags;
  rating.name = rating.column = "rating";
  rating.type = "regression";
  genre.name = genre.column = "genre";
  genre.type = "item_class";
  genre.classes = {"a", "b", "c"};
  tags.name = tags.column = "tags";
  tags.type = "item_class";
  tags.classes = {"x", "y"};
  tags.delimiter = "|";
  config.tasks = {rating, genre, tags};
  Rng rng(9);
  model::TwoTowerModel net(config, 6, 5, &rng);
  train::Trainer trainer(&net, std::make_unique<train::BceLoss>(), {1e-3});
  const int batch = 32;
  train::TaskTargets targets;
  targets.target_index = {0, -1, -1};
  targets.item_classes.resize(3);
  for (int i = 0; i < batch; ++i) {
    targets.item_classes[1].push_back({i % 3});
    targets.item_classes[2].push_back(i % 4 == 0 ? std::vector<int32_t>{}
                                                 : std::vector<int32_t>{0, 1});
  }
  trainer.SetTasks(targets);
  data::EncodedTable users, items;
  users.dense = Matrix::Random(batch, 6);
  items.dense = Matrix::Random(batch, 5);
  std::vector<int32_t> rows(batch);
  std::vector<float> y(batch), ratings(batch);
  for (int i = 0; i < batch; ++i) {
    rows[i] = i;
    y[i] = static_cast<float>(i % 2);
    ratings[i] = static_cast<float>(1 + i % 5);
  }
  const std::vector<const float*> task_targets = {ratings.data(), nullptr, nullptr};
  const int64_t n = batch;
  trainer.Step(users, rows.data(), items, rows.data(), y.data(), n, &rng, &task_targets);
  const Counter before;
  for (int s = 0; s < 5; ++s) {
    trainer.Step(users, rows.data(), items, rows.data(), y.data(), n, &rng, &task_targets);
  }
  const Allocations counted = before.Since();  // before the message's string is made
  ExpectOnlySgemmBuffers(counted, "steps with task heads");
  EXPECT_EQ(trainer.task_losses().size(), 3u);
  SetThreads(0);
}

TEST(TrainingStepTest, SoftmaxWithEmbeddingBagsAllocatesNothingAfterTheFirstStep) {
#if defined(TWOTOWER_TEST_ASAN)
  GTEST_SKIP() << "malloc is AddressSanitizer's in this build; counted in normal builds";
#endif
  SetThreads(1);
  // Id towers with a multi-hot bag and a hidden layer; every step touches the same rows, so the
  // touched-row lists reach their size in the first step.
  data::FeatureSchema schema;
  schema.user.id_column = "u";
  schema.user.features = {{"u", data::FeatureType::kId}};
  schema.item.id_column = "i";
  schema.item.features = {{"i", data::FeatureType::kId}, {"tags", data::FeatureType::kMultiHot}};
  data::Table users_table, items_table;
  users_table.source = "users";
  users_table.columns = {"u"};
  items_table.source = "items";
  items_table.columns = {"i", "tags"};
  users_table.cells.resize(1);
  items_table.cells.resize(2);
  const int batch = 32;
  for (int r = 0; r < batch; ++r) {
    users_table.cells[0].push_back("u" + std::to_string(r));
    users_table.lines.push_back(r + 2);
    items_table.cells[0].push_back("i" + std::to_string(r));
    items_table.cells[1].push_back("a|b" + std::to_string(r % 5));
    items_table.lines.push_back(r + 2);
  }
  std::vector<int64_t> all(batch);
  for (int r = 0; r < batch; ++r) all[r] = r;
  data::FeatureEncoder encoder;
  encoder.user = data::EntityEncoder(schema.user);
  encoder.user.Fit(users_table, all);
  encoder.item = data::EntityEncoder(schema.item);
  encoder.item.Fit(items_table, all);
  data::EncodedTable users, items;
  encoder.user.Encode(users_table, &users);
  encoder.item.Encode(items_table, &items);
  model::ModelConfig config;
  config.embedding_dim = 16;
  config.user_hidden_dims = {24};
  config.item_hidden_dims = {24};
  Rng rng(5);
  model::TwoTowerModel net(config, encoder, &rng);
  train::Trainer trainer(&net,
                         std::make_unique<train::InBatchSoftmaxLoss>(
                             train::SoftmaxOptions{0.2, std::vector<float>(batch, -3.0f), true}),
                         {1e-3});
  std::vector<int32_t> user_rows(batch), item_rows(batch);
  for (int i = 0; i < batch; ++i) {
    user_rows[i] = i;
    item_rows[i] = (i * 7) % batch;
  }
  item_rows[1] = item_rows[0];  // an accidental hit
  const std::vector<float> y(batch, 1.0f);
  ExpectOnlySgemmBuffers(SteadyStateMallocs(&trainer, users, items, user_rows, item_rows, y, &rng),
                         "softmax steps");
  // Mixed negatives (drawn each step) with hard and easy negatives and lazy Adam: the draws
  // change, the sizes do not.
  train::SampledLossOptions o;
  o.sampler = train::Sampler::kMixed;
  o.num_sampled = 5;
  o.num_hard_negatives = 3;
  o.num_easy_negatives = 2;
  o.num_items = batch;
  o.item_probability.assign(batch, 1.0 / batch);
  nn::AdamOptions lazy;
  lazy.lazy = true;
  model::TwoTowerModel net2(config, encoder, &rng);
  train::Trainer sampled(&net2, std::make_unique<train::SampledLoss>(o), lazy, 0.0, 7);
  ExpectOnlySgemmBuffers(SteadyStateMallocs(&sampled, users, items, user_rows, item_rows, y, &rng),
                         "mixed steps");
  // A user history pooled by attention over the item id table: user r read items r+1 .. r+3.
  schema.user.history = {4, "attention", 2};
  data::FeatureEncoder with_history = encoder;
  with_history.user = data::EntityEncoder(schema.user);
  with_history.user.Fit(users_table, all);
  data::EncodedTable history_users;
  with_history.user.Encode(users_table, &history_users);
  for (int r = 0; r < batch; ++r) {
    for (int k = 1; k <= 1 + r % 3; ++k) {
      history_users.history.ids.push_back(items.bags[0].ids[(r + k) % batch]);
    }
    history_users.history.offsets.push_back(static_cast<int64_t>(history_users.history.ids.size()));
  }
  model::TwoTowerModel net3(config, with_history, &rng);
  train::Trainer attention(&net3,
                           std::make_unique<train::InBatchSoftmaxLoss>(
                               train::SoftmaxOptions{0.2, std::vector<float>(batch, -3.0f), true}),
                           {1e-3});
  ExpectOnlySgemmBuffers(
      SteadyStateMallocs(&attention, history_users, items, user_rows, item_rows, y, &rng),
      "steps with history attention");
  SetThreads(0);
}

// training.precision: bf16. The operands' bf16 copies, oneDNN's primitives and its scratch
// space are cached per thread and shape (nn/gemm.h), so nothing the size of a matrix is
// allocated after the first step. oneDNN's execute itself builds a small argument map on every
// call (6-7 blocks of tens of bytes, inside the library, with no way around it in its public
// API): the test allows those and checks that they are all there is: at most 8 blocks per
// product and none over 1 KiB, at batch 32 and at batch 128.
struct Bf16Allocations {
  long per_step = 0;
  long products_per_step = 0;
  size_t largest = 0;
  Allocations all;  // the 5 steps' aligned blocks and sgemm products (bias-free fp32 leftovers)
};

Bf16Allocations Bf16SteadyState(const std::string& loss, int batch) {
  Rng rng(3);
  const LabBatch b = MakeLabBatch(batch);
  const auto& [users, items, rows, y] = b;
  model::ModelConfig config;  // the lab's towers
  model::TwoTowerModel net(config, 12, 9, &rng);
  net.set_training_precision(nn::Precision::kBf16);
  std::unique_ptr<train::Loss> objective;
  if (loss == "bce") {
    objective = std::make_unique<train::BceLoss>();
  } else if (loss == "softmax") {
    train::SoftmaxOptions o{0.2, std::vector<float>(batch, -3.0f), true};
    o.precision = nn::Precision::kBf16;
    objective = std::make_unique<train::InBatchSoftmaxLoss>(o);
  } else {
    train::SampledLossOptions o;
    o.sampler = train::Sampler::kMixed;
    o.num_sampled = 5;
    o.num_items = batch;
    o.item_probability.assign(batch, 1.0 / batch);
    o.precision = nn::Precision::kBf16;
    objective = std::make_unique<train::SampledLoss>(o);
  }
  train::Trainer trainer(&net, std::move(objective), {1e-3}, 0.0, 7);
  trainer.Step(users, rows.data(), items, rows.data(), y.data(), batch, &rng);
  g_largest.store(0);
  const uint64_t products = nn::Bf16ProductsRun();
  const Counter before;
  for (int s = 0; s < 5; ++s) {
    trainer.Step(users, rows.data(), items, rows.data(), y.data(), batch, &rng);
  }
  const Allocations all = before.Since();
  return {all.mallocs / 5, static_cast<long>(nn::Bf16ProductsRun() - products) / 5,
          g_largest.load(), all};
}

TEST(TrainingStepTest, Bf16StepsAllocateOnlyOneDnnsPerCallBookkeeping) {
#if defined(TWOTOWER_TEST_ASAN)
  GTEST_SKIP() << "malloc is AddressSanitizer's in this build; counted in normal builds";
#endif
  const std::string why = nn::Bf16Unavailable();
  if (!why.empty()) GTEST_SKIP() << "no bf16 products here: " << why;
  SetThreads(1);
  for (const std::string loss : {"bce", "softmax", "mixed"}) {
    const Bf16Allocations small = Bf16SteadyState(loss, 32);
    const Bf16Allocations large = Bf16SteadyState(loss, 128);
    // Each tower's two Linear layers: forward, weight and input gradients; softmax: 3 more.
    EXPECT_GE(small.products_per_step, loss == "bce" ? 10 : 13) << loss;
    EXPECT_LE(small.per_step, 8 * small.products_per_step) << loss;
    EXPECT_LE(large.per_step, 8 * large.products_per_step) << loss;
    EXPECT_LE(std::max(small.largest, large.largest), size_t{1024}) << loss;
    EXPECT_LE(small.all.aligned, small.all.sgemm_products) << loss;
    EXPECT_LE(large.all.aligned, large.all.sgemm_products) << loss;
  }
  SetThreads(0);
}

}  // namespace
}  // namespace twotower
