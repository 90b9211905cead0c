// Retrieval benchmark, our side (bench/run_index_bench.sh runs it next to FAISS and hnswlib's
// Python module, see bench/index_bench.py): one process per measurement so that peak memory is
// that measurement's own.
//
//   bench_index bandwidth --threads T [--gib 1]
//       read bandwidth: a vectorised sum over a buffer far larger than the caches (best of 5)
//   bench_index run --impl flat|flat-bf16|flat-int8|hnsw|hnsw-bf16|hnsw-int8|hnswlib --base B.npy
//       --queries Q.npy
//   --threads T
//       [--k 10 --M 32 --ef-construction 200 --ef-search 64,128 --single 1000 --out-ids PREFIX
//        --search-threads 1,2]
//       build time (with --threads), memory, queries/s one query at a time (the first --single
//       queries) and in one batch of all queries, per search thread count (default: --threads)
//       and ef_search; writes each batch result's ids to
//       PREFIX<param>.ids.npy (int64, nq x k) for bench/index_bench.py to score.
//       `hnswlib` is hnswlib 0.6.2 itself, compiled here with our flags, driven as its Python
//       binding drives it (parallel addPoint after a first serial one, searchKnn per query).
//   bench_index users --base B.npy --users U.npy --threads T [--k 10 --chunk 4096]
//       batch recommendations: the FlatIndex search `twotower recommend --all-users` runs.
//   bench_index compare --base B.npy --queries Q.npy --threads 1,2 [--k 10 --M 32
//       --ef-construction 200 --ef-search 64,128 --rounds 15 --build-threads 1 --limit N]
//       HnswIndex against raw hnswlib searching the same graph: both are built with
//       --build-threads (1 makes hnswlib's graph a function of the input, so the two graphs are
//       identical; the share of equal result ids is printed as the check), then searched in
//       alternating rounds (batch of all queries, and all queries one at a time); prints the
//       medians and the median of the per-round ratios, which a noisy machine disturbs least.
//       --limit takes the first N items only (a one-thread build of a million takes long).
// Every measurement prints one JSON line on stdout.
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "twotower/core/error.h"
#include "twotower/core/matrix.h"
#include "twotower/core/threads.h"
#include "twotower/data/npy.h"
#include "twotower/index/flat_index.h"
#include "twotower/index/hnsw_index.h"

// hnswlib's header defines non-inline functions and variables, and the library's hnsw_index.cc
// already has them: this copy goes into a namespace of its own so that both link into one
// program. (A header-name is not macro-expanded, so the #include itself is unaffected.)
#define hnswlib bench_hnswlib
#define cpuid bench_hnswlib_cpuid
#define xgetbv bench_hnswlib_xgetbv
#define AVXCapable bench_hnswlib_AVXCapable
#define AVX512Capable bench_hnswlib_AVX512Capable
#include <hnswlib/hnswlib.h>
#undef hnswlib
#undef cpuid
#undef xgetbv
#undef AVXCapable
#undef AVX512Capable
namespace rawhnswlib = bench_hnswlib;

namespace {

using Clock = std::chrono::steady_clock;
using twotower::Matrix;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Resident memory now and at peak, in MiB.
double RssMiB() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE) / (1 << 20);
}
double PeakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

struct Args {
  std::map<std::string, std::string> values;
  std::string Get(const std::string& key, const std::string& fallback = "") const {
    const auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
  int Int(const std::string& key, int fallback) const {
    const auto it = values.find(key);
    return it == values.end() ? fallback : std::stoi(it->second);
  }
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) throw twotower::Error("expected --key value, got " + key);
    a.values[key.substr(2)] = argv[i + 1];
  }
  return a;
}

std::vector<int> IntList(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

// An int64 C-order .npy, for bench/index_bench.py.
void WriteIdsNpy(const std::string& path, const std::vector<int64_t>& ids, int64_t rows,
                 int64_t cols) {
  std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(reinterpret_cast<const char*>(ids.data()),
            static_cast<std::streamsize>(ids.size() * sizeof(int64_t)));
  if (!out) throw twotower::Error(path + ": write failed");
}

int Bandwidth(const Args& a) {
  const int threads = twotower::SetThreads(a.Int("threads", 1));
  const size_t n = static_cast<size_t>(std::stod(a.Get("gib", "1")) * (1u << 30) / sizeof(float));
  std::vector<float> buffer(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) buffer[i] = static_cast<float>(i & 7);
  double best = 1e30, total = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = Clock::now();
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (size_t block = 0; block < n / 4096; ++block) {
      const float* p = buffer.data() + block * 4096;
      float acc[16] = {};
      for (int i = 0; i < 4096; i += 16) {
#pragma GCC unroll 16
        for (int l = 0; l < 16; ++l) acc[l] += p[i + l];
      }
      float s = 0;
      for (float x : acc) s += x;
      sum += s;
    }
    best = std::min(best, Seconds(start));
    total += sum;
  }
  std::printf(
      "{\"mode\": \"bandwidth\", \"threads\": %d, \"gib\": %.2f, \"gbps\": %.2f, \"check\": "
      "%.0f}\n",
      threads, n * 4.0 / (1 << 30), n * 4.0 / best / 1e9, total);
  return 0;
}

