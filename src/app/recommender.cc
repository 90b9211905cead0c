#include "twotower/app/recommender.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "twotower/core/error.h"
#include "twotower/core/matrix.h"
#include "twotower/data/history.h"

namespace twotower::app {

namespace {

[[noreturn]] void Fail(ErrorCode code, const std::string& field, const std::string& message) {
  throw Error(code, message, field);
}

// A tower's output for features from a request: not finite when a value, within float's range
// but far outside what the model was trained on, overflowed inside the tower (3e38 for a year).
// Refused: a NaN query or item would be ranked silently wrong.
void RequireFiniteEmbedding(const Matrix& v, const std::string& field, const char* what) {
  if (v.allFinite()) return;
  Fail(ErrorCode::kInvalidArgument, field,
       field + ": the " + what +
           " tower's output is not finite: a feature value is too far outside what the model "
           "was trained on");
}

// Row r of a table as (column, value) pairs, into *row (cleared first).
void TableRow(const data::Table& table, int64_t r, Row* row) {
  row->clear();
  for (size_t c = 0; c < table.columns.size(); ++c) {
    row->emplace_back(table.columns[c], table.cells[c][r]);
  }
}

// Rethrows an encoder's error about a value of a request as kInvalidArgument naming `field`.
template <typename F>
void Encoding(const std::string& field, const std::string& prefix, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    Fail(ErrorCode::kInvalidArgument, field, prefix + e.what());
  }
}

// Runs f; an Error that names no request field and says kInvalidArgument did not come from the
// request (every request check names its field): it is a fault of ours or of a model file, and
// leaves as kInternal, so that no front end blames the caller for it.
template <typename F>
auto Guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kInvalidArgument && e.field().empty()) {
      throw Error(ErrorCode::kInternal, e.what());
    }
    throw;
  }
}

}  // namespace

void Deadline::Check(const char* stage) const {
  if (std::chrono::steady_clock::now() <= at) return;
  Fail(ErrorCode::kUnavailable, "",
       "the request's deadline (" + what + ") passed before " + stage + "; nothing was changed");
}

std::string AssignmentKey(const UserRef& user, const std::string& id_column) {
  if (!user.features) return user.id;
  for (const auto& [column, value] : *user.features) {
    if (column == id_column) return value;
  }
  // A user without an id: its features, column by column, as the key (length-prefixed, so no
  // two different rows give the same text).
  Row sorted = *user.features;
  std::sort(sorted.begin(), sorted.end());
  std::string key = "features:";
  for (const auto& [column, value] : sorted) {
    key += std::to_string(column.size()) + ":" + column + std::to_string(value.size()) + ":" +
           value + ";";
  }
  return key;
}

// ---- state ------------------------------------------------------------------------------------

struct Recommender::State {
  RecommenderOptions options;
  Bundle bundle;
  std::unique_ptr<index::ItemIndex> index;
  std::vector<std::vector<int64_t>> seen;  // per user row: labels in train and val
  std::string history_error;               // why `seen` is empty, when it is
  std::unique_ptr<Reranker> reranker;      // options.rerank's, or null
  Matrix user_embeddings;  // users x dim (kUserBlock blocks), or empty (options.user_cache_mb)
  // Items of the table with no trained embedding (UntrainedItemRows): left out of the exact index.
  int64_t untrained = 0;
  std::vector<char> untrained_row;  // per items-table row
  PopularityFallback fallback;      // users with no trained embedding
  std::string fallback_error;       // why its popularity could not be read, when it could not

  // The index and the live items and deletions: searches shared, PUT / DELETE exclusive.
  mutable std::shared_mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<const Row>> live_items;
  std::unordered_set<int64_t> deleted;  // labels

  // Likes since the model, per users-table row, in the order they came: the items-table rows
  // (history) and index labels (exclude_seen) of the items.
  struct LiveLikes {
    std::vector<int32_t> item_rows;
    std::vector<int64_t> labels;
  };
  mutable std::mutex likes_mutex;
  std::unordered_map<int32_t, LiveLikes> likes;

  LiveLikes LikesOf(int32_t row) const {
    std::lock_guard<std::mutex> lock(likes_mutex);
    const auto it = likes.find(row);
    return it == likes.end() ? LiveLikes{} : it->second;
  }

