#include "twotower/app/train.h"

#include <omp.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "train/checkpoint.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"
#include "twotower/core/progress.h"
#include "twotower/core/rng.h"
#include "twotower/core/threads.h"
#include "twotower/index/index_file.h"
#include "twotower/model/model_file.h"
#include "twotower/model/ranker.h"
#include "twotower/train/ranker_trainer.h"
#include "twotower/train/tasks.h"

namespace twotower::app {
namespace {

// A run folder to resume: its config.yaml's settings, checked to be resumable.
train::Config ResumeConfig(const std::string& resume, std::string* source) {
  std::string dir = resume;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw Error(ErrorCode::kNotFound, "resume: " + dir + " is not a run folder (no such directory)",
                "resume");
  }
  const std::string checkpoint = dir + "/" + train::kCheckpointFile;
  if (!std::filesystem::exists(checkpoint, ec)) {
    throw Error(ErrorCode::kNotFound,
                "resume: " + checkpoint +
                    " does not exist: no epoch was checkpointed (the run stopped before its first "
                    "checkpoint, or was trained with training.checkpoint false); train again "
                    "instead",
                "resume");
  }
  *source = dir + "/config.yaml";
  train::Config config = train::Config::FromYamlFile(*source);
  config.Validate(*source);
  return config;
}

}  // namespace

train::Config ResolveTrainConfig(const TrainRequest& request, std::string* source) {
  if (!request.resume.empty()) {
    if (!request.settings.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "resume: the run continues with the settings in its config.yaml; settings "
                  "cannot change them",
                  "resume");
    }
    return ResumeConfig(request.resume, source);
  }
  {
    // As in the YAML file, a key given twice is refused rather than decided by order.
    std::map<std::string, std::string> given;
    for (const auto& [setting, where] : request.settings) {
      const std::string key = setting.substr(0, setting.find('='));
      const auto [it, inserted] = given.emplace(key, setting);
      if (!inserted) {
        throw Error("--set: key '" + key + "' given twice (" + Quote(it->second) + " and " +
                    Quote(setting) + ")");
      }
    }
  }
  train::Config config = train::Config::FromYamlFile(request.config_path);
  for (const auto& [setting, where] : request.settings) config.Set(setting, where, false);
  config.Validate(request.config_path + " with the command line's settings");
  // The model file records the data paths for evaluate/embed/recommend: absolute, so those work
  // from any directory. An empty data.dir means the working directory: recorded as such, so that
  // `recommend` from another folder does not silently read that folder's files.
  config.data_dir = std::filesystem::absolute(config.data_dir.empty() ? "." : config.data_dir)
                        .lexically_normal()
                        .string();
  if (!config.data_dir.empty() && config.data_dir.back() == '/' && config.data_dir.size() > 1) {
    config.data_dir.pop_back();
  }
  *source = request.config_path;
  return config;
}

void CheckPrecisionRuns(const train::Config& config, const std::string& source) {
  if (config.training.precision != "bf16") return;
  const std::string why = nn::Bf16Unavailable();
  if (!why.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                source + ": 'training.precision' bf16 cannot run here: " + why,
                "training.precision");
  }
}

namespace {

// What every rank of a data-parallel run must share: the resolved settings, the thread count,
// every data file's SHA-256 (tables, splits) and the splits' encoded rows (data.shards: the
// sizes of train's parts for train).
uint64_t ReplicaFingerprint(const train::Config& config, const data::Dataset& d) {
  // The thread count too: the order of the arithmetic (so every result) depends on it.
  const std::string yaml = config.ToYaml() +
                           "\nthreads in effect: " + std::to_string(omp_get_max_threads()) + "\n" +
                           train::DataFingerprints(config).dump();
  uint32_t crc = Crc32c(0, yaml.data(), yaml.size());
  // A rank holding one part of train (data.shards) compares every part's size instead.
  crc = Crc32c(crc, d.part_rows.data(), d.part_rows.size() * sizeof(int64_t));
  for (const data::Interactions* s : {&d.train, &d.val, &d.test}) {
    if (s == &d.train && d.shard.held >= 0) continue;
    crc = Crc32c(crc, s->user_row.data(), s->user_row.size() * sizeof(int32_t));
    crc = Crc32c(crc, s->item_row.data(), s->item_row.size() * sizeof(int32_t));
    crc = Crc32c(crc, s->label.data(), s->label.size() * sizeof(float));
  }
  const uint64_t sizes = static_cast<uint64_t>(d.users.num_rows()) * 1000003u +
                         static_cast<uint64_t>(d.items.num_rows());
  return (sizes << 32) ^ crc;
}

}  // namespace

