// app::Recommender: one loaded variant of what a user asks a recommender for, the one home of
// "recommend", "score", "similar", live items and live likes. `twotower recommend` (one user and
// --all-users), every route of `twotower serve` and the Python module call these and only parse
// their inputs and print or serialise the results; no HTTP, JSON or CLI type enters here.
//
// A Recommender holds a Bundle (model file, users and items tables, encoded features), the items
// it retrieves from (an index file, pre-computed embeddings, or the item tower over the items
// table: exact), the items each user has seen (train and val files), an optional ranker that
// re-orders what is retrieved (DCN-v2, model/ranker.h), the items put or deleted since it was
// opened, and likes the model was not trained with (user histories and seen items grow with
// them; which likes those are is the caller's to say, e.g. by the model's SHA-256).
//
// The same request gives the same ids and the same score bits whichever front end sends it: a
// known user's embedding comes from the users table encoded in blocks of kUserBlock rows from row
// 0 (as RecommendAllUsers encodes them) when the table fits in user_cache_mb, and the index
// scores every item with one fused multiply-add chain on every path (index/search_internal.h).
//
// Errors: every method throws twotower::Error with a code and the request field it concerns
// (core/error.h): kInvalidArgument for a malformed value, kNotFound for an unknown user or item,
// kConflict for a request the loaded state cannot serve (exclude_seen without a readable
// history, a live item the ranker cannot read), kUnavailable when the Deadline passes (nothing
// was changed), kCorruptData for a ranker whose logits overflow.
//
// Thread-safety: the const methods may run from many threads at once, and at the same time as
// PutItems / DeleteItem / RecordLike (an internal reader-writer lock: searches shared, changes
// exclusive).
#ifndef TWOTOWER_APP_RECOMMENDER_H_
#define TWOTOWER_APP_RECOMMENDER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "twotower/app/app.h"

namespace twotower::app {

// A row of a table given from outside: (column, value as text) pairs.
using Row = std::vector<std::pair<std::string, std::string>>;

struct RecommenderOptions {
  std::string name = "default";         // the variant's name (errors name it)
  std::string model;                    // the two-tower model file
  std::string index;                    // an index file made for the model, or ""
  std::string embeddings;               // pre-computed item embeddings (.npy / .parquet), or ""
  DataOverrides data;                   // tables replacing those the model file records
  bool allow_other_model = false;       // accept an index / embeddings made by another model
  std::string rerank;                   // a ranker model file re-ordering what is retrieved, or ""
  int candidates = kDefaultCandidates;  // how many retrieved items the ranker re-orders (>= 1)
  // The users' embeddings are computed once at Open when users x dim floats fit in this many MiB
  // (else per request, as uncached_user_blocks says).
  int64_t user_cache_mb = 256;
  // A known user's embedding when not cached: true computes the user's whole block of kUserBlock
  // rows (the bits every other path gives; up to kUserBlock rows through the tower per request),
  // false the user's row alone (one row; the same ids, scores within float rounding).
  bool uncached_user_blocks = true;
  // Whether the history files (train, val) must be readable at Open. When false, a failure to
  // read them is kept and refused only by a request with exclude_seen (kConflict).
  bool require_history = false;
  // Whether to read the seen items (train and val) at all; false: exclude_seen is refused
  // (kConflict) and Open reads no interactions file for them (a one-off recommendation).
  bool load_seen = true;
};

// Who a request is for: a user of the users table by its id, or a user given by its feature
// columns (a new user; one whose id column names a known user gets that user's history and seen
// items), with, for a model whose user tower reads a history, the items it liked, oldest first.
struct UserRef {
  std::string id;  // by id; "" when given by features
  std::optional<Row> features;
  std::optional<std::vector<std::string>> history;  // item ids; only with features
  // A history this model does not read is ignored instead of refused (another A/B arm reads it).
  bool ignore_unread_history = false;
};

// The key that assigns a user to an A/B arm (app/experiment.h): its id; for features, the value
// of the user id column (`id_column`) when they carry one, so that a known user lands where its
// id lands however a request names it; else the features themselves, in column order, as text.
std::string AssignmentKey(const UserRef& user, const std::string& id_column);

// A request's deadline: Check throws Error(kUnavailable) naming the stage and `what` (the
// setting that set it) once `at` has passed. The default never passes.
struct Deadline {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::time_point::max();
  std::string what;  // e.g. "serve.deadline_seconds: 0.5"
  void Check(const char* stage) const;
};

struct RecommendRequest {
  UserRef user;
  int k = 10;                        // >= 1; fewer come back when fewer items are allowed
  bool exclude_seen = false;         // drop the user's items of train, val and live likes
  std::vector<std::string> exclude;  // item ids never returned (each must exist)
  std::optional<std::vector<std::string>> allow;  // when given, only these item ids
};

struct ScoredItem {
  std::string id;
  // As shown to a user: the model's probability for a pointwise (bce) model, <u, v> for the
  // others, the ranker's probability sigmoid(logit) for a re-ranked variant; for Similar, the
  // inner product of the two items' embeddings.
  double score = 0.0;
  int32_t item_row = -1;            // the item's row of the items table, -1 for a live item
  std::shared_ptr<const Row> live;  // the row of an item put by PutItems, else null
};

struct Recommendations {
  std::vector<ScoredItem> items;  // best first
  bool reranked = false;          // ordered (and scored) by the ranker
  int64_t retrieved = 0;          // how many the first stage retrieved
  int64_t seen_excluded = 0;      // with exclude_seen: the known user's seen items excluded
  // Items of the table never retrieved: no trained embedding (app::UntrainedItemRows).
  int64_t untrained_excluded = 0;
  // "" or "popularity": the user has no trained embedding, and the items are the most
  // interacted with in train and val (app::PopularityFallback; score: the item's share).
  std::string fallback;
};

struct PutResult {
  int64_t added = 0, updated = 0;
};

// Items ready to be put: validated and encoded by PrepareItems, applied by CommitItems. A server
// with several variants prepares on every one before it commits on any, so a bad row changes
// nothing anywhere.
struct PreparedItems {
  std::vector<std::string> ids;
  std::vector<std::shared_ptr<const Row>> rows;
  Matrix vectors;  // ids.size() x embedding_dim
};

class Recommender {
 public:
  // Loads the model, its tables, the items to retrieve from and the ranker. Throws Error naming
  // the file and the option that overrides it.
  static std::unique_ptr<Recommender> Open(const RecommenderOptions& options);
  ~Recommender();