  bool ReadsHistory() const { return bundle.model.encoder.user.schema().history.enabled(); }

  // The row of an item: a live one or the items table's; false when neither has it (or it was
  // deleted). Under `mutex`.
  bool ItemRow(const std::string& id, Row* row) const {
    const int64_t label = index->Find(id);
    if (label >= 0 && deleted.count(label)) return false;
    const auto live = live_items.find(id);
    if (live != live_items.end()) {
      *row = *live->second;
      return true;
    }
    const int32_t r = bundle.item_index.Find(id);
    if (r < 0) return false;
    TableRow(bundle.items, r, row);
    return true;
  }

  Matrix EncodeItem(const Row& row, const std::string& field) const {
    data::EncodedTable x;
    Encoding(field, "", [&] { bundle.model.encoder.item.EncodeRow(row, field, &x); });
    Matrix out;
    bundle.model.model->EncodeItems(x, &out);
    RequireFiniteEmbedding(out, field, "item");
    return out;
  }

  double Shown(float inner_product) const { return DisplayScore(bundle, inner_product); }

  struct Query {
    Matrix u;                          // 1 x dim
    int32_t row = -1;                  // the known user's row (by id), or -1
    int32_t named_row = -1;            // features naming a known user's id: its row
    std::vector<std::string> history;  // the request's history, item ids
  };
  Query EncodeUser(const UserRef& user) const;

  // The ranker's logits for `ids` and the user (table row `user_row`, or -1: `features` through
  // the ranker's own encoder). Live items are scored from their own rows. Under `mutex`.
  std::vector<float> RankerLogits(int32_t user_row, const Row* features,
                                  const std::vector<std::string>& ids) const;
};

Recommender::State::Query Recommender::State::EncodeUser(const UserRef& user) const {
  Query q;
  Row row;
  const Bundle& b = bundle;
  const data::HistorySpec& spec = b.model.encoder.user.schema().history;
  const std::vector<std::string>* history = user.history ? &*user.history : nullptr;
  if (history != nullptr && !spec.enabled()) {
    if (!user.ignore_unread_history) {
      Fail(ErrorCode::kInvalidArgument, "history",
           "history: the model's user tower reads no history (features.history)");
    }
    history = nullptr;  // another variant's model reads it
  }
  if (history != nullptr && !user.features) {
    Fail(ErrorCode::kInvalidArgument, "history",
         "history: goes with \"user\" (a known user's history is read from the model's train "
         "and val files)");
  }
  if (user.features) {
    row = *user.features;
    std::set<std::string> allowed = {b.model.schema.user.id_column};
    for (const auto& f : b.model.schema.user.features) allowed.insert(f.column);
    if (reranker) {  // the ranker may read other columns of the user
      for (const auto& f : reranker->ranker.schema.user.features) allowed.insert(f.column);
    }
    for (const auto& [key, value] : row) {
      if (!allowed.count(key)) {
        Fail(ErrorCode::kInvalidArgument, "user." + key,
             "user." + key + ": not a column of the model's user tower" +
                 (reranker ? std::string(" or of its ranker") : std::string()));
      }
    }
  } else {
    q.row = b.user_index.Find(user.id);
    if (q.row < 0) {
      Fail(ErrorCode::kNotFound, "user_id",
           "user_id " + Quote(user.id) +
               " is not in the users table (a user without a row there is given by its feature "
               "columns: \"user\" in a request, recommend_for in Python)");
    }
    if (!spec.enabled() || LikesOf(q.row).item_rows.empty()) {
      if (user_embeddings.rows() > 0) {
        q.u = user_embeddings.row(q.row);
      } else if (options.uncached_user_blocks) {
        EncodeKnownUsers(b, q.row, 1, &q.u);
      } else {  // the row's features were encoded at load: the tower runs on them directly
        b.model.model->EncodeUsers(b.user_features, &q.row, 1, &q.u);
      }
      return q;
    }
    // Likes since the model change the history: the row's features are encoded again, below,
    // with the loaded history and the likes after it.
    TableRow(b.users, q.row, &row);
  }
  data::EncodedTable x;
  Encoding("user", "", [&] { b.model.encoder.user.EncodeRow(row, "user", &x); });
  // A user given by features: the request's history; else, for a user of the users table named
  // by its id column, the history loaded for it; else none.
  int32_t known = -1;
  for (const auto& [key, value] : row) {
    if (key == b.model.schema.user.id_column) known = b.user_index.Find(value);
  }
  if (q.row < 0) q.named_row = known;
  if (spec.enabled() && history == nullptr) {
    x.history = data::Bags{{0, 0}, {}};
    if (known >= 0) {
      const data::Bags& h = b.user_features.history;
      std::vector<int32_t>& ids = x.history.ids;
      ids.assign(h.ids.begin() + h.offsets[known], h.ids.begin() + h.offsets[known + 1]);
      const LiveLikes likes = LikesOf(known);
      if (!likes.item_rows.empty()) {  // after the loaded history, the last `length` in all
        const data::Bags later = data::HistoryOfItems(
            likes.item_rows, b.item_features.bags.at(data::HistoryTableBag(b.model.encoder.item)),
            spec.length);
        ids.insert(ids.end(), later.ids.begin(), later.ids.end());
        if (static_cast<int>(ids.size()) > spec.length) {
          ids.erase(ids.begin(), ids.end() - spec.length);
        }
      }
      x.history.offsets[1] = static_cast<int64_t>(ids.size());
    }
  } else if (spec.enabled()) {
    std::vector<int32_t> items;
    q.history = *history;
    for (size_t i = 0; i < q.history.size(); ++i) {
      const int32_t item = b.item_index.Find(q.history[i]);
      if (item < 0) {
        const std::string field = "history[" + std::to_string(i) + "]";
        Fail(ErrorCode::kNotFound, field,
             field + ": unknown item " + Quote(q.history[i]) +
                 " (not in the items table; an item added by PUT /v1/items has no trained "
                 "embedding for a history to read)");
      }
      items.push_back(item);
    }
    x.history = data::HistoryOfItems(
        items, b.item_features.bags.at(data::HistoryTableBag(b.model.encoder.item)), spec.length);
  }
  b.model.model->EncodeUsers(x, &q.u);
  RequireFiniteEmbedding(q.u, "user", "user");
  return q;
}

