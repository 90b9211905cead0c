// twotower._twotower: the Python binding of the app core (pybind11, Debian's pybind11-dev). It
// holds no logic of its own: each function converts Python values to the app's plain structs,
// calls one app function with the GIL released, and converts the result back. The Python-facing
// API (twotower/__init__.py) wraps these in classes following faiss / implicit / pandas habits.
//
// Errors: every twotower::Error becomes the Python exception of its code (core/error.h):
// InvalidArgumentError (a ValueError), NotFoundError (a LookupError), MissingFileError (a
// FileNotFoundError: a file that does not exist), CorruptDataError, IoError (an OSError),
// ConflictError, UnavailableError, InternalError; all subclasses of
// twotower.Error, with the request field as `.field` where there is one.
//
// Arrays: embeddings come back as float32 numpy arrays (n, d) that own the engine's matrix
// (no copy); queries and vectors given to an index are read in place when they are C-contiguous
// float32.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "twotower/app/app.h"
#include "twotower/app/build_info.h"
#include "twotower/app/recommender.h"
#include "twotower/app/train.h"
#include "twotower/core/error.h"
#include "twotower/core/matrix.h"
#include "twotower/core/progress.h"
#include "twotower/core/threads.h"
#include "twotower/data/generator.h"
#include "twotower/data/movielens.h"
#include "twotower/index/item_index.h"
#include "twotower/serve/server.h"

namespace py = pybind11;

namespace twotower::python {
namespace {

// A float32 array (rows, cols) that owns `m` (moved to the heap; freed with the array).
py::array_t<float> ToNumpy(Matrix m) {
  auto* owned = new Matrix(std::move(m));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<Matrix*>(p); });
  return py::array_t<float>(
      {static_cast<py::ssize_t>(owned->rows()), static_cast<py::ssize_t>(owned->cols())},
      {static_cast<py::ssize_t>(owned->cols() * sizeof(float)),
       static_cast<py::ssize_t>(sizeof(float))},
      owned->data(), free_when_done);
}

// A (n, dim) C-contiguous float32 view of `a` (converted when it is another dtype or layout).
py::array_t<float, py::array::c_style | py::array::forcecast> Rows(const py::handle& a, int dim,
                                                                   const char* what) {
  // Complex values would be cast to their real parts with only numpy's warning.
  const py::array any = py::array::ensure(a);
  if (any && any.dtype().kind() == 'c') {
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + ": expected real numbers, got complex values (dtype " +
                    py::str(any.dtype()).cast<std::string>() + ")",
                what);
  }
  auto arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!arr)
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": expected an array of numbers",
                what);
  if (arr.ndim() != 2 || (dim > 0 && arr.shape(1) != dim)) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + ": expected shape (n, " +
                    (dim > 0 ? std::to_string(dim) : std::string("d")) + "), got " +
                    std::to_string(arr.ndim()) + " dimensions" +
                    (arr.ndim() == 2 ? " (n, " + std::to_string(arr.shape(1)) + ")" : ""),
                what);
  }
  return arr;
}

// Python str objects of an id list, made once and shared by every result that returns the id
// (a batch of 1,000 users x k 10 would otherwise decode 10,000 strings per call). Grows with
// the list (an index's Add appends ids; a label keeps its id). Use with the GIL held.
class IdCache {
 public:
  // A new reference to the str of ids[label].
  PyObject* Get(const std::vector<std::string>& ids, int64_t label) {
    const auto i = static_cast<size_t>(label);
    if (i >= cells_.size()) cells_.resize(ids.size());
    if (!cells_[i]) cells_[i] = Text(ids[i]);
    PyObject* o = cells_[i].ptr();
    Py_INCREF(o);
    return o;
  }

 private:
  static py::object Text(const std::string& s) {
    PyObject* o =
        PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
  }
  std::vector<py::object> cells_;
};

// Sets a fresh object array's cell (numpy leaves them NULL or None, by version) to `value`, a
// new reference.
void SetCell(PyObject*& cell, PyObject* value) {
  Py_XDECREF(cell);
  cell = value;
}

struct PyRecommendations {
  std::vector<std::string> ids;
  std::vector<double> scores;
  bool reranked = false;
  std::string fallback;            // "" or "popularity" (app::Recommendations::fallback)
  int64_t untrained_excluded = 0;  // items with no trained embedding, never returned
};

PyRecommendations FromApp(const app::Recommendations& r) {
  PyRecommendations out;
  out.reranked = r.reranked;
  out.fallback = r.fallback;
  out.untrained_excluded = r.untrained_excluded;
  for (const app::ScoredItem& s : r.items) {
    out.ids.push_back(s.id);
    out.scores.push_back(s.score);
  }
  return out;
}

