// The C++ side of bench/python_overhead.py: the app calls the Python module makes, timed from C++
// on the same files, so that the module's own cost per call is the difference.
//
//   bench_python_calls MODEL BASE.npy QUERIES.npy ROUNDS [SINGLES]
//
// MODEL: a model file (its users table gives the users); BASE: (N, D) float32 item vectors;
// QUERIES: (Q >= 1000, D) float32. Prints one JSON line of medians over ROUNDS rounds, in
// microseconds: recommend_1 (one Recommender::Recommend call, k 10, exclude_seen, averaged over
// 200 users), recommend_1000 (1,000 users, one call each: what Model.recommend(list) runs),
// search_1 (FlatIndex::Search of one query, averaged over SINGLES, default 1,000), search_1000 (one
// Search of 1,000 queries). Single-threaded search per call, as the module's.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "twotower/app/app.h"
#include "twotower/app/recommender.h"
#include "twotower/core/error.h"
#include "twotower/data/npy.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double Micros(F f) {
  const auto t = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace twotower;
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: %s MODEL BASE.npy QUERIES.npy ROUNDS [SINGLES]\n", argv[0]);
    return 2;
  }
  try {
    const int rounds = std::max(1, std::atoi(argv[4]));
    app::RecommenderOptions options;
    options.model = argv[1];
    const std::unique_ptr<app::Recommender> rec = app::Recommender::Open(options);
    const std::vector<std::string>& users = rec->bundle().user_index.ids;
    const int n_users = static_cast<int>(std::min<size_t>(1000, users.size()));
    auto recommend = [&](int u) {
      app::RecommendRequest r;
      r.user.id = users[static_cast<size_t>(u)];
      r.k = 10;
      r.exclude_seen = true;
      return rec->Recommend(r);
    };
    const Matrix base = data::ReadNpy(argv[2]);
    const Matrix queries = data::ReadNpy(argv[3]);
    std::vector<std::string> ids(static_cast<size_t>(base.rows()));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = std::to_string(i);
    std::unique_ptr<index::ItemIndex> idx = index::MakeIndex("flat", static_cast<int>(base.cols()));
    idx->Add(base.data(), base.rows(), ids);
    omp_set_num_threads(1);
    const int nq = static_cast<int>(std::min<int64_t>(1000, queries.rows()));
    const int singles = std::min(nq, argc == 6 ? std::max(1, std::atoi(argv[5])) : 1000);
    std::vector<int64_t> labels(static_cast<size_t>(nq) * 10);
    std::vector<float> scores(static_cast<size_t>(nq) * 10);
    std::vector<double> r1, r1000, s1, s1000;
    for (int round = 0; round < rounds; ++round) {
      const int one_users = std::min(200, n_users);
      r1.push_back(Micros([&] {
                     for (int u = 0; u < one_users; ++u) (void)recommend(u);
                   }) /
                   one_users);
      r1000.push_back(Micros([&] {
        for (int u = 0; u < n_users; ++u) (void)recommend(u);
      }));
      s1.push_back(Micros([&] {
                     for (int q = 0; q < singles; ++q) {
                       idx->Search(queries.data() + static_cast<int64_t>(q) * queries.cols(), 1, 10,
                                   nullptr, labels.data(), scores.data());
                     }
                   }) /
                   singles);
      s1000.push_back(Micros(
          [&] { idx->Search(queries.data(), nq, 10, nullptr, labels.data(), scores.data()); }));
    }
    std::printf(
        "{\"users\": %d, \"items\": %lld, \"queries\": %d, \"recommend_1_us\": %.3f, "
        "\"recommend_1000_us\": %.1f, \"search_1_us\": %.3f, \"search_1000_us\": %.1f}\n",
        n_users, static_cast<long long>(base.rows()), nq, Median(r1), Median(r1000), Median(s1),
        Median(s1000));
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