std::vector<float> Recommender::State::RankerLogits(int32_t user_row, const Row* features,
                                                    const std::vector<std::string>& ids) const {
  const Reranker& r = *reranker;
  const model::Ranker& ranker = *r.ranker.model;
  data::EncodedTable user_one;
  const data::EncodedTable* users = &r.user_features;
  int32_t urow = user_row;
  if (user_row < 0) {
    Encoding("user", "the ranker's user features: ", [&] {
      r.ranker.encoder.user.EncodeRow(*features, "user", &user_one);
    });
    users = &user_one;
    urow = 0;
  }
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> logits(n);
  std::vector<int32_t> table_rows, user_rows;
  std::vector<int64_t> table_at;  // positions scored from the items table
  for (int64_t i = 0; i < n; ++i) {
    const auto live = live_items.find(ids[i]);
    if (live == live_items.end()) {
      const int32_t row = bundle.item_index.Find(ids[i]);
      if (row < 0) {
        throw Error(ErrorCode::kInternal, "re-ranking: item " + Quote(ids[i]) +
                                              " is neither in the items table nor live");
      }
      table_rows.push_back(row);
      table_at.push_back(i);
      continue;
    }
    // A live item (new, or updated by PUT): its own features through the ranker's encoder.
    data::EncodedTable item_one;
    try {
      r.ranker.encoder.item.EncodeRow(*live->second, "items", &item_one);
    } catch (const Error& e) {
      Fail(ErrorCode::kConflict, "items",
           "item " + Quote(ids[i]) + " cannot be re-ranked: " + e.what());
    }
    const int32_t zero = 0;
    Vector one;
    ranker.Score(*users, &urow, item_one, &zero, 1, &one);
    logits[i] = one[0];
  }
  // The items-table candidates in one batch, as RecommendAll's Rerank scores them.
  user_rows.assign(table_rows.size(), urow);
  Vector table_logits;
  ranker.Score(*users, user_rows.data(), r.item_features, table_rows.data(),
               static_cast<int64_t>(table_rows.size()), &table_logits);
  for (size_t j = 0; j < table_at.size(); ++j) logits[table_at[j]] = table_logits[j];
  return logits;
}