// One opened model: app::Recommender and what the Python class reads from it.
class Model {
 public:
  Model(const std::string& path, const std::string& index, const std::string& embeddings,
        const std::string& users, const std::string& items, const std::string& rerank,
        int candidates, bool load_seen) {
    app::RecommenderOptions o;
    o.model = path;
    o.index = index;
    o.embeddings = embeddings;
    o.data.users = users;
    o.data.items = items;
    o.rerank = rerank;
    o.candidates = candidates;
    o.load_seen = load_seen;
    py::gil_scoped_release release;
    rec_ = app::Recommender::Open(o);
  }

  PyRecommendations Recommend(const std::string& user_id, int k, bool exclude_seen,
                              const std::vector<std::string>& exclude,
                              const std::optional<std::vector<std::string>>& allow) const {
    app::RecommendRequest r;
    r.user.id = user_id;
    r.k = k;
    r.exclude_seen = exclude_seen;
    r.exclude = exclude;
    r.allow = allow;
    py::gil_scoped_release release;
    return FromApp(rec_->Recommend(r));
  }

  // Many users at once (each as Recommend), the GIL released once.
  int64_t NumItems() const { return rec_->num_items(); }

  py::tuple RecommendBatch(const std::vector<std::string>& user_ids, int k, bool exclude_seen,
                           const std::vector<std::string>& exclude,
                           const std::optional<std::vector<std::string>>& allow, int64_t width) {
    std::vector<app::Recommendations> all(user_ids.size());
    {
      py::gil_scoped_release release;
      app::RecommendRequest r;
      r.k = k;
      r.exclude_seen = exclude_seen;
      r.exclude = exclude;
      r.allow = allow;
      for (size_t i = 0; i < user_ids.size(); ++i) {
        r.user.id = user_ids[i];
        all[i] = rec_->Recommend(r);
      }
    }
    const auto n = static_cast<py::ssize_t>(user_ids.size());
    py::array ids(py::dtype("O"), {n, static_cast<py::ssize_t>(width)});
    py::array_t<double> scores({n, static_cast<py::ssize_t>(width)});
    auto* id_cells = static_cast<PyObject**>(ids.mutable_data());
    double* score_cells = scores.mutable_data();
    const std::vector<std::string>& item_ids = rec_->bundle().item_index.ids;
    for (py::ssize_t i = 0; i < n; ++i) {
      const auto& items = all[static_cast<size_t>(i)].items;
      for (int64_t j = 0; j < width; ++j) {
        PyObject*& cell = id_cells[i * width + j];
        if (j < static_cast<int64_t>(items.size())) {
          const app::ScoredItem& item = items[static_cast<size_t>(j)];
          const bool cached = item.item_row >= 0 &&
                              static_cast<size_t>(item.item_row) < item_ids.size() &&
                              item_ids[static_cast<size_t>(item.item_row)] == item.id;
          PyObject* text =
              cached ? id_objects_.Get(item_ids, item.item_row)
                     : PyUnicode_DecodeUTF8(item.id.data(), static_cast<Py_ssize_t>(item.id.size()),
                                            "surrogateescape");
          if (text == nullptr) throw py::error_already_set();
          SetCell(cell, text);
          score_cells[i * width + j] = item.score;
        } else {
          Py_INCREF(Py_None);
          SetCell(cell, Py_None);
          score_cells[i * width + j] = std::nan("");
        }
      }
    }
    return py::make_tuple(ids, scores);
  }

  PyRecommendations RecommendFeatures(const app::Row& features,
                                      const std::optional<std::vector<std::string>>& history, int k,
                                      const std::vector<std::string>& exclude,
                                      const std::optional<std::vector<std::string>>& allow) const {
    app::RecommendRequest r;
    r.user.features = features;
    r.user.history = history;
    r.k = k;
    r.exclude = exclude;
    r.allow = allow;
    py::gil_scoped_release release;
    return FromApp(rec_->Recommend(r));
  }

  std::vector<double> Score(const std::string& user_id,
                            const std::vector<std::string>& item_ids) const {
    app::UserRef user;
    user.id = user_id;
    py::gil_scoped_release release;
    std::vector<double> out;
    for (const app::ScoredItem& s : rec_->Score(user, item_ids)) out.push_back(s.score);
    return out;
  }

  PyRecommendations Similar(const std::string& item_id, int k) const {
    py::gil_scoped_release release;
    return FromApp(rec_->Similar(item_id, k));
  }

  // Every user of the users table through the user tower, in the blocks every other path uses
  // (app::EncodeKnownUsers), so the rows are the bits `recommend` searches with.
  py::array_t<float> EncodeUsers() const {
    Matrix all;
    {
      py::gil_scoped_release release;
      const app::Bundle& b = rec_->bundle();
      const int64_t n = b.users.num_rows();
      all.resize(n, b.model.model->embedding_dim());
      Matrix block;
      for (int64_t first = 0; first < n; first += app::kUserBlock) {
        const int64_t m = std::min<int64_t>(app::kUserBlock, n - first);
        app::EncodeKnownUsers(b, first, m, &block);
        all.middleRows(first, m) = block;
      }
    }
    return ToNumpy(std::move(all));
  }

