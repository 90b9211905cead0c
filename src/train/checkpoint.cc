// Training checkpoints (checkpoint.h): a safetensors file (model/safetensors.h) whose tensors are
// the weights, Adam's moments and the best weights, and whose __metadata__ holds the rest as text.
#include "train/checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"
#include "twotower/core/json.h"
#include "twotower/model/safetensors.h"

namespace twotower::train {

namespace {

// Doubles as C99 hex floats ("%a"): exact, and NaN ("nan") survives, which JSON numbers cannot.
std::string HexDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%a", v);
  return buf;
}

double ParseHexDouble(const nlohmann::json& j, const std::string& where) {
  if (!j.is_string()) throw Error(where + ": expected a hex-float string");
  const std::string text = j.get<std::string>();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) {
    throw Error(where + ": " + Quote(text) + " is not a number");
  }
  return v;
}

// The per-K series of a RankingMetrics, by their names in a checkpoint's history.
constexpr std::pair<const char*, std::vector<double> RankingMetrics::*> kRankingSeries[] = {
    {"recall", &RankingMetrics::recall},
    {"ndcg", &RankingMetrics::ndcg},
    {"hit_rate", &RankingMetrics::hit_rate},
    {"mrr", &RankingMetrics::mrr},
    {"coverage", &RankingMetrics::coverage}};

nlohmann::json RecordJson(const EpochRecord& r) {
  nlohmann::json j = {{"epoch", r.epoch},
                      {"train_loss", HexDouble(r.train_loss)},
                      {"train_accuracy", HexDouble(r.train_accuracy)},
                      {"train_auc", HexDouble(r.train_auc)},
                      {"val_loss", HexDouble(r.val_loss)},
                      {"val_accuracy", HexDouble(r.val_accuracy)},
                      {"val_auc", HexDouble(r.val_auc)},
                      {"monitored", HexDouble(r.monitored)},
                      {"best", r.best},
                      {"seconds", HexDouble(r.seconds)},
                      {"ks", r.val_ranking.ks},
                      {"users", r.val_ranking.users}};
  for (const auto& [name, member] : kRankingSeries) {
    nlohmann::json list = nlohmann::json::array();
    for (double v : r.val_ranking.*member) list.push_back(HexDouble(v));
    j[name] = list;
  }
  j["task_names"] = r.task_names;
  nlohmann::json tasks = nlohmann::json::array();
  for (double v : r.val_tasks) tasks.push_back(HexDouble(v));
  j["val_tasks"] = tasks;
  return j;
}

EpochRecord RecordFromJson(const nlohmann::json& j, const std::string& where) {
  try {
    EpochRecord r;
    r.epoch = j.at("epoch").get<int>();
    r.train_loss = ParseHexDouble(j.at("train_loss"), where);
    r.train_accuracy = ParseHexDouble(j.at("train_accuracy"), where);
    r.train_auc = ParseHexDouble(j.at("train_auc"), where);
    r.val_loss = ParseHexDouble(j.at("val_loss"), where);
    r.val_accuracy = ParseHexDouble(j.at("val_accuracy"), where);
    r.val_auc = ParseHexDouble(j.at("val_auc"), where);
    r.monitored = ParseHexDouble(j.at("monitored"), where);
    r.best = j.at("best").get<bool>();
    r.seconds = ParseHexDouble(j.at("seconds"), where);
    r.val_ranking.ks = j.at("ks").get<std::vector<int>>();
    r.val_ranking.users = j.at("users").get<int64_t>();
    for (const auto& [name, member] : kRankingSeries) {
      std::vector<double>* values = &(r.val_ranking.*member);
      for (const nlohmann::json& v : j.at(name)) values->push_back(ParseHexDouble(v, where));
      if (values->size() != r.val_ranking.ks.size()) {
        throw Error(where + ": " + name + " has " + std::to_string(values->size()) +
                    " values for " + std::to_string(r.val_ranking.ks.size()) + " K");
      }
    }
    if (j.contains("task_names")) {  // checkpoints written before tasks existed have none
      r.task_names = j.at("task_names").get<std::vector<std::string>>();
      for (const nlohmann::json& v : j.at("val_tasks")) {
        r.val_tasks.push_back(ParseHexDouble(v, where));
      }
      if (r.val_tasks.size() != r.task_names.size()) {
        throw Error(where + ": val_tasks has " + std::to_string(r.val_tasks.size()) +
                    " values for " + std::to_string(r.task_names.size()) + " tasks");
      }
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed epoch record (" + e.what() + ")");
  }
}

}  // namespace

