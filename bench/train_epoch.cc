// Times one training epoch of `twotower train`'s step (Trainer::Step: both towers, the loss with
// its drawn negatives, backward, Adam or lazy Adam) over a config's training data, for the scale
// benchmark (bench/run_scale_bench.sh). Loads the data as `twotower train` does, builds the model
// and the loss from the config, shuffles the training examples once and steps through them.
// Prints one JSON line: examples, load and epoch seconds, examples per second, the mean loss, and
// the process's peak resident memory (getrusage; data loading included).
// usage: bench_train_epoch CONFIG.yaml [key=value ...]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "twotower/core/error.h"
#include "twotower/core/rng.h"
#include "twotower/core/threads.h"
#include "twotower/data/dataset.h"
#include "twotower/model/two_tower.h"
#include "twotower/train/config.h"
#include "twotower/train/trainer.h"

using namespace twotower;

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: %s CONFIG.yaml [key=value ...]\n", argv[0]), 2;
  try {
    train::Config config = train::Config::FromYamlFile(argv[1]);
    for (int i = 2; i < argc; ++i) config.Set(argv[i], "argument", false);
    config.Validate("arguments");
    const int threads = SetThreads(config.threads);
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const data::Dataset d = data::LoadDataset(config.ResolvedPaths(), config.features);
    const double load = std::chrono::duration<double>(Clock::now() - t0).count();
    Rng rng(config.seed);
    Rng init = rng.Split(), shuffle = rng.Split(), dropout = rng.Split();
    model::TwoTowerModel net(config.model, d.encoder, &init);
    net.set_training_precision(train::TrainingPrecision(config.training));
    const train::TrainingConfig& t = config.training;
    nn::AdamOptions adam;
    adam.learning_rate = t.learning_rate;
    adam.lazy = t.optimizer == "lazy_adam";
    train::Trainer trainer(&net,
                           train::MakeLoss(config, d.train, d.users.num_rows(), d.items.num_rows()),
                           adam, t.embedding_l2, config.seed);
    // The examples `train` steps through: every pair for bce, else the positives.
    std::vector<int64_t> order;
    const bool all = trainer.loss().pointwise() || t.positives == "all";
    for (int64_t i = 0; i < d.train.size(); ++i) {
      if (all || d.train.label[i] == 1.0f) order.push_back(i);
    }
    for (int64_t i = static_cast<int64_t>(order.size()) - 1; i > 0; --i) {
      std::swap(order[i], order[shuffle.Below(i + 1)]);
    }
    const int64_t n = static_cast<int64_t>(order.size()), batch = t.batch_size;
    std::vector<int32_t> users(batch), items(batch);
    std::vector<float> labels(batch);
    double loss_sum = 0;
    const auto t1 = Clock::now();
    for (int64_t begin = 0; begin < n; begin += batch) {
      const int64_t m = std::min(batch, n - begin);
      for (int64_t i = 0; i < m; ++i) {
        const int64_t e = order[begin + i];
        users[i] = d.train.user_row[e];
        items[i] = d.train.item_row[e];
        labels[i] = d.train.label[e];
      }
      loss_sum += m * trainer.Step(d.user_features, users.data(), d.item_features, items.data(),
                                   labels.data(), m, &dropout);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t1).count();
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf(
        "{\"loss\": \"%s\", \"threads\": %d, \"examples\": %lld, \"load_seconds\": %.2f, "
        "\"epoch_seconds\": %.2f, \"examples_per_second\": %.0f, \"mean_loss\": %.6f, "
        "\"peak_rss_mib\": %.0f}\n",
        t.loss.c_str(), threads, static_cast<long long>(n), load, seconds, n / seconds,
        loss_sum / n, usage.ru_maxrss / 1024.0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