  // Every item of the items table through the item tower (app::EmbedItems: what `embed` writes).
  py::array_t<float> EncodeItems() const {
    Matrix v;
    {
      py::gil_scoped_release release;
      v = app::EmbedItems(rec_->bundle().model, rec_->bundle().items);
    }
    return ToNumpy(std::move(v));
  }

  // The rows of a users or items table file (a DataFrame encode_users / encode_items got,
  // written by write_table) through that side's tower: users in blocks of app::kUserBlock, as
  // every path encodes them; items as `embed` does. Ids the model never trained on encode as
  // unseen (their id contributes nothing learned; data/encoder.h). A user tower that reads the
  // user's history is refused: a table holds features only.
  py::array_t<float> EncodeTableFile(const std::string& path, bool users) const {
    Matrix out;
    {
      py::gil_scoped_release release;
      const app::Bundle& b = rec_->bundle();
      const data::Table table = app::ReadDataTable(path, false, users ? "users" : "items");
      if (!users) {
        out = app::EmbedItems(b.model, table);
      } else {
        if (b.model.schema.user.history.enabled()) {
          throw Error(ErrorCode::kInvalidArgument,
                      "encode_users: this model's user tower reads each user's history "
                      "(features.history), which a DataFrame of features does not hold; give "
                      "ids of the users table, or use recommend_for(features, history)",
                      "user_ids");
        }
        data::EncodedTable x;
        b.model.encoder.user.Encode(table, &x);
        const int64_t n = table.num_rows();
        out.resize(n, b.model.model->embedding_dim());
        std::vector<int32_t> rows;
        Matrix block;
        for (int64_t first = 0; first < n; first += app::kUserBlock) {
          const int64_t m = std::min<int64_t>(app::kUserBlock, n - first);
          rows.resize(static_cast<size_t>(m));
          for (int64_t i = 0; i < m; ++i)
            rows[static_cast<size_t>(i)] = static_cast<int32_t>(first + i);
          b.model.model->EncodeUsers(x, rows.data(), m, &block);
          out.middleRows(first, m) = block;
        }
      }
    }
    return ToNumpy(std::move(out));
  }

  const std::vector<std::string>& UserIds() const { return rec_->bundle().user_index.ids; }
  const std::vector<std::string>& ItemIds() const { return rec_->bundle().item_index.ids; }
  std::string Config() const { return rec_->bundle().model.config.dump(); }
  const std::string& Sha256() const { return rec_->model_version(); }
  int Dim() const { return rec_->bundle().model.model->embedding_dim(); }
  std::string IndexSpec() const { return rec_->index_spec(); }

  // Pointwise and ranking metrics of an interactions file (app::EvaluateInteractions: what
  // `twotower evaluate` prints), as a flat dict.
  py::dict Evaluate(const std::string& path, const std::vector<std::string>& exclude) const {
    app::EvaluationReport r;
    {
      py::gil_scoped_release release;
      r = app::EvaluateInteractions(rec_->bundle(), path, exclude);
    }
    py::dict d;
    d["count"] = r.pointwise.count;
    d["loss"] = r.pointwise.loss;
    d["accuracy"] = r.pointwise.accuracy;
    d["auc"] = r.pointwise.auc;
    if (r.ranked) {
      d["users"] = r.ranking.users;
      for (size_t i = 0; i < r.ranking.ks.size(); ++i) {
        const std::string k = "@" + std::to_string(r.ranking.ks[i]);
        d[py::str("recall" + k)] = r.ranking.recall[i];
        d[py::str("ndcg" + k)] = r.ranking.ndcg[i];
        d[py::str("hitrate" + k)] = r.ranking.hit_rate[i];
        d[py::str("mrr" + k)] = r.ranking.mrr[i];
        d[py::str("coverage" + k)] = r.ranking.coverage[i];
        d[py::str("most_popular_recall" + k)] = r.most_popular.recall[i];
        d[py::str("most_popular_ndcg" + k)] = r.most_popular.ndcg[i];
      }
    }
    for (const train::TaskMetric& t : r.tasks) d[py::str(t.name + "_" + t.metric)] = t.value;
    return d;
  }

 private:
  std::unique_ptr<app::Recommender> rec_;
  IdCache id_objects_;  // the items table's ids (bundle().item_index.ids)
};

// An item index (index/item_index.h) over vectors given from Python.
class Index {
 public:
  explicit Index(std::unique_ptr<index::ItemIndex> index) : index_(std::move(index)) {}

