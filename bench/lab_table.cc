// The lab's "two-tower vs single tower" table, its speed half (bench/run_lab_table.sh runs it):
// in one process, with the files loaded once, the time to recommend for one user, median over
// --users users, for
//   two_tower   retrieval alone: the user tower, then the top k of the item index
//   rerank      the top --candidates by the index, re-ordered by the ranker (recommend --rerank)
//   ranker_all  the single tower: the ranker scores every item of the catalogue, top k kept
// and the cost of adding one new item: two-tower and pipeline encode its row through the item
// tower and add the vector to the index (median over --new-items); the ranker alone stores
// nothing per item, but every later query scores it.
//
//   bench_lab_table --model TWO_TOWER --ranker RANKER [--index I] [--users 50 --k 10
//                   --candidates 200 --new-items 200 --ranker-all-users N]
// Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "twotower/app/app.h"
#include "twotower/core/error.h"

namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace twotower;
  std::string model, ranker, index_path;
  int users = 50, k = 10, candidates = 200, new_items = 200, ranker_all_users = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") {
      model = value;
    } else if (flag == "--ranker") {
      ranker = value;
    } else if (flag == "--index") {
      index_path = value;
    } else if (flag == "--users") {
      users = std::atoi(value.c_str());
    } else if (flag == "--k") {
      k = std::atoi(value.c_str());
    } else if (flag == "--candidates") {
      candidates = std::atoi(value.c_str());
    } else if (flag == "--new-items") {
      new_items = std::atoi(value.c_str());
    } else if (flag == "--ranker-all-users") {
      ranker_all_users = std::atoi(value.c_str());
    } else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (users < 1 || k < 1 || candidates < 1 || new_items < 0) {
    std::cerr << "--users, --k and --candidates must be >= 1, --new-items >= 0\n";
    return 2;
  }
  if (model.empty() || ranker.empty()) {
    std::cerr << "usage: bench_lab_table --model TWO_TOWER --ranker RANKER [--index I] ...\n";
    return 2;
  }
  try {
    const Clock::time_point load_start = Clock::now();
    const app::Bundle b = app::LoadBundle(model, {});
    std::unique_ptr<index::ItemIndex> idx = app::OpenItemIndex(b, index_path, "", false);
    const app::Reranker reranker = app::LoadReranker(ranker, b, idx.get(), candidates);
    const double load_ms = Ms(load_start, Clock::now());
    const int64_t num_items = idx->size();
    if (num_items == 0) throw Error("the index has no items");
    users = static_cast<int>(std::min<int64_t>(users, b.users.num_rows()));
    if (ranker_all_users < 0) ranker_all_users = users;
    ranker_all_users = std::min(ranker_all_users, users);

    std::vector<double> two_tower, rerank, ranker_all, add_item;
    int64_t checksum = 0;  // keeps the results alive
    for (int32_t u = 0; u < users; ++u) {
      Clock::time_point t0 = Clock::now();
      const auto top = app::RecommendForUser(b, *idx, u, k, nullptr);
      Clock::time_point t1 = Clock::now();
      two_tower.push_back(Ms(t0, t1));
      checksum += top.empty() ? 0 : top[0].label;

      t0 = Clock::now();
      const auto retrieved = app::RecommendForUser(b, *idx, u, candidates, nullptr);
      const auto reordered = app::Rerank(reranker, u, retrieved, k);
      t1 = Clock::now();
      rerank.push_back(Ms(t0, t1));
      checksum += reordered.empty() ? 0 : reordered[0].label;

      if (u < ranker_all_users) {
        // Every item through the ranker, then the top k (what single-tower scoring is).
        t0 = Clock::now();
        std::vector<int32_t> user_rows(num_items, u);
        Vector logits;
        reranker.ranker.model->Score(reranker.user_features, user_rows.data(),
                                     reranker.item_features, reranker.label_rows.data(), num_items,
                                     &logits);
        for (int64_t i = 0; i < num_items; ++i) {
          if (!std::isfinite(logits[i])) throw Error("the ranker scored an item non-finite");
        }
        std::vector<int32_t> order(num_items);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + std::min<int64_t>(k, num_items),
                          order.end(), [&](int32_t x, int32_t y) { return logits[x] > logits[y]; });
        t1 = Clock::now();
        ranker_all.push_back(Ms(t0, t1));
        checksum += order[0];
      }
    }
    // A new item: its row through the item tower, its vector into the index (as index add and
    // the server's live items do), one item at a time.
    for (int i = 0; i < new_items; ++i) {
      const int32_t row = static_cast<int32_t>(i % b.items.num_rows());
      std::vector<std::pair<std::string, std::string>> cells;
      for (size_t c = 0; c < b.items.columns.size(); ++c) {
        cells.emplace_back(b.items.columns[c], b.items.cells[c][row]);
      }
      const Clock::time_point t0 = Clock::now();
      data::EncodedTable x;
      b.model.encoder.item.EncodeRow(cells, "new item", &x);
      Matrix v;
      b.model.model->EncodeItems(x, &v);
      idx->Add(v.data(), 1, {"new_item_" + std::to_string(i)});
      add_item.push_back(Ms(t0, Clock::now()));
    }
    std::printf(
        "{\"items\": %lld, \"users\": %d, \"k\": %d, \"candidates\": %d, \"load_ms\": %.1f, "
        "\"two_tower_ms\": %.4f, \"rerank_ms\": %.4f, \"ranker_all_ms\": %.4f, "
        "\"ranker_all_users\": %d, \"add_item_ms\": %.4f, \"index\": \"%s\", \"checksum\": "
        "%lld}\n",
        static_cast<long long>(num_items), users, k, candidates, load_ms, Median(two_tower),
        Median(rerank), Median(ranker_all), ranker_all_users, Median(add_item), idx->spec().c_str(),
        static_cast<long long>(checksum));
  } catch (const twotower::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
