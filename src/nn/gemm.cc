#include "twotower/nn/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "twotower/core/error.h"

#ifdef TWOTOWER_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace twotower::nn {

namespace {
std::atomic<uint64_t> g_products{0};
std::atomic<uint64_t> g_sgemm_products{0};
}  // namespace

uint64_t Bf16ProductsRun() { return g_products.load(std::memory_order_relaxed); }

uint64_t SgemmProductsRun() { return g_sgemm_products.load(std::memory_order_relaxed); }

const char* PrecisionName(Precision precision) {
  return precision == Precision::kBf16 ? "bf16" : "fp32";
}

namespace {

// Checks op(a) (m x k) op(b) (k x n) against c (m x n); returns false when there is nothing to
// multiply (m, n or k is 0, after clearing c when k is 0 and not accumulating).
bool CheckShapes(const char* who, const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b,
                 bool trans_b, bool accumulate, MatrixRef& c) {
  const int64_t m = trans_a ? a.cols() : a.rows();
  const int64_t k = trans_a ? a.rows() : a.cols();
  const int64_t kb = trans_b ? b.cols() : b.rows();
  const int64_t n = trans_b ? b.rows() : b.cols();
  if (k != kb || c.rows() != m || c.cols() != n) {
    throw Error(std::string(who) + ": op(a) is " + std::to_string(m) + " x " + std::to_string(k) +
                ", op(b) " + std::to_string(kb) + " x " + std::to_string(n) + ", c " +
                std::to_string(c.rows()) + " x " + std::to_string(c.cols()));
  }
  if (m == 0 || n == 0) return false;
  if (k == 0) {
    if (!accumulate) c.setZero();
    return false;
  }
  return true;
}

}  // namespace

void MatMul(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
            bool accumulate, MatrixRef c, Precision precision) {
  if (precision == Precision::kBf16) {
    MatMulBf16(a, trans_a, b, trans_b, accumulate, c);
  } else {
    MatMul(a, trans_a, b, trans_b, accumulate, c);
  }
}

#ifndef TWOTOWER_HAVE_DNNL

namespace {

void EigenProduct(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
                  bool accumulate, MatrixRef& c) {
  if (trans_a && trans_b) {
    if (accumulate) {
      c.noalias() += a.transpose() * b.transpose();
    } else {
      c.noalias() = a.transpose() * b.transpose();
    }
  } else if (trans_a) {
    if (accumulate) {
      c.noalias() += a.transpose() * b;
    } else {
      c.noalias() = a.transpose() * b;
    }
  } else if (trans_b) {
    if (accumulate) {
      c.noalias() += a * b.transpose();
    } else {
      c.noalias() = a * b.transpose();
    }
  } else if (accumulate) {
    c.noalias() += a * b;
  } else {
    c.noalias() = a * b;
  }
}

}  // namespace

void MatMul(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
            bool accumulate, MatrixRef c) {
  if (!CheckShapes("MatMul", a, trans_a, b, trans_b, accumulate, c)) return;
  EigenProduct(a, trans_a, b, trans_b, accumulate, c);
}

std::string Fp32Engine() { return "Eigen"; }

std::string Bf16Unavailable() {
  return "this build has no oneDNN (install Debian's libdnnl-dev and build again)";
}

std::string Bf16Engine() { return "none"; }

void MatMulBf16(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
                bool accumulate, MatrixRef c) {
  if (!CheckShapes("MatMulBf16", a, trans_a, b, trans_b, accumulate, c)) return;
  throw Error("bf16 matrix products: " + Bf16Unavailable());
}

#else

namespace {

bool HasIsa(dnnl::cpu_isa have, dnnl::cpu_isa want) {
  return (static_cast<unsigned>(have) & static_cast<unsigned>(want)) == static_cast<unsigned>(want);
}

// The operands' bf16 copies: round to nearest even on the upper 16 bits (what
// torch.Tensor.bfloat16 and vcvtneps2bf16 do); a NaN keeps a quiet NaN's pattern, which the
// rounding carry could otherwise turn into an infinity. A plain loop the compiler vectorises.
void ToBf16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, sizeof(u));
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    out[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : rounded);
  }
}