  static Index Build(const py::handle& vectors, const std::vector<std::string>& ids,
                     const std::string& spec) {
    auto v = Rows(vectors, 0, "embeddings");
    if (static_cast<size_t>(v.shape(0)) != ids.size()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "ids: " + std::to_string(ids.size()) + " ids for " + std::to_string(v.shape(0)) +
                      " rows of embeddings",
                  "ids");
    }
    std::unique_ptr<index::ItemIndex> idx = index::MakeIndex(spec, static_cast<int>(v.shape(1)));
    {
      py::gil_scoped_release release;
      idx->Add(v.data(), v.shape(0), ids);
    }
    return Index(std::move(idx));
  }

  static Index Load(const std::string& path) {
    py::gil_scoped_release release;
    return Index(index::LoadIndex(path));
  }

  void Save(const std::string& path) const {
    py::gil_scoped_release release;
    index_->Save(path);
  }

  // (ids (n, k) object array of str, scores (n, k) float32); padding "" / -inf where fewer
  // than k items exist. exclude / allow: no list (no filter), one list (every query) or one per
  // query; ids the index does not hold are skipped (an allow-list of only such ids allows
  // nothing). ef: HNSW's candidate list for this call (0: the index's own; index::SearchOptions).
  py::tuple Search(const py::handle& queries, int k, int ef,
                   const std::vector<std::vector<std::string>>& exclude,
                   const std::optional<std::vector<std::vector<std::string>>>& allow) {
    auto q = Rows(queries, index_->dim(), "queries");
    const int64_t n = q.shape(0);
    const auto check_count = [n](size_t lists, const char* what) {
      if (lists > 1 && static_cast<int64_t>(lists) != n) {
        throw Error(ErrorCode::kInvalidArgument,
                    std::string(what) + ": " + std::to_string(lists) + " lists for " +
                        std::to_string(n) +
                        " queries (expected one list of ids for every query, or one per query)",
                    what);
      }
    };
    check_count(exclude.size(), "exclude");
    if (allow) check_count(allow->size(), "allow");
    const auto labels_of = [this](const std::vector<std::string>& ids) {
      std::vector<int64_t> out;
      out.reserve(ids.size());
      for (const std::string& id : ids) {
        const int64_t label = index_->Find(id);
        if (label >= 0) out.push_back(label);
      }
      return out;
    };
    std::vector<index::SearchFilter> filters;
    if (!exclude.empty() || allow) {
      filters.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        index::SearchFilter& f = filters[static_cast<size_t>(i)];
        if (!exclude.empty()) f.exclude = labels_of(exclude[exclude.size() == 1 ? 0 : i]);
        if (allow) f.allow = labels_of((*allow)[allow->size() == 1 ? 0 : i]);
      }
    }
    index::SearchOptions options;
    options.ef_search = ef;
    std::vector<int64_t> labels(static_cast<size_t>(n) * std::max(k, 0));
    Matrix scores(n, std::max(k, 1));
    {
      py::gil_scoped_release release;
      index_->Search(q.data(), n, k, filters.empty() ? nullptr : filters.data(), labels.data(),
                     scores.data(), options);
    }
    py::array ids(py::dtype("O"), {static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
    auto* cells = static_cast<PyObject**>(ids.mutable_data());
    py::str padding("");
    for (int64_t i = 0; i < n * k; ++i) {
      const int64_t l = labels[static_cast<size_t>(i)];
      PyObject* value = l >= 0 ? id_objects_.Get(index_->ids(), l) : padding.inc_ref().ptr();
      SetCell(cells[i], value);
    }
    return py::make_tuple(ids, ToNumpy(std::move(scores)));
  }

  py::dict Add(const py::handle& vectors, const std::vector<std::string>& ids) {
    auto v = Rows(vectors, index_->dim(), "embeddings");
    if (static_cast<size_t>(v.shape(0)) != ids.size()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "ids: " + std::to_string(ids.size()) + " ids for " + std::to_string(v.shape(0)) +
                      " rows of embeddings",
                  "ids");
    }
    index::ItemIndex::AddResult r;
    {
      py::gil_scoped_release release;
      r = index_->Add(v.data(), v.shape(0), ids);
    }
    py::dict out;
    out["added"] = r.added;
    out["updated"] = r.updated;
    return out;
  }

  // Records the model whose item tower made the vectors (ItemIndex::set_model_fingerprint).
  void SetModelFingerprint(const std::string& sha256) { index_->set_model_fingerprint(sha256); }
  const std::string& ModelFingerprint() const { return index_->model_fingerprint(); }
  int64_t Size() const { return index_->size(); }
  int Dim() const { return index_->dim(); }
  std::string Spec() const { return index_->spec(); }
  const std::vector<std::string>& Ids() const { return index_->ids(); }

 private:
  std::unique_ptr<index::ItemIndex> index_;
  IdCache id_objects_;  // index_->ids()
};

// twotower.Server: `twotower serve` inside this process, on threads of its own (notebooks,
// tests). The config comes from the arguments the command's flags give (serve::MakeServeConfig);
// the GIL is released while the models load, while it binds and while it stops. Signals stay
// with Python: the server's threads block them all.
class Server {
 public:
  Server(const std::string& config, const std::string& model, const std::string& index,
         const std::string& rerank, int candidates,
         const std::vector<std::pair<std::string, std::string>>& settings) {
    serve::ServeArguments a;
    a.config = config;
    a.model = model;
    a.index = index;
    a.rerank = rerank;
    a.candidates = candidates;
    a.names = {"config", "model", "index", "rerank", "candidates"};
    for (const auto& [key, value] : settings) {
      a.settings.push_back({key, value, "Server(" + key + "=" + value + ")"});
    }
    config_ = serve::MakeServeConfig(a);
    py::gil_scoped_release release;
    server_ = std::make_unique<serve::Server>(config_);
    notes_ = server_->notes();
  }

