#include "twotower/serve/server.h"

#include <omp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <regex>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "http.h"
#include "twotower/app/app.h"
#include "twotower/app/experiment.h"
#include "twotower/app/recommender.h"
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/hash.h"
#include "twotower/core/json.h"
#include "twotower/core/settings.h"
#include "twotower/data/history.h"
#include "twotower/serve/events.h"
#include "twotower/serve/experiment.h"

namespace twotower::serve {
namespace {

using Json = nlohmann::json;
using Row = app::Row;

// ---- config ------------------------------------------------------------------------------------

using twotower::Setting;
using Kind = SettingKind;

// serve.yaml's settings, each declared once (core/settings.h): name, type, range, help, member.
// The defaults are ServeConfig's member initialisers.
const std::vector<Setting<ServeConfig>>& ServeSettings() {
  using S = Setting<ServeConfig>;
  auto at = [](SettingSpec spec, auto member) {
    return S{std::move(spec), [member](ServeConfig& c) -> void* { return &(c.*member); }, {}, {}};
  };
  static const std::vector<S> table = {
      at({"serve.host", Kind::kString, 0, false, 0, {}, "address to listen on"},
         &ServeConfig::host),
      at({"serve.port", Kind::kInt, 0, false, 65535, {}, "port; 0 = any free one"},
         &ServeConfig::port),
      at({"serve.threads",
          Kind::kInt,
          0,
          false,
          1024,
          {},
          "threads that read, answer and write requests (a connection holds one only while "
          "its request is answered); 0 = one per core, at least 2"},
         &ServeConfig::threads),
      at({"serve.max_k", Kind::kInt, 1, false, 1e6, {}, "largest k a request may ask for"},
         &ServeConfig::max_k),
      at({"serve.max_list",
          Kind::kInt,
          1,
          false,
          1e7,
          {},
          "longest exclude / allow / item_ids / items list of a request"},
         &ServeConfig::max_list),
      at({"serve.max_body_bytes",
          Kind::kInt64,
          64,
          false,
          1 << 30,
          {},
          "larger request bodies are answered 413"},
         &ServeConfig::max_body_bytes),
      at({"serve.timeout_seconds",
          Kind::kDouble,
          0.001,
          false,
          3600,
          {},
          "a request's whole header and body, from its first byte, must arrive within this "
          "(else the connection is closed), and its answer be written within it again"},
         &ServeConfig::timeout_seconds),
      at({"serve.idle_timeout_seconds",
          Kind::kDouble,
          0.001,
          false,
          3600,
          {},
          "a keep-alive connection that starts no next request within this is closed"},
         &ServeConfig::idle_timeout_seconds),
      at({"serve.deadline_seconds",
          Kind::kDouble,
          1e-6,
          false,
          3600,
          {},
          "a request still running after this is answered 503 at its next stage"},
         &ServeConfig::deadline_seconds),
      at({"serve.user_cache_mb",
          Kind::kInt64,
          0,
          false,
          1 << 20,
          {},
          "MiB of user embeddings computed at load (0: the tower runs per request)"},
         &ServeConfig::user_cache_mb),
      at({"serve.events", Kind::kString, 0, false, 0, {}, "feedback event log (JSON lines)"},
         &ServeConfig::events),
      at({"serve.live_history",
          Kind::kBool,
          0,
          false,
          0,
          {},
          "likes from /v1/feedback join the users' histories and seen items"},
         &ServeConfig::live_history),
      at({"serve.experiment", Kind::kString, 0, false, 0, {}, "the experiment's name"},
         &ServeConfig::experiment),
      at({"serve.salt", Kind::kString, 0, false, 0, {}, "hashed with the user id for assignment"},
         &ServeConfig::salt),
  };
  return table;
}

// One entry of serve.variants.
const std::vector<Setting<VariantConfig>>& VariantSettings() {
  using S = Setting<VariantConfig>;
  auto at = [](SettingSpec spec, auto member) {
    return S{std::move(spec), [member](VariantConfig& c) -> void* { return &(c.*member); }, {}, {}};
  };
  static const std::vector<S> table = {
      at({"name", Kind::kString, 0, false, 0, {}, "the variant's name (its arm)"},
         &VariantConfig::name),
      at({"model", Kind::kString, 0, false, 0, {}, "model file"}, &VariantConfig::model),
      at({"index",
          Kind::kString,
          0,
          false,
          0,
          {},
          "index file (default: the model's items, exact)"},
         &VariantConfig::index),
      at({"weight", Kind::kDouble, 0, false, kSettingInf, {}, "share of the users it gets"},
         &VariantConfig::weight),
      at({"rerank",
          Kind::kString,
          0,
          false,
          0,
          {},
          "a ranker re-ordering what the model retrieves"},
         &VariantConfig::rerank),
      at({"candidates", Kind::kInt, 1, false, 1e6, {}, "with rerank: items retrieved per request"},
         &VariantConfig::candidates),
  };
  return table;
}

// The keys of a YAML mapping, each once (yaml-cpp keeps the last of two equal keys; a silently
// ignored setting is a bug to report).
void CheckRepeats(const std::string& file, const YAML::Node& map, const std::string& section) {
  std::set<std::string> seen;
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (!seen.insert(key).second) {
      throw Error(YamlWhere(file, kv.first) + ": key '" + section + "." + key + "' appears twice");
    }
  }
}

VariantConfig ParseVariant(const std::string& path, const YAML::Node& item) {
  if (!item.IsMap()) {
    throw Error(YamlWhere(path, item) + ": 'serve.variants[]' must be a mapping");
  }
  CheckRepeats(path, item, "serve.variants[]");
  VariantConfig vc;
  for (const auto& kv : item) {
    const std::string key = kv.first.as<std::string>();
    const Setting<VariantConfig>* s = FindSetting(VariantSettings(), key);
    if (s == nullptr) {
      throw Error(YamlWhere(path, kv.first) + ": unknown key 'serve.variants[]." + key +
                  "' (expected one of: " + KnownSettingKeys(VariantSettings(), "") + ")");
    }
    if (key == "rerank" && kv.second.IsNull()) {
      throw Error(YamlWhere(path, kv.second) +
                  ": 'rerank': expected the path of a ranker model file");
    }
    if (key == "candidates" && !item["rerank"]) {
      throw Error(YamlWhere(path, kv.second) +
                  ": 'candidates' is how many retrieved items 'rerank' re-orders; give 'rerank' "
                  "too or leave it out");
    }
    AssignYaml(*s, &vc, kv.second, YamlWhere(path, kv.second));
    if (key == "rerank" && vc.rerank.empty()) {
      throw Error(YamlWhere(path, kv.second) +
                  ": 'rerank': expected the path of a ranker model file");
    }
  }
  return vc;
}

}  // namespace