  const RecommenderOptions& options() const;
  const Bundle& bundle() const;
  const std::string& model_version() const;   // the model file's SHA-256
  const std::string& ranker_version() const;  // the ranker file's SHA-256, "" without one
  bool reranks() const;
  bool reads_history() const;  // the user tower reads features.history
  std::string index_spec() const;
  int64_t num_items() const;  // retrievable now: the index less deleted items
  // Items of the table with no trained embedding (UntrainedItemRows), never retrieved.
  int64_t untrained_items() const;
  // {users with likes since the model, items their histories gained}.
  std::pair<int64_t, int64_t> live_like_counts() const;
  // Why the seen items could not be read ("" when they were).
  const std::string& history_error() const;

  // The top k for the user. Errors name the field: "user_id", "user.<column>", "history[i]",
  // "exclude[i]", "allow[i]", "exclude_seen".
  Recommendations Recommend(const RecommendRequest& request, const Deadline& deadline = {}) const;
  // The shown score of each item for the user (a re-ranked variant's: the ranker's probability).
  // Errors name "item_ids[i]" for an unknown item.
  std::vector<ScoredItem> Score(const UserRef& user, const std::vector<std::string>& item_ids,
                                const Deadline& deadline = {}) const;
  // The k items nearest to item_id (itself excluded) by <v_item, v>. Errors name "item_id".
  Recommendations Similar(const std::string& item_id, int k, const Deadline& deadline = {}) const;

  // The columns an item row may carry: the items table's and those the item tower and the
  // ranker read.
  std::set<std::string> ItemColumns() const;
  // Validates `rows` (each with the item id column, no column outside `allowed_columns`, each id
  // once) and encodes them by the item tower (and checks the ranker can read them). Errors name
  // "items[i]" / "items[i].<column>".
  PreparedItems PrepareItems(const std::vector<Row>& rows,
                             const std::set<std::string>& allowed_columns,
                             const Deadline& deadline = {}) const;
  // Inserts or replaces the items in the live index at once.
  PutResult CommitItems(const PreparedItems& items);
  // PrepareItems(rows, ItemColumns()) then CommitItems.
  PutResult PutItems(const std::vector<Row>& rows);
  // Removes an item from what is retrieved; false when it is unknown or already deleted.
  bool DeleteItem(const std::string& id);
  // A like the model was not trained with: for a known user, the item joins the user's seen items
  // and (a history model, an items-table item) its history. A like of an unknown user is ignored.
  void RecordLike(const std::string& user_id, const std::string& item_id);

  // Every user's top k, as RecommendAllUsers writes them (app.h), with exclude_seen dropping
  // each user's train and val items. Live items and likes are not part of a batch.
  BatchResult RecommendAll(int k, bool exclude_seen, const std::string& out_path,
                           bool progress) const;

 private:
  struct State;
  explicit Recommender(std::unique_ptr<State> state);
  Recommendations RecommendImpl(const RecommendRequest& request, const Deadline& deadline) const;
  std::vector<ScoredItem> ScoreImpl(const UserRef& user, const std::vector<std::string>& item_ids,
                                    const Deadline& deadline) const;
  Recommendations SimilarImpl(const std::string& item_id, int k, const Deadline& deadline) const;
  std::unique_ptr<State> s_;
};

}  // namespace twotower::app

#endif  // TWOTOWER_APP_RECOMMENDER_H_
