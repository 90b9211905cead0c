// One typed suite runs over every ItemIndex implementation. Expected results come from a plain
// brute-force loop in double precision written here, never from the index under test; the exact
// index must match it, the approximate one must reach a recall and return exact scores.
#include "twotower/index/item_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "testing/temp_dir.h"
#include "twotower/core/hash.h"
#include "twotower/core/rng.h"
#include "twotower/index/flat_index.h"
#include "twotower/index/hnsw_index.h"
#include "twotower/index/index_file.h"

namespace twotower::index {
namespace {

using testing::ErrorMessage;
using ::testing::HasSubstr;
using testing::ReadBytes;
using testing::TempDir;

constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- data ---------------------------------------------------------------------------------------

struct Items {
  int64_t n = 0;
  int d = 0;
  std::vector<float> v;  // n x d
  std::vector<std::string> ids;
  const float* row(int64_t i) const { return v.data() + i * d; }
};

void Normalize(float* x, int d) {
  double s = 0;
  for (int p = 0; p < d; ++p) s += double{x[p]} * x[p];
  const float inv = static_cast<float>(1.0 / std::sqrt(s));
  for (int p = 0; p < d; ++p) x[p] *= inv;
}

std::vector<std::string> MakeIds(int64_t n, const std::string& prefix = "item") {
  std::vector<std::string> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(prefix + std::to_string(i));
  return ids;
}

// Unit vectors with independent normal coordinates.
Items RandomItems(int64_t n, int d, uint64_t seed) {
  Rng rng(seed);
  Items items{n, d, std::vector<float>(static_cast<size_t>(n * d)), MakeIds(n)};
  for (float& x : items.v) x = static_cast<float>(rng.Normal());
  for (int64_t i = 0; i < n; ++i) Normalize(items.v.data() + i * d, d);
  return items;
}

// Unit vectors around `clusters` random centres (spread `noise` per coordinate).
Items ClusteredItems(int64_t n, int d, int clusters, double noise, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> centres(static_cast<size_t>(clusters) * d);
  for (float& x : centres) x = static_cast<float>(rng.Normal());
  Items items{n, d, std::vector<float>(static_cast<size_t>(n * d)), MakeIds(n)};
  for (int64_t i = 0; i < n; ++i) {
    const float* c = centres.data() + static_cast<int64_t>(rng.Below(clusters)) * d;
    for (int p = 0; p < d; ++p) {
      items.v[i * d + p] = c[p] + static_cast<float>(noise * rng.Normal());
    }
    Normalize(items.v.data() + i * d, d);
  }
  return items;
}

// ---- reference ----------------------------------------------------------------------------------

double ExactScore(const float* q, const float* v, int d) {
  double s = 0;
  for (int p = 0; p < d; ++p) s += double{q[p]} * double{v[p]};
  return s;
}

struct Ranked {
  std::vector<int64_t> ids;
  std::vector<double> scores;
};

// Top-k by a plain loop: higher score first, then lower label; labels `allowed` rejects skipped.
Ranked BruteForce(const Items& items, const float* q, int k,
                  const std::function<bool(int64_t)>& allowed = nullptr) {
  std::vector<std::pair<double, int64_t>> all;
  for (int64_t i = 0; i < items.n; ++i) {
    if (allowed && !allowed(i)) continue;
    all.emplace_back(ExactScore(q, items.row(i), items.d), i);
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  Ranked r;
  for (size_t i = 0; i < all.size() && i < static_cast<size_t>(k); ++i) {
    r.ids.push_back(all[i].second);
    r.scores.push_back(all[i].first);
  }
  return r;
}

struct Results {
  int64_t n = 0;
  int k = 0;
  std::vector<int64_t> ids;
  std::vector<float> scores;
  std::vector<int64_t> Row(int64_t q) const {
    return std::vector<int64_t>(ids.begin() + q * k, ids.begin() + (q + 1) * k);
  }
};

Results Search(const ItemIndex& index, const float* queries, int64_t n, int k,
               const SearchFilter* filters = nullptr) {
  Results r{n, k, std::vector<int64_t>(static_cast<size_t>(n * k)),
            std::vector<float>(static_cast<size_t>(n * k))};
  index.Search(queries, n, k, filters, r.ids.data(), r.scores.data());
  return r;
}

// Checks the shape every result must have: valid labels first, best first with ties by label,
// each with its exact score, the allowed ones only, then padding.
void ExpectWellFormed(const Results& r, const Items& items, const float* queries,
                      const SearchFilter* filters = nullptr) {
  for (int64_t q = 0; q < r.n; ++q) {
    std::set<int64_t> seen;
    bool padding = false;
    for (int i = 0; i < r.k; ++i) {
      const int64_t id = r.ids[q * r.k + i];
      const float score = r.scores[q * r.k + i];
      if (id < 0) {
        padding = true;
        EXPECT_EQ(id, -1);
        EXPECT_EQ(score, -kInf);
        continue;
      }
      ASSERT_FALSE(padding) << "query " << q << ": a result after padding";
      ASSERT_LT(id, items.n);
      EXPECT_TRUE(seen.insert(id).second) << "query " << q << ": label " << id << " twice";
      EXPECT_NEAR(score, ExactScore(queries + q * items.d, items.row(id), items.d), 1e-5)
          << "query " << q << " rank " << i;
      if (i > 0) {
        const float prev = r.scores[q * r.k + i - 1];
        EXPECT_GE(prev, score) << "query " << q << " rank " << i;
        if (prev == score) {
          EXPECT_LT(r.ids[q * r.k + i - 1], id) << "tie not by label";
        }
      }
      if (filters != nullptr) {
        const SearchFilter& f = filters[q];
        EXPECT_EQ(std::count(f.exclude.begin(), f.exclude.end(), id), 0) << id << " excluded";
        if (f.allow) {
          EXPECT_NE(std::count(f.allow->begin(), f.allow->end(), id), 0) << id << " not allowed";
        }
      }
    }
  }
}

// The exact index: the brute-force ranking (ids exactly, scores to float rounding).
void ExpectEqualsBruteForce(const Results& r, int64_t q, const Ranked& want) {
  for (int i = 0; i < r.k; ++i) {
    if (static_cast<size_t>(i) < want.ids.size()) {
      EXPECT_EQ(r.ids[q * r.k + i], want.ids[i]) << "query " << q << " rank " << i;
      EXPECT_NEAR(r.scores[q * r.k + i], want.scores[i], 1e-5) << "query " << q << " rank " << i;
    } else {
      EXPECT_EQ(r.ids[q * r.k + i], -1) << "query " << q << " rank " << i;
    }
  }
}

// |got ∩ want| / |want|, over all queries.
double Recall(const Results& r, const std::vector<Ranked>& want) {
  int64_t hit = 0, total = 0;
  for (int64_t q = 0; q < r.n; ++q) {
    const std::vector<int64_t> got = r.Row(q);
    for (int64_t id : want[q].ids) hit += std::count(got.begin(), got.end(), id);
    total += static_cast<int64_t>(want[q].ids.size());
  }
  return total == 0 ? 1.0 : static_cast<double>(hit) / total;
}

// ---- the implementations ------------------------------------------------------------------------

template <typename T>
struct Impl;

template <>
struct Impl<FlatIndex> {
  static constexpr bool kExact = true;
  static std::unique_ptr<ItemIndex> Make(int d) { return std::make_unique<FlatIndex>(d); }
};

// FlatIndex with compressed storage: exact as well (the shortlist is re-scored in fp32).
struct FlatBf16 {};
struct FlatInt8 {};
template <>
struct Impl<FlatBf16> {
  static constexpr bool kExact = true;
  static std::unique_ptr<ItemIndex> Make(int d) {
    return std::make_unique<FlatIndex>(d, FlatStorage::kBf16);
  }
};
template <>
struct Impl<FlatInt8> {
  static constexpr bool kExact = true;
  static std::unique_ptr<ItemIndex> Make(int d) {
    return std::make_unique<FlatIndex>(d, FlatStorage::kInt8);
  }
};

template <>
struct Impl<HnswIndex> {
  static constexpr bool kExact = false;
  // Small enough that the catalogues of a few thousand items below go through the graph
  // (2 * M * ef_search < size), not the exact scan small catalogues get.
  static std::unique_ptr<ItemIndex> Make(int d) {
    HnswParams p;
    p.M = 12;
    p.ef_construction = 100;
    p.ef_search = 40;
    return std::make_unique<HnswIndex>(d, p);
  }
};

template <typename T>
class ItemIndexTest : public ::testing::Test {
 protected:
  static constexpr bool kExact = Impl<T>::kExact;
  std::unique_ptr<ItemIndex> Build(const Items& items) {
    std::unique_ptr<ItemIndex> index = Impl<T>::Make(items.d);
    const ItemIndex::AddResult r = index->Add(items.v.data(), items.n, items.ids);
    EXPECT_EQ(r.added, items.n);
    EXPECT_EQ(r.updated, 0);
    EXPECT_EQ(index->size(), items.n);
    return index;
  }
  // Exact index: equals the brute force; approximate: at least `min_recall` of it.
  void ExpectRanking(const Results& r, const Items& items, const Items& queries, double min_recall,
                     const SearchFilter* filters = nullptr) {
    ExpectWellFormed(r, items, queries.v.data(), filters);
    std::vector<Ranked> want;
    for (int64_t q = 0; q < queries.n; ++q) {
      std::function<bool(int64_t)> allowed;
      if (filters != nullptr) {
        const SearchFilter& f = filters[q];
        allowed = [&f](int64_t id) {
          if (std::count(f.exclude.begin(), f.exclude.end(), id) != 0) return false;
          return !f.allow || std::count(f.allow->begin(), f.allow->end(), id) != 0;
        };
      }
      want.push_back(BruteForce(items, queries.row(q), r.k, allowed));
      // Either kind returns as many results as there are allowed items, up to k.
      int found = 0;
      for (int i = 0; i < r.k; ++i) found += r.ids[q * r.k + i] >= 0 ? 1 : 0;
      EXPECT_EQ(found, static_cast<int>(want.back().ids.size())) << "query " << q;
      if (kExact) {
        ExpectEqualsBruteForce(r, q, want.back());
      }
    }
    if (!kExact) {
      EXPECT_GE(Recall(r, want), min_recall);
    }
  }
};

using Implementations = ::testing::Types<FlatIndex, FlatBf16, FlatInt8, HnswIndex>;
TYPED_TEST_SUITE(ItemIndexTest, Implementations);

TYPED_TEST(ItemIndexTest, EmptyIndexReturnsOnlyPadding) {
  std::unique_ptr<ItemIndex> index = Impl<TypeParam>::Make(4);
  EXPECT_EQ(index->size(), 0);
  const std::vector<float> q = {1, 0, 0, 0, 0, 1, 0, 0};
  const Results r = Search(*index, q.data(), 2, 3);
  EXPECT_EQ(r.ids, std::vector<int64_t>(6, -1));
  EXPECT_EQ(r.scores, std::vector<float>(6, -kInf));
  TempDir dir;
  index->Save(dir.File("empty.index"));
  const std::unique_ptr<ItemIndex> loaded = LoadIndex(dir.File("empty.index"));
  EXPECT_EQ(loaded->size(), 0);
  EXPECT_EQ(loaded->type(), index->type());
  EXPECT_EQ(Search(*loaded, q.data(), 2, 3).ids, std::vector<int64_t>(6, -1));
}

TYPED_TEST(ItemIndexTest, RejectsBadArguments) {
  const Items items = RandomItems(20, 4, 1);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  std::vector<int64_t> ids(4);
  std::vector<float> scores(4);
  const std::vector<float> q = {1, 0, 0, 0};
  EXPECT_THAT(
      ErrorMessage([&] { index->Search(q.data(), 1, 0, nullptr, ids.data(), scores.data()); }),
      HasSubstr("k must be at least 1, got 0"));
  const std::vector<float> nan_query = {1, std::nanf(""), 0, 0};
  EXPECT_THAT(ErrorMessage([&] {
                index->Search(nan_query.data(), 1, 4, nullptr, ids.data(), scores.data());
              }),
              HasSubstr("query 0: value at dimension 1 is not finite"));
  SearchFilter bad;
  bad.exclude = {3, 20};
  EXPECT_THAT(ErrorMessage([&] { index->Search(q.data(), 1, 4, &bad, ids.data(), scores.data()); }),
              HasSubstr("search filter of query 0: exclude label 20 is out of range"));
  bad.exclude = {};
  bad.allow = std::vector<int64_t>{-1};
  EXPECT_THAT(ErrorMessage([&] { index->Search(q.data(), 1, 4, &bad, ids.data(), scores.data()); }),
              HasSubstr("allow label -1 is out of range"));

  // A rejected Add adds nothing.
  const std::vector<float> two(8, 0.5f);
  EXPECT_THAT(ErrorMessage([&] { index->Add(two.data(), 2, {"a"}); }),
              HasSubstr("2 vectors but 1 ids"));
  EXPECT_THAT(ErrorMessage([&] {
                index->Add(two.data(), 2, {"new", "new"});
              }),
              HasSubstr("duplicate id \"new\" in rows 0 and 1"));
  EXPECT_THAT(ErrorMessage([&] {
                index->Add(two.data(), 2, {"a", ""});
              }),
              HasSubstr("row 1: empty id"));
  EXPECT_THAT(ErrorMessage([&] {
                index->Add(two.data(), 2, {"a", "b\nc"});
              }),
              HasSubstr("contains a line break"));
  std::vector<float> inf_row = two;
  inf_row[6] = kInf;
  EXPECT_THAT(ErrorMessage([&] {
                index->Add(inf_row.data(), 2, {"a", "b"});
              }),
              HasSubstr("row 1 (id \"b\"): value inf at dimension 2 is not finite"));
  EXPECT_EQ(index->size(), 20);
  EXPECT_EQ(index->Find("a"), -1);
}

TYPED_TEST(ItemIndexTest, ReturnsTheBestItemsBestFirst) {
  const Items items = RandomItems(3000, 16, 2);
  const Items queries = RandomItems(40, 16, 3);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  for (int k : {1, 10, 25}) {
    const Results r = Search(*index, queries.v.data(), queries.n, k);
    this->ExpectRanking(r, items, queries, 0.95);
  }
  for (int64_t i = 0; i < items.n; i += 301) {
    EXPECT_EQ(index->Find(items.ids[i]), i);
    EXPECT_EQ(index->ids()[i], items.ids[i]);
  }
  EXPECT_EQ(index->Find("nope"), -1);
}

TYPED_TEST(ItemIndexTest, ABatchGivesWhatQueriesOneByOneGive) {
  const Items items = RandomItems(2500, 24, 4);
  const Items queries = RandomItems(70, 24, 5);  // more than one thread's share of tiles
  std::unique_ptr<ItemIndex> index = this->Build(items);
  const Results batch = Search(*index, queries.v.data(), queries.n, 10);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Results one_thread = Search(*index, queries.v.data(), queries.n, 10);
  omp_set_num_threads(threads);
  EXPECT_EQ(batch.ids, one_thread.ids);
  EXPECT_EQ(batch.scores, one_thread.scores);
  for (int64_t q = 0; q < queries.n; ++q) {
    const Results single = Search(*index, queries.row(q), 1, 10);
    for (int i = 0; i < 10; ++i) {
      EXPECT_EQ(single.ids[i], batch.ids[q * 10 + i]) << "query " << q << " rank " << i;
      // Bit-equal: the same arithmetic on every path.
      EXPECT_EQ(single.scores[i], batch.scores[q * 10 + i]) << "query " << q << " rank " << i;
    }
  }
}

TYPED_TEST(ItemIndexTest, TiesGoToTheLowerLabel) {
  // Items 0..9 are distinct; 10..39 repeat them three times over, so every score occurs 4 times.
  const Items base = RandomItems(10, 8, 6);
  Items items{40, 8, {}, MakeIds(40)};
  for (int copy = 0; copy < 4; ++copy) items.v.insert(items.v.end(), base.v.begin(), base.v.end());
  std::unique_ptr<ItemIndex> index = this->Build(items);
  const Items queries = RandomItems(5, 8, 7);
  const Results r = Search(*index, queries.v.data(), queries.n, 6);
  ExpectWellFormed(r, items, queries.v.data());
  for (int64_t q = 0; q < queries.n; ++q) {
    const Ranked best = BruteForce(base, queries.row(q), 2);
    const int64_t a = best.ids[0], b = best.ids[1];
    EXPECT_EQ(r.Row(q), (std::vector<int64_t>{a, a + 10, a + 20, a + 30, b, b + 10}))
        << "query " << q;
    EXPECT_EQ(r.scores[q * 6], r.scores[q * 6 + 3]);  // bit-equal copies
  }
}

TYPED_TEST(ItemIndexTest, PadsWhenKExceedsTheCatalogue) {
  const Items items = RandomItems(7, 8, 8);
  const Items queries = RandomItems(3, 8, 9);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  const Results r = Search(*index, queries.v.data(), queries.n, 10);
  ExpectWellFormed(r, items, queries.v.data());
  for (int64_t q = 0; q < queries.n; ++q) {
    ExpectEqualsBruteForce(r, q, BruteForce(items, queries.row(q), 10));  // exact at this size
    std::vector<int64_t> got = r.Row(q);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (std::vector<int64_t>{-1, -1, -1, 0, 1, 2, 3, 4, 5, 6}));
  }
}

TYPED_TEST(ItemIndexTest, ExcludeFilterStillReturnsK) {
  const Items items = RandomItems(3000, 16, 10);
  const Items queries = RandomItems(30, 16, 11);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  // Per query: its own 5 best items (what it would have returned) and 100 random ones.
  Rng rng(12);
  std::vector<SearchFilter> filters(queries.n);
  for (int64_t q = 0; q < queries.n; ++q) {
    filters[q].exclude = BruteForce(items, queries.row(q), 5).ids;
    for (int i = 0; i < 100; ++i) filters[q].exclude.push_back(rng.Below(items.n));
  }
  const Results r = Search(*index, queries.v.data(), queries.n, 10, filters.data());
  this->ExpectRanking(r, items, queries, 0.9, filters.data());
}

TYPED_TEST(ItemIndexTest, AllowListsStillReturnK) {
  const Items items = RandomItems(3000, 16, 13);
  const Items queries = RandomItems(24, 16, 14);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  Rng rng(15);
  std::vector<SearchFilter> filters(queries.n);
  for (int64_t q = 0; q < queries.n; ++q) {
    // A third of the queries get a "genre" of ~1/6 of the catalogue, a third a short list of 30
    // (with one excluded on top), a third no allow-list.
    if (q % 3 == 0) {
      std::vector<int64_t> genre;
      for (int64_t i = q % 6; i < items.n; i += 6) genre.push_back(i);
      filters[q].allow = genre;
    } else if (q % 3 == 1) {
      std::vector<int64_t> few;
      for (int i = 0; i < 30; ++i) few.push_back(rng.Below(items.n));
      filters[q].exclude = {few[0]};
      filters[q].allow = few;
    }
  }
  const Results r = Search(*index, queries.v.data(), queries.n, 10, filters.data());
  this->ExpectRanking(r, items, queries, 0.9, filters.data());
}

TYPED_TEST(ItemIndexTest, FilterThatExcludesAlmostEverything) {
  const Items items = RandomItems(3000, 16, 16);
  const Items queries = RandomItems(6, 16, 17);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  // Everything but 12 scattered items, then everything but 4: the graph cannot find them, the
  // search must still return them (and only 4 plus padding in the second case).
  for (int keep : {12, 4}) {
    std::vector<SearchFilter> filters(queries.n);
    for (int64_t q = 0; q < queries.n; ++q) {
      for (int64_t i = 0; i < items.n; ++i) {
        if (i % (items.n / keep) != static_cast<int64_t>(q) || i / (items.n / keep) >= keep) {
          filters[q].exclude.push_back(i);
        }
      }
    }
    const Results r = Search(*index, queries.v.data(), queries.n, 10, filters.data());
    ExpectWellFormed(r, items, queries.v.data(), filters.data());
    for (int64_t q = 0; q < queries.n; ++q) {
      const SearchFilter& f = filters[q];
      const Ranked want = BruteForce(items, queries.row(q), 10, [&f](int64_t id) {
        return !std::binary_search(f.exclude.begin(), f.exclude.end(), id);
      });
      ASSERT_EQ(want.ids.size(), static_cast<size_t>(std::min(keep, 10)));
      ExpectEqualsBruteForce(r, q, want);  // exact for both kinds: few allowed means exact
    }
  }
}

TYPED_TEST(ItemIndexTest, SaveAndLoadGiveIdenticalResults) {
  const Items items = ClusteredItems(2000, 16, 20, 0.3, 18);
  const Items queries = RandomItems(25, 16, 19);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  TempDir dir;
  const std::string path = dir.File("sub/items.index");
  index->Save(path);
  const IndexInfo info = ReadIndexInfo(path);
  EXPECT_EQ(info.type, index->type());
  EXPECT_EQ(info.metric, "ip");
  EXPECT_EQ(info.dim, 16);
  EXPECT_EQ(info.count, 2000);
  // The oldest format that holds it: 3 for compressed flat storage only (index_file.h).
  EXPECT_EQ(info.format_version, index->spec().find("storage=") != std::string::npos ? 3u : 2u);

  const std::unique_ptr<ItemIndex> loaded = LoadIndex(path, 16);
  EXPECT_EQ(loaded->type(), index->type());
  EXPECT_EQ(loaded->spec(), index->spec());
  EXPECT_EQ(loaded->ids(), index->ids());
  const Results a = Search(*index, queries.v.data(), queries.n, 10);
  const Results b = Search(*loaded, queries.v.data(), queries.n, 10);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.scores, b.scores);
  // Saving the loaded index reproduces the file byte for byte.
  loaded->Save(dir.File("again.index"));
  EXPECT_EQ(ReadBytes(dir.File("again.index")), ReadBytes(path));
  // And it can grow after loading.
  const Items more = RandomItems(50, 16, 20);
  Items renamed = more;
  renamed.ids = MakeIds(50, "more");
  EXPECT_EQ(loaded->Add(renamed.v.data(), 50, renamed.ids).added, 50);
  const Results c = Search(*loaded, more.row(7), 1, 1);
  EXPECT_EQ(c.ids[0], 2007);
}

TYPED_TEST(ItemIndexTest, BadFilesAreErrorsNamingTheFile) {
  const Items items = RandomItems(300, 8, 21);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  TempDir dir;
  const std::string good = dir.File("good.index");
  index->Save(good);
  const std::string bytes = ReadBytes(good);

  const std::string missing = dir.File("missing.index");
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(missing); }), HasSubstr(missing + ": cannot open"));

  const std::string truncated = dir.Write("truncated.index", bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(truncated); }),
              HasSubstr(truncated + ": truncated: the header announces"));
  const std::string stub = dir.Write("stub.index", bytes.substr(0, 40));
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(stub); }),
              HasSubstr(stub + ": truncated: 40 bytes, but the header alone is 64"));

  const std::string foreign = dir.Write("foreign.index", "movie_id,genre\n1,Drama\n");
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(foreign); }),
              HasSubstr(foreign + ": not a twotower index file"));
  const std::string empty = dir.Write("empty.index", "");
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(empty); }),
              HasSubstr(empty + ": not a twotower index file"));

  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x10;  // a vector or graph byte
  const std::string corrupted = dir.Write("corrupted.index", flipped);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(corrupted); }),
              HasSubstr(corrupted + ": checksum mismatch"));
  std::string count = bytes;
  count[40] ^= 0x01;  // the item count in the header
  const std::string bad_count = dir.Write("count.index", count);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(bad_count); }),
              HasSubstr(bad_count + ": checksum mismatch"));

  std::string version = bytes;
  version[8] = 9;
  const std::string future = dir.Write("future.index", version);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(future); }),
              HasSubstr(future + ": index format version 9 is not supported (this build reads "
                                 "versions 1 .. 3)"));

  EXPECT_THAT(ErrorMessage([&] { LoadIndex(good, 16); }),
              HasSubstr(good + ": index dimension 8 does not match the expected dimension 16"));
  const std::string trailing = dir.Write("trailing.index", bytes + "x");
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(trailing); }),
              HasSubstr(trailing + ": 1 unexpected bytes after the payload"));
  EXPECT_EQ(LoadIndex(good, 8)->size(), 300);
}

