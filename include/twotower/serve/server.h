// `twotower serve`: an HTTP/1.1 JSON service over the app layer (Boost.Beast from Debian,
// event-driven, with keep-alive and pipelining; nlohmann-json), with live item updates, hot
// reload and A/B testing of model variants.
//
// Routes (README "Serving" has a curl example for each; GET /openapi.json describes them):
//   POST /v1/recommend   {"user_id": "42" | "user": {column: value}, "k": 10,
//                         "exclude_seen": false, "exclude": [ids], "allow": [ids]}
//   POST /v1/score       {"user_id" | "user", "item_ids": [ids]}
//   POST /v1/similar     {"item_id": "50", "k": 10, "variant": name?}
//   PUT  /v1/items       {"items": [{column: value}]}     DELETE /v1/items/{id}
//   POST /v1/feedback    {"user_id", "item_id", "event": impression|click|like, "variant"?}
//                        (a like joins the user's history and seen items: live_history)
//   GET  /v1/experiments/{name}   GET /v1/models   POST /v1/admin/reload (and SIGHUP)
//   GET  /healthz  /readyz  /metrics (Prometheus text)  /openapi.json
//
// Every variant is a model file with its items (an index file, or the model's items table
// searched exactly), and optionally a ranker that re-orders what it retrieves (`rerank`,
// `candidates`: app::Rerank; live items are scored from their PUT features). A user goes to the
// variant experiment.h assigns; the response names it. Items changed through PUT / DELETE live in
// memory until the next reload (which rereads the files; `twotower index add` makes a change
// permanent). A reload builds the new variants aside and swaps them in; requests in flight finish
// on the old ones; a failed reload keeps the old ones and says why.
//
// Bad input is a 4xx with {"error": message, "field": name}: malformed JSON, a key given twice, an
// unknown or mistyped field, a missing one, k outside 1..max_k, a list over max_list, an unknown
// user without features (404), an unknown item (404), a body over max_body_bytes (413). A failure
// of ours is a 500 with the same shape. Each request runs on one server thread with a
// single-threaded search. Transport limits: a chunked body 411, a request target over 8 KiB 414,
// header fields over 64 KiB 431, a malformed request 400 (each then closes the connection).
#ifndef TWOTOWER_SERVE_SERVER_H_
#define TWOTOWER_SERVE_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "twotower/app/app.h"

namespace twotower::serve {

struct VariantConfig {
  std::string name;
  std::string model;  // model file
  std::string index;  // index file; empty: the model's items, searched exactly
  double weight = 1.0;
  // A ranker (model.kind: ranker) that re-orders the top `candidates` the model retrieves, as
  // `recommend --rerank`; empty: none. /v1/recommend and /v1/score then return the ranker's
  // probabilities (and its SHA-256 as ranker_version).
  std::string rerank;
  int candidates = app::kDefaultCandidates;
};

struct ServeConfig {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (tests)
  // Threads that read, answer and write requests. A connection holds one only while its request
  // is answered (an idle or slow connection holds none); 0: one per core, at least 2.
  int threads = 0;
  int max_k = 1000;                  // largest k a request may ask for
  int max_list = 10000;              // longest exclude / allow / item_ids / items list
  int64_t max_body_bytes = 1 << 20;  // larger bodies get 413
  // A request's whole header and body must arrive within this from its first byte, and its answer
  // be written within it again; else the connection is closed (a client dripping bytes is cut).
  double timeout_seconds = 10.0;
  // A keep-alive connection that sends no first byte of a next request within this is closed.
  double idle_timeout_seconds = 5.0;
  // A request whose handling passes this is answered 503 at the next stage boundary (parsed,
  // user encoded, searched, each item encoded), before it changes anything; a stage itself is
  // bounded by max_k, max_list and max_body_bytes, not interrupted.
  double deadline_seconds = 1.0;
  // Embeddings of the users table's users are computed at load when they fit in this many MiB
  // (users x dim x 4 bytes), so a request by user_id runs no tower; 0: always run the tower.
  int64_t user_cache_mb = 256;
  std::string events = "events.jsonl";  // feedback event log (events.h)
  // Likes (POST /v1/feedback, and those replayed from the log) join the user's history (a model
  // with features.history: its last `length` liked items, oldest first) and its exclude_seen
  // items, for users of the users table, in every variant whose model was served when the like
  // came (the log records the models' SHA-256): a reload or restart with the same model content
  // keeps them, however its file was copied or touched; a model with other content drops them,
  // as its training data should hold them. false: the model's train and val files only.
  bool live_history = true;
  std::string experiment = "default";  // the experiment's name (GET /v1/experiments/{name})
  std::string salt = "twotower";       // hashed with the user id for assignment
  std::vector<VariantConfig> variants;
  // Where the variants came from, for messages: the YAML file, or the command line.
  std::string source = "the command line's --model";