TrainOutcome Train(const TrainRequest& request, TrainObserver* observer) {
  TrainObserver silent;
  TrainObserver& o = observer != nullptr ? *observer : silent;
  std::string source;
  const train::Config config = ResolveTrainConfig(request, &source);
  CheckPrecisionRuns(
      config, request.settings.empty() ? source : source + " with the command line's settings");
  const bool resume = !request.resume.empty();
  // The process's thread settings are put back when training ends (the Python module trains in
  // a process that goes on searching).
  const ScopedThreads scoped(config.threads);
  const int threads = scoped.threads();
  o.Configured(config, source);
  if (dist::Distributed()) {
    // The settings first, before any collective of the loading: ranks that would load
    // differently (data.shards on one rank only) must stop here with this message, not meet in
    // mismatched collectives.
    const std::string settings =
        config.ToYaml() + "\nthreads in effect: " + std::to_string(omp_get_max_threads()) + "\n";
    dist::CheckSame(Crc32c(0, settings.data(), settings.size()), "the configuration",
                    "every rank must run the same settings and thread count");
  }
  // data.shards: one process holds every part; under mpirun with as many ranks, rank r part r.
  data::DataShard shard{config.shards, -1};
  if (config.shards > 1 && dist::Distributed()) {
    if (config.shards != dist::Size()) {
      throw Error(source + ": 'data.shards' " + std::to_string(config.shards) +
                  " under mpirun -np " + std::to_string(dist::Size()) +
                  ": expected 1 (every rank reads every row) or " + std::to_string(dist::Size()) +
                  " (each rank reads the rows of its part)");
    }
    shard.held = dist::Rank();
  }
  const data::Dataset d = data::LoadDataset(
      config.ResolvedPaths(), config.features, train::TaskTargetColumns(config.model.tasks),
      train::TaskItemColumns(config.model.tasks), config.training.refit, shard);
  o.DataLoaded(d);
  TrainOutcome out;
  out.ranker = config.model.kind == "ranker";
  if (dist::Distributed()) {
    // Every rank read the files itself: the settings and the encoded data must agree, or the
    // ranks would train different problems.
    dist::CheckSame(ReplicaFingerprint(config, d), "the configuration or the data read",
                    "every rank must read the same files with the same settings and thread count");
  }
  if (resume) {
    out.run_dir = request.resume;
    while (out.run_dir.size() > 1 && out.run_dir.back() == '/') out.run_dir.pop_back();
  } else {
    // Rank 0 creates the run folder and names it to the others.
    if (dist::IsRoot()) out.run_dir = train::CreateRunDirectory(config);
    dist::Broadcast(&out.run_dir);
  }
  ModelSummary summary;
  summary.ranker = out.ranker;
  summary.threads = threads;
  summary.loss = config.training.loss;
  if (config.training.precision == "bf16") {
    summary.precision = "bf16 (oneDNN: " + nn::Bf16Engine() + ")";
  }
  {
    // The shapes only, to describe them (the trainers build their own from the seed).
    Rng probe(0);
    if (out.ranker) {
      model::Ranker shape(config.model, d.encoder, &probe);
      summary.parameters = shape.ParameterCount();
      summary.ranker_layers = shape.Describe();
    } else {
      model::ModelConfig shape_config = config.model;
      train::FitTaskTargets(&shape_config.tasks, d);  // the item_class heads' widths
      model::TwoTowerModel shape(shape_config, d.encoder, &probe);
      summary.parameters = shape.ParameterCount();
      // The scorer (learned scale and bias, or cosine) is the bce loss's; the retrieval losses
      // score by the inner product (over their temperature while training).
      summary.score = config.training.loss == "bce" ? model::ScoreModeName(config.model.score)
                                                    : std::string("<u, v>");
      summary.user_tower = shape.user_tower().Describe();
      summary.item_tower = shape.item_tower().Describe();
      summary.tasks = shape_config.tasks;
    }
  }
  o.ModelBuilt(summary);
  const train::TrainingConfig& t = config.training;
  if (!out.ranker && t.loss == "softmax" && t.num_hard_negatives > 0 && t.num_easy_negatives == 0) {
    // Measured, not guessed: BENCHMARKS.md, "Retrieval objectives on MovieLens-100K".
    o.Warning(
        "training.num_hard_negatives with in-batch softmax and no training.num_easy_negatives: "
        "the hardest in-batch negatives are often items the user likes but has not rated, and "
        "on MovieLens-100K this collapsed to MostPop's Recall@10; num_easy_negatives (e.g. 64) "
        "keeps random ones beside them");
  }
  if (t.precision == "bf16" && nn::Bf16Engine() != "AMX") {
    // Measured, not guessed: BENCHMARKS.md, "bf16 training".
    o.Warning("training.precision: bf16 runs on " + nn::Bf16Engine() +
              " here, where oneDNN's bf16 products are slower than fp32 ones (the lab trains "
              "1.2-1.4x slower than fp32 on such a CPU); bf16 pays off with AMX tiles");
  }
  o.Training(out.run_dir, out.ranker);
  train::TrainOptions options;
  options.progress = request.progress;
  options.log = request.log;
  options.stop = request.stop;
  options.run_dir = out.run_dir;
  if (out.ranker) {
    options.resume = resume;
    const train::RankerTrainResult r = train::TrainRanker(config, d, options);
    out.best_epoch = r.best_epoch;
    out.refit = r.refit;
    out.train_seconds = r.train_seconds;
    out.test = r.test;
    out.test_ranking = r.test_ranking;
    out.test_most_popular = r.test_most_popular;
    return out;
  }
  options.resume = resume;
  const train::TrainResult r = train::Train(config, d, options);
  out.best_epoch = r.best_epoch;
  out.refit = r.refit;
  out.train_seconds = r.train_seconds;
  out.test = r.test;
  out.test_ranking = r.test_ranking;
  out.test_most_popular = r.test_most_popular;
  out.test_tasks = r.test_tasks;
  return out;
}