TYPED_TEST(ItemIndexTest, AddingAnExistingIdUpdatesIt) {
  const Items items = RandomItems(2000, 16, 22);
  std::unique_ptr<ItemIndex> index = this->Build(items);
  // Item 123 moves to a new place; "fresh" is new. The update must not duplicate item 123.
  const Items moved = RandomItems(2, 16, 23);
  const ItemIndex::AddResult r = index->Add(moved.v.data(), 2, {"item123", "fresh"});
  EXPECT_EQ(r.added, 1);
  EXPECT_EQ(r.updated, 1);
  EXPECT_EQ(index->size(), 2001);
  EXPECT_EQ(index->Find("item123"), 123);
  EXPECT_EQ(index->Find("fresh"), 2000);
  EXPECT_EQ(index->ids()[2000], "fresh");

  Items now = items;
  std::copy(moved.row(0), moved.row(0) + 16, now.v.begin() + 123 * 16);
  now.v.insert(now.v.end(), moved.row(1), moved.row(1) + 16);
  now.ids.push_back("fresh");
  now.n = 2001;
  // Each moved vector is found at its new place (its own best match) ...
  const Results r0 = Search(*index, moved.v.data(), 2, 5);
  ExpectWellFormed(r0, now, moved.v.data());
  EXPECT_EQ(r0.ids[0], 123);
  EXPECT_NEAR(r0.scores[0], 1.0, 1e-5);
  EXPECT_EQ(r0.ids[5], 2000);
  // ... and no longer at the old one.
  const Results old = Search(*index, items.row(123), 1, 10);
  ExpectWellFormed(old, now, items.row(123));  // label 123, if returned, scores its new vector
  EXPECT_NE(old.ids[0], 123);
}