  // Reads the `serve:` section of a YAML file (keys as the fields above; `variants:` a list of
  // {name, model, index, weight, rerank, candidates}). Throws Error naming file, line and key for
  // an unknown or repeated key or a bad value.
  static ServeConfig FromYamlFile(const std::string& path);
  // Sets the serve setting `key` (as in serve.yaml without "serve.", e.g. "port") from text, as
  // a command-line flag gives it; `where` names the flag. Throws Error for an unknown key (the
  // message lists the known ones), a value of the wrong type or out of the declared range.
  void Set(const std::string& key, const std::string& value, const std::string& where);
  // Throws Error naming the setting: no variant, a variant without name or model, a repeated
  // name, a negative weight or all weights 0, port / threads / limits out of the declared range.
  void Validate() const;
};

// What `twotower serve` and the Python module's twotower.Server are given: a YAML file that
// names the variants, or one model (with its index and ranker), then settings by name as text,
// as flags give them. `names` are the front end's words for these arguments, for messages
// ("--model" on the command line, "model" in Python).
struct ServeArguments {
  std::string config;                // YAML file with a serve: section; "" : one variant, `model`
  std::string model, index, rerank;  // the one variant ("default", weight 1)
  int candidates = -1;               // -1: not given (app::kDefaultCandidates with a ranker)
  struct Setting {
    std::string key, value, where;  // e.g. {"port", "8081", "--port"}
  };
  std::vector<Setting> settings;  // applied in order after the file (ServeConfig::Set)
  struct Names {
    std::string config = "--config", model = "--model", index = "--index", rerank = "--rerank",
                candidates = "--candidates";
  } names;
};

// The validated ServeConfig of `a`. Throws Error naming the argument: a config file together
// with model / index / rerank / candidates, no model and no config, candidates without rerank,
// then FromYamlFile's, Set's and Validate's errors.
ServeConfig MakeServeConfig(const ServeArguments& a);

// "serve.<key> (<type>, default <value>, <range>): <help>" for every serve.yaml setting, each
// declared once in server.cc's tables (core/settings.h), serve.variants[] entries last.
std::vector<std::string> ServeSettingsHelp();

class Server {
 public:
  // Loads every variant (model, items, index, history for exclude_seen), replays the event log
  // and warms each variant with one query. Throws Error naming the file that failed.
  explicit Server(ServeConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds config.host:config.port and returns the port bound (the chosen one for port 0).
  // Throws Error when it cannot.
  int Bind();
  // Serves on the bound socket until Stop(); returns after the requests in flight were answered
  // and the event log flushed and synced.
  void Run();
  // Stops Run(); callable from any thread (the CLI calls it on SIGTERM / SIGINT).
  void Stop();
  // Rereads every variant's files and swaps them in; "" on success, else why (the old ones stay).
  // `trigger` names what asked (the CLI: "SIGHUP"; the route: "POST /v1/admin/reload") in the
  // line given to the log (set_log).
  std::string Reload(const std::string& trigger = "Server::Reload");
  // Where the server reports what it does on its own account, one line at a time, from any
  // thread: each reload, "reloaded (TRIGGER)" or "reload (TRIGGER) failed, still serving the
  // previous models: WHY". Set before Run; default: nowhere.
  void set_log(std::function<void(const std::string&)> log);
  // What the start found worth saying (events of arms the config does not list), one line each.
  const std::vector<std::string>& notes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace twotower::serve

#endif  // TWOTOWER_SERVE_SERVER_H_
