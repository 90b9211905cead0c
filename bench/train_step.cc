// Times one training step (forward, backward, Adam; both towers) of the lab's model on random
// inputs. Prints one JSON line: median microseconds per step and achieved GFLOP/s.
// usage: bench_train_step [--batch 256] [--threads 1] [--steps 200] [--user-dim 12] [--item-dim 9]
//                         [--score learned|cosine] [--precision fp32|bf16]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "twotower/core/threads.h"
#include "twotower/model/two_tower.h"
#include "twotower/nn/adam.h"
#include "twotower/train/loss.h"
#include "twotower/train/trainer.h"

using namespace twotower;

namespace {

// Multiply-adds of the towers' Linear layers: forward 2*B*in*out, backward dW 2*B*in*out and
// dx 2*B*in*out (no dx for a tower's first layer).
double StepFlops(const nn::Sequential& tower, int batch) {
  double flops = 0;
  for (size_t i = 0; i < tower.size(); ++i) {
    const nn::Layer& l = tower.layer(i);
    if (l.TypeName() != "Linear") continue;
    const double f = 2.0 * batch * l.in_dim() * l.out_dim();
    flops += f * (i == 0 ? 2 : 3);
  }
  return flops;
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 256, threads = 1, steps = 200, user_dim = 12, item_dim = 9;
  std::string score = "learned", precision = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--batch")
      batch = std::atoi(v);
    else if (k == "--threads")
      threads = std::atoi(v);
    else if (k == "--steps")
      steps = std::atoi(v);
    else if (k == "--user-dim")
      user_dim = std::atoi(v);
    else if (k == "--item-dim")
      item_dim = std::atoi(v);
    else if (k == "--score")
      score = v;
    else if (k == "--precision")
      precision = v;
    else
      return std::fprintf(stderr, "unknown flag %s\n", k.c_str()), 2;
  }
  SetThreads(threads);
  model::ModelConfig config;
  config.score = score == "cosine" ? model::ScoreMode::kCosine : model::ScoreMode::kLearned;
  Rng rng(1);
  model::TwoTowerModel net(config, user_dim, item_dim, &rng);
  if (precision != "fp32" && precision != "bf16") {
    return std::fprintf(stderr, "--precision: expected fp32 or bf16\n"), 2;
  }
  if (precision == "bf16") net.set_training_precision(nn::Precision::kBf16);
  // Trainer::Step, the step the trainer runs, over a batch of distinct rows of random tables.
  train::Trainer trainer(&net, std::make_unique<train::BceLoss>(), {1e-3});
  data::EncodedTable users, items;
  users.dense.resize(batch, user_dim);
  items.dense.resize(batch, item_dim);
  for (Eigen::Index i = 0; i < users.dense.size(); ++i) {
    users.dense.data()[i] = static_cast<float>(rng.Normal());
  }
  for (Eigen::Index i = 0; i < items.dense.size(); ++i) {
    items.dense.data()[i] = static_cast<float>(rng.Normal());
  }
  std::vector<int32_t> rows(batch);
  for (int i = 0; i < batch; ++i) rows[i] = i;
  std::vector<float> y(batch);
  for (float& v : y) v = static_cast<float>(rng.Below(2));
  std::vector<double> times;
  for (int s = 0; s < steps + 20; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    trainer.Step(users, rows.data(), items, rows.data(), y.data(), batch, &rng);
    const auto t1 = std::chrono::steady_clock::now();
    if (s >= 20) times.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const double flops =
      StepFlops(net.user_tower().mlp(), batch) + StepFlops(net.item_tower().mlp(), batch);
  std::printf(
      "{\"engine\": \"twotower\", \"precision\": \"%s\", \"batch\": %d, \"threads\": %d, "
      "\"us_per_step\": %.1f, \"gflops\": %.2f}\n",
      precision.c_str(), batch, threads, median, flops / (median * 1e3));
  return 0;
}