// ---- open --------------------------------------------------------------------------------------

Recommender::Recommender(std::unique_ptr<State> state) : s_(std::move(state)) {}
Recommender::~Recommender() = default;

std::unique_ptr<Recommender> Recommender::Open(const RecommenderOptions& options) {
  if (options.candidates < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                "candidates: expected at least 1, got " + std::to_string(options.candidates),
                "candidates");
  }
  auto s = std::make_unique<State>();
  s->options = options;
  s->bundle = LoadBundle(options.model, options.data);
  const Bundle& b = s->bundle;
  s->index = OpenItemIndex(b, options.index, options.embeddings, options.allow_other_model);
  {
    const std::vector<int64_t> rows = UntrainedItemRows(b.model, b.item_features);
    s->untrained = static_cast<int64_t>(rows.size());
    s->untrained_row.assign(static_cast<size_t>(b.items.num_rows()), 0);
    for (int64_t r : rows) s->untrained_row[static_cast<size_t>(r)] = 1;
  }
  // Users with no trained embedding (an id-alone user tower): the popularity fallback, from the
  // same train and val files as the seen items (read here when those were not loaded).
  s->fallback = MakePopularityFallback(b, s->index->size(), {});
  const bool need_popularity = s->fallback.enabled();
  if (!options.load_seen) {
    s->history_error = "the seen items were not loaded (RecommenderOptions::load_seen)";
  } else {
    try {
      s->seen = SeenLabels(b, *s->index, HistoryFiles(b, options.data));
    } catch (const Error& e) {
      if (options.require_history) throw;
      s->history_error = e.what();
    }
  }
  if (need_popularity) {
    if (!s->seen.empty()) {
      s->fallback = MakePopularityFallback(b, s->index->size(), s->seen);
    } else {
      try {
        s->fallback = MakePopularityFallback(
            b, s->index->size(), SeenLabels(b, *s->index, HistoryFiles(b, options.data)));
      } catch (const Error& e) {
        s->fallback_error = e.what();
      }
    }
  }
  if (!options.rerank.empty()) {
    s->reranker = std::make_unique<Reranker>(
        LoadReranker(options.rerank, b, s->index.get(), options.candidates));
  }
  const int64_t n = b.users.num_rows();
  const int dim = b.model.model->embedding_dim();
  if (static_cast<double>(n) * dim * sizeof(float) <=
      static_cast<double>(options.user_cache_mb) * (1 << 20)) {
    EncodeKnownUsers(b, 0, n, &s->user_embeddings);
  }
  return std::unique_ptr<Recommender>(new Recommender(std::move(s)));
}

const RecommenderOptions& Recommender::options() const { return s_->options; }
const Bundle& Recommender::bundle() const { return s_->bundle; }
const std::string& Recommender::model_version() const { return s_->bundle.model.fingerprint; }
const std::string& Recommender::ranker_version() const {
  static const std::string kNone;
  return s_->reranker ? s_->reranker->ranker.fingerprint : kNone;
}
bool Recommender::reranks() const { return s_->reranker != nullptr; }
bool Recommender::reads_history() const { return s_->ReadsHistory(); }
std::string Recommender::index_spec() const {
  std::shared_lock<std::shared_mutex> lock(s_->mutex);
  return s_->index->spec();
}
int64_t Recommender::untrained_items() const { return s_->untrained; }

int64_t Recommender::num_items() const {
  std::shared_lock<std::shared_mutex> lock(s_->mutex);
  return s_->index->size() - static_cast<int64_t>(s_->deleted.size());
}
std::pair<int64_t, int64_t> Recommender::live_like_counts() const {
  std::lock_guard<std::mutex> lock(s_->likes_mutex);
  int64_t n = 0;
  for (const auto& [row, l] : s_->likes) n += static_cast<int64_t>(l.item_rows.size());
  return {static_cast<int64_t>(s_->likes.size()), n};
}
const std::string& Recommender::history_error() const { return s_->history_error; }

// ---- recommend, score, similar -----------------------------------------------------------------

Recommendations Recommender::Recommend(const RecommendRequest& request,
                                       const Deadline& deadline) const {
  return Guarded([&] { return RecommendImpl(request, deadline); });
}

