#include "twotower/nn/mlp.h"

#include <cstdio>

#include "twotower/core/error.h"

namespace twotower::nn {

void Sequential::Add(std::unique_ptr<Layer> layer) {
  if (!layers_.empty() && layers_.back()->out_dim() != layer->in_dim()) {
    throw Error("Sequential: layer " + layer->TypeName() + " expects " +
                std::to_string(layer->in_dim()) + " inputs but the previous layer gives " +
                std::to_string(layers_.back()->out_dim()));
  }
  layers_.push_back(std::move(layer));
}

void Sequential::Infer(const Matrix& x, Matrix* y) const {
  if (layers_.empty()) {
    *y = x;
    return;
  }
  Matrix a, b;
  const Matrix* in = &x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Matrix* out = (i + 1 == layers_.size()) ? y : (i % 2 == 0 ? &a : &b);
    layers_[i]->Infer(*in, out);
    in = out;
  }
}

const Matrix& Sequential::Forward(const Matrix& x, SequentialContext* ctx, Rng* rng) {
  ctx->layers.resize(layers_.size());
  const Matrix* in = &x;
  for (size_t i = 0; i < layers_.size(); ++i) in = &layers_[i]->Forward(*in, &ctx->layers[i], rng);
  return *in;
}

void Sequential::Backward(SequentialContext* ctx, const Matrix& dy, Matrix* dx) {
  ctx->grads.resize(layers_.size());
  const Matrix* grad = &dy;
  for (size_t j = layers_.size(); j-- > 0;) {
    Matrix* out = j > 0 ? &ctx->grads[j] : dx;
    layers_[j]->Backward(ctx->layers[j], *grad, out);
    grad = out;
  }
}

std::vector<NamedParameter> Sequential::NamedParameters(const std::string& prefix) {
  std::vector<NamedParameter> out;
  int torch_index = 0;
  for (const auto& layer : layers_) {
    for (Parameter* p : layer->Parameters()) {
      out.push_back({prefix + std::to_string(torch_index) + "." + p->name, p});
    }
    torch_index += layer->TorchModuleCount();
  }
  return out;
}

std::vector<Parameter*> Sequential::Parameters() {
  std::vector<Parameter*> out;
  for (auto& layer : layers_) {
    for (Parameter* p : layer->Parameters()) out.push_back(p);
  }
  return out;
}

std::string Sequential::Describe() const {
  std::string out;
  for (const auto& layer : layers_) {
    if (!out.empty()) out += " -> ";
    if (layer->TypeName() == "Linear") {
      out += "Linear(" + std::to_string(layer->in_dim()) + "->" + std::to_string(layer->out_dim()) +
             ")";
    } else if (const auto* f = dynamic_cast<const ReLUDropout*>(layer.get())) {
      char buf[48];
      std::snprintf(buf, sizeof(buf), "ReLU -> Dropout(%.2g)", f->p());
      out += buf;
    } else if (const auto* d = dynamic_cast<const Dropout*>(layer.get())) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "Dropout(%.2g)", d->p());
      out += buf;
    } else {
      out += layer->TypeName();
    }
  }
  return out;
}

}  // namespace twotower::nn