// ---- HnswIndex --------------------------------------------------------------------------------

TEST(HnswIndexTest, RecallOnClusteredData) {
  // 5,000 items and 200 queries drawn around the same 50 centres.
  Items items = ClusteredItems(5200, 32, 50, 0.25, 30);
  Items queries = items;
  queries.v.erase(queries.v.begin(), queries.v.begin() + 5000 * 32);
  queries.n = 200;
  items.v.resize(5000 * 32);
  items.ids.resize(5000);
  items.n = 5000;
  FlatIndex flat(32);
  flat.Add(items.v.data(), items.n, items.ids);
  HnswParams params;
  params.M = 16;
  params.ef_construction = 100;
  params.ef_search = 64;
  HnswIndex hnsw(32, params);
  hnsw.Add(items.v.data(), items.n, items.ids);
  const Results exact = Search(flat, queries.v.data(), queries.n, 10);
  const Results approx = Search(hnsw, queries.v.data(), queries.n, 10);
  ExpectWellFormed(approx, items, queries.v.data());
  int64_t hit = 0;
  for (int64_t q = 0; q < queries.n; ++q) {
    const std::vector<int64_t> got = approx.Row(q);
    for (int64_t id : exact.Row(q)) hit += std::count(got.begin(), got.end(), id);
  }
  const double recall = static_cast<double>(hit) / (queries.n * 10);
  EXPECT_GE(recall, 0.95);
  EXPECT_EQ(hnsw.counters().graph_searches, queries.n);  // the graph answered, not a scan
  EXPECT_EQ(hnsw.counters().exact_scans, 0);
  // Where both return an item, both give it the same score, to the bit.
  for (int64_t q = 0; q < queries.n; ++q) {
    for (int i = 0; i < 10; ++i) {
      for (int j = 0; j < 10; ++j) {
        if (approx.ids[q * 10 + i] == exact.ids[q * 10 + j]) {
          EXPECT_EQ(approx.scores[q * 10 + i], exact.scores[q * 10 + j]);
        }
      }
    }
  }
}