ServeConfig ServeConfig::FromYamlFile(const std::string& path) {
  // The file through core/files.h's reader (a missing file, a folder or a read error is an Error
  // naming the path; YAML::LoadFile let a folder's read error out as a std::exception).
  const std::string text = ReadFile(path);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap() || !root["serve"]) throw Error(path + ": expected a 'serve:' section");
  ServeConfig c;
  c.source = path;
  const YAML::Node s = root["serve"];
  if (!s.IsMap()) throw Error(YamlWhere(path, s) + ": 'serve' must be a mapping");
  CheckRepeats(path, s, "serve");
  for (const auto& kv : s) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if (key == "variants") {
      if (!v.IsSequence()) throw Error(YamlWhere(path, v) + ": 'serve.variants' must be a list");
      for (const YAML::Node& item : v) c.variants.push_back(ParseVariant(path, item));
      continue;
    }
    const Setting<ServeConfig>* setting = FindSetting(ServeSettings(), "serve." + key);
    if (setting == nullptr) {
      throw Error(YamlWhere(path, kv.first) + ": unknown key 'serve." + key +
                  "' (expected one of: " + KnownSettingKeys(ServeSettings(), "serve") +
                  ", variants)");
    }
    AssignYaml(*setting, &c, v, YamlWhere(path, v));
  }
  // Paths are relative to the config file's folder, and absolute from here on.
  const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
  auto resolve = [&](std::string* p) {
    if (!p->empty() && std::filesystem::path(*p).is_relative()) *p = (base / *p).string();
  };
  for (VariantConfig& v : c.variants) {
    resolve(&v.model);
    resolve(&v.index);
    resolve(&v.rerank);
  }
  resolve(&c.events);
  c.Validate();
  return c;
}

void ServeConfig::Set(const std::string& key, const std::string& value, const std::string& where) {
  const Setting<ServeConfig>* s = FindSetting(ServeSettings(), "serve." + key);
  if (s == nullptr) {
    throw Error(ErrorCode::kInvalidArgument,
                where + ": no serve setting '" + key +
                    "' (expected one of: " + KnownSettingKeys(ServeSettings(), "serve") + ")",
                key);
  }
  AssignText(*s, this, value, where);
}

std::vector<std::string> ServeSettingsHelp() {
  std::vector<std::string> out = SettingsHelpLines(ServeSettings());
  for (const std::string& line : SettingsHelpLines(VariantSettings())) {
    out.push_back("serve.variants[]." + line);
  }
  return out;
}

ServeConfig MakeServeConfig(const ServeArguments& a) {
  const ServeArguments::Names& n = a.names;
  ServeConfig config;
  if (!a.config.empty()) {
    if (!a.model.empty() || !a.index.empty() || !a.rerank.empty() || a.candidates != -1) {
      throw Error("serve: " + n.config + " names the variants (serve.variants); " + n.model + ", " +
                  n.index + ", " + n.rerank + " and " + n.candidates + " go without it");
    }
    config = ServeConfig::FromYamlFile(a.config);
  } else {
    if (a.model.empty()) {
      throw Error("serve: give " + n.model + " (and " + n.index + "), or " + n.config);
    }
    if (a.candidates != -1 && a.rerank.empty()) {
      throw Error("serve: " + n.candidates + " is how many retrieved items " + n.rerank +
                  " re-orders; add " + n.rerank + " RANKER or leave it out");
    }
    config.variants.push_back({"default", a.model, a.index, 1.0, a.rerank,
                               a.candidates == -1 ? app::kDefaultCandidates : a.candidates});
  }
  // Settings go through their declarations (type and range).
  for (const ServeArguments::Setting& s : a.settings) config.Set(s.key, s.value, s.where);
  config.Validate();
  return config;
}

void ServeConfig::Validate() const {
  // Ranges from the declarations (values set in code or by flags were not parsed through them).
  CheckRanges(ServeSettings(), *this, source);
  if (variants.empty()) throw Error("serve: no variant (give --model or serve.variants)");
  std::set<std::string> names;
  double total = 0;
  for (const VariantConfig& v : variants) {
    if (v.name.empty()) throw Error("serve.variants: a variant has no name");
    if (v.model.empty()) throw Error("serve.variants: '" + v.name + "' has no model");
    if (!names.insert(v.name).second) {
      throw Error("serve.variants: the name '" + v.name + "' is used twice");
    }
    CheckRanges(VariantSettings(), v, "serve.variants: '" + v.name + "'");
    total += v.weight;
  }
  if (!(total > 0)) throw Error("serve.variants: the weights sum to 0");
  if (events.empty()) throw Error("serve.events: a file for the event log is required");
  if (host.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "serve.host: empty; expected an IP address (127.0.0.1, or 0.0.0.0 for every "
                "interface) or a host name",
                "host");
  }
}

