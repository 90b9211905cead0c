// The training step allocates nothing once its buffers exist (DESIGN.md, "Engine"). Counted by
// interposing malloc for this test binary: every allocation path (operator new, Eigen's aligned
// allocator) ends in malloc.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "twotower/core/threads.h"
#include "twotower/data/encoder.h"
#include "twotower/model/two_tower.h"
#include "twotower/nn/adam.h"
#include "twotower/train/loss.h"
#include "twotower/train/tasks.h"
#include "twotower/train/trainer.h"

static std::atomic<long> g_mallocs{0};
static std::atomic<size_t> g_largest{0};  // the largest block asked for since the last reset
// AddressSanitizer: GCC defines __SANITIZE_ADDRESS__, clang answers __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define TWOTOWER_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TWOTOWER_TEST_ASAN 1
#endif
#endif
#if !defined(TWOTOWER_TEST_ASAN)
// AddressSanitizer owns malloc in sanitizer builds; there the test is skipped (it says so).
extern "C" void* __libc_malloc(size_t size);
extern "C" void* malloc(size_t size) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  size_t largest = g_largest.load(std::memory_order_relaxed);
  while (size > largest && !g_largest.compare_exchange_weak(largest, size)) {
  }
  return __libc_malloc(size);
}
#endif

namespace twotower {
namespace {

// Counts mallocs in 5 steady-state Trainer::Step calls after one sizing step.
long SteadyStateMallocs(train::Trainer* trainer, const data::EncodedTable& users,
                        const data::EncodedTable& items, const std::vector<int32_t>& user_rows,
                        const std::vector<int32_t>& item_rows, const std::vector<float>& y,
                        Rng* rng) {
  const int64_t n = static_cast<int64_t>(y.size());
  trainer->Step(users, user_rows.data(), items, item_rows.data(), y.data(), n, rng);
  const long before = g_mallocs.load();
  for (int s = 0; s < 5; ++s) {
    trainer->Step(users, user_rows.data(), items, item_rows.data(), y.data(), n, rng);
  }
  return g_mallocs.load() - before;
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
  EXPECT_EQ(SteadyStateMallocs(&trainer, b.users, b.items, b.rows, b.rows, b.y, &rng), 0)
      << "allocations in 5 steady-state training steps";
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
  const long before = g_mallocs.load();
  for (int s = 0; s < 5; ++s) {
    trainer.Step(users, rows.data(), items, rows.data(), y.data(), n, &rng, &task_targets);
  }
  EXPECT_EQ(g_mallocs.load() - before, 0) << "allocations in 5 steady-state steps with task heads";
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
  EXPECT_EQ(SteadyStateMallocs(&trainer, users, items, user_rows, item_rows, y, &rng), 0)
      << "allocations in 5 steady-state softmax steps";
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
  EXPECT_EQ(SteadyStateMallocs(&sampled, users, items, user_rows, item_rows, y, &rng), 0)
      << "allocations in 5 steady-state mixed steps";
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
  EXPECT_EQ(SteadyStateMallocs(&attention, history_users, items, user_rows, item_rows, y, &rng), 0)
      << "allocations in 5 steady-state steps with history attention";
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
  const long before = g_mallocs.load();
  for (int s = 0; s < 5; ++s) {
    trainer.Step(users, rows.data(), items, rows.data(), y.data(), batch, &rng);
  }
  return {(g_mallocs.load() - before) / 5, static_cast<long>(nn::Bf16ProductsRun() - products) / 5,
          g_largest.load()};
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
  }
  SetThreads(0);
}

}  // namespace
}  // namespace twotower