// SearchOptions.ef_search (the Python module's Index.search(ef=...)) searches as an index whose
// own ef_search is that value does, bit for bit, and leaves the index's setting alone; an exact
// index refuses it, as does a value out of range.
TEST(HnswIndexTest, PerCallEfSearchIsTheSetterForOneCall) {
  Items items = ClusteredItems(3100, 16, 20, 0.3, 41);
  Items queries = items;
  queries.v.erase(queries.v.begin(), queries.v.begin() + 3000 * 16);
  queries.n = 100;
  items.v.resize(3000 * 16);
  items.ids.resize(3000);
  items.n = 3000;
  HnswParams params;
  params.M = 8;
  params.ef_construction = 64;
  params.ef_search = 200;
  HnswIndex index(16, params);
  index.Add(items.v.data(), items.n, items.ids);
  const auto with_options = [&](int ef) {
    Results r{queries.n, 10, std::vector<int64_t>(queries.n * 10),
              std::vector<float>(queries.n * 10)};
    SearchOptions options;
    options.ef_search = ef;
    index.Search(queries.v.data(), queries.n, 10, nullptr, r.ids.data(), r.scores.data(), options);
    return r;
  };
  const Results wide = Search(index, queries.v.data(), queries.n, 10);
  const Results wide_by_option = with_options(200);
  EXPECT_EQ(wide_by_option.ids, wide.ids);
  EXPECT_EQ(wide_by_option.scores, wide.scores);
  for (int ef : {1, 12, 40}) {
    const Results got = with_options(ef);
    EXPECT_EQ(index.params().ef_search, 200);  // the call left the index's setting alone
    index.set_ef_search(ef);
    const Results want = Search(index, queries.v.data(), queries.n, 10);
    index.set_ef_search(200);
    EXPECT_EQ(got.ids, want.ids) << "ef " << ef;
    EXPECT_EQ(got.scores, want.scores) << "ef " << ef;
  }
  // A small ef must change something here, or the comparisons above prove nothing.
  EXPECT_NE(with_options(1).ids, wide.ids);

  std::vector<int64_t> ids(10);
  std::vector<float> scores(10);
  SearchOptions bad;
  bad.ef_search = -1;
  EXPECT_THROW(index.Search(queries.v.data(), 1, 10, nullptr, ids.data(), scores.data(), bad),
               Error);
  bad.ef_search = 1000001;
  EXPECT_THROW(index.Search(queries.v.data(), 1, 10, nullptr, ids.data(), scores.data(), bad),
               Error);
  FlatIndex flat(16);
  flat.Add(items.v.data(), items.n, items.ids);
  SearchOptions some;
  some.ef_search = 64;
  try {
    flat.Search(queries.v.data(), 1, 10, nullptr, ids.data(), scores.data(), some);
    ADD_FAILURE() << "a flat index took ef_search";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ef_search applies to an hnsw index"), std::string::npos)
        << e.what();
    EXPECT_EQ(e.field(), "ef_search");
  }
}