  ~Server() {
    if (thread_.joinable()) {
      py::gil_scoped_release release;
      server_->Stop();
      thread_.join();
    }
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving; returns the port (the one chosen for port 0).
  int Start() {
    if (thread_.joinable()) {
      throw Error(ErrorCode::kConflict,
                  "Server.start: already serving on port " + std::to_string(port_));
    }
    if (stopped_ || server_ == nullptr) {
      throw Error(ErrorCode::kConflict,
                  "Server.start: this server was stopped; make a new twotower.Server");
    }
    {
      py::gil_scoped_release release;
      try {
        port_ = server_->Bind();
      } catch (...) {
        // This server cannot serve (its host and port are fixed): let go of its files now (the
        // events log is locked while a server holds it), not when Python collects the object.
        server_.reset();
        stopped_ = true;
        throw;
      }
    }
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous);  // inherited by the thread and its workers
    thread_ = std::thread([this] {
      try {
        server_->Run();
      } catch (...) {
        failure_ = std::current_exception();
      }
    });
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return port_;
  }

  // Stops serving after the requests in flight (serve::Server::Stop) and closes the server's
  // files; rethrows what ended the server if it failed. A stopped server does nothing.
  void Stop() {
    if (thread_.joinable()) {
      py::gil_scoped_release release;
      server_->Stop();
      thread_.join();
    }
    // Started or not, the events log is synced and its lock released here, so another server
    // (or a new one with these settings) may open it at once.
    stopped_ = true;
    if (server_ != nullptr) {
      py::gil_scoped_release release;
      server_.reset();
    }
    if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  }

  // "" when the variants were reread and swapped in, else why not (the old ones stay).
  std::string Reload() {
    if (server_ == nullptr) {
      throw Error(ErrorCode::kConflict, "Server.reload: this server was stopped");
    }
    py::gil_scoped_release release;
    return server_->Reload("Server.reload()");
  }

  bool Running() const { return thread_.joinable() && !stopped_; }
  int Port() const { return port_; }
  const std::string& Host() const { return config_.host; }
  const std::vector<std::string>& Notes() const { return notes_; }

 private:
  serve::ServeConfig config_;
  std::unique_ptr<serve::Server> server_;
  std::thread thread_;
  std::exception_ptr failure_;
  std::vector<std::string> notes_;
  int port_ = 0;
  bool stopped_ = false;
};

py::dict MovieLens(const std::string& src, const std::string& out, const std::string& split,
                   double val, double test, uint64_t seed, double like_threshold,
                   const std::string& format) {
  data::MovieLensOptions o;
  o.split = split;
  o.val = val;
  o.test = test;
  o.seed = seed;
  o.like_threshold = like_threshold;
  o.format = format;
  data::MovieLensSummary s;
  {
    py::gil_scoped_release release;
    s = data::ConvertMovieLens(src, out, o);
  }
  py::dict d;
  d["layout"] = s.layout;
  d["users"] = s.users;
  d["items"] = s.movies;
  d["ratings"] = s.ratings;
  d["train"] = s.train;
  d["val"] = s.val;
  d["test"] = s.test;
  d["liked_rate"] = s.liked_rate;
  d["cold_users"] = s.cold_users;
  return d;
}

py::dict Generate(const std::string& out_dir, int64_t users, int64_t movies, int64_t interactions,
                  uint64_t seed, const std::string& format) {
  data::GeneratorOptions o;
  o.users = users;
  o.movies = movies;
  o.interactions = interactions;
  o.seed = seed;
  o.format = format;
  if (format != "csv" && format != "parquet") {
    throw Error(ErrorCode::kInvalidArgument,
                "format: expected \"csv\" or \"parquet\", got " + Quote(format), "format");
  }
  data::GeneratorSummary s;
  {
    py::gil_scoped_release release;
    s = data::GenerateLabData(o, out_dir);
  }
  py::dict d;
  d["train"] = s.train;
  d["val"] = s.val;
  d["test"] = s.test;
  d["liked_rate"] = s.liked_rate;
  return d;
}

// Ctrl-C during training: Python's own SIGINT handler runs only when the interpreter gets
// control back, which a training call does not give it. While app::Train runs, SIGINT sets
// this flag instead (async-signal-safe: a lock-free atomic store), training stops before its
// next batch, and the call raises KeyboardInterrupt with the run folder intact and resumable.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);
extern "C" void OnInterrupt(int /*signal*/) { g_stop.store(true, std::memory_order_relaxed); }

