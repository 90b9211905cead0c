// Sequential: a chain of layers run in order; a tower is one.
//
// Parameter names follow PyTorch's nn.Sequential: "<index>.weight", so a chain
// Linear, ReLU, Dropout, Linear names its parameters "0.weight", "0.bias", "3.weight", "3.bias";
// a fused layer counts as the modules it stands for (Linear, ReLUDropout, Linear names the same).
// Thread-safety as Layer: Infer is const and safe from many threads; Forward/Backward use a
// caller-owned SequentialContext.
#ifndef TWOTOWER_NN_MLP_H_
#define TWOTOWER_NN_MLP_H_

#include <memory>
#include <string>
#include <vector>

#include "twotower/nn/layer.h"

namespace twotower::nn {

struct SequentialContext {
  std::vector<Context> layers;
  // grads[j]: the gradient w.r.t. layer j's input. One buffer per layer, each keeping its shape
  // from step to step, so the backward pass allocates nothing at a fixed batch size.
  std::vector<Matrix> grads;
};

struct NamedParameter {
  std::string name;
  Parameter* parameter;
};

class Sequential {
 public:
  Sequential() = default;
  // Appends a layer; its in_dim must equal the previous layer's out_dim.
  void Add(std::unique_ptr<Layer> layer);

  void Infer(const Matrix& x, Matrix* y) const;
  const Matrix& Forward(const Matrix& x, SequentialContext* ctx, Rng* rng);
  // dy: gradient w.r.t. the last Forward's output. dx may be null (first tower layer).
  void Backward(SequentialContext* ctx, const Matrix& dy, Matrix* dx);

  // Parameters with PyTorch-style names prefixed by `prefix` (e.g. "user_tower.layers.").
  std::vector<NamedParameter> NamedParameters(const std::string& prefix);
  std::vector<Parameter*> Parameters();

  int in_dim() const { return layers_.empty() ? 0 : layers_.front()->in_dim(); }
  int out_dim() const { return layers_.empty() ? 0 : layers_.back()->out_dim(); }
  size_t size() const { return layers_.size(); }
  Layer& layer(size_t i) { return *layers_[i]; }
  const Layer& layer(size_t i) const { return *layers_[i]; }
  // Every layer's Layer::set_precision (nn/gemm.h).
  void set_precision(Precision precision) {
    for (auto& layer : layers_) layer->set_precision(precision);
  }
  // "Linear(12->256) ReLU Dropout(0.3) ..."
  std::string Describe() const;

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
};

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_MLP_H_
