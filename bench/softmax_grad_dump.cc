// One training step's loss and gradients for the PyTorch parity checks: the in-batch softmax
// (bench/reference/check_softmax.py) and the sampled objectives (check_sampled.py).
// Both modes load MODEL and its encoder, encode USERS.csv and ITEMS.csv, take the batch of
// (user row, item row) pairs from PAIRS.npy (2 x n float32), run the trainer's path
// (ForwardTowers, the loss, BackwardTowers) with dropout off and write the gradients,
// PyTorch-named, to OUT.safetensors (the loss in its metadata).
//   bench_softmax_grad_dump MODEL USERS ITEMS PAIRS LOGQ TEMPERATURE OUT
//     InBatchSoftmaxLoss; LOGQ.npy: log q per item (1 x items; 1 x 0 for none).
//   bench_softmax_grad_dump --sampled MODEL USERS ITEMS PAIRS NEGATIVES Q OUT LOSS SAMPLER HARD
//                           TEMPERATURE MARGIN
//     SampledLoss; NEGATIVES.npy: the drawn negatives' item rows (1 x m; 1 x 0 for none), encoded
//     after the batch's items; Q.npy: sampling probability per item (1 x items); LOSS
//     softmax|bpr|triplet, SAMPLER in_batch|uniform|popularity|mixed.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "twotower/core/error.h"
#include "twotower/data/csv.h"
#include "twotower/data/npy.h"
#include "twotower/model/model_file.h"
#include "twotower/model/safetensors.h"
#include "twotower/train/loss.h"

using namespace twotower;

namespace {

struct Net {
  std::unique_ptr<model::TwoTowerModel> net;
  data::EncodedTable users, items;
};

// The model's weights in a fresh network without dropout, and the encoded tables.
Net Load(const char* model_path, const char* users, const char* items) {
  model::LoadedModel loaded = model::LoadModel(model_path);
  model::ModelConfig config = loaded.model->config();
  config.dropout = 0.0;
  Rng rng(0);
  Net n;
  n.net = std::make_unique<model::TwoTowerModel>(config, loaded.encoder, &rng);
  auto src = loaded.model->NamedTensors();
  auto dst = n.net->NamedTensors();
  for (size_t i = 0; i < dst.size(); ++i) dst[i].parameter->value = src[i].parameter->value;
  loaded.encoder.user.Encode(data::ReadTable(users), &n.users);
  loaded.encoder.item.Encode(data::ReadTable(items), &n.items);
  return n;
}

// Backward from the loss's gradients; writes every tower gradient (not the scorer's: these
// losses do not use it) and the loss.
void Backward(Net& n, model::ModelContext* ctx, const train::LossOutput& out, const char* path) {
  auto dst = n.net->NamedTensors();
  for (auto& t : dst) t.parameter->grad.setZero();
  n.net->BackwardTowers(ctx, out.du, out.dv);
  model::SafetensorsFile file;
  for (auto& t : dst) {
    if (t.name.rfind("scorer.", 0) == 0) continue;
    model::Tensor tensor;
    const Matrix& g = t.parameter->grad;
    tensor.shape = {g.rows(), g.cols()};
    tensor.data.assign(g.data(), g.data() + g.size());
    file.tensors[t.name] = tensor;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", out.loss);
  file.metadata["loss"] = buf;
  model::WriteSafetensors(path, file);
  std::printf("loss %.9g\n", out.loss);
}

void Rows(const Matrix& pairs, std::vector<int32_t>* users, std::vector<int32_t>* items) {
  for (int64_t i = 0; i < pairs.cols(); ++i) {
    users->push_back(static_cast<int32_t>(pairs(0, i)));
    items->push_back(static_cast<int32_t>(pairs(1, i)));
  }
}

int Softmax(char** a) {
  Net n = Load(a[1], a[2], a[3]);
  const Matrix pairs = data::ReadNpy(a[4]);
  const Matrix log_q = data::ReadNpy(a[5]);
  std::vector<int32_t> user_rows, item_rows;
  Rows(pairs, &user_rows, &item_rows);
  const int64_t count = pairs.cols();
  model::ModelContext ctx;
  n.net->ForwardTowers(n.users, user_rows.data(), n.items, item_rows.data(), count, &ctx, nullptr);
  train::SoftmaxOptions options;
  options.temperature = std::stod(a[6]);
  options.log_q.assign(log_q.data(), log_q.data() + log_q.size());
  train::InBatchSoftmaxLoss loss(options);
  train::LossBatch batch;
  batch.u = &model::TwoTowerModel::user_output(ctx);
  batch.v = &model::TwoTowerModel::item_output(ctx);
  batch.item_rows = item_rows.data();
  train::LossOutput out;
  loss.Compute(batch, &out);
  Backward(n, &ctx, out, a[7]);
  return 0;
}

int Sampled(char** a) {
  Net n = Load(a[1], a[2], a[3]);
  const Matrix pairs = data::ReadNpy(a[4]);
  const Matrix negatives = data::ReadNpy(a[5]);
  const Matrix q = data::ReadNpy(a[6]);
  std::vector<int32_t> user_rows, item_rows;
  Rows(pairs, &user_rows, &item_rows);
  const int64_t count = pairs.cols(), m = negatives.size();
  for (int64_t j = 0; j < m; ++j) item_rows.push_back(static_cast<int32_t>(negatives.data()[j]));
  train::SampledLossOptions o;
  const std::string loss_name = a[8], sampler = a[9];
  o.objective = loss_name == "bpr"       ? train::Objective::kBpr
                : loss_name == "triplet" ? train::Objective::kTriplet
                                         : train::Objective::kSoftmax;
  o.sampler = sampler == "uniform"      ? train::Sampler::kUniform
              : sampler == "popularity" ? train::Sampler::kPopularity
              : sampler == "mixed"      ? train::Sampler::kMixed
                                        : train::Sampler::kInBatch;
  o.num_sampled = static_cast<int>(m);
  o.num_hard_negatives = std::stoi(a[10]);
  o.temperature = std::stod(a[11]);
  o.margin = std::stod(a[12]);
  o.num_easy_negatives = std::stoi(a[13]);
  o.num_items = n.items.rows();
  o.item_probability.assign(q.data(), q.data() + q.size());
  train::SampledLoss loss(o);
  model::ModelContext ctx;
  n.net->ForwardTowers(n.users, user_rows.data(), count, n.items, item_rows.data(), count + m, &ctx,
                       nullptr);
  train::LossBatch batch;
  batch.u = &model::TwoTowerModel::user_output(ctx);
  batch.v = &model::TwoTowerModel::item_output(ctx);
  batch.item_rows = item_rows.data();
  batch.user_rows = user_rows.data();
  batch.seed = std::stoull(a[14]);
  train::LossOutput out;
  loss.Compute(batch, &out);
  Backward(n, &ctx, out, a[7]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool sampled = argc > 1 && std::strcmp(argv[1], "--sampled") == 0;
  if ((!sampled && argc != 8) || (sampled && argc != 16)) {
    return std::fprintf(stderr,
                        "usage: %s MODEL USERS ITEMS PAIRS LOGQ TEMPERATURE OUT\n"
                        "       %s --sampled MODEL USERS ITEMS PAIRS NEGATIVES Q OUT LOSS SAMPLER "
                        "HARD TEMPERATURE MARGIN EASY SEED\n",
                        argv[0], argv[0]),
           2;
  }
  try {
    return sampled ? Sampled(argv + 1) : Softmax(argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