// Installs OnInterrupt for SIGINT in the main interpreter thread, restoring Python's handler
// when it goes out of scope.
class InterruptScope {
 public:
  InterruptScope() {
    g_stop.store(false);
    struct sigaction mine {};
    mine.sa_handler = OnInterrupt;
    sigemptyset(&mine.sa_mask);
    installed_ = sigaction(SIGINT, &mine, &previous_) == 0;
  }
  ~InterruptScope() {
    if (installed_) sigaction(SIGINT, &previous_, nullptr);
  }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  struct sigaction previous_ {};
  bool installed_ = false;
};

// The engine's progress bars (core/progress.h) drawn by a Python object with start(bar, label,
// total), update(bar, done, seconds, status) and finish(bar, done, seconds, status) methods
// (twotower/__init__.py: tqdm, or plain lines), called with the GIL taken. A Python error there
// is reported once through sys.unraisablehook and the bars go quiet; training goes on.
class PythonProgress : public ProgressSink {
 public:
  explicit PythonProgress(py::object bars) : bars_(std::move(bars)) {}
  void Start(int64_t bar, const std::string& label, int64_t total) override {
    Call("start", bar, label, total);
  }
  void Update(int64_t bar, int64_t done, double seconds, const std::string& status) override {
    Call("update", bar, done, seconds, status);
  }
  void Finish(int64_t bar, int64_t done, double seconds, const std::string& status) override {
    Call("finish", bar, done, seconds, status);
  }

 private:
  template <typename... Args>
  void Call(const char* method, const Args&... args) {
    py::gil_scoped_acquire gil;
    if (failed_) return;
    try {
      bars_.attr(method)(args...);
    } catch (py::error_already_set& e) {
      failed_ = true;
      e.discard_as_unraisable(method);
    }
  }
  py::object bars_;
  bool failed_ = false;
};

py::dict Train(const std::string& config_path,
               const std::vector<std::pair<std::string, std::string>>& overrides,
               const std::string& resume, bool progress, const py::object& bars) {
  app::TrainRequest r;
  r.config_path = config_path;
  for (const auto& [key, value] : overrides) r.settings.push_back({key + "=" + value, "overrides"});
  r.resume = resume;
  r.progress = progress;
  r.stop = &g_stop;
  app::TrainOutcome o;
  std::optional<PythonProgress> python_bars;
  if (!bars.is_none()) python_bars.emplace(bars);
  {
    ScopedProgressSink sink(python_bars ? &*python_bars : nullptr);
    InterruptScope interrupts;
    try {
      py::gil_scoped_release release;
      o = app::Train(r);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kUnavailable && g_stop.load()) {
        PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
        throw py::error_already_set();
      }
      throw;
    }
  }
  py::dict d;
  d["run_dir"] = o.run_dir;
  d["best_epoch"] = o.best_epoch;
  d["refit"] = o.refit;
  d["ranker"] = o.ranker;
  d["train_seconds"] = o.train_seconds;
  return d;
}

// Table cells as Python text: UTF-8, with bytes that are not UTF-8 kept as lone surrogates
// (PEP 383 "surrogateescape", as os.listdir does), so write_table gives back the same bytes.
py::object Text(const std::string& s) {
  PyObject* o =
      PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

template <typename T, typename Vec>
py::array_t<T> CopyArray(const Vec& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

// read_table: [(name, type name, values, valid or None)], values a numpy array (int64, uint64,
// bool, float64) or, for strings, a list of str.
py::list ReadTable(const std::string& path) {
  data::TypedTable t;
  {
    py::gil_scoped_release unlocked;
    t = app::ReadTypedTable(path);
  }
  py::list out;
  for (size_t c = 0; c < t.columns.size(); ++c) {
    const data::ParquetColumn& col = t.columns[c];
    py::object values;
    switch (col.type) {
      case data::ParquetType::kBoolean:
        values = CopyArray<bool>(col.ints);
        break;
      case data::ParquetType::kInt32:
      case data::ParquetType::kInt64:
        values = col.is_unsigned ? py::object(CopyArray<uint64_t>(col.ints))
                                 : py::object(CopyArray<int64_t>(col.ints));
        break;
      case data::ParquetType::kFloat:
      case data::ParquetType::kDouble:
        values = CopyArray<double>(col.doubles);
        break;
      case data::ParquetType::kString: {
        py::list texts;
        for (int64_t r = 0; r < col.size(); ++r) {
          texts.append(col.IsNull(r) ? py::none() : Text(col.strings[col.string_index[r]]));
        }
        values = texts;
        break;
      }
    }
    py::object valid = col.valid.empty() ? py::none() : py::object(CopyArray<bool>(col.valid));
    out.append(py::make_tuple(t.specs[c].name, data::ParquetTypeName(col.type), values, valid));
  }
  return out;
}

// write_table: columns as (name, type, values, valid or None); type one of "BOOLEAN", "INT32",
// "INT64", "FLOAT", "DOUBLE", "STRING" (twotower/__init__.py maps pandas dtypes to these);
// values a numpy array of that kind or, for strings, a sequence of str (None where not valid).
void WriteTableFile(const std::string& path, const py::list& columns) {
  data::TypedTable t;
  int64_t rows = -1;
  for (const py::handle& item : columns) {
    const auto spec = item.cast<py::tuple>();
    const auto name = spec[0].cast<std::string>();
    const auto type = spec[1].cast<std::string>();
    const py::object values = spec[2];
    const py::object valid = spec[3];
    data::ParquetType pt;
    if (type == "BOOLEAN") {
      pt = data::ParquetType::kBoolean;
    } else if (type == "INT32") {
      pt = data::ParquetType::kInt32;
    } else if (type == "INT64") {
      pt = data::ParquetType::kInt64;
    } else if (type == "FLOAT") {
      pt = data::ParquetType::kFloat;
    } else if (type == "DOUBLE") {
      pt = data::ParquetType::kDouble;
    } else {
      pt = data::ParquetType::kString;
    }
    data::ParquetColumn& col = t.AddColumn(name, pt, !valid.is_none());
    if (pt == data::ParquetType::kString) {
      for (const py::handle& v : values) {
        col.string_index.push_back(static_cast<int32_t>(col.strings.size()));
        if (v.is_none()) {
          col.strings.emplace_back();
          continue;
        }
        PyObject* bytes = PyUnicode_AsEncodedString(v.ptr(), "utf-8", "surrogateescape");
        if (bytes == nullptr) throw py::error_already_set();
        const auto b = py::reinterpret_steal<py::bytes>(bytes);
        col.strings.push_back(static_cast<std::string>(b));
      }
    } else if (pt == data::ParquetType::kFloat || pt == data::ParquetType::kDouble) {
      const auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(values);
      col.doubles.assign(a.data(), a.data() + a.size());
    } else {
      const auto a =
          py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(values);
      col.ints.assign(a.data(), a.data() + a.size());
    }
    if (!valid.is_none()) {
      const auto v = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(valid);
      col.valid.assign(v.data(), v.data() + v.size());
    }
    if (rows >= 0 && col.size() != rows) {
      throw Error(ErrorCode::kInvalidArgument,
                  "write_table: column '" + name + "' has " + std::to_string(col.size()) +
                      " rows, the ones before it " + std::to_string(rows),
                  name);
    }
    rows = col.size();
  }
  py::gil_scoped_release unlocked;
  app::WriteTypedTable(path, t);
}

}  // namespace
}  // namespace twotower::python

