// This machine's single-precision matrix-product rate through Eigen (the engine's GEMM), for
// reference in BENCHMARKS.md: median GFLOP/s of C = A * B at n x n x n.
// usage: bench_sgemm_peak [--n 1024] [--threads 1] [--repeats 15]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/threads.h"

int main(int argc, char** argv) {
  int n = 1024, threads = 1, repeats = 15;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--n")
      n = std::atoi(argv[i + 1]);
    else if (k == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (k == "--repeats")
      repeats = std::atoi(argv[i + 1]);
    else
      return std::fprintf(stderr, "unknown flag %s\n", k.c_str()), 2;
  }
  twotower::SetThreads(threads);
  const twotower::Matrix a = twotower::Matrix::Random(n, n), b = twotower::Matrix::Random(n, n);
  twotower::Matrix c(n, n);
  std::vector<double> t;
  for (int r = 0; r < repeats + 2; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    c.noalias() = a * b;
    const auto t1 = std::chrono::steady_clock::now();
    if (r >= 2) t.push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  std::sort(t.begin(), t.end());
  std::printf("{\"engine\": \"eigen\", \"n\": %d, \"threads\": %d, \"gflops\": %.1f}\n", n, threads,
              2.0 * n * n * n / t[t.size() / 2] / 1e9);
  return c(0, 0) == 12345.0f;  // keep the product alive
}
