// GFLOP/s of the lab step's matrix products (issue 28): for each product of a tower's Linear
// layers at batch B (forward x W^T, weight gradient dy^T x, input gradient dy W), one thread:
//   fp32       Eigen's product (what training.precision: fp32 ran before oneDNN's sgemm; what a
//              build without oneDNN runs);
//   sgemm      nn::MatMul, what training.precision: fp32 runs: oneDNN's sgemm;
//   bf16       nn::MatMulBf16, what training.precision: bf16 runs (rounding the fp32 operands
//              to bf16, then oneDNN's matmul);
//   onednn     oneDNN's bf16 matmul alone on operands already in bf16: its own peak at the shape.
// Prints one JSON line per product. usage: bench_bf16_products [--batch 256] [--reps 400]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "twotower/core/threads.h"
#include "twotower/nn/gemm.h"

using namespace twotower;

namespace {

template <typename F>
double MedianSeconds(int reps, const F& f) {
  std::vector<double> t;
  for (int r = 0; r < reps + 10; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    if (r >= 10) t.push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Product {
  const char* what;
  int m, k, n;
  bool trans_a, trans_b;
};

}  // namespace

int main(int argc, char** argv) {
  int batch = 256, reps = 400;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--batch") == 0) {
      batch = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--reps") == 0) {
      reps = std::atoi(argv[i + 1]);
    } else {
      return std::fprintf(stderr, "unknown flag %s\n", argv[i]), 2;
    }
  }
  const std::string why = nn::Bf16Unavailable();
  if (!why.empty()) return std::fprintf(stderr, "no bf16 here: %s\n", why.c_str()), 1;
  SetThreads(1);
  // The lab towers' second and third Linear layers (256 -> 128 and 128 -> 256 are the same
  // products transposed; the first layer's input is 9-12 wide and negligible).
  const std::vector<Product> products = {
      {"forward 256->128", batch, 256, 128, false, true},
      {"weight grad 256->128", 128, batch, 256, true, false},
      {"input grad 256->128", batch, 128, 256, false, false},
      {"forward 12->256", batch, 12, 256, false, true},
      {"weight grad 12->256", 256, batch, 12, true, false},
  };
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  for (const Product& p : products) {
    Matrix a = p.trans_a ? Matrix::Random(p.k, p.m) : Matrix::Random(p.m, p.k);
    Matrix b = p.trans_b ? Matrix::Random(p.n, p.k) : Matrix::Random(p.k, p.n);
    Matrix c(p.m, p.n);
    const double fp32 = MedianSeconds(reps, [&] {
      if (p.trans_a) {
        c.noalias() = a.transpose() * b;
      } else if (p.trans_b) {
        c.noalias() = a * b.transpose();
      } else {
        c.noalias() = a * b;
      }
    });
    const double sgemm =
        MedianSeconds(reps, [&] { nn::MatMul(a, p.trans_a, b, p.trans_b, false, c); });
    const double bf16 =
        MedianSeconds(reps, [&] { nn::MatMulBf16(a, p.trans_a, b, p.trans_b, false, c); });
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc ad(
        {p.m, p.k}, dt::bf16, p.trans_a ? dnnl::memory::dims{1, p.m} : dnnl::memory::dims{p.k, 1});
    const dnnl::memory::desc bd(
        {p.k, p.n}, dt::bf16, p.trans_b ? dnnl::memory::dims{1, p.k} : dnnl::memory::dims{p.n, 1});
    const dnnl::memory::desc cd({p.m, p.n}, dt::f32, dnnl::memory::dims{p.n, 1});
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd, cd), engine);
    const dnnl::matmul mm(pd);
    std::vector<uint16_t> abf(static_cast<size_t>(a.size())), bbf(static_cast<size_t>(b.size()));
    dnnl::memory am(ad, engine, abf.data()), bm(bd, engine, bbf.data()), cm(cd, engine, c.data());
    const double onednn = MedianSeconds(reps, [&] {
      mm.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      stream.wait();
    });
    const double flops = 2.0 * p.m * p.k * p.n;
    std::printf(
        "{\"product\": \"%s\", \"m\": %d, \"k\": %d, \"n\": %d, \"fp32_gflops\": %.1f, "
        "\"fp32_sgemm_gflops\": %.1f, "
        "\"bf16_gflops\": %.1f, \"onednn_bf16_gflops\": %.1f, \"onednn_impl\": \"%s\", "
        "\"bf16_engine\": \"%s\", \"fp32_engine\": \"%s\"}\n",
        p.what, p.m, p.k, p.n, flops / fp32 / 1e9, flops / sgemm / 1e9, flops / bf16 / 1e9,
        flops / onednn / 1e9, pd.impl_info_str(), nn::Bf16Engine().c_str(),
        nn::Fp32Engine().c_str());
  }
  return 0;
}