Recommendations Recommender::RecommendImpl(const RecommendRequest& request,
                                           const Deadline& deadline) const {
  const State& v = *s_;
  if (request.k < 1) {
    Fail(ErrorCode::kInvalidArgument, "k",
         "k: expected at least 1, got " + std::to_string(request.k));
  }
  deadline.Check("encoding the user");
  const State::Query q = v.EncodeUser(request.user);
  std::shared_lock<std::shared_mutex> lock(v.mutex);
  index::SearchFilter filter;
  Recommendations out;
  // The seen items of a user of the users table, by id or named by its features' id column.
  const int32_t seen_row = q.row >= 0 ? q.row : q.named_row;
  if (request.exclude_seen && seen_row >= 0) {
    if (!v.history_error.empty()) {
      Fail(ErrorCode::kConflict, "exclude_seen",
           "exclude_seen: the model's history cannot be read: " + v.history_error);
    }
    filter.exclude = v.seen[seen_row];
    const State::LiveLikes likes = v.LikesOf(seen_row);
    filter.exclude.insert(filter.exclude.end(), likes.labels.begin(), likes.labels.end());
    out.seen_excluded = static_cast<int64_t>(filter.exclude.size());
  }
  if (request.exclude_seen) {  // a new user's seen items: its request history
    for (const std::string& id : q.history) {
      const int64_t label = v.index->Find(id);
      if (label >= 0) filter.exclude.push_back(label);
    }
  }
  auto label_of = [&](const std::string& id, const std::string& field) {
    const int64_t label = v.index->Find(id);
    if (label < 0 || v.deleted.count(label)) {
      Fail(ErrorCode::kNotFound, field, field + ": unknown item " + Quote(id));
    }
    return label;
  };
  for (size_t i = 0; i < request.exclude.size(); ++i) {
    filter.exclude.push_back(label_of(request.exclude[i], "exclude[" + std::to_string(i) + "]"));
  }
  filter.exclude.insert(filter.exclude.end(), v.deleted.begin(), v.deleted.end());
  if (request.allow) {
    std::vector<int64_t> labels;
    for (size_t i = 0; i < request.allow->size(); ++i) {
      labels.push_back(label_of((*request.allow)[i], "allow[" + std::to_string(i) + "]"));
    }
    filter.allow = std::move(labels);
  }
  const int k = request.k;
  if (q.row >= 0 && v.fallback.enabled() && v.fallback.cold_user[static_cast<size_t>(q.row)]) {
    // No trained embedding for this user: the popularity fallback, flagged.
    if (v.fallback.order.empty()) {
      Fail(ErrorCode::kConflict, "user_id",
           "user_id: user " + Quote(v.bundle.user_index.ids[static_cast<size_t>(q.row)]) +
               " is in no interaction the model was trained on, and the popularity it would "
               "fall back to cannot be read: " +
               v.fallback_error);
    }
    deadline.Check("the search");
    for (const auto& [label, share] : v.fallback.Top(&filter, k)) {
      ScoredItem it;
      it.id = v.index->ids()[label];
      it.score = share;
      const auto live = v.live_items.find(it.id);
      if (live != v.live_items.end()) {
        it.live = live->second;
      } else {
        it.item_row = v.bundle.item_index.Find(it.id);
      }
      out.items.push_back(std::move(it));
    }
    out.retrieved = static_cast<int64_t>(out.items.size());
    out.untrained_excluded = v.untrained;
    out.fallback = "popularity";
    return out;
  }
  const int wanted = v.reranker ? std::max(k, v.reranker->candidates) : k;
  // Buffers sized by what can be returned, not by the request (k may exceed the catalogue).
  const int kk = static_cast<int>(std::min<int64_t>(wanted, std::max<int64_t>(v.index->size(), 1)));
  std::vector<int64_t> labels(static_cast<size_t>(kk));
  std::vector<float> scores(static_cast<size_t>(kk));
  deadline.Check("the search");
  v.index->Search(q.u.data(), 1, kk, &filter, labels.data(), scores.data());
  auto item = [&](int64_t label, double score) {
    ScoredItem it;
    it.id = v.index->ids()[label];
    it.score = score;
    const auto live = v.live_items.find(it.id);
    if (live != v.live_items.end()) {
      it.live = live->second;
    } else {
      it.item_row = v.bundle.item_index.Find(it.id);
    }
    return it;
  };
  std::vector<int64_t> retrieved;
  for (int r = 0; r < kk && labels[r] >= 0; ++r) retrieved.push_back(r);
  out.retrieved = static_cast<int64_t>(retrieved.size());
  out.untrained_excluded = v.untrained;
  if (!v.reranker) {
    for (int64_t r : retrieved) out.items.push_back(item(labels[r], v.Shown(scores[r])));
    return out;
  }
  // Re-ordered by the ranker (ties keep the retrieval order), the top k kept, the scores
  // becoming the ranker's probabilities.
  deadline.Check("re-ranking");
  std::vector<std::string> ids;
  for (int64_t r : retrieved) ids.push_back(v.index->ids()[labels[r]]);
  const std::vector<float> logits =
      v.RankerLogits(q.row, request.user.features ? &*request.user.features : nullptr, ids);
  const int64_t n = static_cast<int64_t>(ids.size());
  const std::vector<int64_t> order = RerankOrder(
      logits.data(), n, v.reranker->path, [&](int64_t i) { return "item " + Quote(ids[i]); });
  for (int64_t i = 0; i < std::min<int64_t>(k, n); ++i) {
    out.items.push_back(item(labels[order[i]], Sigmoid(logits[order[i]])));
  }
  out.reranked = true;
  return out;
}