// One implementation behind a common face: build, set ef, search one or many.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual void Build(const Matrix& base) = 0;
  virtual void SetEf(int ef) = 0;
  virtual void Search(const float* q, int64_t n, int k, int64_t* ids, float* scores) = 0;
  // Items re-scored exactly so far (compressed flat storage), 0 elsewhere.
  virtual int64_t Rescored() const { return 0; }
};

class OurEngine : public Engine {
 public:
  explicit OurEngine(std::unique_ptr<twotower::index::ItemIndex> index)
      : index_(std::move(index)) {}
  void Build(const Matrix& base) override {
    std::vector<std::string> ids(static_cast<size_t>(base.rows()));
    for (int64_t i = 0; i < base.rows(); ++i) ids[i] = std::to_string(i);
    index_->Add(base.data(), base.rows(), ids);
  }
  void SetEf(int ef) override {
    if (auto* h = dynamic_cast<twotower::index::HnswIndex*>(index_.get())) h->set_ef_search(ef);
  }
  void Search(const float* q, int64_t n, int k, int64_t* ids, float* scores) override {
    index_->Search(q, n, k, nullptr, ids, scores);
  }
  int64_t Rescored() const override {
    const auto* flat = dynamic_cast<const twotower::index::FlatIndex*>(index_.get());
    return flat != nullptr ? flat->rescored() : 0;
  }

 private:
  std::unique_ptr<twotower::index::ItemIndex> index_;
};

class RawHnswlib : public Engine {
 public:
  RawHnswlib(int dim, int M, int ef_construction)
      : space_(static_cast<size_t>(dim)), m_(M), efc_(ef_construction) {}
  void Build(const Matrix& base) override {
    const size_t n = static_cast<size_t>(base.rows());
    hnsw_ = std::make_unique<rawhnswlib::HierarchicalNSW<float>>(&space_, n, m_, efc_);
    if (n == 0) return;
    hnsw_->addPoint(base.row(0).data(), 0);
#pragma omp parallel for schedule(dynamic, 64)
    for (size_t i = 1; i < n; ++i) hnsw_->addPoint(base.row(i).data(), i);
  }
  void SetEf(int ef) override { hnsw_->setEf(static_cast<size_t>(ef)); }
  void Search(const float* q, int64_t n, int k, int64_t* ids, float* scores) override {
    const int d = static_cast<int>(*static_cast<size_t*>(space_.get_dist_func_param()));
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (int64_t i = 0; i < n; ++i) {
      auto top = hnsw_->searchKnn(q + i * d, static_cast<size_t>(k));
      for (int r = k - 1; r >= 0; --r) {
        if (top.empty()) {
          ids[i * k + r] = -1;
          scores[i * k + r] = 0;
          continue;
        }
        ids[i * k + r] = static_cast<int64_t>(top.top().second);
        scores[i * k + r] = 1.0f - top.top().first;
        top.pop();
      }
    }
  }

 private:
  rawhnswlib::InnerProductSpace space_;
  size_t m_, efc_;
  std::unique_ptr<rawhnswlib::HierarchicalNSW<float>> hnsw_;
};