nlohmann::json DataFingerprints(const Config& config) {
  const data::DataPaths p = config.ResolvedPaths();
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, path] : {std::pair<const char*, const std::string*>{"users", &p.users},
                                   {"items", &p.items},
                                   {"train", &p.train},
                                   {"val", &p.val},
                                   {"test", &p.test}}) {
    std::error_code ec;
    if (!path->empty() && std::filesystem::is_regular_file(*path, ec)) {
      j[name] = {{"path", *path}, {"sha256", Sha256FileHex(*path)}};
    }
  }
  return j;
}

namespace {

model::Tensor ToTensor(const Matrix& m) {
  return model::Tensor{{m.rows(), m.cols()}, std::vector<float>(m.data(), m.data() + m.size())};
}

}  // namespace

void SaveCheckpoint(const std::string& path, FitModel& model,
                    const std::vector<Matrix>& best_weights, const FitState& state,
                    const std::vector<EpochRecord>& history, const std::string& config_sha256,
                    const nlohmann::json& data_sha256, int threads) {
  model::SafetensorsFile f;
  const std::vector<nn::Parameter*> params = model.TrainableParameters();
  nn::Adam& adam = model.Optimizer();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string n = std::to_string(i);
    f.tensors["weights." + n] = ToTensor(params[i]->value);
    f.tensors["adam.m." + n] = ToTensor(adam.first_moments()[i]);
    f.tensors["adam.v." + n] = ToTensor(adam.second_moments()[i]);
  }
  // The best weights are a Snapshot: every named tensor, the untrained scorer of cosine models
  // included.
  for (size_t i = 0; i < best_weights.size(); ++i) {
    f.tensors["best." + std::to_string(i)] = ToTensor(best_weights[i]);
  }
  nlohmann::json records = nlohmann::json::array();
  for (const EpochRecord& r : history) records.push_back(RecordJson(r));
  f.metadata = {{"format", "twotower.checkpoint"},
                {"format_version", "1"},
                {"epoch", std::to_string(state.epoch)},
                {"stopped", state.stopped ? "1" : "0"},
                {"best_epoch", std::to_string(state.best_epoch)},
                {"best_value", HexDouble(state.best_value)},
                {"best_loss", HexDouble(state.best_loss)},
                {"since_best", std::to_string(state.since_best)},
                {"adam_steps", std::to_string(adam.steps())},
                {"threads", std::to_string(threads)},
                // The MPI ranks (core/dist.h): the global batch is ranks x batch_size.
                {"ranks", std::to_string(dist::Size())},
                {"history", records.dump()},
                {"config_sha256", config_sha256},
                {"data_sha256", data_sha256.dump()}};
  for (const auto& [name, rng] : model.Generators()) f.metadata[name] = rng->SaveState();
  model::WriteSafetensors(path, f);
}

namespace {

int ParseCount(const std::string& text, const std::string& where) {
  int v = -1;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v < 0) {
    throw Error(where + ": " + Quote(text) + " is not a count");
  }
  return v;
}

}  // namespace