uint64_t ParseSeed(const std::string& text, const std::string& flag) {
  train::Config probe;
  probe.Set("seed=" + text, flag);
  return probe.seed;
}

int ParseThreads(int threads, const std::string& flag) {
  train::Config probe;
  probe.Set("threads=" + std::to_string(threads), flag);
  return probe.threads;
}

std::vector<std::string> SettingsHelp() { return train::SettingsHelp(); }

IndexBuildResult BuildIndex(const std::string& embeddings_path, const std::string& spec,
                            const std::string& out_path, bool progress) {
  const ItemEmbeddings e = ReadItemEmbeddings(embeddings_path);
  const Matrix& v = e.vectors;
  const std::vector<std::string>& ids = e.ids;
  IndexBuildResult out;
  out.index = index::MakeIndex(spec, static_cast<int>(v.cols()));
  out.index->set_model_fingerprint(e.model_fingerprint);  // the model that made the embeddings
  const auto start = std::chrono::steady_clock::now();
  {
    // In chunks, for the progress bar: an HNSW build of a million items takes minutes.
    constexpr int64_t kChunk = 16384;
    ProgressBar bar("index", v.rows(), progress);
    for (int64_t first = 0; first < v.rows(); first += kChunk) {
      const int64_t n = std::min(kChunk, v.rows() - first);
      const std::vector<std::string> chunk(ids.begin() + first, ids.begin() + first + n);
      out.index->Add(v.data() + first * v.cols(), n, chunk);
      bar.Update(first + n);
    }
    bar.Finish();
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.index->Save(out_path);
  return out;
}

IndexAddResult AddToIndex(const std::string& model_path, const std::string& index_path,
                          const std::string& items_path, const std::string& out_path,
                          bool allow_other_model) {
  const model::LoadedModel m = model::LoadModel(model_path);
  IndexAddResult out;
  out.index = LoadIndexForModel(index_path, model_path, m, allow_other_model);
  const data::Table items = data::ReadTable(items_path);
  const auto item_index = data::EntityIndex::FromTable(items, m.schema.item.id_column);
  data::EncodedTable x;
  m.encoder.item.Encode(items, &x);
  Matrix v;
  m.model->EncodeItems(x, &v);
  std::vector<std::string> ids = item_index.ids;
  const std::vector<int64_t> untrained = UntrainedItemRows(m, x);
  DropRows(untrained, &v, &ids);
  RequireFiniteRows(v, ids, items_path);
  out.untrained = static_cast<int64_t>(untrained.size());
  out.added = out.index->Add(v.data(), v.rows(), ids);
  // Vectors of two models (--allow-other-model) make an index of no one model.
  if (out.index->model_fingerprint() != m.fingerprint) out.index->set_model_fingerprint("");
  out.index->Save(out_path);
  return out;
}

}  // namespace twotower::app