std::vector<ScoredItem> Recommender::Score(const UserRef& user,
                                           const std::vector<std::string>& item_ids,
                                           const Deadline& deadline) const {
  return Guarded([&] { return ScoreImpl(user, item_ids, deadline); });
}

std::vector<ScoredItem> Recommender::ScoreImpl(const UserRef& user,
                                               const std::vector<std::string>& item_ids,
                                               const Deadline& deadline) const {
  const State& v = *s_;
  deadline.Check("encoding the user");
  const State::Query q = v.EncodeUser(user);
  std::shared_lock<std::shared_mutex> lock(v.mutex);
  std::vector<ScoredItem> out(item_ids.size());
  for (size_t i = 0; i < item_ids.size(); ++i) {
    const std::string field = "item_ids[" + std::to_string(i) + "]";
    deadline.Check(("encoding " + field).c_str());
    Row row;
    if (!v.ItemRow(item_ids[i], &row)) {
      Fail(ErrorCode::kNotFound, field, field + ": unknown item " + Quote(item_ids[i]));
    }
    out[i].id = item_ids[i];
    const auto live = v.live_items.find(item_ids[i]);
    if (live != v.live_items.end()) {
      out[i].live = live->second;
    } else {
      out[i].item_row = v.bundle.item_index.Find(item_ids[i]);
    }
    if (v.reranker) continue;  // scored below, all at once, by the variant's last stage
    const Matrix item = v.EncodeItem(row, field);
    out[i].score = v.Shown(q.u.row(0).dot(item.row(0)));
  }
  if (v.reranker) {
    // The score a re-ranked variant shows is its ranker's probability, as Recommend's.
    deadline.Check("re-ranking");
    const std::vector<float> logits =
        v.RankerLogits(q.row, user.features ? &*user.features : nullptr, item_ids);
    // Every logit checked as re-ranking checks them (the order itself is not needed here).
    RerankOrder(logits.data(), static_cast<int64_t>(logits.size()), v.reranker->path,
                [&](int64_t i) { return "item " + Quote(item_ids[i]); });
    for (size_t i = 0; i < logits.size(); ++i) out[i].score = Sigmoid(logits[i]);
  }
  return out;
}

Recommendations Recommender::Similar(const std::string& item_id, int k,
                                     const Deadline& deadline) const {
  return Guarded([&] { return SimilarImpl(item_id, k, deadline); });
}

