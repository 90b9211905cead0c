// Matrix products in bf16 for training (issue 28, `training.precision: bf16`).
//
// The scheme is the usual mixed precision of bf16 training (Kalamkar et al., "A Study of BFLOAT16
// for Deep Learning Training", arXiv:1905.12322; PyTorch's CPU autocast): the two operands of a
// product are rounded to bfloat16 (8 significand bits, round to nearest even, as
// torch.Tensor.bfloat16), the products are accumulated in fp32 and the result is fp32. Master
// weights, Adam's state, softmax, normalisation and the loss stay fp32; the callers decide which
// products take this path (nn::Linear and nn::CrossNetwork in training, the in-batch and sampled
// softmax logits and their gradients) and keep fp32 otherwise.
//
// The products run in oneDNN's matmul primitive (Debian's libdnnl-dev): AMX tiles where the CPU
// and the kernel allow them (`amx_bf16`), AVX-512 `vdpbf16ps` otherwise. Each call runs on the
// calling thread only (callers split the work by rows with core/parallel.h, as their fp32
// products). Primitives are cached per thread and shape, and the bf16 copies of the operands
// and oneDNN's scratch space live in per-thread buffers that only grow, so once every thread has
// met every shape a step allocates nothing the size of a matrix. oneDNN's execute itself still
// builds a small argument map per call (6-7 blocks of tens of bytes, inside the library; no
// public API of oneDNN 2.6 avoids it): tests/train/step_allocation_test.cc bounds those.
#ifndef TWOTOWER_NN_GEMM_H_
#define TWOTOWER_NN_GEMM_H_

#include <cstdint>
#include <string>

#include "twotower/core/matrix.h"

namespace twotower::nn {

// The precision of a layer's training products. Inference (Layer::Infer, serving, evaluation)
// is always fp32.
enum class Precision { kFp32, kBf16 };

// "fp32" | "bf16".
const char* PrecisionName(Precision precision);

// Empty when this process can run bf16 products; otherwise why not, naming what is missing:
// a build without oneDNN, or a CPU with neither AVX512_BF16 nor AMX-BF16 (as oneDNN detects it
// at run time; DNNL_MAX_CPU_ISA lowers what it may use).
std::string Bf16Unavailable();

// What oneDNN runs bf16 products with here, for logs: "AMX", "AVX512_BF16 (no AMX)", or "none".
std::string Bf16Engine();

// Row-major blocks with unit inner stride (a matrix, or rows / columns of one).
using ConstMatrixRef = Eigen::Ref<const Matrix, 0, Eigen::OuterStride<>>;
using MatrixRef = Eigen::Ref<Matrix, 0, Eigen::OuterStride<>>;

// c = op(a) op(b), or c += op(a) op(b) with `accumulate`, where op(x) is x^T when its flag is
// set. Shapes: op(a) m x k, op(b) k x n, c m x n (already sized; its stride may exceed n).
// a and b are rounded to bf16 (round to nearest even; NaN stays NaN), c is computed in fp32.
// Throws Error on a shape mismatch, and when Bf16Unavailable() is not empty (with its text).
// Thread-safe: every thread has its own primitives and buffers.
void MatMulBf16(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
                bool accumulate, MatrixRef c);

// c = op(a) op(b), or c += op(a) op(b) with `accumulate`, in fp32: the same shapes as
// MatMulBf16. With oneDNN in the build this is its sgemm (dnnl_sgemm, row-major BLAS semantics:
// beta = 0 never reads c, so a NaN in c before a plain product does not leak), whose JIT kernels
// are chosen at run time for the widest ISA of this CPU (AVX-512, AVX2, SSE4.1), so a portable
// build (TWOTOWER_NATIVE=OFF) computes its training products as fast as a native one, and
// faster than Eigen's own product at the towers' shapes (BENCHMARKS.md, "Portable build"). It
// runs on the calling thread only; the result depends on the shapes only, never on the thread
// count. Allocation: for most shapes oneDNN's sgemm packs the operands into one aligned buffer
// that it allocates (posix_memalign) and frees within the call; nothing else, and nothing kept
// (tests/train/step_allocation_test.cc bounds it at one aligned block per product). Without
// oneDNN, Eigen's product, which allocates nothing.
// Throws Error on a shape mismatch.
void MatMul(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
            bool accumulate, MatrixRef c);

// MatMul or MatMulBf16, by `precision`.
void MatMul(const ConstMatrixRef& a, bool trans_a, const ConstMatrixRef& b, bool trans_b,
            bool accumulate, MatrixRef c, Precision precision);

// What computes fp32 products here, for logs: "oneDNN sgemm (avx512_core)" (the ISA oneDNN
// picked for this CPU) or "Eigen".
std::string Fp32Engine();

// How many products MatMulBf16 has sent to oneDNN since the process started (tests).
uint64_t Bf16ProductsRun();

// How many fp32 products MatMul has sent to oneDNN's sgemm since the process started (tests;
// always 0 in a build without oneDNN).
uint64_t SgemmProductsRun();

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_GEMM_H_
