// Layer: the building block of a tower (after tiny-cuda-nn's object.h).
//
// Infer(x) const serves; Forward(x, ctx) and Backward(ctx, dy) train. Everything Backward needs
// lives in a Context owned by the caller, never in the layer, so one model is shared safely by
// any number of serving threads, and two forward passes never clobber each other's state.
// Shapes: x is n x in_dim(), y is n x out_dim(), row-major (one example per row).
// Parameters are {value, grad} pairs; Backward *adds* into grad; zeroing is an explicit call
// (ZeroGrad). Public methods are non-virtual: they check shapes, then call the *Impl hooks.
// Buffers in a Context are resized only when the batch shape changes, so a training step at a
// fixed batch size allocates nothing.
#ifndef TWOTOWER_NN_LAYER_H_
#define TWOTOWER_NN_LAYER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/nn/gemm.h"

namespace twotower::nn {

struct Parameter {
  std::string name;  // relative to the owning layer, e.g. "weight"
  Matrix value;
  Matrix grad;  // same shape as value
  // An embedding table: its gradient is nonzero only in touched_rows (rows added by Backward
  // since the last ZeroGrad, possibly repeated), and ZeroGrad clears only those rows.
  bool sparse = false;
  std::vector<int32_t> touched_rows;
};

// Per-call training state of one layer.
struct Context {
  const Matrix* x = nullptr;  // the input of Forward; must outlive Backward
  Matrix y;                   // the output of Forward
  Matrix aux;                 // layer-specific: dropout mask, row norms, ...
};

class Layer {
 public:
  Layer(int in_dim, int out_dim) : in_dim_(in_dim), out_dim_(out_dim) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  // y = f(x) in inference mode (dropout off). Throws Error on a shape mismatch.
  void Infer(const Matrix& x, Matrix* y) const;
  // Training-mode forward; returns ctx->y. `rng` drives dropout (may be null for other layers).
  const Matrix& Forward(const Matrix& x, Context* ctx, Rng* rng);
  // dy: n x out_dim(), the loss gradient w.r.t. ctx.y. Adds parameter gradients; writes the
  // gradient w.r.t. the input into *dx (n x in_dim()) unless dx is null.
  void Backward(const Context& ctx, const Matrix& dy, Matrix* dx);

  virtual std::vector<Parameter*> Parameters() { return {}; }
  virtual std::string TypeName() const = 0;
  // How many PyTorch modules this layer stands for (a fused layer stands for several), so
  // Sequential can name parameters with PyTorch's nn.Sequential indices.
  virtual int TorchModuleCount() const { return 1; }
  int in_dim() const { return in_dim_; }
  int out_dim() const { return out_dim_; }
  // The precision of Forward's and Backward's matrix products (nn/gemm.h); Infer is always
  // fp32. Layers without products ignore it.
  void set_precision(Precision precision) { precision_ = precision; }
  Precision precision() const { return precision_; }

 protected:
  virtual void InferImpl(const Matrix& x, Matrix* y) const = 0;
  virtual void ForwardImpl(const Matrix& x, Context* ctx, Rng* rng);
  virtual void BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) = 0;

 private:
  int in_dim_;
  int out_dim_;
  Precision precision_ = Precision::kFp32;
};

// y = x W^T + b, W: out x in (PyTorch's layout), b: 1 x out.
class Linear : public Layer {
 public:
  Linear(int in_dim, int out_dim);
  // PyTorch's default initialisation: W and b uniform in +-1/sqrt(in_dim).
  void InitPyTorchDefault(Rng* rng);
  std::vector<Parameter*> Parameters() override { return {&weight_, &bias_}; }
  std::string TypeName() const override { return "Linear"; }
  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  const Parameter& weight() const { return weight_; }
  const Parameter& bias() const { return bias_; }

 protected:
  void InferImpl(const Matrix& x, Matrix* y) const override;
  // fp32: InferImpl. bf16: the same product with x and W rounded to bf16 (nn/gemm.h).
  void ForwardImpl(const Matrix& x, Context* ctx, Rng* rng) override;
  void BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) override;

 private:
  Parameter weight_;
  Parameter bias_;
};

class ReLU : public Layer {
 public:
  explicit ReLU(int dim) : Layer(dim, dim) {}
  std::string TypeName() const override { return "ReLU"; }

 protected:
  void InferImpl(const Matrix& x, Matrix* y) const override;
  void BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) override;
};

// Inverted dropout: in training each value is zeroed with probability p and the rest are scaled
// by 1 / (1 - p); inference is the identity.
class Dropout : public Layer {
 public:
  Dropout(int dim, float p);
  std::string TypeName() const override { return "Dropout"; }
  float p() const { return p_; }

 protected:
  void InferImpl(const Matrix& x, Matrix* y) const override;
  void ForwardImpl(const Matrix& x, Context* ctx, Rng* rng) override;
  void BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) override;

 private:
  float p_;
};

// ReLU followed by Dropout(p) in one pass: y = max(x, 0) * mask. Exactly the composition
// Dropout(ReLU(x)) (the same generator gives the same mask), with one elementwise pass forward and
// one backward instead of two each: the towers use it between their Linear layers.
class ReLUDropout : public Layer {
 public:
  ReLUDropout(int dim, float p);
  std::string TypeName() const override { return "ReLUDropout"; }
  int TorchModuleCount() const override { return 2; }
  float p() const { return p_; }

 protected:
  void InferImpl(const Matrix& x, Matrix* y) const override;
  void ForwardImpl(const Matrix& x, Context* ctx, Rng* rng) override;
  void BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) override;

 private:
  float p_;
};

// Row-wise y = x / max(||x||, eps), as torch.nn.functional.normalize (eps = 1e-12).
class L2Normalize : public Layer {
 public:
  explicit L2Normalize(int dim) : Layer(dim, dim) {}
  std::string TypeName() const override { return "L2Normalize"; }

 protected:
  void InferImpl(const Matrix& x, Matrix* y) const override;
  void ForwardImpl(const Matrix& x, Context* ctx, Rng* rng) override;
  void BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) override;
};

// Sets every parameter's gradient to zero (a sparse parameter's touched rows only).
void ZeroGrad(const std::vector<Parameter*>& params);

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_LAYER_H_