// A block's rows, packed: rows x cols bf16 values, row-major, no padding.
void PackBf16(const ConstMatrixRef& m, std::vector<uint16_t>* out) {
  const auto size = static_cast<size_t>(m.rows() * m.cols());
  if (out->size() < size) out->resize(size);
  if (m.outerStride() == m.cols()) {
    ToBf16(m.data(), m.rows() * m.cols(), out->data());
    return;
  }
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    ToBf16(m.data() + r * m.outerStride(), m.cols(), out->data() + r * m.cols());
  }
}

struct Shape {
  int64_t m, n, k, ldc;
  bool trans_a, trans_b, accumulate;
  bool operator==(const Shape&) const = default;
};

struct Cached {
  Shape shape;
  dnnl::matmul primitive;
  dnnl::memory a, b, c, scratch;
  size_t scratch_bytes = 0;
};

// One engine for the process (engines are thread-safe); streams, primitives and buffers per
// thread, so threads never share mutable oneDNN state.
const dnnl::engine& Engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct ThreadState {
  dnnl::stream stream{Engine()};
  std::vector<Cached> cache;
  std::vector<uint16_t> a, b;
  std::vector<uint8_t> scratch;
};

// Primitives for the shapes this thread has seen: a training run has a handful (each layer's
// forward and backward products, at the batch size and at the last batch's).
constexpr size_t kMaxCached = 256;

Cached& Lookup(ThreadState* state, const Shape& s) {
  for (Cached& c : state->cache) {
    if (c.shape == s) return c;
  }
  if (state->cache.size() >= kMaxCached) state->cache.clear();
  using dt = dnnl::memory::data_type;
  // Operands as stored (packed row-major); a transposed operand is described by its strides.
  const dnnl::memory::desc a({s.m, s.k}, dt::bf16,
                             s.trans_a ? dnnl::memory::dims{1, s.m} : dnnl::memory::dims{s.k, 1});
  const dnnl::memory::desc b({s.k, s.n}, dt::bf16,
                             s.trans_b ? dnnl::memory::dims{1, s.k} : dnnl::memory::dims{s.n, 1});
  const dnnl::memory::desc c({s.m, s.n}, dt::f32, dnnl::memory::dims{s.ldc, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (s.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, Engine());
  Cached entry{s,
               dnnl::matmul(pd),
               dnnl::memory(a, Engine(), DNNL_MEMORY_NONE),
               dnnl::memory(b, Engine(), DNNL_MEMORY_NONE),
               dnnl::memory(c, Engine(), DNNL_MEMORY_NONE),
               dnnl::memory(pd.scratchpad_desc(), Engine(), DNNL_MEMORY_NONE),
               pd.scratchpad_desc().get_size()};
  state->cache.push_back(std::move(entry));
  return state->cache.back();
}

// oneDNN's OpenMP runtime would start a team of omp_get_max_threads() threads from a thread
// that is not in a parallel region; callers already split the work (core/parallel.h), so each
// call runs on its own thread. The count is the calling thread's OpenMP setting, restored after.
class OneThread {
 public:
  OneThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved_); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int saved_;
};

}  // namespace

std::string Bf16Unavailable() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  if (HasIsa(isa, dnnl::cpu_isa::avx512_core_bf16)) return "";
  const char* limit = std::getenv("DNNL_MAX_CPU_ISA");
  if (limit != nullptr && *limit != '\0') {
    return std::string("with DNNL_MAX_CPU_ISA=") + limit +
           ", oneDNN may use neither AVX512_BF16 nor AMX-BF16 (unset it if this CPU has them, "
           "or use training.precision: fp32)";
  }
  return "this CPU has neither AVX512_BF16 nor AMX-BF16; use training.precision: fp32";
}

std::string Bf16Engine() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  if (HasIsa(isa, dnnl::cpu_isa::avx512_core_amx)) return "AMX";
  if (HasIsa(isa, dnnl::cpu_isa::avx512_core_bf16)) return "AVX512_BF16 (no AMX)";
  return "none";
}