// Issue 12, fault 7: a thousand identical item vectors (items whose features are the same)
// disconnected hnswlib's graph, and most queries near them got a wrong top 1 (recall 0.82 here
// before identical vectors shared a node). Recall counts, per query, the results scoring at
// least the exact k-th score less the rounding bound of the graph's float arithmetic (2 d eps
// |q| max|v|, Higham 3.1): ties among identical vectors, and near-duplicates closer than the
// graph's arithmetic can tell apart, are equally right.
double TieAwareRecall(const Results& approx, const Results& exact, const Items& queries) {
  int64_t hit = 0;
  for (int64_t q = 0; q < exact.n; ++q) {
    const double norm = std::sqrt(ExactScore(queries.row(q), queries.row(q), queries.d));
    const double slack = 2.0 * queries.d * std::numeric_limits<float>::epsilon() * norm;
    const double kth = exact.scores[q * exact.k + exact.k - 1];
    for (int i = 0; i < approx.k; ++i) hit += approx.scores[q * approx.k + i] >= kth - slack;
  }
  return static_cast<double>(hit) / static_cast<double>(exact.n * exact.k);
}

// `base` plus `copies` unit items at `centre` + noise (noise 0: exact copies), ids after base's.
Items WithCopies(const Items& base, int64_t copies, const float* centre, double noise,
                 uint64_t seed) {
  Items items = base;
  Rng rng(seed);
  const int d = base.d;
  for (int64_t c = 0; c < copies; ++c) {
    for (int p = 0; p < d; ++p) {
      items.v.push_back(centre[p] + static_cast<float>(noise * rng.Normal()));
    }
    if (noise > 0) Normalize(items.v.data() + (items.n + c) * d, d);
  }
  items.n += copies;
  items.ids = MakeIds(items.n);
  return items;
}