namespace {

// ---- request handling ----------------------------------------------------------------------

// A request we refuse: an Error with its code (answered with HttpStatus(code)) and the field.
[[noreturn]] void Refuse(ErrorCode code, const std::string& field, const std::string& message) {
  throw Error(code, message, field);
}

// The one table from error codes to HTTP statuses (RFC 9110): what the client can fix is 4xx,
// what it can retry 503, the rest 500.
int HttpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kCorruptData:
    case ErrorCode::kIo:
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

// The deadline of the request this thread is answering (set by the route wrapper).
thread_local app::Deadline t_deadline;

Json ParseBody(const http::Request& req) {
  Json body;
  try {
    body = ParseJsonStrict(req.body, "request body");
  } catch (const Error& e) {
    Refuse(ErrorCode::kInvalidArgument, "", e.what());
  }
  if (!body.is_object())
    Refuse(ErrorCode::kInvalidArgument, "", "request body: expected a JSON object");
  return body;
}

void AllowKeys(const Json& body, const std::set<std::string>& allowed) {
  for (const auto& [key, value] : body.items()) {
    if (!allowed.count(key)) {
      std::string names;
      for (const std::string& a : allowed) names += (names.empty() ? "" : ", ") + a;
      Refuse(ErrorCode::kInvalidArgument, key,
             "unknown field '" + key + "' (expected: " + names + ")");
    }
  }
}

// An id given as a string, or an integer written as one (42; never 42.0 or 4.2e1: a number
// another tool turned into a float is refused, not made into another id), 1 to
// data::kMaxIdBytes bytes: the one rule for ids from JSON, wherever they appear (user_id,
// item_id, lists, and the id columns of "user" features and PUT rows).
std::string IdValue(const Json& v, const std::string& field) {
  if (v.is_string()) {
    const std::string& id = v.get_ref<const std::string&>();
    if (id.empty()) Refuse(ErrorCode::kInvalidArgument, field, field + ": empty id");
    if (id.size() > data::kMaxIdBytes) {
      Refuse(ErrorCode::kInvalidArgument, field,
             field + ": an id of " + std::to_string(id.size()) + " bytes, at most " +
                 std::to_string(data::kMaxIdBytes));
    }
    return id;
  }
  if (v.is_number_integer()) return v.dump();
  Refuse(ErrorCode::kInvalidArgument, field,
         field + ": expected a string or an integer id, got " + v.dump());
}

std::vector<std::string> IdList(const Json& v, const std::string& field, int max_list) {
  if (!v.is_array()) Refuse(ErrorCode::kInvalidArgument, field, field + ": expected a list of ids");
  if (static_cast<int64_t>(v.size()) > max_list) {
    Refuse(
        ErrorCode::kInvalidArgument, field,
        field + ": " + std::to_string(v.size()) + " entries, at most " + std::to_string(max_list));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    out.push_back(IdValue(v[i], field + "[" + std::to_string(i) + "]"));
  }
  return out;
}

// A table row from a JSON object of column -> string | number | bool; the value of `id_column`
// (when given) follows IdValue's rule.
Row RowValue(const Json& v, const std::string& field, const std::string& id_column = "") {
  if (!v.is_object())
    Refuse(ErrorCode::kInvalidArgument, field, field + ": expected an object of column: value");
  Row row;
  for (const auto& [key, value] : v.items()) {
    if (!id_column.empty() && key == id_column) {
      row.emplace_back(key, IdValue(value, field + "." + key));
    } else if (value.is_string()) {
      row.emplace_back(key, value.get<std::string>());
    } else if (value.is_number() || value.is_boolean()) {
      row.emplace_back(key, value.dump());
    } else {
      Refuse(ErrorCode::kInvalidArgument, field + "." + key,
             field + "." + key + ": expected a string or a number, got " + value.dump());
    }
  }
  return row;
}

int KValue(const Json& body, int max_k) {
  if (!body.contains("k")) return 10;
  const Json& k = body["k"];
  if (!k.is_number_integer())
    Refuse(ErrorCode::kInvalidArgument, "k", "k: expected an integer, got " + k.dump());
  const int64_t v = k.get<int64_t>();
  if (v < 1 || v > max_k) {
    Refuse(ErrorCode::kInvalidArgument, "k",
           "k: " + std::to_string(v) + " is out of range (1 .. " + std::to_string(max_k) + ")");
  }
  return static_cast<int>(v);
}

bool BoolValue(const Json& body, const std::string& key, bool fallback) {
  if (!body.contains(key)) return fallback;
  if (!body[key].is_boolean())
    Refuse(ErrorCode::kInvalidArgument, key, key + ": expected true or false");
  return body[key].get<bool>();
}

std::string Iso8601(std::time_t t) {
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- variants ----------------------------------------------------------------------------------

// One variant: the app::Recommender that answers for it, and what only HTTP needs: the reply
// bytes of each items-table row, the model file's time and its run's test metrics.
struct Loaded {
  VariantConfig config;
  std::unique_ptr<app::Recommender> rec;
  std::string created;  // the model file's time
  Json test_metrics;    // test_metrics.json beside the model, or null
  // The reply JSON of each items-table row, written once at load (BuildItemJson): the bytes of
  // row r are item_json[item_json_at[r] .. item_json_at[r + 1]).
  std::string item_json;
  std::vector<uint64_t> item_json_at;
  std::string name_json;  // the variant's name as a JSON string
};

// A string as a JSON string, by nlohmann's serializer (bytes that are not UTF-8 replaced).
std::string JsonString(const std::string& s) {
  return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// An item's reply object without its score and closing brace: `{"item_id":"..","col":".."`
// for each column of the row. Replies copy these bytes instead of building a JSON object per
// item: that cost about 20 allocations per item and a fifth of a request's time (perf, 1,000
// items). nlohmann still does every escape.
std::string ItemJsonPrefix(const std::string& id, const Row& row, const std::string& id_column) {
  std::string out = "{\"item_id\":" + JsonString(id);
  for (const auto& [column, value] : row) {
    if (column == id_column) continue;
    out += ',';
    out += JsonString(column);
    out += ':';
    out += JsonString(value);
  }
  return out;
}

void BuildItemJson(Loaded* v) {
  const data::Table& items = v->rec->bundle().items;
  const std::string& id_column = v->rec->bundle().model.schema.item.id_column;
  const int64_t n = items.num_rows();
  v->item_json_at.assign(1, 0);
  v->item_json_at.reserve(static_cast<size_t>(n) + 1);
  size_t id_col = items.columns.size();
  for (size_t c = 0; c < items.columns.size(); ++c) {
    if (items.columns[c] == id_column) id_col = c;
  }
  if (id_col == items.columns.size()) throw Error("items table: no column " + Quote(id_column));
  Row row;
  for (int64_t r = 0; r < n; ++r) {
    row.clear();
    for (size_t c = 0; c < items.columns.size(); ++c) {
      row.emplace_back(items.columns[c], items.cells[c][r]);
    }
    v->item_json += ItemJsonPrefix(items.cells[id_col][r], row, id_column);
    v->item_json_at.push_back(v->item_json.size());
  }
  v->item_json.shrink_to_fit();
}

std::shared_ptr<Loaded> LoadVariant(const VariantConfig& config, int64_t user_cache_mb) {
  auto v = std::make_shared<Loaded>();
  v->config = config;
  app::RecommenderOptions options;
  options.name = config.name;
  options.model = config.model;
  options.index = config.index;
  options.rerank = config.rerank;
  options.candidates = config.candidates;
  options.user_cache_mb = user_cache_mb;
  // A users table over user_cache_mb: each request encodes its user's row alone (latency), not
  // the user's block.
  options.uncached_user_blocks = false;
  v->rec = app::Recommender::Open(options);
  v->name_json = JsonString(config.name);
  BuildItemJson(v.get());
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(config.model, ec);
  if (!ec) {
    const auto system = std::chrono::time_point_cast<std::chrono::system_clock::duration>(
        mtime - decltype(mtime)::clock::now() + std::chrono::system_clock::now());
    v->created = Iso8601(std::chrono::system_clock::to_time_t(system));
  }
  const std::filesystem::path metrics =
      std::filesystem::path(config.model).parent_path() / "test_metrics.json";
  if (std::filesystem::exists(metrics, ec)) {
    try {
      v->test_metrics = ParseJsonStrict(ReadFile(metrics.string()), metrics.string());
    } catch (const Error&) {
      v->test_metrics = nullptr;
    }
  }
  return v;
}

// Whether any variant's user tower reads a history (then a request's "history" is read by those
// variants and ignored by the others, as A/B tests need; else it is refused).
bool SomeVariantReadsHistory(const std::vector<std::shared_ptr<Loaded>>& all) {
  for (const auto& v : all) {
    if (v->rec->reads_history()) return true;
  }
  return false;
}

// The user id column (the first variant's: A/B variants serve the same users).
const std::string& UserIdColumn(const std::vector<std::shared_ptr<Loaded>>& all) {
  return all[0]->rec->bundle().model.schema.user.id_column;
}

// Appends an item's reply object, {"item_id", its columns..., "score"}, to `out`.
void AppendItem(const Loaded& v, const app::ScoredItem& item, std::string* out) {
  if (item.live) {
    *out += ItemJsonPrefix(item.id, *item.live, v.rec->bundle().model.schema.item.id_column);
  } else if (item.item_row >= 0) {
    const int32_t r = item.item_row;
    out->append(v.item_json, v.item_json_at[r], v.item_json_at[r + 1] - v.item_json_at[r]);
  } else {
    *out += "{\"item_id\":";
    *out += JsonString(item.id);
  }
  *out += ",\"score\":";
  // Shortest decimal that reads back as the same double (std::to_chars), as nlohmann writes.
  char buf[32];
  if (std::isfinite(item.score)) {
    const auto end = std::to_chars(buf, buf + sizeof(buf), item.score).ptr;
    out->append(buf, end);
  } else {
    *out += "null";
  }
  *out += '}';
}

// A reply {"variant", "model_version", ["ranker_version",] ["untrained_items_excluded",]
// "items": [...]}; the count only when the model leaves items of its table out (items with no
// trained embedding: app::UntrainedItemRows).
std::string ItemsReply(const Loaded& v, const app::Recommendations& recs) {
  std::string out;
  out.reserve(96 + recs.items.size() * 160);
  out += "{\"variant\":";
  out += v.name_json;
  out += ",\"model_version\":\"";
  out += v.rec->model_version();  // hex digits
  if (recs.reranked) {            // the ranker that ordered the items, by its SHA-256
    out += "\",\"ranker_version\":\"";
    out += v.rec->ranker_version();
  }
  out += '"';
  if (recs.untrained_excluded > 0) {
    out += ",\"untrained_items_excluded\":";
    out += std::to_string(recs.untrained_excluded);
  }
  if (!recs.fallback.empty()) {  // the user has no trained embedding (app::PopularityFallback)
    out += ",\"fallback\":\"";
    out += recs.fallback;
    out += '"';
  }
  out += ",\"items\":[";
  for (size_t r = 0; r < recs.items.size(); ++r) {
    if (r > 0) out += ',';
    AppendItem(v, recs.items[r], &out);
  }
  out += "]}";
  return out;
}
// ---- metrics -----------------------------------------------------------------------------------

constexpr double kLatencyBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
constexpr int kNumBuckets = sizeof(kLatencyBuckets) / sizeof(kLatencyBuckets[0]);

struct Histogram {
  int64_t buckets[kNumBuckets] = {};
  int64_t count = 0;
  double sum = 0;
};

struct Metrics {
  std::mutex mutex;
  std::map<std::tuple<std::string, int, std::string>, int64_t> requests;  // route, status, variant
  std::map<std::string, Histogram> latency;                               // per route
  void Record(const std::string& route, int status, const std::string& variant, double seconds) {
    std::lock_guard<std::mutex> lock(mutex);
    ++requests[{route, status, variant}];
    Histogram& h = latency[route];
    for (int i = 0; i < kNumBuckets; ++i) h.buckets[i] += seconds <= kLatencyBuckets[i];
    ++h.count;
    h.sum += seconds;
  }
};

std::string Label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

Json OpenApi();

}  // namespace

// ---- the server --------------------------------------------------------------------------------

struct Server::Impl {
  ServeConfig config;
  std::mutex variants_mutex;  // guards the vector, not the variants
  std::vector<std::shared_ptr<Loaded>> variants;
  std::atomic<bool> ready{false};
  std::unique_ptr<app::Experiment> experiment;  // assignment and the tallies of logged events
  std::vector<std::string> notes;               // guarded by notes_mutex after the start
  std::mutex notes_mutex;
  std::unique_ptr<EventLog> events;
  bool ran = false;  // Run was called: the log is kept, even empty
  // Every like logged or replayed (live_history): a reload applies them to the new variants.
  // Held while a like is applied and while a reload swaps, so none is missed.
  std::mutex likes_mutex;
  std::vector<Event> likes;
  Metrics metrics;
  std::atomic<int64_t> reloads_ok{0}, reloads_failed{0};
  std::mutex reload_mutex;  // one reload at a time
  std::thread flusher;
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopping = false;

  std::vector<std::shared_ptr<Loaded>> Snapshot() {
    std::lock_guard<std::mutex> lock(variants_mutex);
    return variants;
  }
  int Assign(const std::string& key) { return experiment->Assign(key); }
  // A request's user lands where its id lands, however the request names it.
  int Assign(const app::UserRef& user) {
    return Assign(
        app::AssignmentKey(user, Snapshot()[0]->rec->bundle().model.schema.user.id_column));
  }

  void Count(const Event& e) { experiment->Count(e.variant, e.user_id, e.event); }

  // A like joins variant v's live history unless v's model may have been trained with it: by
  // content, never by file times. A like records the SHA-256 of every model served when it came;
  // it applies to a model among them (the same model, reloaded or restarted, keeps its likes), and
  // not to another (a new model's training data should hold it). A like of a log written before
  // likes recorded their models applies to every model.
  void ApplyLike(Loaded& v, const Event& e) {
    if (!e.models.empty() &&
        std::find(e.models.begin(), e.models.end(), v.rec->model_version()) == e.models.end()) {
      return;
    }
    v.rec->RecordLike(e.user_id, e.item_id);
  }

  // One request through the variant, so the first real one does not pay for cold caches. A
  // failure is said (a note), not fatal: that user's requests will say it again.
  void Warm(const Loaded& v) {
    const app::Bundle& b = v.rec->bundle();
    if (b.users.num_rows() == 0 || v.rec->num_items() == 0) return;
    app::RecommendRequest r;
    r.user.id = b.user_index.ids[0];
    try {
      (void)v.rec->Recommend(r);
    } catch (const Error& e) {
      std::lock_guard<std::mutex> lock(notes_mutex);
      notes.push_back("warning: variant '" + v.config.name + "': warming up with user " +
                      Quote(r.user.id) + " failed: " + e.what());
    }
  }

  // Registers a route: the handler returns the reply body and status, and the variant it used;
  // errors become JSON replies; every request is counted and timed (Answer).
  struct Reply {
    Reply() = default;
    Reply(int s, Json b, std::string v) : status(s), body(std::move(b)), variant(std::move(v)) {}
    int status = 200;
    Json body;
    std::string variant;
    std::string raw;  // the body as written JSON, when not empty (then `body` is unused)
    std::string content_type = "application/json";
  };
  // The request and the pattern's captures (percent-decoded path).
  using Handler = std::function<Reply(const http::Request&, const std::smatch&)>;
  struct RouteEntry {
    std::string method;
    std::regex pattern;
    std::string route;  // the name /metrics counts it under
    Handler handler;
  };
  std::vector<RouteEntry> routes;
  void Route(const char* method, const std::string& pattern, const std::string& route,
             Handler handler) {
    routes.push_back({method, std::regex(pattern), route, std::move(handler)});
  }
  // Every request the transport read or refused (http::Handler).
  void Answer(const http::Request& req, http::Response& res);
  std::unique_ptr<http::Server> http;

  void Routes();
  Reply Recommend(const http::Request& req);
  Reply Score(const http::Request& req);
  Reply Similar(const http::Request& req);
  Reply PutItems(const http::Request& req);
  Reply DeleteItem(const std::string& id);
  Reply Feedback(const http::Request& req);
  Reply Experiment(const std::string& name);
  Reply Models();
  std::string MetricsText();
  std::string Reload(const std::string& trigger);
  std::string ReloadLocked();  // Reload's work, under reload_mutex
  std::function<void(const std::string&)> log;
};

Server::Server(ServeConfig config) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  config.Validate();
  s.config = std::move(config);
  std::vector<app::Arm> arms;
  for (const VariantConfig& v : s.config.variants) {
    s.variants.push_back(LoadVariant(v, s.config.user_cache_mb));
    arms.push_back({v.name, v.weight});
  }
  s.experiment = std::make_unique<app::Experiment>(s.config.experiment, s.config.salt,
                                                   std::move(arms), s.config.source);
  s.events = std::make_unique<EventLog>(s.config.events, [&s](const Event& e) {
    s.Count(e);
    if (s.config.live_history && e.event == "like") s.likes.push_back(e);
  });
  for (const auto& v : s.variants) {
    for (const Event& e : s.likes) s.ApplyLike(*v, e);
  }
  for (const auto& v : s.variants) s.Warm(*v);
  s.notes.push_back(s.events->replayed().Describe(s.config.events, true));
  const std::string unlisted = s.experiment->UnlistedMessage(s.config.events);
  if (!unlisted.empty()) {
    s.notes.push_back("warning: " + unlisted);
  }
  s.ready = true;
  s.Routes();
  http::Limits limits;
  // Each request runs on one thread (a single-threaded search), and a connection holds a thread
  // only while its request is answered: one per core, and a second so that one slow request (a
  // reload) leaves another to answer health checks.
  limits.threads =
      s.config.threads > 0
          ? s.config.threads
          : static_cast<int>(std::max(2u, std::max(1u, std::thread::hardware_concurrency())));
  limits.max_body_bytes = s.config.max_body_bytes;
  limits.request_timeout_seconds = s.config.timeout_seconds;
  limits.idle_timeout_seconds = s.config.idle_timeout_seconds;
  s.http = std::make_unique<http::Server>(
      limits, [&s](const http::Request& req, http::Response& res) { s.Answer(req, res); });
}

Server::~Server() {
  Stop();
  if (impl_->flusher.joinable()) impl_->flusher.join();
  if (!impl_->ran) impl_->events->DiscardIfUnused();  // it never served (Bind failed)
}

int Server::Bind() {
  Impl& s = *impl_;
  return s.http->Bind(s.config.host, s.config.port);
}

void Server::Run() {
  Impl& s = *impl_;
  s.ran = true;
  s.flusher = std::thread([&s] {
    std::unique_lock<std::mutex> lock(s.stop_mutex);
    while (!s.stopping) {
      s.stop_cv.wait_for(lock, std::chrono::seconds(1));
      try {
        s.events->Flush(true);
      } catch (const Error&) {
        // Kept buffered; the next flush tries again (and /metrics shows events logged).
      }
    }
  });
  s.http->Run();  // returns once stopped, after the requests in flight
  {
    std::lock_guard<std::mutex> lock(s.stop_mutex);
    s.stopping = true;
  }
  s.stop_cv.notify_all();
  if (s.flusher.joinable()) s.flusher.join();
  s.events->Flush(true);
}

void Server::Stop() { impl_->http->Stop(); }

std::string Server::Reload(const std::string& trigger) { return impl_->Reload(trigger); }

void Server::set_log(std::function<void(const std::string&)> log) { impl_->log = std::move(log); }

const std::vector<std::string>& Server::notes() const { return impl_->notes; }

std::string Server::Impl::Reload(const std::string& trigger) {
  std::string problem;
  {
    std::lock_guard<std::mutex> one(reload_mutex);
    problem = ReloadLocked();
  }
  if (log) {
    log(problem.empty()
            ? "reloaded (" + trigger + ")"
            : "reload (" + trigger + ") failed, still serving the previous models: " + problem);
  }
  return problem;
}

std::string Server::Impl::ReloadLocked() {
  try {
    std::vector<std::shared_ptr<Loaded>> fresh;
    for (const VariantConfig& v : config.variants) {
      fresh.push_back(LoadVariant(v, config.user_cache_mb));
    }
    for (const auto& v : fresh) Warm(*v);
    std::lock_guard<std::mutex> hold(likes_mutex);
    for (const auto& v : fresh) {
      for (const Event& e : likes) ApplyLike(*v, e);
    }
    std::lock_guard<std::mutex> lock(variants_mutex);
    variants.swap(fresh);
  } catch (const std::exception& e) {
    ++reloads_failed;
    return e.what();
  }
  ++reloads_ok;
  return "";
}

// ---- routes ------------------------------------------------------------------------------------

void Server::Impl::Routes() {
  using Req = const http::Request&;
  using Match = const std::smatch&;
  Route("POST", "/v1/recommend", "/v1/recommend", [this](Req r, Match) { return Recommend(r); });
  Route("POST", "/v1/score", "/v1/score", [this](Req r, Match) { return Score(r); });
  Route("POST", "/v1/similar", "/v1/similar", [this](Req r, Match) { return Similar(r); });
  Route("PUT", "/v1/items", "/v1/items", [this](Req r, Match) { return PutItems(r); });
  Route("DELETE", R"(/v1/items/(.+))", "/v1/items/{id}",
        [this](Req, Match m) { return DeleteItem(m[1]); });
  Route("POST", "/v1/feedback", "/v1/feedback", [this](Req r, Match) { return Feedback(r); });
  Route("GET", R"(/v1/experiments/([^/]+))", "/v1/experiments/{name}",
        [this](Req, Match m) { return Experiment(m[1]); });
  Route("GET", "/v1/models", "/v1/models", [this](Req, Match) { return Models(); });
  Route("POST", "/v1/admin/reload", "/v1/admin/reload", [this](Req r, Match) {
    // A reload takes no fields: no body, or an empty JSON object.
    if (!r.body.empty()) {
      const Json body = ParseBody(r);
      if (!body.empty()) {
        const std::string key = body.items().begin().key();
        Refuse(ErrorCode::kInvalidArgument, key,
               "unknown field '" + key + "' (a reload takes no fields: send {} or no body)");
      }
    }
    const std::string problem = Reload("POST /v1/admin/reload");
    if (!problem.empty()) {
      return Reply{500,
                   {{"error", "reload failed, still serving the previous models: " + problem},
                    {"field", ""}},
                   ""};
    }
    Json versions = Json::object();
    for (const auto& v : Snapshot()) versions[v->config.name] = v->rec->model_version();
    return Reply{200, {{"reloaded", true}, {"model_versions", versions}}, ""};
  });
  Route("GET", "/healthz", "/healthz", [](Req, Match) {
    return Reply{200, {{"status", "ok"}}, ""};
  });
  Route("GET", "/readyz", "/readyz", [this](Req, Match) {
    return ready ? Reply{200, {{"status", "ready"}}, ""} : Reply{503, {{"status", "loading"}}, ""};
  });
  Route("GET", "/openapi.json", "/openapi.json", [](Req, Match) {
    return Reply{200, OpenApi(), ""};
  });
  Route("GET", "/metrics", "/metrics", [this](Req, Match) {
    Reply reply;
    reply.raw = MetricsText();
    reply.content_type = "text/plain; version=0.0.4";
    return reply;
  });
}

namespace {

// The request target's path as the routes see it: %XX sequences decoded (RFC 3986 section 2.1),
// so DELETE /v1/items/{id} names any id. Throws Error for a '%' not followed by two hex digits.
std::string DecodePath(const std::string& path) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') {
      out += path[i];
      continue;
    }
    const int hi = i + 2 < path.size() ? hex(path[i + 1]) : -1;
    const int lo = i + 2 < path.size() ? hex(path[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      Refuse(ErrorCode::kInvalidArgument, "",
             "request path: '%' must be followed by two hexadecimal digits (RFC 3986 "
             "percent-encoding)");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace

void Server::Impl::Answer(const http::Request& req, http::Response& res) {
  const auto start = std::chrono::steady_clock::now();
  auto send = [&](const std::string& route, const Reply& reply) {
    res.status = reply.status;
    res.content_type = reply.content_type;
    // Replace, not throw, on bytes that are not UTF-8 (an id from the request, echoed).
    res.body = !reply.raw.empty() ? reply.raw
                                  : reply.body.dump(-1, ' ', false, Json::error_handler_t::replace);
    metrics.Record(route, reply.status, reply.variant,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  auto error = [&](const std::string& route, int status, const std::string& message) {
    send(route, Reply{status, {{"error", message}, {"field", ""}}, ""});
  };
  if (req.refused != 0) {
    const std::string limit = std::to_string(config.max_body_bytes);
    switch (req.refused) {
      case 411:
        return error(
            "error", 411,
            "send the body with a Content-Length (at most " + limit + " bytes), not chunked");
      case 413:
        return error(
            "error", 413,
            "request body too large: at most " + limit + " bytes (max_body_bytes)" +
                (req.Header("content-type").rfind("application/x-www-form-urlencoded", 0) == 0
                     ? std::string(", and a JSON body, which this form-encoded one (curl -d's "
                                   "default) is not: send Content-Type: application/json")
                     : std::string()));
      case 414:
        return error("error", 414,
                     "request target too long: at most 8192 bytes (ids are at most " +
                         std::to_string(data::kMaxIdBytes) + " bytes)");
      case 431:
        return error("error", 431, "request header fields too large: at most 64 KiB in all");
      default:
        return error("error", req.refused, "malformed HTTP/1.1 request (RFC 9112)");
    }
  }
  std::string path;
  try {
    path = DecodePath(req.path);
  } catch (const Error& e) {
    return error("error", 400, e.what());
  }
  // HEAD is GET without the body (RFC 9110 section 9.3.2); the transport drops the body.
  const std::string method = req.method == "HEAD" ? "GET" : req.method;
  std::smatch match;
  for (const RouteEntry& r : routes) {
    if (r.method != method || !std::regex_match(path, match, r.pattern)) continue;
    std::ostringstream what;
    what << "serve.deadline_seconds: " << config.deadline_seconds;
    t_deadline.what = what.str();
    t_deadline.at = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                std::chrono::duration<double>(config.deadline_seconds));
    omp_set_num_threads(1);  // one thread per request: no thread team per search
    Reply reply;
    try {
      reply = r.handler(req, match);
    } catch (const Error& e) {
      reply = Reply{HttpStatus(e.code()), {{"error", e.what()}, {"field", e.field()}}, ""};
    } catch (const std::bad_alloc&) {
      reply = Reply{503, {{"error", "out of memory"}, {"field", ""}}, ""};
    } catch (const std::exception& e) {
      reply = Reply{500, {{"error", e.what()}, {"field", ""}}, ""};
    }
    return send(r.route, reply);
  }
  // A route that exists for other methods: 405 with the methods it takes (RFC 9110 15.5.6).
  std::string allow;
  for (const RouteEntry& r : routes) {
    if (r.method != method && std::regex_match(path, r.pattern) &&
        allow.find(r.method) == std::string::npos) {
      allow += (allow.empty() ? "" : ", ") + r.method;
    }
  }
  if (!allow.empty()) {
    res.headers.emplace_back("Allow", allow);
    return error("error", 405, req.method + " is not allowed here (allowed: " + allow + ")");
  }
  error("unmatched", 404, "no route " + req.method + " " + req.path);
}

// ---- handlers ----------------------------------------------------------------------------------

namespace {

// The user a request is about: "user_id", or "user" (features) with an optional "history".
app::UserRef ReadUser(const Json& body, int max_list, bool some_variant_reads_history,
                      const std::string& id_column) {
  app::UserRef u;
  const bool by_id = body.contains("user_id"), by_features = body.contains("user");
  if (by_id == by_features) {
    Refuse(ErrorCode::kInvalidArgument, "user_id",
           "give either \"user_id\" or \"user\" (features of a new user)");
  }
  if (by_id) {
    u.id = IdValue(body["user_id"], "user_id");
  } else {
    if (!body["user"].is_object()) {
      Refuse(ErrorCode::kInvalidArgument, "user", "user: expected an object of features");
    }
    u.features = RowValue(body["user"], "user", id_column);
  }
  if (body.contains("history")) {
    if (!some_variant_reads_history) {
      Refuse(ErrorCode::kInvalidArgument, "history",
             "history: the model's user tower reads no history (features.history)");
    }
    if (by_id) {
      Refuse(ErrorCode::kInvalidArgument, "history",
             "history: goes with \"user\" (a known user's history is read from the model's "
             "train and val files)");
    }
    u.history = IdList(body["history"], "history", max_list);
    u.ignore_unread_history = true;  // read by the variants whose model reads one
  }
  return u;
}

}  // namespace

Server::Impl::Reply Server::Impl::Recommend(const http::Request& req) {
  const Json body = ParseBody(req);
  AllowKeys(body, {"user_id", "user", "history", "k", "exclude_seen", "exclude", "allow"});
  const auto all = Snapshot();
  app::RecommendRequest r;
  r.user = ReadUser(body, config.max_list, SomeVariantReadsHistory(all), UserIdColumn(all));
  r.k = KValue(body, config.max_k);
  r.exclude_seen = BoolValue(body, "exclude_seen", false);
  if (body.contains("exclude")) r.exclude = IdList(body["exclude"], "exclude", config.max_list);
  if (body.contains("allow")) r.allow = IdList(body["allow"], "allow", config.max_list);
  const Loaded& v = *all[Assign(r.user)];
  Reply reply;
  reply.variant = v.config.name;
  reply.raw = ItemsReply(v, v.rec->Recommend(r, t_deadline));
  return reply;
}

Server::Impl::Reply Server::Impl::Score(const http::Request& req) {
  const Json body = ParseBody(req);
  AllowKeys(body, {"user_id", "user", "history", "item_ids"});
  const auto all = Snapshot();
  const app::UserRef user =
      ReadUser(body, config.max_list, SomeVariantReadsHistory(all), UserIdColumn(all));
  if (!body.contains("item_ids"))
    Refuse(ErrorCode::kInvalidArgument, "item_ids", "item_ids: required");
  const std::vector<std::string> ids = IdList(body["item_ids"], "item_ids", config.max_list);
  const Loaded& v = *all[Assign(user)];
  const std::vector<app::ScoredItem> scored = v.rec->Score(user, ids, t_deadline);
  Json scores = Json::array();
  for (const app::ScoredItem& s : scored) scores.push_back({{"item_id", s.id}, {"score", s.score}});
  Json reply = {{"variant", v.config.name}, {"model_version", v.rec->model_version()}};
  if (v.rec->reranks()) reply["ranker_version"] = v.rec->ranker_version();
  reply["scores"] = scores;
  return Reply{200, reply, v.config.name};
}

Server::Impl::Reply Server::Impl::Similar(const http::Request& req) {
  const Json body = ParseBody(req);
  AllowKeys(body, {"item_id", "k", "variant"});
  if (!body.contains("item_id"))
    Refuse(ErrorCode::kInvalidArgument, "item_id", "item_id: required");
  const std::string id = IdValue(body["item_id"], "item_id");
  const int k = KValue(body, config.max_k);
  const auto all = Snapshot();
  size_t vi = 0;
  if (body.contains("variant")) {
    if (!body["variant"].is_string()) {
      Refuse(ErrorCode::kInvalidArgument, "variant", "variant: expected a name");
    }
    const std::string name = body["variant"].get<std::string>();
    while (vi < all.size() && all[vi]->config.name != name) ++vi;
    if (vi == all.size()) {
      Refuse(ErrorCode::kNotFound, "variant", "variant: unknown variant " + Quote(name));
    }
  }
  const Loaded& v = *all[vi];
  Reply reply;
  reply.variant = v.config.name;
  reply.raw = ItemsReply(v, v.rec->Similar(id, k, t_deadline));
  return reply;
}

Server::Impl::Reply Server::Impl::PutItems(const http::Request& req) {
  const Json body = ParseBody(req);
  AllowKeys(body, {"items"});
  if (!body.contains("items") || !body["items"].is_array() || body["items"].empty()) {
    Refuse(ErrorCode::kInvalidArgument, "items", "items: expected a non-empty list of item rows");
  }
  if (static_cast<int64_t>(body["items"].size()) > config.max_list) {
    Refuse(ErrorCode::kInvalidArgument, "items",
           "items: at most " + std::to_string(config.max_list) + " rows");
  }
  const auto all = Snapshot();
  std::vector<Row> rows;
  for (size_t i = 0; i < body["items"].size(); ++i) {
    rows.push_back(RowValue(body["items"][i], "items[" + std::to_string(i) + "]",
                            all[0]->rec->bundle().model.schema.item.id_column));
  }
  // The columns an item may have: those of any variant. Prepared on every variant first: a bad
  // row changes nothing anywhere.
  std::set<std::string> columns;
  for (const auto& v : all) {
    const std::set<std::string> c = v->rec->ItemColumns();
    columns.insert(c.begin(), c.end());
  }
  std::vector<app::PreparedItems> prepared;
  for (const auto& v : all) prepared.push_back(v->rec->PrepareItems(rows, columns, t_deadline));
  app::PutResult first;
  for (size_t vi = 0; vi < all.size(); ++vi) {
    const app::PutResult r = all[vi]->rec->CommitItems(prepared[vi]);
    if (vi == 0) first = r;
  }
  return Reply{
      200, {{"added", first.added}, {"updated", first.updated}, {"variants", all.size()}}, ""};
}

Server::Impl::Reply Server::Impl::DeleteItem(const std::string& id) {
  bool found = false;
  for (const auto& v : Snapshot()) found = v->rec->DeleteItem(id) || found;
  if (!found) Refuse(ErrorCode::kNotFound, "id", "unknown item " + Quote(id));
  return Reply{200, {{"deleted", id}}, ""};
}

Server::Impl::Reply Server::Impl::Feedback(const http::Request& req) {
  const Json body = ParseBody(req);
  AllowKeys(body, {"user_id", "item_id", "event", "variant"});
  for (const char* key : {"user_id", "item_id", "event"}) {
    if (!body.contains(key))
      Refuse(ErrorCode::kInvalidArgument, key, std::string(key) + ": required");
  }
  Event e;
  e.ts_ms = NowMs();
  e.user_id = IdValue(body["user_id"], "user_id");
  e.item_id = IdValue(body["item_id"], "item_id");
  if (!body["event"].is_string() || !IsEventName(body["event"].get<std::string>())) {
    Refuse(ErrorCode::kInvalidArgument, "event",
           "event: expected \"impression\", \"click\" or \"like\", got " + body["event"].dump());
  }
  e.event = body["event"].get<std::string>();
  const auto all = Snapshot();
  if (body.contains("variant")) {
    if (!body["variant"].is_string())
      Refuse(ErrorCode::kInvalidArgument, "variant", "variant: expected a name");
    e.variant = body["variant"].get<std::string>();
    bool known = false;
    for (const auto& v : all) known = known || v->config.name == e.variant;
    if (!known)
      Refuse(ErrorCode::kNotFound, "variant", "variant: unknown variant " + Quote(e.variant));
  } else {
    e.variant = all[Assign(e.user_id)]->config.name;
  }
  if (e.event == "like") {
    for (const auto& v : all) e.models.push_back(v->rec->model_version());
  }
  events->Append(e);
  Count(e);
  if (config.live_history && e.event == "like") {
    std::lock_guard<std::mutex> lock(likes_mutex);
    likes.push_back(e);
    for (const auto& v : Snapshot()) ApplyLike(*v, e);
  }
  return Reply{202, {{"logged", true}, {"variant", e.variant}}, e.variant};
}

Server::Impl::Reply Server::Impl::Experiment(const std::string& name) {
  if (name != config.experiment) {
    Refuse(ErrorCode::kNotFound, "name",
           "unknown experiment " + Quote(name) + " (this server runs " + Quote(config.experiment) +
               ")");
  }
  // A readout never hides events: those of arms the config does not list are shown apart.
  Json out = ReadoutJson(experiment->Readout(config.events));
  out["salt"] = config.salt;
  return Reply{200, out, ""};
}

Server::Impl::Reply Server::Impl::Models() {
  Json list = Json::array();
  for (const auto& v : Snapshot()) {
    const app::Recommender& r = *v->rec;
    const auto [like_users, like_items] = r.live_like_counts();
    list.push_back({{"variant", v->config.name},
                    {"weight", v->config.weight},
                    {"model", v->config.model},
                    {"model_version", r.model_version()},
                    {"index", v->config.index.empty() ? Json() : Json(v->config.index)},
                    {"index_spec", r.index_spec()},
                    {"items", r.num_items()},
                    {"created", v->created},
                    {"rerank", r.reranks() ? Json{{"model", v->config.rerank},
                                                  {"model_version", r.ranker_version()},
                                                  {"candidates", v->config.candidates}}
                                           : Json()},
                    {"live_likes", {{"users", like_users}, {"history_items", like_items}}},
                    {"config", r.bundle().model.config},
                    {"test_metrics", v->test_metrics}});
  }
  return Reply{200, {{"models", list}}, ""};
}

std::string Server::Impl::MetricsText() {
  std::string out;
  out += "# HELP twotower_requests_total Requests answered, by route, status and variant.\n";
  out += "# TYPE twotower_requests_total counter\n";
  std::lock_guard<std::mutex> lock(metrics.mutex);
  for (const auto& [key, n] : metrics.requests) {
    const auto& [route, status, variant] = key;
    out += "twotower_requests_total{route=\"" + Label(route) + "\",status=\"" +
           std::to_string(status) + "\",variant=\"" + Label(variant) + "\"} " + std::to_string(n) +
           "\n";
  }
  out += "# HELP twotower_request_duration_seconds Time to answer a request, by route.\n";
  out += "# TYPE twotower_request_duration_seconds histogram\n";
  for (const auto& [route, h] : metrics.latency) {
    const std::string r = "route=\"" + Label(route) + "\"";
    for (int i = 0; i < kNumBuckets; ++i) {
      char le[32];
      std::snprintf(le, sizeof(le), "%g", kLatencyBuckets[i]);
      out += "twotower_request_duration_seconds_bucket{" + r + ",le=\"" + le + "\"} " +
             std::to_string(h.buckets[i]) + "\n";
    }
    out += "twotower_request_duration_seconds_bucket{" + r + ",le=\"+Inf\"} " +
           std::to_string(h.count) + "\n";
    char sum[64];
    std::snprintf(sum, sizeof(sum), "%.9g", h.sum);
    out += "twotower_request_duration_seconds_sum{" + r + "} " + sum + "\n";
    out += "twotower_request_duration_seconds_count{" + r + "} " + std::to_string(h.count) + "\n";
  }
  out += "# HELP twotower_index_items Items a variant retrieves from.\n";
  out += "# TYPE twotower_index_items gauge\n";
  for (const auto& v : Snapshot()) {
    out += "twotower_index_items{variant=\"" + Label(v->config.name) + "\"} " +
           std::to_string(v->rec->num_items()) + "\n";
  }
  out +=
      "# HELP twotower_reloads_total Reloads, by result.\n# TYPE twotower_reloads_total counter\n";
  out += "twotower_reloads_total{result=\"ok\"} " + std::to_string(reloads_ok.load()) + "\n";
  out +=
      "twotower_reloads_total{result=\"failed\"} " + std::to_string(reloads_failed.load()) + "\n";
  out += "# HELP twotower_events_logged_total Feedback events logged since start.\n";
  out += "# TYPE twotower_events_logged_total counter\n";
  out += "twotower_events_logged_total " + std::to_string(events->logged()) + "\n";
  return out;
}

namespace {

Json OpenApi() {
  auto body = [](Json properties, std::vector<std::string> required) {
    Json schema = {{"type", "object"}, {"properties", properties}, {"additionalProperties", false}};
    if (!required.empty()) schema["required"] = required;
    return Json{{"required", true}, {"content", {{"application/json", {{"schema", schema}}}}}};
  };
  const Json id = {{"oneOf", Json::array({{{"type", "string"}}, {{"type", "integer"}}})}};
  const Json ids = {{"type", "array"}, {"items", id}};
  const Json row = {{"type", "object"}, {"additionalProperties", {{"type", "string"}}}};
  const Json ok = {{"200", {{"description", "OK"}}},
                   {"400", {{"description", "bad request"}}},
                   {"404", {{"description", "unknown user, item or name"}}},
                   {"413", {{"description", "body over max_body_bytes"}}},
                   {"503", {{"description", "past deadline_seconds, or out of memory"}}}};
  auto op = [&](const char* summary, Json request) {
    Json o = {{"summary", summary}, {"responses", ok}};
    if (!request.is_null()) o["requestBody"] = request;
    return o;
  };
  Json paths;
  paths["/v1/recommend"]["post"] =
      op("top-k items for a user (by id, or by features for a new user)",
         body({{"user_id", id},
               {"user", row},
               {"history", ids},
               {"k", {{"type", "integer"}, {"minimum", 1}}},
               {"exclude_seen", {{"type", "boolean"}}},
               {"exclude", ids},
               {"allow", ids}},
              {}));
  paths["/v1/score"]["post"] =
      op("the model's score for each listed item",
         body({{"user_id", id}, {"user", row}, {"history", ids}, {"item_ids", ids}}, {"item_ids"}));
  paths["/v1/similar"]["post"] =
      op("nearest items by item embedding",
         body({{"item_id", id}, {"k", {{"type", "integer"}}}, {"variant", {{"type", "string"}}}},
              {"item_id"}));
  paths["/v1/items"]["put"] = op("insert or update items in the live index",
                                 body({{"items", {{"type", "array"}, {"items", row}}}}, {"items"}));
  paths["/v1/items/{id}"]["delete"] = op("remove an item from the live index", nullptr);
  paths["/v1/items/{id}"]["delete"]["parameters"] = Json::array(
      {{{"name", "id"}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}}});
  paths["/v1/feedback"]["post"] =
      op("log an impression, click or like",
         body({{"user_id", id},
               {"item_id", id},
               {"event", {{"type", "string"}, {"enum", {"impression", "click", "like"}}}},
               {"variant", {{"type", "string"}}}},
              {"user_id", "item_id", "event"}));
  paths["/v1/experiments/{name}"]["get"] = op("the experiment's readout per variant", nullptr);
  paths["/v1/experiments/{name}"]["get"]["parameters"] = Json::array(
      {{{"name", "name"}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}}});
  paths["/v1/models"]["get"] =
      op("loaded models: version, config, creation time, test metrics", nullptr);
  paths["/v1/admin/reload"]["post"] = op("reload models, indexes and items from disk", nullptr);
  paths["/v1/admin/reload"]["post"]["responses"]["500"] = {
      {"description", "the reload failed; the previous models go on serving"}};
  paths["/healthz"]["get"] = op("alive", nullptr);
  paths["/readyz"]["get"] = op("ready: every model and index loaded and warmed", nullptr);
  paths["/metrics"]["get"] = op("Prometheus text format", nullptr);
  paths["/openapi.json"]["get"] = op("this document", nullptr);
  return {{"openapi", "3.0.3"},
          {"info", {{"title", "twotower serve"}, {"version", "1"}}},
          {"paths", paths}};
}

}  // namespace

}  // namespace twotower::serve