std::string Fp32Engine() {
  const char* isa = "sse41";
  const dnnl::cpu_isa have = dnnl::get_effective_cpu_isa();
  if (HasIsa(have, dnnl::cpu_isa::avx512_core)) {
    isa = "avx512_core";
  } else if (HasIsa(have, dnnl::cpu_isa::avx2)) {
    isa = "avx2";
  } else if (HasIsa(have, dnnl::cpu_isa::avx)) {
    isa = "avx";
  }
  return std::string("oneDNN sgemm (") + isa + ")";
}

void MatMul(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
            bool accumulate, MatrixRef c) {
  if (!CheckShapes("MatMul", a, trans_a, b, trans_b, accumulate, c)) return;
  const int64_t m = c.rows(), n = c.cols(), k = trans_a ? a.rows() : a.cols();
  // Leading dimensions as BLAS checks them (at least the stored row's width): a block of one
  // row may report any outer stride.
  const int64_t lda = std::max<int64_t>(a.outerStride(), a.cols());
  const int64_t ldb = std::max<int64_t>(b.outerStride(), b.cols());
  const int64_t ldc = std::max<int64_t>(c.outerStride(), c.cols());
  OneThread one;
  g_sgemm_products.fetch_add(1, std::memory_order_relaxed);
  const dnnl_status_t status =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a.data(), lda, b.data(),
                 ldb, accumulate ? 1.0f : 0.0f, c.data(), ldc);
  if (status != dnnl_success) {
    throw Error("MatMul: oneDNN's sgemm failed (status " +
                std::to_string(static_cast<int>(status)) + ") for op(a) " + std::to_string(m) +
                " x " + std::to_string(k) + ", op(b) " + std::to_string(k) + " x " +
                std::to_string(n));
  }
}

void MatMulBf16(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
                bool accumulate, MatrixRef c) {
  if (!CheckShapes("MatMulBf16", a, trans_a, b, trans_b, accumulate, c)) return;
  const int64_t m = c.rows(), n = c.cols(), k = trans_a ? a.rows() : a.cols();
  static const std::string unavailable = Bf16Unavailable();
  if (!unavailable.empty()) throw Error("bf16 matrix products: " + unavailable);
  OneThread one;
  ThreadState* state_ptr = nullptr;
  Cached* found = nullptr;
  try {
    thread_local ThreadState thread_state;
    state_ptr = &thread_state;
    found = &Lookup(state_ptr, {m, n, k, c.outerStride(), trans_a, trans_b, accumulate});
  } catch (const dnnl::error& e) {
    throw Error("MatMulBf16: oneDNN cannot make a bf16 matmul for op(a) " + std::to_string(m) +
                " x " + std::to_string(k) + ", op(b) " + std::to_string(k) + " x " +
                std::to_string(n) + ": " + e.what());
  }
  ThreadState& state = *state_ptr;
  Cached& p = *found;
  PackBf16(a, &state.a);
  PackBf16(b, &state.b);
  if (state.scratch.size() < p.scratch_bytes) state.scratch.resize(p.scratch_bytes);
  p.a.set_data_handle(state.a.data());
  p.b.set_data_handle(state.b.data());
  p.c.set_data_handle(c.data());
  p.scratch.set_data_handle(state.scratch.data());
  // The C call, with the arguments on the stack (the C++ execute adds a map of its own; oneDNN
  // still builds its internal one).
  dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, p.a.get()},
                            {DNNL_ARG_WEIGHTS, p.b.get()},
                            {DNNL_ARG_DST, p.c.get()},
                            {DNNL_ARG_SCRATCHPAD, p.scratch.get()}};
  g_products.fetch_add(1, std::memory_order_relaxed);
  dnnl_status_t status = dnnl_primitive_execute(p.primitive.get(), state.stream.get(), 4, args);
  if (status == dnnl_success) status = dnnl_stream_wait(state.stream.get());
  if (status != dnnl_success) {
    throw Error("MatMulBf16: oneDNN's matmul failed (status " +
                std::to_string(static_cast<int>(status)) + ")");
  }
}

#endif  // TWOTOWER_HAVE_DNNL

}  // namespace twotower::nn