// 200 queries: half uniformly random, half around the copied centre (users who like those items).
Items QueriesAround(const float* centre, int d, uint64_t seed) {
  Items queries = RandomItems(200, d, seed);
  Rng rng(seed + 1);
  for (int64_t q = 100; q < 200; ++q) {
    for (int p = 0; p < d; ++p) {
      queries.v[q * d + p] = centre[p] + static_cast<float>(0.3 * rng.Normal() / std::sqrt(d));
    }
    Normalize(queries.v.data() + q * d, d);
  }
  return queries;
}

// Measured recall@1 and @10 (200 queries, d = 16, the graph answering, not a scan), default
// parameters M 32, ef 64: identical 1.000, near-duplicates 0.98-1.00, 4,000 random 1.000, one
// tight cluster 0.945-0.955; with M 8, ef 255 the cluster reaches 0.986-0.990. The bounds below
// leave room for the parallel build's run-to-run differences.
TEST(HnswIndexTest, KeepsRecallOnDuplicatesNearDuplicatesAndOneCluster) {
  constexpr int d = 16;
  const Items base = RandomItems(3000, d, 61);
  const Items one = RandomItems(1, d, 62);
  struct Case {
    const char* name;
    Items items;
    HnswParams params;
    double min_recall;
  };
  HnswParams wide;
  wide.M = 8;
  wide.ef_search = 255;  // 2 * M * ef below 1.5 * 4,000: still the graph
  const Items cluster = WithCopies(RandomItems(0, d, 65), 4000, one.row(0), 0.01, 66);
  const Case cases[] = {
      {"1,000 identical vectors", WithCopies(base, 1000, one.row(0), 0.0, 63), HnswParams{}, 0.99},
      {"1,000 near-duplicates (noise 1e-6)", WithCopies(base, 1000, one.row(0), 1e-6, 64),
       HnswParams{}, 0.99},
      {"4,000 random", RandomItems(4000, d, 68), HnswParams{}, 0.99},
      {"one tight cluster (noise 0.01)", cluster, HnswParams{}, 0.92},
      {"one tight cluster, M 8, ef 255", cluster, wide, 0.97},
  };
  const Items queries = QueriesAround(one.row(0), d, 67);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FlatIndex flat(d);
    flat.Add(c.items.v.data(), c.items.n, c.items.ids);
    HnswIndex hnsw(d, c.params);
    hnsw.Add(c.items.v.data(), c.items.n, c.items.ids);
    for (int k : {1, 10}) {
      const Results exact = Search(flat, queries.v.data(), queries.n, k);
      const Results approx = Search(hnsw, queries.v.data(), queries.n, k);
      ExpectWellFormed(approx, c.items, queries.v.data());
      EXPECT_GE(TieAwareRecall(approx, exact, queries), c.min_recall) << "k = " << k;
    }
    EXPECT_EQ(hnsw.counters().exact_scans, 0);  // the graph answered
  }
}

// Identical vectors keep sharing a node through updates, saves and loads: an item updated away
// from a shared vector, onto one, or alone; a node left without items is deleted in the graph and
// never returned; the file round-trips the node table.
TEST(HnswIndexTest, SharedNodesSurviveUpdatesAndSaving) {
  constexpr int d = 8;
  const Items base = RandomItems(3000, d, 71);
  const Items two = RandomItems(2, d, 72);
  Items items = WithCopies(base, 500, two.row(0), 0.0, 73);  // items 3000..3499 identical
  HnswIndex hnsw(d, HnswParams{});
  hnsw.Add(items.v.data(), items.n, items.ids);
  // Updates: 3000 moves to another vector, 3001..3099 all move onto vector two.row(1) (their
  // old node keeps its other items), and 0 (alone on its node) onto two.row(0).
  std::vector<std::string> ids = {items.ids[3000], items.ids[0]};
  std::vector<float> v(two.row(0), two.row(0) + d);
  v.insert(v.begin(), base.row(5), base.row(5) + d);  // 3000 -> base item 5's vector
  std::memcpy(items.v.data() + 3000 * d, base.row(5), d * sizeof(float));
  std::memcpy(items.v.data() + 0 * d, two.row(0), d * sizeof(float));
  for (int64_t i = 3001; i < 3100; ++i) {
    ids.push_back(items.ids[i]);
    v.insert(v.end(), two.row(1), two.row(1) + d);
    std::memcpy(items.v.data() + i * d, two.row(1), d * sizeof(float));
  }
  const ItemIndex::AddResult r = hnsw.Add(v.data(), static_cast<int64_t>(ids.size()), ids);
  EXPECT_EQ(r.updated, static_cast<int64_t>(ids.size()));
  EXPECT_EQ(r.added, 0);
  TempDir dir;
  hnsw.Save(dir.File("h.index"));
  const std::unique_ptr<ItemIndex> loaded = LoadIndex(dir.File("h.index"));
  FlatIndex flat(d);
  flat.Add(items.v.data(), items.n, items.ids);
  const Items queries = QueriesAround(two.row(1), d, 74);
  for (const ItemIndex* index :
       {static_cast<const ItemIndex*>(&hnsw), static_cast<const ItemIndex*>(loaded.get())}) {
    for (int k : {1, 10, 200}) {
      const Results exact = Search(flat, queries.v.data(), queries.n, k);
      const Results approx = Search(*index, queries.v.data(), queries.n, k);
      ExpectWellFormed(approx, items, queries.v.data());
      EXPECT_GE(TieAwareRecall(approx, exact, queries), 0.99) << "k = " << k;
    }
    // A query at vector two.row(1): its 99 items tie and come first, by label.
    const Results top = Search(*index, two.row(1), 1, 99);
    for (int i = 0; i < 99; ++i) EXPECT_EQ(top.ids[i], 3001 + i) << i;
  }
}