void LoadCheckpoint(const std::string& path, FitModel& model, std::vector<Matrix>* best_weights,
                    FitState* state, std::vector<EpochRecord>* history,
                    const std::string& config_sha256, const nlohmann::json& data_sha256,
                    int* threads) {
  const model::SafetensorsFile f = model::ReadSafetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    const auto it = f.metadata.find(key);
    if (it == f.metadata.end()) {
      throw Error(path + ": not a twotower checkpoint (no '" + key + "' in __metadata__)");
    }
    return it->second;
  };
  if (meta("format") != "twotower.checkpoint" || meta("format_version") != "1") {
    throw Error(path + ": not a twotower checkpoint of format 1 (format " + Quote(meta("format")) +
                ", version " + Quote(meta("format_version")) + ")");
  }
  if (meta("config_sha256") != config_sha256) {
    throw Error(path +
                ": written with other settings than the run's config.yaml (settings "
                "SHA-256 " +
                ShortFingerprint(meta("config_sha256")) + ", now " +
                ShortFingerprint(config_sha256) + "): resuming would not continue that run");
  }
  const nlohmann::json saved = ParseJsonStrict(meta("data_sha256"), path + ": data_sha256");
  if (saved != data_sha256) {
    for (const auto& [name, entry] : data_sha256.items()) {
      if (!saved.contains(name) || saved[name] != entry) {
        throw Error(path + ": the " + name + " data changed since the checkpoint (" +
                    entry.value("path", std::string()) + "): resuming would not continue that run");
      }
    }
    throw Error(path + ": the data files differ from those the checkpoint was written with");
  }
  const std::vector<nn::Parameter*> params = model.TrainableParameters();
  nn::Adam& adam = model.Optimizer();
  auto restore = [&](const std::string& name, Matrix* into) {
    const auto it = f.tensors.find(name);
    if (it == f.tensors.end()) throw Error(path + ": tensor '" + name + "' is missing");
    const model::Tensor& t = it->second;
    if (t.shape.size() != 2 || t.shape[0] != into->rows() || t.shape[1] != into->cols()) {
      throw Error(path + ": tensor '" + name + "' does not have the model's shape " +
                  std::to_string(into->rows()) + " x " + std::to_string(into->cols()));
    }
    for (float x : t.data) {
      if (!std::isfinite(x)) throw Error(path + ": tensor '" + name + "' is not finite");
    }
    std::copy(t.data.begin(), t.data.end(), into->data());
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string n = std::to_string(i);
    restore("weights." + n, &params[i]->value);
    restore("adam.m." + n, &adam.first_moments()[i]);
    restore("adam.v." + n, &adam.second_moments()[i]);
  }
  *best_weights = model.Snapshot();  // the shapes; the values come next
  for (size_t i = 0; i < best_weights->size(); ++i) {
    restore("best." + std::to_string(i), &(*best_weights)[i]);
  }
  const size_t expected = 3 * params.size() + best_weights->size();
  if (f.tensors.size() != expected) {
    throw Error(path + ": " + std::to_string(f.tensors.size()) + " tensors, expected " +
                std::to_string(expected) + " for this model");
  }
  *threads = ParseCount(meta("threads"), path + ": threads");
  // A checkpoint without "ranks" predates MPI training: one process.
  const auto ranks_it = f.metadata.find("ranks");
  const int ranks =
      ranks_it == f.metadata.end() ? 1 : ParseCount(ranks_it->second, path + ": ranks");
  if (ranks != dist::Size()) {
    throw Error(ErrorCode::kConflict, path + ": the run was trained by " + std::to_string(ranks) +
                                          " MPI rank(s), a global batch of " +
                                          std::to_string(ranks) +
                                          " x training.batch_size; resume it with " +
                                          (ranks == 1 ? std::string("one process (no mpirun)")
                                                      : "mpirun -np " + std::to_string(ranks)) +
                                          ", not " + std::to_string(dist::Size()));
  }
  adam.set_steps(ParseCount(meta("adam_steps"), path + ": adam_steps"));
  state->epoch = ParseCount(meta("epoch"), path + ": epoch");
  state->stopped = meta("stopped") == "1";
  state->best_epoch = ParseCount(meta("best_epoch"), path + ": best_epoch");
  state->best_value = ParseHexDouble(meta("best_value"), path + ": best_value");
  state->best_loss = ParseHexDouble(meta("best_loss"), path + ": best_loss");
  state->since_best = ParseCount(meta("since_best"), path + ": since_best");
  for (const auto& [name, rng] : model.Generators()) {
    try {
      rng->LoadState(meta(name.c_str()));
    } catch (const Error& e) {
      throw Error(path + ": " + name + ": " + e.what());
    }
  }
  history->clear();
  const nlohmann::json records = ParseJsonStrict(meta("history"), path + ": history");
  if (!records.is_array()) throw Error(path + ": history: expected a list");
  for (const nlohmann::json& r : records) {
    history->push_back(RecordFromJson(r, path + ": history"));
  }
  if (static_cast<int>(history->size()) != state->epoch || state->best_epoch > state->epoch) {
    throw Error(path + ": history holds " + std::to_string(history->size()) +
                " epochs, but the checkpoint is after epoch " + std::to_string(state->epoch));
  }
}

}  // namespace twotower::train