PYBIND11_MODULE(_twotower, m) {
  using namespace twotower;
  using namespace twotower::python;
  m.doc() = "twotower's app core (the twotower package wraps it)";

  // One exception class per ErrorCode, all under twotower.Error, each also under the Python
  // built-in a caller would catch (ValueError, LookupError, OSError). Created once, kept for the
  // life of the process (the module is never unloaded).
  auto make = [&m](const char* name, PyObject* base, PyObject* builtin) {
    py::tuple bases = builtin != nullptr ? py::make_tuple(py::handle(base), py::handle(builtin))
                                         : py::make_tuple(py::handle(base));
    PyObject* cls = PyErr_NewException(("twotower._twotower." + std::string(name)).c_str(),
                                       bases.ptr(), nullptr);
    if (cls == nullptr) throw py::error_already_set();
    m.add_object(name, py::handle(cls));
    return cls;
  };
  static PyObject* base = make("Error", PyExc_Exception, nullptr);
  static PyObject* classes[] = {
      make("InvalidArgumentError", base, PyExc_ValueError),  // ErrorCode order (core/error.h)
      make("NotFoundError", base, PyExc_LookupError),
      make("CorruptDataError", base, nullptr),
      make("IoError", base, PyExc_OSError),
      make("ConflictError", base, nullptr),
      make("UnavailableError", base, nullptr),
      make("InternalError", base, nullptr),
      // kNotFound for a file (core/error.h: ThrowCannotOpen): also a FileNotFoundError.
      make("MissingFileError", base, PyExc_FileNotFoundError),
  };
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyObject* cls = classes[6];
      switch (e.code()) {
        case ErrorCode::kInvalidArgument:
          cls = classes[0];
          break;
        case ErrorCode::kNotFound: {
          const std::string what = e.what();
          const std::string missing = std::string(": cannot open: ") + std::strerror(ENOENT);
          const bool file =
              what.size() >= missing.size() &&
              what.compare(what.size() - missing.size(), missing.size(), missing) == 0;
          cls = classes[file ? 7 : 1];
          break;
        }
        case ErrorCode::kCorruptData:
          cls = classes[2];
          break;
        case ErrorCode::kIo:
          cls = classes[3];
          break;
        case ErrorCode::kConflict:
          cls = classes[4];
          break;
        case ErrorCode::kUnavailable:
          cls = classes[5];
          break;
        case ErrorCode::kInternal:
          break;
      }
      // A message may quote bytes from the input that are not UTF-8: shown escaped.
      const std::string what = e.what();
      PyObject* text = PyUnicode_DecodeUTF8(what.data(), static_cast<Py_ssize_t>(what.size()),
                                            "backslashreplace");
      if (text == nullptr) throw py::error_already_set();
      py::object instance =
          py::reinterpret_borrow<py::object>(cls)(py::reinterpret_steal<py::object>(text));
      instance.attr("field") = e.field();
      instance.attr("code") = std::string(ErrorCodeName(e.code()));
      PyErr_SetObject(cls, instance.ptr());
    }
  });

  py::class_<PyRecommendations>(m, "Recommendations")
      .def_readonly("ids", &PyRecommendations::ids)
      .def_readonly("scores", &PyRecommendations::scores)
      .def_readonly("reranked", &PyRecommendations::reranked)
      .def_readonly("fallback", &PyRecommendations::fallback)
      .def_readonly("untrained_excluded", &PyRecommendations::untrained_excluded);

  py::class_<Model>(m, "Model")
      .def(py::init<const std::string&, const std::string&, const std::string&, const std::string&,
                    const std::string&, const std::string&, int, bool>(),
           py::arg("path"), py::arg("index") = "", py::arg("embeddings") = "",
           py::arg("users") = "", py::arg("items") = "", py::arg("rerank") = "",
           py::arg("candidates") = app::kDefaultCandidates, py::arg("load_seen") = true)
      .def("recommend", &Model::Recommend, py::arg("user_id"), py::arg("k"),
           py::arg("exclude_seen"), py::arg("exclude"), py::arg("allow"))
      .def("recommend_batch", &Model::RecommendBatch, py::arg("user_ids"), py::arg("k"),
           py::arg("exclude_seen"), py::arg("exclude"), py::arg("allow"), py::arg("width"))
      .def("recommend_features", &Model::RecommendFeatures, py::arg("features"), py::arg("history"),
           py::arg("k"), py::arg("exclude"), py::arg("allow"))
      .def("score", &Model::Score, py::arg("user_id"), py::arg("item_ids"))
      .def("similar", &Model::Similar, py::arg("item_id"), py::arg("k"))
      .def("encode_users", &Model::EncodeUsers)
      .def("encode_items", &Model::EncodeItems)
      .def("encode_table", &Model::EncodeTableFile, py::arg("path"), py::arg("users"))
      .def("evaluate", &Model::Evaluate, py::arg("path"), py::arg("exclude"))
      .def_property_readonly("user_ids", &Model::UserIds)
      .def_property_readonly("item_ids", &Model::ItemIds)
      .def_property_readonly("num_items", &Model::NumItems)
      .def_property_readonly("config_json", &Model::Config)
      .def_property_readonly("sha256", &Model::Sha256)
      .def_property_readonly("dim", &Model::Dim)
      .def_property_readonly("index_spec", &Model::IndexSpec);

  py::class_<Index>(m, "Index")
      .def_static("build", &Index::Build, py::arg("embeddings"), py::arg("ids"), py::arg("spec"))
      .def_static("load", &Index::Load, py::arg("path"))
      .def("save", &Index::Save, py::arg("path"))
      .def("search", &Index::Search, py::arg("queries"), py::arg("k"), py::arg("ef"),
           py::arg("exclude"), py::arg("allow"))
      .def("add", &Index::Add, py::arg("embeddings"), py::arg("ids"))
      .def("set_model_fingerprint", &Index::SetModelFingerprint, py::arg("sha256"))
      .def_property_readonly("model_fingerprint", &Index::ModelFingerprint)
      .def_property_readonly("size", &Index::Size)
      .def_property_readonly("dim", &Index::Dim)
      .def_property_readonly("spec", &Index::Spec)
      .def_property_readonly("ids", &Index::Ids);

  py::class_<Server>(m, "Server")
      .def(py::init<const std::string&, const std::string&, const std::string&, const std::string&,
                    int, const std::vector<std::pair<std::string, std::string>>&>(),
           py::arg("config"), py::arg("model"), py::arg("index"), py::arg("rerank"),
           py::arg("candidates"), py::arg("settings"))
      .def("start", &Server::Start)
      .def("stop", &Server::Stop)
      .def("reload", &Server::Reload)
      .def_property_readonly("running", &Server::Running)
      .def_property_readonly("port", &Server::Port)
      .def_property_readonly("host", &Server::Host)
      .def_property_readonly("notes", &Server::Notes);

  m.def("generate", &Generate, py::arg("out_dir"), py::arg("users"), py::arg("movies"),
        py::arg("interactions"), py::arg("seed"), py::arg("format"));
  m.def("train", &Train, py::arg("config_path"), py::arg("overrides"), py::arg("resume"),
        py::arg("progress"), py::arg("bars") = py::none());
  m.def("settings_help", &app::SettingsHelp);
  m.def("build_info", &app::BuildInfo);
  m.def("set_threads", &SetThreads, py::arg("threads"));
  m.def("movielens", &MovieLens, py::arg("src"), py::arg("out"), py::arg("split"), py::arg("val"),
        py::arg("test"), py::arg("seed"), py::arg("like_threshold"), py::arg("format"));
  m.def("read_table", &ReadTable, py::arg("path"));
  m.def("write_table", &WriteTableFile, py::arg("path"), py::arg("columns"));
}
