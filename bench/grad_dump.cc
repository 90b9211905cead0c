// One training step's loss and gradients for the PyTorch parity check (bench/reference/
// check_gradients.py). Loads MODEL, takes a batch from the .npy files (user features, item
// features, labels as a 1 x n or n x 1 float32 array), runs forward/backward with dropout off
// and writes the gradients, PyTorch-named, to OUT.safetensors (loss in __metadata__). With
// PRECISION bf16 the towers' products run as `training.precision: bf16` does (nn/gemm.h;
// bench/reference/check_bf16.py).
// usage: bench_grad_dump MODEL XU.npy XI.npy Y.npy OUT.safetensors [fp32|bf16]
#include <cstdio>
#include <string>

#include "twotower/core/error.h"
#include "twotower/data/npy.h"
#include "twotower/model/model_file.h"
#include "twotower/model/safetensors.h"
#include "twotower/train/loss.h"

using namespace twotower;

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    return std::fprintf(stderr, "usage: %s MODEL XU XI Y OUT [fp32|bf16]\n", argv[0]), 2;
  }
  const std::string precision = argc == 7 ? argv[6] : "fp32";
  if (precision != "fp32" && precision != "bf16") {
    return std::fprintf(stderr, "precision: expected fp32 or bf16, got %s\n", argv[6]), 2;
  }
  try {
    model::LoadedModel loaded = model::LoadModel(argv[1]);
    model::ModelConfig config = loaded.model->config();
    config.dropout = 0.0;
    Rng rng(0);
    model::TwoTowerModel net(config, loaded.model->user_input_dim(), loaded.model->item_input_dim(),
                             &rng);
    auto src = loaded.model->NamedTensors();
    auto dst = net.NamedTensors();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].parameter->value = src[i].parameter->value;
    if (precision == "bf16") net.set_training_precision(nn::Precision::kBf16);
    const Matrix xu = data::ReadNpy(argv[2]), xi = data::ReadNpy(argv[3]),
                 y = data::ReadNpy(argv[4]);
    model::ModelContext ctx;
    Vector dz;
    const Vector& z = net.Forward(xu, xi, &ctx, &rng);
    const double loss = train::BinaryCrossEntropyWithLogits(z, y.data(), &dz);
    for (auto& t : dst) t.parameter->grad.setZero();
    net.Backward(&ctx, dz);
    model::SafetensorsFile out;
    for (auto& t : dst) {
      model::Tensor tensor;
      const Matrix& g = t.parameter->grad;
      tensor.shape = {g.rows(), g.cols()};
      tensor.data.assign(g.data(), g.data() + g.size());
      out.tensors[t.name] = tensor;
    }
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.9g", loss);
    out.metadata["loss"] = buf;
    model::WriteSafetensors(argv[5], out);
    std::printf("loss %.9g\n", loss);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