Recommendations Recommender::SimilarImpl(const std::string& item_id, int k,
                                         const Deadline& deadline) const {
  const State& v = *s_;
  if (k < 1)
    Fail(ErrorCode::kInvalidArgument, "k", "k: expected at least 1, got " + std::to_string(k));
  std::shared_lock<std::shared_mutex> lock(v.mutex);
  Row row;
  const int64_t self = v.index->Find(item_id);
  const bool has_row = v.ItemRow(item_id, &row);
  // The query is the item's vector in the index when the index holds it: what retrieval scores
  // it by, also for an item `index add` updated or added (the items table may still hold its
  // old features, or none). An item the table has and the index lacks is encoded from its row.
  const bool in_index = self >= 0 && v.deleted.count(self) == 0;
  if (!has_row && !in_index) {
    Fail(ErrorCode::kNotFound, "item_id", "item_id: unknown item " + Quote(item_id));
  }
  const int32_t table_row = v.bundle.item_index.Find(item_id);
  if (has_row && table_row >= 0 && v.live_items.count(item_id) == 0 &&
      v.untrained_row[static_cast<size_t>(table_row)]) {
    Fail(ErrorCode::kConflict, "item_id",
         "item_id: item " + Quote(item_id) +
             " has no trained embedding (it is in no interaction the model was trained on, and "
             "the item tower is the id alone): there is nothing to find similar items by");
  }
  Matrix item;
  if (in_index) {
    item.resize(1, v.index->dim());
    v.index->GetVector(self, item.data());
  } else {
    item = v.EncodeItem(row, "item_id");
  }
  index::SearchFilter filter;
  filter.exclude.assign(v.deleted.begin(), v.deleted.end());
  if (self >= 0) filter.exclude.push_back(self);
  const int kk = static_cast<int>(std::min<int64_t>(k, std::max<int64_t>(v.index->size(), 1)));
  std::vector<int64_t> labels(static_cast<size_t>(kk));
  std::vector<float> scores(static_cast<size_t>(kk));
  deadline.Check("the search");
  v.index->Search(item.data(), 1, kk, &filter, labels.data(), scores.data());
  Recommendations out;
  for (int r = 0; r < kk && labels[r] >= 0; ++r) {
    ScoredItem it;
    it.id = v.index->ids()[labels[r]];
    it.score = scores[r];
    const auto live = v.live_items.find(it.id);
    if (live != v.live_items.end()) {
      it.live = live->second;
    } else {
      it.item_row = v.bundle.item_index.Find(it.id);
    }
    out.items.push_back(std::move(it));
  }
  out.retrieved = static_cast<int64_t>(out.items.size());
  out.untrained_excluded = v.untrained;
  return out;
}

// ---- live items and likes ----------------------------------------------------------------------

std::set<std::string> Recommender::ItemColumns() const {
  const Bundle& b = s_->bundle;
  std::set<std::string> columns = {b.model.schema.item.id_column};
  columns.insert(b.items.columns.begin(), b.items.columns.end());
  for (const auto& f : b.model.schema.item.features) columns.insert(f.column);
  if (s_->reranker) {
    for (const auto& f : s_->reranker->ranker.schema.item.features) columns.insert(f.column);
  }
  return columns;
}

