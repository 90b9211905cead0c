// app: what a user-facing command does, once. The CLI (and later the HTTP server and the Python
// module) parse their inputs and call these; none of them reads a model, a table, an index or a
// history file on its own.
//
// A Bundle is a loaded model file with the tables it scores: the users and items tables (paths
// from the model file's training config unless overridden), their id indexes and their encoded
// features. Thread-safety: a Bundle is immutable after LoadBundle; its const use and the free
// functions taking a const Bundle are safe from many threads (RecommendAllUsers shares its
// work among threads itself: core/parallel.h).
#ifndef TWOTOWER_APP_APP_H_
#define TWOTOWER_APP_APP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/data/csv.h"
#include "twotower/data/dataset.h"
#include "twotower/data/table.h"
#include "twotower/index/item_index.h"
#include "twotower/model/model_file.h"
#include "twotower/train/metrics.h"
#include "twotower/train/trainer.h"

namespace twotower::app {

// The result and settings types app's functions take and return, under app's name, so that a
// front end (CLI, server, Python) names nothing below app.
using EvalMetrics = train::EvalMetrics;
using RankingMetrics = train::RankingMetrics;
using TaskMetric = train::TaskMetric;
using TrainConfig = train::Config;
using TaskSpec = model::TaskSpec;
using ItemIndex = index::ItemIndex;

// Files that replace those recorded in the model file's training config; empty = recorded.
struct DataOverrides {
  std::string users, items, train, val;
};

struct Bundle {
  std::string model_path;
  model::LoadedModel model;
  data::DataPaths paths;  // resolved, overrides applied
  data::Table users, items;
  data::EntityIndex user_index, item_index;
  data::EncodedTable user_features, item_features;
  // True for a model trained with a pointwise loss (bce): sigmoid(scale <u, v> + bias) is then a
  // probability. Other losses train <u, v> only.
  bool probabilities = true;
  // Ranking settings from the model's training config (defaults when absent).
  std::vector<int> ks = {10, 20};
  bool positives_only = true;  // training.positives == "liked"
};

// Reads a users or items table; when the path came from the model file's training config
// (from_model), a failure says so and names `flag`, the option that reads another file. An empty
// path (a tower that is its id alone, trained without a table) reads the ids of `id_column` in
// `interaction_files` (data::ReadEntities).
data::Table ReadDataTable(const std::string& path, bool from_model, const char* flag,
                          const std::string& id_column = "",
                          const std::vector<std::string>& interaction_files = {});

// A whole table with its column types, as `twotower convert` sees them: a Parquet file's columns
// keep their schema types (unsigned and nulls included), a CSV file's are inferred from its cells
// (data::InferTypes: integers, numbers whose text comes back the same, else strings; a column
// with an empty cell is optional, its empty cells nulls). Memory holds the whole table. Throws
// the readers' Error naming the file (and line or row group) for a missing or malformed file,
// and for a Parquet column of a type twotower does not read.
data::TypedTable ReadTypedTable(const std::string& path);

// Writes `table` to `path` (CSV or Parquet by suffix; data::WriteTable), atomically. Throws
// Error for columns of different lengths, a null in a non-optional column, or an I/O error.
void WriteTypedTable(const std::string& path, const data::TypedTable& table);

// The data paths recorded in a model file's training config, defaults for absent keys.
data::DataPaths ModelDataPaths(const model::LoadedModel& loaded);

// Loads the model file and its users and items tables and encodes them (and, for a model with a
// user-history feature, reads HistoryFiles and attaches each user's history). Throws Error naming
// the file (a path taken from the model file says so, and which flag overrides it).
Bundle LoadBundle(const std::string& model_path, const DataOverrides& overrides);

// A model with a user-history feature: attaches to `users` (the bundle's encoded users table or a
// copy) each user's history from `earlier` (the interactions before what is scored; LoadBundle
// attaches the HistoryFiles). Nothing for other models.
void AttachHistory(const Bundle& bundle, const std::vector<data::Interactions>& earlier,
                   data::EncodedTable* users);

// The history a test evaluation excludes and `recommend --exclude-seen` drops: the bundle's train
// file and, when it exists (or was named), its val file.
std::vector<std::string> HistoryFiles(const Bundle& bundle, const DataOverrides& overrides);

// ---- item embeddings (.npy + ids file) ---------------------------------------------------------

// "<name>.ids.txt" beside "<name>.npy".
std::string IdsPath(const std::string& npy_path);
// Every row of `items` through the model's item tower: items.num_rows() x embedding_dim.
Matrix EmbedItems(const model::LoadedModel& model, const data::Table& items);
// Writes the float32 C-order .npy, then the ids file whose first line
// `# twotower-ids rows=R dim=D crc32c=X model=sha256:<64 hex>` ties it to these values (CRC-32C
// of the float bytes) and to the model that made them (model_fingerprint, LoadedModel's; "" leaves
// ` model=...` out). Atomic per file.
void WriteItemEmbeddings(const std::string& npy_path, const Matrix& vectors,
                         const std::vector<std::string>& ids, const std::string& model_fingerprint);
struct ItemEmbeddings {
  Matrix vectors;                 // rows x dim
  std::vector<std::string> ids;   // rows
  std::string model_fingerprint;  // "" when the ids file does not say
};
// A path ending in ".parquet" is one table instead: item_id (STRING) and e0 .. e{D-1} (FLOAT),
// the model's SHA-256 under the footer key "twotower.model_sha256"; the .npy's dtype and the ids
// file's checks become the table's types and a check of every id and value.
//
// `twotower embed`: every row of the items table (`items_path`, or "" for the one the model
// file records) through the model's item tower, written by WriteItemEmbeddings to out_path.
struct EmbedResult {
  int64_t rows = 0;
  int64_t untrained = 0;  // items left out: no trained embedding (UntrainedItemRows)
  int dim = 0;
  std::string model_fingerprint;
  bool parquet = false;  // one Parquet table instead of .npy + ids file
};
EmbedResult EmbedItemsToFile(const std::string& model_path, const std::string& items_path,
                             const std::string& out_path);

// Reads what WriteItemEmbeddings wrote (or a hand-written ids file without the first line).
// Throws Error naming the file and line for ids written for other embeddings, a repeated id, or
// a count that differs from the .npy's rows, and naming the file, row and id for a value that
// is not finite.
ItemEmbeddings ReadItemEmbeddings(const std::string& npy_path);

// Refuses a file derived from another model: `recorded` is the model fingerprint `file` records
// ("" = unknown, also refused). Throws Error naming the file, both fingerprints and the remedy,
// unless they match or allow_other_model (the CLI's --allow-other-model).
void CheckSameModel(const std::string& file, const std::string& recorded,
                    const std::string& model_path, const model::LoadedModel& model,
                    bool allow_other_model);

// ---- indexes -----------------------------------------------------------------------------------

// An index file for a model: its dimension must be the model's embedding_dim (checked from the
// header, before the payload is read) and it must record this model (CheckSameModel).
std::unique_ptr<index::ItemIndex> LoadIndexForModel(const std::string& path,
                                                    const std::string& model_path,
                                                    const model::LoadedModel& model,
                                                    bool allow_other_model);
// The items to retrieve from: an index file (index_path), pre-computed embeddings
// (embeddings_path) or, with both empty, the item tower over the bundle's items (exact). A file
// must record the bundle's model (CheckSameModel).
// The exact path leaves out the untrained items (UntrainedItemRows) and counts them in
// *untrained (when not null).
std::unique_ptr<index::ItemIndex> OpenItemIndex(const Bundle& bundle, const std::string& index_path,
                                                const std::string& embeddings_path,
                                                bool allow_other_model,
                                                int64_t* untrained = nullptr);

// Rows of `items` (encoded by the model's item encoder) that have no trained embedding: with an
// item tower that is its id alone, the items whose id is out of the model's vocabulary (no
// interaction in the data it was trained on). Their vector would be the tower of the zero
// out-of-vocabulary row, the same for all of them and learned from nothing, so embed, index build
// / add and exact retrieval leave them out (and say how many). Empty when the item tower has
// content features (an unknown id then adds nothing and the features score the item) or hashes
// its ids.
std::vector<int64_t> UntrainedItemRows(const model::LoadedModel& model,
                                       const data::EncodedTable& items);
// Removes the rows `rows` (ascending) of v and ids (one id per row of v), keeping the order.
void DropRows(const std::vector<int64_t>& rows, Matrix* v, std::vector<std::string>* ids);
// Item vectors from the item tower (v: one row per id): throws Error(kInvalidArgument,
// "<source>: item \"<id>\": the item tower's output is not finite: ...") for the first row
// holding an inf or NaN, which a feature value far outside the training range (within float's
// range: 3e38 for a year) makes inside the tower. Such a vector is never written or indexed.
void RequireFiniteRows(const Matrix& v, const std::vector<std::string>& ids,
                       const std::string& source);
// Per user row of the bundle, the sorted index labels of the items in `files` (interactions).
std::vector<std::vector<int64_t>> SeenLabels(const Bundle& bundle, const index::ItemIndex& index,
                                             const std::vector<std::string>& files);

// ---- re-ranking ---------------------------------------------------------------------------------

// How many retrieved items a ranker re-orders unless told otherwise (--candidates,
// serve.variants[].candidates): the one place this default is written.
constexpr int kDefaultCandidates = 200;

// A ranker (model/ranker.h) ready to re-order what a bundle's two-tower model retrieves from
// `index`: the bundle's users and items tables encoded with the ranker's own encoder, and each
// index label's row of the items table.
struct Reranker {
  std::string path;
  model::LoadedRanker ranker;
  data::EncodedTable user_features, item_features;
  std::vector<int32_t> label_rows;      // index label -> row of bundle.items
  int candidates = kDefaultCandidates;  // how many retrieved items the ranker re-orders
};
// Throws Error naming `path` for a file that is not a ranker, tables without the ranker's feature
// columns, an index item that is not in the bundle's items table (the ranker needs its
// features), or candidates < 1.
// `index` (may be null: no label_rows, for evaluation over the items table) is what
// `recommend` retrieves from.
Reranker LoadReranker(const std::string& path, const Bundle& bundle, const index::ItemIndex* index,
                      int candidates);

// ---- evaluate ----------------------------------------------------------------------------------

struct EvaluationReport {
  train::EvalMetrics pointwise;  // loss / accuracy NaN for non-pointwise models
  bool ranked = false;           // false when the model's evaluation.k is empty
  train::RankingMetrics ranking, most_popular;
  std::vector<std::string> excluded;     // the files whose items were excluded
  train::PerUserRanking per_user;        // the ranking metrics of each evaluated user
  std::vector<train::TaskMetric> tasks;  // the model's task heads on the file (tasks.h)
};
// Scores the interactions file: pointwise metrics of its labelled pairs, and the ranking metrics
// (metrics.h) over all items for each user with positives in it, excluding the items of
// `exclude` (empty: the bundle's train and val files, less the evaluated file itself; naming the
// evaluated file is an error); MostPop counts the excluded files' positives.
// With `reranker` (may be null), the two stages as `recommend --rerank` runs them: the pointwise
// metrics are the ranker's on the labelled pairs, and each user's ranking is the top
// reranker->candidates by <u, v> re-ordered by the ranker (candidates >= the catalogue: the
// ranker scoring every item).
EvaluationReport EvaluateInteractions(const Bundle& bundle, const std::string& path,
                                      const std::vector<std::string>& exclude,
                                      const Reranker* reranker = nullptr);

// Two models on the same interactions, users paired by id: per metric and K, each model's mean
// over the users both evaluate, the difference (b - a) and its 95% interval from `resamples`
// bootstrap resamples of the paired users (percentile method; Efron & Tibshirani, An
// Introduction to the Bootstrap, 1993, ch. 13), and the share of resamples where b is better.
struct MetricComparison {
  std::string metric;  // "recall", "ndcg", "hitrate", "mrr"
  int k = 0;
  double a = 0, b = 0, diff = 0, lo = 0, hi = 0, b_better = 0;
};
struct ModelComparison {
  int64_t users = 0;  // paired users
  int resamples = 0;
  std::vector<MetricComparison> rows;
};
// Both bundles are evaluated as EvaluateInteractions does (`exclude` as there), with the same
// evaluation.k: a's (b.ks is set to it). Throws Error when no user is evaluated by both.
ModelComparison CompareModels(const Bundle& a, Bundle& b, const std::string& path,
                              const std::vector<std::string>& exclude, int resamples,
                              uint64_t seed);

// ---- recommend ---------------------------------------------------------------------------------

// The score shown for an inner product: the probability for pointwise models, else <u, v>.
double DisplayScore(const Bundle& bundle, float inner_product);

struct Recommendation {
  int64_t label = -1;  // the index label (index.ids()[label] is the item id)
  float score = 0.0f;  // <u, v>
};
// The top k items for one user row of the bundle, best first (fewer when fewer are allowed);
// `exclude` (index labels) may be null.
std::vector<Recommendation> RecommendForUser(const Bundle& bundle, const index::ItemIndex& index,
                                             int32_t user_row, int k,
                                             const std::vector<int64_t>* exclude);

// The order in which a ranker's logits[0..n) put their candidates: positions, highest logit first,
// ties kept in the given (retrieval) order. The one ordering Rerank, evaluate --rerank and the
// server use. Throws Error naming `ranker_path` and name(i) for a non-finite logit (finite
// weights can still overflow).
std::vector<int64_t> RerankOrder(const float* logits, int64_t n, const std::string& ranker_path,
                                 const std::function<std::string(int64_t)>& name);

// The top k of `candidates` (retrieved for user_row, best first) re-ordered by the ranker's
// logit, highest first (ties keep the retrieval order); each score is the ranker's logit, so
// sigmoid(score) is its probability of a like. k > candidates.size() returns them all.
std::vector<Recommendation> Rerank(const Reranker& reranker, int32_t user_row,
                                   const std::vector<Recommendation>& candidates, int k);

// Known users are encoded by the user tower in blocks of this many rows from row 0, wherever
// their embeddings are computed (RecommendAllUsers, Recommender's cache): a user's embedding is
// then the same bits on every path.
constexpr int64_t kUserBlock = 4096;

// The embeddings of users-table rows [first, first + n) (n x embedding_dim) into *out, each
// computed within its block of kUserBlock rows (blocks start at row 0; whole blocks are encoded,
// so `first` and `n` need not be aligned). Throws Error for rows out of range.
void EncodeKnownUsers(const Bundle& bundle, int64_t first, int64_t n, Matrix* out);

// "<out_path>.meta.json": the provenance of a recommendations file.
std::string MetaPath(const std::string& out_path);

struct BatchResult {
  int64_t users = 0, rows = 0;
  double seconds = 0.0;
  int64_t fallback_users = 0;  // users given the popularity fallback (PopularityFallback)
};

// Users with no trained embedding: with a user tower that is its id alone, a user whose id is in
// no interaction the model was trained on (a user first seen in the test split, or added since)
// would be scored through the zero out-of-vocabulary row: the same meaningless ranking for all
// of them. They get the items with the most interactions in train and val instead (every row of
// those files counts, as the seen items the recommender excludes: with explicit ratings, disliked
// rows too), flagged as a fallback in every reply.
struct PopularityFallback {
  std::vector<char> cold_user;  // per users-table row: no trained embedding
  int64_t cold_users = 0;
  // Index labels, most interactions first (ties: lower label); empty when the interactions
  // could not be read (then a cold user cannot be served).
  std::vector<int64_t> order;
  std::vector<double> share;  // per index label: its share of the interactions
  bool enabled() const { return cold_users > 0; }
  // The top k labels of `order` that `filter` lets through (allow, then exclude), with shares.
  std::vector<std::pair<int64_t, double>> Top(const index::SearchFilter* filter, int k) const;
};
// From the seen items (per user row, the index labels of its train and val interactions; empty:
// the cold users are found, the popularity is not).
PopularityFallback MakePopularityFallback(const Bundle& bundle, int64_t index_size,
                                          const std::vector<std::vector<int64_t>>& seen);
// Every user's top k as CSV `<user id>,rank,<item id>,score` (score as DisplayScore), streamed in
// chunks through an AtomicFile to `out_path`, then MetaPath(out_path): JSON naming the model
// (path and model_sha256, its fingerprint), the index spec and size, k, exclude_seen, users and
// rows. `seen` (one label list per user row) may be null.
// With `reranker` (may be null), each user's top reranker->candidates are retrieved and the
// top k of them by the ranker are written, the score being the ranker's probability; the
// provenance names the ranker too. `user_embeddings` (may be null: computed here by
// EncodeKnownUsers) holds every user's embedding as EncodeKnownUsers computes them.
BatchResult RecommendAllUsers(const Bundle& bundle, const index::ItemIndex& index, int k,
                              const std::vector<std::vector<int64_t>>* seen,
                              const std::string& out_path, bool progress,
                              const Reranker* reranker = nullptr,
                              const Matrix* user_embeddings = nullptr,
                              const PopularityFallback* fallback = nullptr);

}  // namespace twotower::app

#endif  // TWOTOWER_APP_APP_H_