TEST(HnswIndexTest, WidensOrScansWhenTheFilterHidesTheGraphsCandidates) {
  const Items items = RandomItems(4000, 16, 31);
  const Items queries = RandomItems(5, 16, 32);
  HnswParams params;
  params.M = 8;
  params.ef_construction = 64;
  params.ef_search = 16;
  HnswIndex hnsw(16, params);
  hnsw.Add(items.v.data(), items.n, items.ids);
  // Exclude each query's 200 best items: the first graph search finds only excluded ones.
  std::vector<SearchFilter> filters(queries.n);
  for (int64_t q = 0; q < queries.n; ++q) {
    filters[q].exclude = BruteForce(items, queries.row(q), 200).ids;
  }
  const Results r = Search(hnsw, queries.v.data(), queries.n, 10, filters.data());
  ExpectWellFormed(r, items, queries.v.data(), filters.data());
  for (int64_t q = 0; q < queries.n; ++q) {
    for (int i = 0; i < 10; ++i) EXPECT_GE(r.ids[q * 10 + i], 0);
  }
  EXPECT_EQ(hnsw.counters().widened, queries.n);
}

TEST(HnswIndexTest, SmallCataloguesAreScannedExactly) {
  const Items items = RandomItems(500, 8, 33);
  HnswIndex hnsw(8, HnswParams{});  // 2 * 32 * 64 > 500
  hnsw.Add(items.v.data(), items.n, items.ids);
  const Results r = Search(hnsw, items.row(3), 1, 10);
  ExpectEqualsBruteForce(r, 0, BruteForce(items, items.row(3), 10));
  EXPECT_EQ(hnsw.counters().exact_scans, 1);
  EXPECT_EQ(hnsw.counters().graph_searches, 0);
}

// Rewrites an index file's checksum to match its (altered) bytes, as the format defines it: the
// header's first 48 bytes, then the payload (Crc32c is checked against the standard below).
void Rechecksum(std::string* bytes) {
  const uint32_t crc = Crc32c(Crc32c(0, bytes->data(), 48), bytes->data() + 64, bytes->size() - 64);
  std::memcpy(bytes->data() + 56, &crc, sizeof(crc));
}

// The offset of item `label`'s first value in a flat or hnsw index file of `items` without a
// model fingerprint (header 64 bytes, the fingerprint's u32 length 0, the parameters: flat fp32
// none (format 2), hnsw 16, ids as a u32 length and the bytes each, then the vectors).
size_t VectorOffset(const Items& items, int64_t label, bool hnsw) {
  size_t offset = 64 + 4 + (hnsw ? 16 : 0);
  for (const std::string& id : items.ids) offset += 4 + id.size();
  return offset + static_cast<size_t>(label * items.d) * sizeof(float);
}

TEST(FlatIndexTest, LoadRefusesVectorsThatAreNotFinite) {
  const Items items = RandomItems(20, 4, 43);
  FlatIndex flat(4);
  flat.Add(items.v.data(), items.n, items.ids);
  TempDir dir;
  flat.Save(dir.File("f.index"));
  std::string bytes = ReadBytes(dir.File("f.index"));
  const size_t offset = VectorOffset(items, 3, false) + 2 * sizeof(float);
  float value;
  std::memcpy(&value, bytes.data() + offset, sizeof(value));
  ASSERT_EQ(value, items.row(3)[2]);  // the offset is right
  value = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
  Rechecksum(&bytes);
  const std::string changed = dir.Write("nan.index", bytes);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(changed); }),
              HasSubstr("vectors: item 3 (id \"" + items.ids[3] +
                        "\"): value at dimension 2 is not finite"));
}

TEST(HnswIndexTest, LoadRefusesVectorsThatDifferFromTheGraph) {
  const Items items = RandomItems(50, 4, 41);
  HnswIndex hnsw(4, HnswParams{});
  hnsw.Add(items.v.data(), items.n, items.ids);
  TempDir dir;
  hnsw.Save(dir.File("h.index"));
  std::string bytes = ReadBytes(dir.File("h.index"));
  // Change item 7's first value in the vectors section.
  const size_t offset = VectorOffset(items, 7, true);
  float value;
  std::memcpy(&value, bytes.data() + offset, sizeof(value));
  ASSERT_EQ(value, items.row(7)[0]);  // the offset is right
  value += 0.5f;
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
  Rechecksum(&bytes);
  const std::string changed = dir.Write("changed.index", bytes);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(changed); }),
              HasSubstr("graph: the vector of item 7 (id \"" + items.ids[7] +
                        "\") differs from the vectors section"));
}

// Found by fuzz_index: counts in a checksummed file sized allocations before the payload was
// read. A count the payload cannot hold is refused first.
TEST(IndexFileTest, CountsThePayloadCannotHoldAreRefused) {
  const Items items = RandomItems(10, 4, 44);
  FlatIndex flat(4);
  flat.Add(items.v.data(), items.n, items.ids);
  TempDir dir;
  flat.Save(dir.File("f.index"));
  std::string bytes = ReadBytes(dir.File("f.index"));
  const uint64_t huge = uint64_t{1} << 39;
  std::memcpy(bytes.data() + 40, &huge, sizeof(huge));
  Rechecksum(&bytes);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(dir.Write("count.index", bytes)); }),
              HasSubstr("header: 549755813888 items of dimension 4 need at least"));
  HnswIndex hnsw(4, HnswParams{});
  hnsw.Add(items.v.data(), items.n, items.ids);
  hnsw.Save(dir.File("h.index"));
  std::string h = ReadBytes(dir.File("h.index"));
  std::memcpy(h.data() + VectorOffset(items, items.n, true), &huge, sizeof(huge));
  Rechecksum(&h);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(dir.Write("nodes.index", h)); }),
              HasSubstr("graph nodes: 549755813888 nodes need at least"));
}

TEST(HnswIndexTest, LoadRefusesABadNodeTable) {
  const Items items = RandomItems(50, 4, 42);
  HnswIndex hnsw(4, HnswParams{});
  hnsw.Add(items.v.data(), items.n, items.ids);
  TempDir dir;
  hnsw.Save(dir.File("h.index"));
  const std::string bytes = ReadBytes(dir.File("h.index"));
  // The node table follows the vectors: u64 node count, then u64 per item (index_file.h).
  const size_t table = VectorOffset(items, items.n, true);
  uint64_t nodes;
  std::memcpy(&nodes, bytes.data() + table, sizeof(nodes));
  ASSERT_EQ(nodes, 50u);  // the offset is right: 50 distinct vectors
  std::string past = bytes;
  const uint64_t bad = 50;
  std::memcpy(past.data() + table + 8 + 7 * 8, &bad, sizeof(bad));  // item 7 -> node 50
  Rechecksum(&past);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(dir.Write("past.index", past)); }),
              HasSubstr("node of each item: item 7 has node 50, expected below 50"));
  // Item 7 moved onto item 8's node: node 7 then holds no item, yet is not marked deleted.
  std::string orphan = bytes;
  uint64_t node8;
  std::memcpy(&node8, orphan.data() + table + 8 + 8 * 8, sizeof(node8));
  std::memcpy(orphan.data() + table + 8 + 7 * 8, &node8, sizeof(node8));
  Rechecksum(&orphan);
  EXPECT_THAT(ErrorMessage([&] { LoadIndex(dir.Write("orphan.index", orphan)); }),
              HasSubstr("holds no item but is not marked deleted"));
}

