// CrossNetwork: the cross network of DCN-v2 (Wang et al., "DCN V2: Improved Deep & Cross Network
// and Practical Lessons for Web-scale Learning to Rank Systems", WWW 2021, eq. (1)):
//
//   x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l,      l = 0 .. L-1,   W_l: d x d,  b_l: d
//
// Each layer raises the degree of the explicit feature crosses by one (after L layers the output
// holds polynomial crosses of x_0 up to degree L + 1), and the residual keeps the lower ones.
// W_l is full rank (the paper's DCN-V2, not its low-rank mixture). With L = 0 the network is the
// identity. Shapes: x_0 and the output are n x d, row-major, one example per row.
//
// Not a Layer: the cross needs x_0 in every layer, so it keeps every layer's input in its own
// CrossContext, owned by the caller, and reused at a fixed batch size without allocating.
// Parameter names follow a PyTorch `nn.ModuleList([nn.Linear(d, d)] * L)` named "cross":
// "<prefix><l>.weight" (d x d, PyTorch's [out, in]) and "<prefix><l>.bias" (1 x d).
// Thread-safety: Infer is const and safe from many threads; Forward / Backward need exclusive
// use of the gradients.
#ifndef TWOTOWER_NN_CROSS_H_
#define TWOTOWER_NN_CROSS_H_

#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/nn/layer.h"
#include "twotower/nn/mlp.h"

namespace twotower::nn {

struct CrossContext {
  const Matrix* x0 = nullptr;  // Forward's input; must outlive Backward
  std::vector<Matrix> xs;      // x_1 .. x_L, n x d each (x_L is the output)
  std::vector<Matrix> zs;      // z_l = x_l W_l^T + b_l, n x d each
  Matrix g, t;                 // Backward's d loss / d x_l and d loss / d z_l
};

class CrossNetwork {
 public:
  CrossNetwork() = default;
  // L = layers cross layers of width dim, weights zero until initialised. Throws Error for
  // dim < 1 or layers < 0.
  CrossNetwork(int dim, int layers);
  // PyTorch's nn.Linear default: W and b uniform in +-1/sqrt(dim).
  void InitPyTorchDefault(Rng* rng);

  // y = x_L for x_0 = x (n x dim). Throws Error for a width other than dim.
  void Infer(const Matrix& x, Matrix* y) const;
  // Training forward; returns x_L (x itself when L = 0). x must outlive Backward.
  const Matrix& Forward(const Matrix& x, CrossContext* ctx);
  // dy: n x dim, d loss / d x_L. Adds into every W_l and b_l gradient and writes d loss / d x_0
  // into *dx (n x dim). Throws Error before Forward or for a mis-shaped dy.
  void Backward(CrossContext* ctx, const Matrix& dy, Matrix* dx);

  std::vector<NamedParameter> NamedParameters(const std::string& prefix);
  std::vector<Parameter*> Parameters();
  int dim() const { return dim_; }
  int layers() const { return static_cast<int>(weights_.size()); }
  // "Cross(110, 2 layers)"
  std::string Describe() const;
  // The precision of Forward's and Backward's products x_l W_l^T (nn/gemm.h); Infer is fp32.
  void set_precision(Precision precision) { precision_ = precision; }

 private:
  int dim_ = 0;
  Precision precision_ = Precision::kFp32;
  std::vector<Parameter> weights_, biases_;
};

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_CROSS_H_