int Run(const Args& a) {
  const std::string impl = a.Get("impl");
  const int build_threads = twotower::SetThreads(a.Int("threads", 1));
  const int k = a.Int("k", 10);
  const int M = a.Int("M", 32), efc = a.Int("ef-construction", 200);
  const Matrix base = twotower::data::ReadNpy(a.Get("base"));
  const Matrix queries = twotower::data::ReadNpy(a.Get("queries"));
  const int d = static_cast<int>(base.cols());
  const int64_t nq = queries.rows();
  const int64_t single = std::min<int64_t>(nq, a.Int("single", 1000));
  std::unique_ptr<Engine> engine;
  std::vector<int> efs = {0};
  if (impl == "flat") {
    engine = std::make_unique<OurEngine>(std::make_unique<twotower::index::FlatIndex>(d));
  } else if (impl == "flat-bf16" || impl == "flat-int8") {
    engine = std::make_unique<OurEngine>(
        twotower::index::MakeIndex("flat:storage=" + impl.substr(5), d));
  } else if (impl == "hnsw" || impl == "hnsw-bf16" || impl == "hnsw-int8" || impl == "hnswlib") {
    efs = IntList(a.Get("ef-search", "64"));
    if (impl != "hnswlib") {
      twotower::index::HnswParams p;
      p.M = M;
      p.ef_construction = efc;
      p.ef_search = efs[0];
      if (impl != "hnsw") p.storage = twotower::index::ParseFlatStorage(impl.substr(5));
      engine = std::make_unique<OurEngine>(std::make_unique<twotower::index::HnswIndex>(d, p));
    } else {
      engine = std::make_unique<RawHnswlib>(d, M, efc);
    }
  } else {
    throw twotower::Error(
        "--impl: expected flat, flat-bf16, flat-int8, hnsw, hnsw-bf16, hnsw-int8 or hnswlib, got " +
        impl);
  }
  const double rss_before = RssMiB();
  const auto start = Clock::now();
  engine->Build(base);
  const double build_s = Seconds(start);
  const double index_mib = RssMiB() - rss_before;

  std::vector<int64_t> ids(static_cast<size_t>(nq * k));
  std::vector<float> scores(static_cast<size_t>(nq * k));
  const std::vector<int> search_threads =
      IntList(a.Get("search-threads", std::to_string(build_threads)));
  for (int thread_count : search_threads)
    for (int ef : efs) {
      const int threads = twotower::SetThreads(thread_count);
      if (ef > 0) engine->SetEf(ef);
      // One query at a time (each one still uses every thread where the index can).
      engine->Search(queries.data(), 1, k, ids.data(), scores.data());  // warm-up
      auto t = Clock::now();
      for (int64_t i = 0; i < single; ++i) {
        engine->Search(queries.row(i).data(), 1, k, ids.data() + i * k, scores.data() + i * k);
      }
      const double qps1 = single / Seconds(t);
      // All queries in one batch, best of 3.
      double best = 1e30;
      const int64_t rescored_before = engine->Rescored();
      for (int rep = 0; rep < 3; ++rep) {
        t = Clock::now();
        engine->Search(queries.data(), nq, k, ids.data(), scores.data());
        best = std::min(best, Seconds(t));
      }
      const std::string param = ef > 0 ? "ef_search=" + std::to_string(ef) : "";
      std::string ids_file;
      if (!a.Get("out-ids").empty()) {
        ids_file = a.Get("out-ids") +
                   (search_threads.size() > 1 ? "_s" + std::to_string(threads) : "") +
                   (ef > 0 ? "_ef" + std::to_string(ef) : "") + ".ids.npy";
        WriteIdsNpy(ids_file, ids, nq, k);
      }
      std::printf(
          "{\"mode\": \"run\", \"dataset\": \"%s\", \"impl\": \"%s\", \"threads\": %d, "
          "\"build_threads\": %d, \"param\": \"%s\", \"n\": %lld, \"d\": %d, \"nq\": %lld, "
          "\"single\": %lld, "
          "\"build_s\": %.3f, \"index_mib\": %.1f, \"peak_mib\": %.1f, \"qps1\": %.2f, "
          "\"qps_batch\": %.2f, \"rescored_per_query\": %.1f, \"ids\": \"%s\"}\n",
          a.Get("dataset").c_str(), impl.c_str(), threads, build_threads, param.c_str(),
          static_cast<long long>(base.rows()), d, static_cast<long long>(nq),
          static_cast<long long>(single), build_s, index_mib, PeakRssMiB(), qps1, nq / best,
          static_cast<double>(engine->Rescored() - rescored_before) / (3.0 * nq), ids_file.c_str());
      std::fflush(stdout);
    }
  return 0;
}