PreparedItems Recommender::PrepareItems(const std::vector<Row>& rows,
                                        const std::set<std::string>& allowed_columns,
                                        const Deadline& deadline) const {
  const State& v = *s_;
  const std::string& id_column = v.bundle.model.schema.item.id_column;
  if (rows.empty()) {
    Fail(ErrorCode::kInvalidArgument, "items", "items: expected a non-empty list of item rows");
  }
  PreparedItems out;
  std::set<std::string> distinct;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string field = "items[" + std::to_string(i) + "]";
    std::string id;
    for (const auto& [column, value] : rows[i]) {
      if (column == id_column) id = value;
      if (!allowed_columns.count(column)) {
        Fail(ErrorCode::kInvalidArgument, field + "." + column,
             field + "." + column + ": not a column of the items table or the item tower");
      }
    }
    if (id.empty()) {
      Fail(ErrorCode::kInvalidArgument, field + "." + id_column, field + ": no " + id_column);
    }
    if (id.size() > data::kMaxIdBytes) {
      Fail(ErrorCode::kInvalidArgument, field + "." + id_column,
           field + "." + id_column + ": an id of " + std::to_string(id.size()) +
               " bytes, at most " + std::to_string(data::kMaxIdBytes));
    }
    if (id.find_first_of("\n\r") != std::string::npos) {  // an index file holds one id a line
      Fail(ErrorCode::kInvalidArgument, field + "." + id_column,
           field + "." + id_column + ": an id cannot hold a line break, got " + Quote(id));
    }
    if (!distinct.insert(id).second) {
      Fail(ErrorCode::kInvalidArgument, field, field + ": item " + Quote(id) + " given twice");
    }
    out.ids.push_back(id);
    out.rows.push_back(std::make_shared<const Row>(rows[i]));
  }
  out.vectors.resize(static_cast<Eigen::Index>(rows.size()), v.bundle.model.model->embedding_dim());
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string field = "items[" + std::to_string(i) + "]";
    deadline.Check(("encoding " + field).c_str());
    out.vectors.row(static_cast<Eigen::Index>(i)) = v.EncodeItem(rows[i], field).row(0);
    // Checked here, not at commit: a server puts an item on every variant only when every
    // variant can take it.
    if (!out.vectors.row(static_cast<Eigen::Index>(i)).allFinite()) {
      Fail(ErrorCode::kInvalidArgument, field,
           field +
               ": the item tower gives a non-finite embedding for this row (a feature value "
               "far outside what the model was trained on?)");
    }
    if (v.reranker) {
      // The ranker must be able to score the item too, or every later request that retrieves it
      // would fail: refused here, before anything changes.
      data::EncodedTable x;
      try {
        v.reranker->ranker.encoder.item.EncodeRow(rows[i], field, &x);
      } catch (const Error& e) {
        Fail(ErrorCode::kInvalidArgument, field,
             std::string(e.what()) + " (variant '" + v.options.name + "' re-ranks with " +
                 v.options.rerank + ", which reads it)");
      }
    }
  }
  return out;
}

PutResult Recommender::CommitItems(const PreparedItems& items) {
  State& v = *s_;
  std::unique_lock<std::shared_mutex> lock(v.mutex);
  const index::ItemIndex::AddResult r =
      Guarded([&] { return v.index->Add(items.vectors.data(), items.vectors.rows(), items.ids); });
  for (size_t i = 0; i < items.ids.size(); ++i) {
    v.live_items[items.ids[i]] = items.rows[i];
    v.deleted.erase(v.index->Find(items.ids[i]));
  }
  return {r.added, r.updated};
}

PutResult Recommender::PutItems(const std::vector<Row>& rows) {
  return CommitItems(PrepareItems(rows, ItemColumns()));
}

bool Recommender::DeleteItem(const std::string& id) {
  State& v = *s_;
  std::unique_lock<std::shared_mutex> lock(v.mutex);
  const int64_t label = v.index->Find(id);
  if (label < 0 || v.deleted.count(label)) return false;
  v.deleted.insert(label);
  v.live_items.erase(id);
  return true;
}

void Recommender::RecordLike(const std::string& user_id, const std::string& item_id) {
  State& v = *s_;
  const int32_t user = v.bundle.user_index.Find(user_id);
  if (user < 0) return;
  const int32_t item = v.bundle.item_index.Find(item_id);
  int64_t label = -1;
  {
    std::shared_lock<std::shared_mutex> lock(v.mutex);
    label = v.index->Find(item_id);
  }
  std::lock_guard<std::mutex> lock(v.likes_mutex);
  State::LiveLikes& l = v.likes[user];
  // A live item only joins the seen items: it has no trained embedding for a history to read.
  if (item >= 0 && v.ReadsHistory()) l.item_rows.push_back(item);
  if (label >= 0) l.labels.push_back(label);
}

BatchResult Recommender::RecommendAll(int k, bool exclude_seen, const std::string& out_path,
                                      bool progress) const {
  const State& v = *s_;
  if (exclude_seen && !v.history_error.empty()) {
    throw Error(ErrorCode::kConflict, "exclude_seen: " + v.history_error, "exclude_seen");
  }
  std::shared_lock<std::shared_mutex> lock(v.mutex);
  return RecommendAllUsers(
      v.bundle, *v.index, k, exclude_seen ? &v.seen : nullptr, out_path, progress, v.reranker.get(),
      v.user_embeddings.rows() > 0 ? &v.user_embeddings : nullptr, &v.fallback);
}

}  // namespace twotower::app