// ---- factory and file format ------------------------------------------------------------------

TEST(IndexFileTest, ModelFingerprintRoundTripsAndFormat1StillLoads) {
  const Items items = RandomItems(30, 4, 47);
  const std::string sha(64, 'a');
  TempDir dir;
  for (const char* spec : {"flat", "hnsw"}) {
    std::unique_ptr<ItemIndex> index = MakeIndex(spec, 4);
    index->Add(items.v.data(), items.n, items.ids);
    EXPECT_EQ(index->model_fingerprint(), "");
    EXPECT_THAT(ErrorMessage([&] { index->set_model_fingerprint("abc"); }),
                HasSubstr("is not a SHA-256"));
    index->set_model_fingerprint(sha);
    index->Save(dir.File("i.index"));
    EXPECT_EQ(LoadIndex(dir.File("i.index"))->model_fingerprint(), sha);
    // A format-1 file: the same without the fingerprint section, by the layout in index_file.h.
    index->set_model_fingerprint("");
    index->Save(dir.File("v2.index"));
    std::string bytes = ReadBytes(dir.File("v2.index"));
    const bool hnsw = std::string(spec) == "hnsw";
    if (hnsw) {  // and without hnsw's node table (u64 count, u64 per item) after the vectors
      bytes.erase(VectorOffset(items, items.n, true), 8 + 8 * static_cast<size_t>(items.n));
    }
    bytes.erase(64, 4);  // the section's u32 length (0)
    bytes[8] = 1;        // format_version
    const uint64_t payload = bytes.size() - 64;
    std::memcpy(bytes.data() + 48, &payload, sizeof(payload));
    Rechecksum(&bytes);
    const std::unique_ptr<ItemIndex> v1 = LoadIndex(dir.Write("v1.index", bytes));
    EXPECT_EQ(v1->model_fingerprint(), "");
    EXPECT_EQ(v1->ids(), items.ids);
    EXPECT_EQ(v1->spec(), index->spec());
    // A damaged fingerprint section is named.
    std::string bad = ReadBytes(dir.File("i.index"));
    bad[68] = 'G';
    Rechecksum(&bad);
    EXPECT_THAT(ErrorMessage([&] { LoadIndex(dir.Write("bad.index", bad)); }),
                HasSubstr("payload: model fingerprint: \"G"));
  }
}

TEST(MakeIndexTest, BuildsFromSpecs) {
  EXPECT_EQ(MakeIndex("flat", 8)->spec(), "flat");
  EXPECT_EQ(MakeIndex("flat:storage=fp32", 8)->spec(), "flat");
  EXPECT_EQ(MakeIndex("flat:storage=bf16", 8)->spec(), "flat:storage=bf16");
  EXPECT_EQ(MakeIndex("flat:storage=int8", 8)->spec(), "flat:storage=int8");
  EXPECT_EQ(MakeIndex("hnsw", 8)->spec(), "hnsw:M=32,ef_construction=200,ef_search=64");
  EXPECT_EQ(MakeIndex("hnsw:M=32,ef_construction=200,ef_search=64", 8)->spec(),
            "hnsw:M=32,ef_construction=200,ef_search=64");
  const std::unique_ptr<ItemIndex> h = MakeIndex("hnsw:ef_search=100,M=8", 4);
  EXPECT_EQ(h->type(), "hnsw");
  EXPECT_EQ(h->dim(), 4);
  EXPECT_EQ(dynamic_cast<HnswIndex&>(*h).params().M, 8);
  EXPECT_EQ(dynamic_cast<HnswIndex&>(*h).params().ef_search, 100);
  EXPECT_EQ(dynamic_cast<HnswIndex&>(*h).params().ef_construction, 200);
}

TEST(MakeIndexTest, RejectsBadSpecs) {
  EXPECT_EQ(ErrorMessage([] { MakeIndex("hsnw", 8); }),
            "unknown index type 'hsnw' (expected: flat, hnsw)");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("", 8); }), "unknown index type '' (expected: flat, hnsw)");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("hnsw:", 8); }),
            "index type 'hnsw': nothing after ':' (expected hnsw:key=value,... or 'hnsw' alone)");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("flat:", 8); }),
            "index type 'flat': nothing after ':' (expected flat:key=value,... or 'flat' alone)");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("hnsw:Q=3", 8); }),
            "index type 'hnsw': unknown parameter 'Q' (expected: M, ef_construction, ef_search, "
            "storage)");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("hnsw:M=abc", 8); }),
            "index type 'hnsw': parameter 'M': expected an integer, got \"abc\"");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("hnsw:M=1", 8); }),
            "index type 'hnsw': parameter 'M': 1 is out of range (expected 2 .. 10000)");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("hnsw:M", 8); }),
            "index type 'hnsw': expected key=value, got \"M\" (keys: M, ef_construction, "
            "ef_search, storage)");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("hnsw:M=8,M=9", 8); }),
            "index type 'hnsw': parameter 'M' given twice");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("flat:M=8", 8); }),
            "index type 'flat': expected storage=fp32|bf16|int8, got \"M=8\"");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("flat:storage=int8,storage=bf16", 8); }),
            "index type 'flat' takes one parameter, storage=fp32|bf16|int8, got "
            "\"storage=int8,storage=bf16\"");
  EXPECT_EQ(ErrorMessage([] { MakeIndex("flat:storage=int4", 8); }),
            "index type 'flat': parameter 'storage': unknown value \"int4\" (expected: fp32, "
            "bf16, int8)");
  EXPECT_THAT(ErrorMessage([] { MakeIndex("flat:storage=int8", 20000); }),
              HasSubstr("storage=int8 supports dimensions up to 16384, got 20000"));
  EXPECT_THAT(ErrorMessage([] { MakeIndex("flat", 0); }),
              HasSubstr("dimension must be at least 1, got 0"));
}

}  // namespace
}  // namespace twotower::index