int Users(const Args& a) {
  const int threads = twotower::SetThreads(a.Int("threads", 1));
  const int k = a.Int("k", 10);
  const int64_t chunk = a.Int("chunk", 4096);
  const Matrix base = twotower::data::ReadNpy(a.Get("base"));
  const Matrix users = twotower::data::ReadNpy(a.Get("users"));
  twotower::index::FlatIndex index(static_cast<int>(base.cols()));
  std::vector<std::string> ids(static_cast<size_t>(base.rows()));
  for (int64_t i = 0; i < base.rows(); ++i) ids[i] = std::to_string(i);
  index.Add(base.data(), base.rows(), ids);
  std::vector<int64_t> out_ids(static_cast<size_t>(chunk * k));
  std::vector<float> out_scores(static_cast<size_t>(chunk * k));
  const auto start = Clock::now();
  for (int64_t first = 0; first < users.rows(); first += chunk) {
    const int64_t n = std::min(chunk, users.rows() - first);
    index.Search(users.row(first).data(), n, k, nullptr, out_ids.data(), out_scores.data());
  }
  const double s = Seconds(start);
  std::printf(
      "{\"mode\": \"users\", \"dataset\": \"%s\", \"impl\": \"flat\", \"threads\": %d, "
      "\"n\": %lld, \"users\": %lld, \"seconds\": %.3f, \"users_per_s\": %.1f, "
      "\"peak_mib\": %.1f}\n",
      a.Get("dataset").c_str(), threads, static_cast<long long>(base.rows()),
      static_cast<long long>(users.rows()), s, users.rows() / s, PeakRssMiB());
  return 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

int Compare(const Args& a) {
  const int k = a.Int("k", 10);
  const int M = a.Int("M", 32), efc = a.Int("ef-construction", 200);
  const std::vector<int> efs = IntList(a.Get("ef-search", "64"));
  const int rounds = a.Int("rounds", 15);
  Matrix base = twotower::data::ReadNpy(a.Get("base"));
  const int64_t limit = a.Int("limit", 0);
  if (limit > 0 && limit < base.rows()) base = Matrix(base.topRows(limit));
  const Matrix queries = twotower::data::ReadNpy(a.Get("queries"));
  const int d = static_cast<int>(base.cols());
  const int64_t nq = queries.rows();
  twotower::index::HnswParams p;
  p.M = M;
  p.ef_construction = efc;
  p.ef_search = efs[0];
  std::unique_ptr<Engine> engines[2] = {
      std::make_unique<OurEngine>(std::make_unique<twotower::index::HnswIndex>(d, p)),
      std::make_unique<RawHnswlib>(d, M, efc)};
  twotower::SetThreads(a.Int("build-threads", 1));
  double build_s[2];
  for (int e = 0; e < 2; ++e) {
    const auto start = Clock::now();
    engines[e]->Build(base);
    build_s[e] = Seconds(start);
  }
  std::vector<int64_t> ids[2];
  std::vector<float> scores(static_cast<size_t>(nq * k));
  for (auto& v : ids) v.resize(static_cast<size_t>(nq * k));
  for (int thread_count : IntList(a.Get("threads", "1")))
    for (int ef : efs) {
      const int threads = twotower::SetThreads(thread_count);
      for (auto& e : engines) e->SetEf(ef);
      std::vector<double> batch[2], single[2], batch_ratio, single_ratio;
      for (int round = 0; round < rounds; ++round) {
        double b[2], s1[2];
        for (int j = 0; j < 2; ++j) {
          const int e = (round + j) % 2;  // alternate which goes first
          auto t = Clock::now();
          engines[e]->Search(queries.data(), nq, k, ids[e].data(), scores.data());
          b[e] = nq / Seconds(t);
          t = Clock::now();
          for (int64_t i = 0; i < nq; ++i) {
            engines[e]->Search(queries.row(i).data(), 1, k, ids[e].data() + i * k,
                               scores.data() + i * k);
          }
          s1[e] = nq / Seconds(t);
        }
        for (int e = 0; e < 2; ++e) {
          batch[e].push_back(b[e]);
          single[e].push_back(s1[e]);
        }
        batch_ratio.push_back(b[0] / b[1]);
        single_ratio.push_back(s1[0] / s1[1]);
      }
      // The check that both searched the same graph: result ids in common (as sets per query).
      int64_t common = 0;
      for (int64_t q = 0; q < nq; ++q) {
        std::vector<int64_t> x(ids[0].begin() + q * k, ids[0].begin() + (q + 1) * k);
        std::vector<int64_t> y(ids[1].begin() + q * k, ids[1].begin() + (q + 1) * k);
        std::sort(x.begin(), x.end());
        std::sort(y.begin(), y.end());
        std::vector<int64_t> both;
        std::set_intersection(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(both));
        common += static_cast<int64_t>(both.size());
      }
      std::printf(
          "{\"mode\": \"compare\", \"dataset\": \"%s\", \"threads\": %d, \"build_threads\": %d, "
          "\"param\": \"ef_search=%d\", \"n\": %lld, \"nq\": %lld, \"rounds\": %d, "
          "\"build_s\": [%.3f, %.3f], \"same_ids\": %.4f, \"qps_batch\": [%.1f, %.1f], "
          "\"qps1\": [%.1f, %.1f], \"ratio_batch\": %.3f, \"ratio1\": %.3f}\n",
          a.Get("dataset").c_str(), threads, a.Int("build-threads", 1), ef,
          static_cast<long long>(base.rows()), static_cast<long long>(nq), rounds, build_s[0],
          build_s[1], static_cast<double>(common) / static_cast<double>(nq * k), Median(batch[0]),
          Median(batch[1]), Median(single[0]), Median(single[1]), Median(batch_ratio),
          Median(single_ratio));
      std::fflush(stdout);
    }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    const Args a = Parse(argc, argv);
    if (mode == "bandwidth") return Bandwidth(a);
    if (mode == "run") return Run(a);
    if (mode == "users") return Users(a);
    if (mode == "compare") return Compare(a);
    std::fprintf(stderr, "usage: bench_index bandwidth|run|users|compare --key value ...\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
