// One in-batch softmax step's loss and gradients for the PyTorch parity check (bench/reference/
// check_softmax.py). Loads MODEL and its encoder, encodes USERS.csv and ITEMS.csv, takes the batch
// of (user row, item row) pairs from PAIRS.npy (2 x n float32) and log q from LOGQ.npy (1 x items;
// an empty 1 x 0 array for none), runs Trainer's path (ForwardTowers, InBatchSoftmaxLoss,
// BackwardTowers) with dropout off and writes the gradients, PyTorch-named, to OUT.safetensors.
// usage: bench_softmax_grad_dump MODEL USERS.csv ITEMS.csv PAIRS.npy LOGQ.npy TEMPERATURE OUT
#include <cstdio>
#include <string>

#include "twotower/core/error.h"
#include "twotower/data/csv.h"
#include "twotower/data/npy.h"
#include "twotower/model/model_file.h"
#include "twotower/model/safetensors.h"
#include "twotower/train/loss.h"

using namespace twotower;

int main(int argc, char** argv) {
  if (argc != 8) {
    return std::fprintf(stderr, "usage: %s MODEL USERS ITEMS PAIRS LOGQ TEMPERATURE OUT\n",
                        argv[0]),
           2;
  }
  try {
    model::LoadedModel loaded = model::LoadModel(argv[1]);
    model::ModelConfig config = loaded.model->config();
    config.dropout = 0.0;
    Rng rng(0);
    model::TwoTowerModel net(config, loaded.encoder, &rng);
    auto src = loaded.model->NamedTensors();
    auto dst = net.NamedTensors();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].parameter->value = src[i].parameter->value;
    data::EncodedTable users, items;
    loaded.encoder.user.Encode(data::ReadTable(argv[2]), &users);
    loaded.encoder.item.Encode(data::ReadTable(argv[3]), &items);
    const Matrix pairs = data::ReadNpy(argv[4]);
    const Matrix log_q = data::ReadNpy(argv[5]);
    const int64_t n = pairs.cols();
    std::vector<int32_t> user_rows(n), item_rows(n);
    for (int64_t i = 0; i < n; ++i) {
      user_rows[i] = static_cast<int32_t>(pairs(0, i));
      item_rows[i] = static_cast<int32_t>(pairs(1, i));
    }
    model::ModelContext ctx;
    net.ForwardTowers(users, user_rows.data(), items, item_rows.data(), n, &ctx, nullptr);
    train::SoftmaxOptions options;
    options.temperature = std::stod(argv[6]);
    options.log_q.assign(log_q.data(), log_q.data() + log_q.size());
    train::InBatchSoftmaxLoss loss(options);
    train::LossBatch batch;
    batch.u = &model::TwoTowerModel::user_output(ctx);
    batch.v = &model::TwoTowerModel::item_output(ctx);
    batch.item_rows = item_rows.data();
    train::LossOutput out;
    loss.Compute(batch, &out);
    for (auto& t : dst) t.parameter->grad.setZero();
    net.BackwardTowers(&ctx, out.du, out.dv);
    model::SafetensorsFile file;
    for (auto& t : dst) {
      if (t.name.rfind("scorer.", 0) == 0) continue;  // the softmax loss does not use the scorer
      model::Tensor tensor;
      const Matrix& g = t.parameter->grad;
      tensor.shape = {g.rows(), g.cols()};
      tensor.data.assign(g.data(), g.data() + g.size());
      file.tensors[t.name] = tensor;
    }
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.9g", out.loss);
    file.metadata["loss"] = buf;
    model::WriteSafetensors(argv[7], file);
    std::printf("loss %.9g\n", out.loss);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
