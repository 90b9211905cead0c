#include "twotower/app/tune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <set>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/rng.h"
#include "twotower/core/settings.h"
#include "twotower/core/text.h"
#include "twotower/core/threads.h"
#include "twotower/data/csv.h"
#include "twotower/data/parquet.h"
#include "twotower/train/tasks.h"

namespace twotower::app {
namespace {

namespace fs = std::filesystem;

struct Dimension {
  std::string key;
  std::vector<std::string> choices;  // a list; else a range
  double lo = 0, hi = 0;
  bool log = false, integer = false;
};

bool IsIntegerText(const std::string& s) {
  if (s.empty()) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i >= s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

std::vector<std::string> SplitOn(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? end : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

Dimension ParseDimension(const std::string& key, const std::string& spec,
                         const train::Config& base) {
  const std::string where = "--space " + key + "=" + spec;
  Dimension d;
  d.key = key;
  // The key must be a setting and each value one it accepts (checked on a copy of the config).
  auto check = [&](const std::string& value) {
    train::Config probe = base;
    probe.Set(key + "=" + value, where, false);
  };
  if (spec.find('|') != std::string::npos || spec.find(':') == std::string::npos) {
    d.choices = SplitOn(spec, '|');
    for (const std::string& c : d.choices) {
      if (c.empty()) throw Error(where + ": an empty value in the list");
      check(c);
    }
    return d;
  }
  const std::vector<std::string> parts = SplitOn(spec, ':');
  if (parts.size() < 2 || parts.size() > 3 || (parts.size() == 3 && parts[2] != "log")) {
    throw Error(where + ": expected lo:hi, lo:hi:log or a|b|c");
  }
  bool ok_lo = false, ok_hi = false;
  d.lo = ParseFiniteDouble(parts[0], &ok_lo);
  d.hi = ParseFiniteDouble(parts[1], &ok_hi);
  if (!ok_lo || !ok_hi || !(d.lo < d.hi)) {
    throw Error(where + ": expected numbers lo < hi");
  }
  d.log = parts.size() == 3;
  if (d.log && !(d.lo > 0)) throw Error(where + ": a log range needs lo > 0");
  d.integer = IsIntegerText(parts[0]) && IsIntegerText(parts[1]);
  check(parts[0]);
  check(parts[1]);
  return d;
}

std::string Sample(const Dimension& d, Rng* rng) {
  if (!d.choices.empty()) return d.choices[rng->Below(d.choices.size())];
  const double u = rng->Uniform();
  double v = d.log ? std::exp(std::log(d.lo) + u * (std::log(d.hi) - std::log(d.lo)))
                   : d.lo + u * (d.hi - d.lo);
  if (d.integer) return std::to_string(static_cast<int64_t>(std::llround(v)));
  // 3 significant digits: a value that reads back the same from tune.csv and the config.
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

// One trial's config: the base with the params, no refit or checkpoints, `epochs` epochs.
train::Config TrialConfig(const train::Config& base,
                          const std::vector<std::pair<std::string, std::string>>& params,
                          int epochs) {
  train::Config c = base;
  for (const auto& [key, value] : params) c.Set(key + "=" + value, "tune", false);
  for (const auto& [key, value] : params) {
    if (key != "model.embedding_dim" || c.model.projection) continue;
    // An id-alone tower without a projection is its embedding: its id feature's width follows.
    for (data::EntitySchema* side : {&c.features.user, &c.features.item}) {
      if (side->features.size() == 1) side->features[0].dim = c.model.embedding_dim;
    }
  }
  c.training.refit = false;
  c.training.checkpoint = false;
  c.training.epochs = epochs;
  // Every trial is scored by the same metric: the base's, even where a trial's loss would pick
  // another by default (val_auc for bce, val_recall@K for the others).
  c.training.monitor = base.Monitor();
  c.Validate("tune trial");
  return c;
}

std::string Csv(const std::vector<TrialResult>& trials, const std::vector<std::string>& keys,
                const std::string& monitor) {
  std::string out = "trial,rung,epochs";
  for (const std::string& k : keys) out += "," + data::CsvField(k);
  out += "," + monitor + ",best_epoch,seconds\n";
  for (const TrialResult& t : trials) {
    out += std::to_string(t.trial) + "," + std::to_string(t.rung) + "," + std::to_string(t.epochs);
    for (const auto& [k, v] : t.params) out += "," + data::CsvField(v);
    out += "," + (std::isnan(t.value) ? std::string() : data::NumberText(t.value, false)) + "," +
           std::to_string(t.best_epoch) + "," +
           data::NumberText(std::round(t.seconds * 1000) / 1000, false) + "\n";
  }
  return out;
}

// A scatter of every trial's validation metric (y) in the order they ran (x), one color per rung.
std::string Svg(const std::vector<TrialResult>& trials, const std::string& monitor, int num_rungs) {
  const double w = 640, h = 360, left = 60, right = 20, top = 30, bottom = 40;
  double lo = 1e300, hi = -1e300;
  for (const TrialResult& t : trials) {
    if (std::isfinite(t.value)) lo = std::min(lo, t.value), hi = std::max(hi, t.value);
  }
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const char* colors[] = {"#9ecae1", "#4292c6", "#2171b5", "#08519c", "#08306b", "#000000"};
  std::string s =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"360\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<text x=\"" + std::to_string(static_cast<int>(left)) + "\" y=\"18\">" + monitor +
       " on validation by trial (darker: more epochs)</text>\n";
  const int n = static_cast<int>(trials.size());
  auto x_of = [&](int i) { return left + (w - left - right) * (n > 1 ? i / (n - 1.0) : 0.5); };
  auto y_of = [&](double v) { return top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo)); };
  s += "<line x1=\"" + std::to_string(left) + "\" y1=\"" + std::to_string(h - bottom) + "\" x2=\"" +
       std::to_string(w - right) + "\" y2=\"" + std::to_string(h - bottom) +
       "\" stroke=\"#888\"/>\n";
  for (double v : {lo, (lo + hi) / 2, hi}) {
    s += "<text x=\"4\" y=\"" + std::to_string(y_of(v) + 4) + "\">" +
         data::NumberText(std::round(v * 1e4) / 1e4, false) + "</text>\n";
  }
  for (int i = 0; i < n; ++i) {
    const TrialResult& t = trials[i];
    if (!std::isfinite(t.value)) continue;
    const int c = std::min(t.rung, 5);
    s += "<circle cx=\"" + std::to_string(x_of(i)) + "\" cy=\"" + std::to_string(y_of(t.value)) +
         "\" r=\"4\" fill=\"" + colors[c] + "\"><title>trial " + std::to_string(t.trial) +
         ", rung " + std::to_string(t.rung) + " (" + std::to_string(t.epochs) +
         " epochs): " + data::NumberText(t.value, false) + "</title></circle>\n";
  }
  s += "<text x=\"" + std::to_string(left) + "\" y=\"" + std::to_string(h - 10) +
       "\">trials in the order they ran; " + std::to_string(num_rungs) + " rungs</text>\n";
  return s + "</svg>\n";
}

}  // namespace

std::map<std::string, std::string> DefaultTuneSpace() {
  return {{"training.temperature", "0.05:0.5:log"},
          {"training.learning_rate", "0.0003:0.01:log"},
          {"training.embedding_l2", "0|1e-06|1e-05|0.0001"},
          {"model.embedding_dim", "32|64|128|256"},
          {"training.batch_size", "256|512|1024|2048"},
          {"training.loss", "softmax|mixed|bpr"}};
}

TuneOutcome Tune(const TuneRequest& request, TuneObserver* observer) {
  TuneObserver silent;
  TuneObserver& o = observer != nullptr ? *observer : silent;
  if (request.trials < 1)
    throw Error("--trials: expected at least 1, got " + std::to_string(request.trials));
  if (request.eta < 2)
    throw Error("--eta: expected at least 2, got " + std::to_string(request.eta));
  if (!(request.budget_seconds >= 0)) throw Error("--budget: expected a duration >= 0");
  TrainRequest base_request;
  base_request.config_path = request.config_path;
  base_request.settings = request.settings;
  std::string source;
  const train::Config base = ResolveTrainConfig(base_request, &source);
  CheckPrecisionRuns(
      base, base_request.settings.empty() ? source : source + " with the command line's settings");
  if (base.model.kind == "ranker")
    throw Error("tune: tunes two-tower models (model.kind: two_tower)");
  o.Configured(base, source);

  std::map<std::string, std::string> space = DefaultTuneSpace();
  // The default losses are the retrieval ones, scored by a ranking metric: a pointwise (bce)
  // base keeps its loss unless --space names one.
  if (base.training.loss == "bce" || base.Monitor() == "val_auc" || base.Monitor() == "val_loss") {
    space.erase("training.loss");
  }
  for (const std::string& entry : request.space) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw Error("--space: expected key=spec (e.g. training.temperature=0.05:0.5:log), got " +
                  Quote(entry));
    }
    const std::string key = entry.substr(0, eq), spec = entry.substr(eq + 1);
    if (spec.empty()) {
      space.erase(key);
    } else {
      space[key] = spec;
    }
  }
  if (space.empty()) throw Error("--space: nothing left to tune");
  std::vector<Dimension> dims;
  std::vector<std::string> keys;
  for (const auto& [key, spec] : space) {
    dims.push_back(ParseDimension(key, spec, base));
    keys.push_back(key);
  }
  // The rungs: epochs r_i = E / eta^(s - i), trials n / eta^i, i = 0 .. s.
  const int max_epochs = base.training.epochs;
  int s = 0;
  while (s < 8 && std::pow(request.eta, s + 1) <= request.trials) ++s;
  std::vector<int> rung_epochs, rung_trials;
  for (int i = 0; i <= s; ++i) {
    rung_epochs.push_back(
        std::max(1, static_cast<int>(std::lround(max_epochs / std::pow(request.eta, s - i)))));
    rung_trials.push_back(std::max(1, static_cast<int>(request.trials / std::pow(request.eta, i))));
  }
  const std::string monitor = base.Monitor();
  TuneOutcome out;
  out.out_dir = request.out_dir.empty()
                    ? (fs::path(base.output_dir) / (base.run_name + "_tune")).string()
                    : request.out_dir;
  const std::string csv_path = (fs::path(out.out_dir) / "tune.csv").string();
  o.Planned(rung_epochs, rung_trials, monitor, out.out_dir);

  // The configurations, drawn once in order, so a rerun draws the same. Trial 1 is the base
  // config's own values (the recipe): the search can only find better on validation.
  Rng rng(request.seed);
  std::vector<std::vector<std::pair<std::string, std::string>>> drawn(request.trials);
  for (auto& params : drawn) {
    for (const Dimension& d : dims) params.emplace_back(d.key, Sample(d, &rng));
  }
  {
    const nlohmann::json j = base.ToJson();
    std::vector<std::pair<std::string, std::string>> own;
    for (const Dimension& d : dims) {
      const nlohmann::json* at = &j;
      for (const std::string& part : SplitOn(d.key, '.')) {
        at = at != nullptr && at->is_object() && at->contains(part) ? &(*at)[part] : nullptr;
      }
      if (at == nullptr) break;
      std::string text;
      if (at->is_number_integer()) {
        text = std::to_string(at->get<int64_t>());
      } else if (at->is_number()) {
        text = data::NumberText(at->get<double>(), false);
      } else if (at->is_string()) {
        text = at->get<std::string>();
      } else if (at->is_boolean()) {
        text = at->get<bool>() ? "true" : "false";
      } else {
        break;
      }
      own.emplace_back(d.key, text);
    }
    if (own.size() == dims.size()) drawn[0] = own;
  }
  // Every drawn configuration is checked now, not hours into the search.
  for (size_t t = 0; t < drawn.size(); ++t) {
    try {
      CheckPrecisionRuns(TrialConfig(base, drawn[t], base.training.epochs), "tune --space");
    } catch (const Error& e) {
      throw Error(std::string("tune: trial ") + std::to_string(t + 1) +
                  " draws settings that do not fit the config (narrow --space): " + e.what());
    }
  }
  MakeDirectories(out.out_dir);  // after the checks: a refused search leaves no folder
  // Rows of an earlier run of this search.
  std::map<std::pair<int, int>, TrialResult> done;
  {
    std::error_code ec;
    if (fs::exists(csv_path, ec)) {
      const data::Table t = data::ReadTable(csv_path);
      std::vector<std::string> expected = {"trial", "rung", "epochs"};
      expected.insert(expected.end(), keys.begin(), keys.end());
      for (const char* c : {"best_epoch", "seconds"}) expected.push_back(c);
      expected.insert(expected.end() - 2, monitor);
      if (t.columns != expected) {
        throw Error(ErrorCode::kConflict,
                    csv_path +
                        ": written by another search (other settings or metric); "
                        "use another --out",
                    "out");
      }
      for (int64_t r = 0; r < t.num_rows(); ++r) {
        TrialResult tr;
        tr.trial = static_cast<int>(data::ParseInteger(t.cells[0][r], t.Where(r), "trial"));
        tr.rung = static_cast<int>(data::ParseInteger(t.cells[1][r], t.Where(r), "rung"));
        tr.epochs = static_cast<int>(data::ParseInteger(t.cells[2][r], t.Where(r), "epochs"));
        for (size_t k = 0; k < keys.size(); ++k) tr.params.emplace_back(keys[k], t.cells[3 + k][r]);
        // An empty cell: a trial without a value (NaN, e.g. AUC of a one-class split).
        const std::string& value = t.cells[3 + keys.size()][r];
        tr.value = value.empty() ? std::nan("") : data::ParseNumber(value, t.Where(r), monitor);
        tr.best_epoch = static_cast<int>(
            data::ParseInteger(t.cells[4 + keys.size()][r], t.Where(r), "best_epoch"));
        tr.seconds = data::ParseNumber(t.cells[5 + keys.size()][r], t.Where(r), "seconds");
        tr.reused = true;
        if (tr.trial < 1 || tr.trial > request.trials || tr.params != drawn[tr.trial - 1] ||
            tr.rung < 0 || tr.rung > s || tr.epochs != rung_epochs[tr.rung]) {
          throw Error(ErrorCode::kConflict,
                      t.Where(r) + ": trial " + std::to_string(tr.trial) +
                          " is not one this search draws (another --seed, --trials, --eta, "
                          "--space or training.epochs); "
                          "use another --out",
                      "out");
        }
        done[{tr.trial, tr.rung}] = tr;
      }
    }
  }

  const ScopedThreads scoped(base.threads);
  // The data set, loaded once per feature schema: the encoder records each learned feature's
  // width, which model.embedding_dim changes for an id-alone tower without a projection (at most
  // one copy per embedding_dim value is kept).
  std::map<std::string, std::unique_ptr<data::Dataset>> datasets;
  auto dataset_for = [&](const train::Config& c) -> const data::Dataset& {
    const std::string key = data::ToJson(c.features).dump() + " shards " + std::to_string(c.shards);
    auto& slot = datasets[key];
    if (slot == nullptr) {
      slot = std::make_unique<data::Dataset>(
          data::LoadDataset(c.ResolvedPaths(), c.features, train::TaskTargetColumns(c.model.tasks),
                            train::TaskItemColumns(c.model.tasks), false, {c.shards, -1}));
      if (datasets.size() == 1) o.DataLoaded(*slot);
    }
    return *slot;
  };
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const bool higher_better = monitor != "val_loss";
  auto better = [&](const TrialResult& a, const TrialResult& b) {
    if (std::isnan(b.value)) return !std::isnan(a.value);
    if (std::isnan(a.value)) return false;
    return higher_better ? a.value > b.value : a.value < b.value;
  };
  std::vector<int> alive(request.trials);
  for (int t = 0; t < request.trials; ++t) alive[t] = t + 1;
  bool out_of_budget = false;
  int total = s;  // at most: trial 1 may run beside each rung's best
  for (int n : rung_trials) total += n;
  for (int rung = 0; rung <= s && !out_of_budget; ++rung) {
    std::vector<TrialResult> results;
    for (int trial : alive) {
      const auto it = done.find({trial, rung});
      TrialResult tr;
      if (it != done.end()) {
        tr = it->second;
      } else {
        if (request.budget_seconds > 0 && elapsed() >= request.budget_seconds) {
          out_of_budget = true;
          o.BudgetSpent(elapsed());
          break;
        }
        tr.trial = trial;
        tr.rung = rung;
        tr.epochs = rung_epochs[rung];
        tr.params = drawn[trial - 1];
        const train::Config c = TrialConfig(base, tr.params, tr.epochs);
        const auto t0 = std::chrono::steady_clock::now();
        train::TrainOptions options;
        options.progress = false;
        const train::TrainResult r = train::Train(c, dataset_for(c), options);
        tr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        tr.best_epoch = r.best_epoch;
        tr.value = r.best_epoch > 0 ? r.history[r.best_epoch - 1].monitored : std::nan("");
      }
      results.push_back(tr);
      out.trials.push_back(tr);
      o.Trial(tr, total);
      if (!tr.reused) {
        WriteFileAtomically(csv_path, Csv(out.trials, keys, monitor));
        WriteFileAtomically((fs::path(out.out_dir) / "tune.svg").string(),
                            Svg(out.trials, monitor, s + 1));
      }
    }
    if (results.empty()) break;
    // The best of the rung (and overall: a higher rung trained longer) so far.
    std::stable_sort(results.begin(), results.end(), better);
    if (out.best.trial == 0 || results[0].rung >= out.best.rung) out.best = results[0];
    if (rung < s && !out_of_budget) {
      alive.clear();
      const int keep = std::min<int>(rung_trials[rung + 1], static_cast<int>(results.size()));
      for (int i = 0; i < keep; ++i) alive.push_back(results[i].trial);
      // The config's own values (trial 1) always go on to the last rung: a short rung favours
      // fast learners (a high learning rate) over settings that are better trained to the end,
      // and the search must not end worse than the recipe it started from.
      const bool has_own = std::any_of(results.begin(), results.end(),
                                       [](const TrialResult& t) { return t.trial == 1; });
      if (has_own && std::find(alive.begin(), alive.end(), 1) == alive.end()) alive.push_back(1);
    }
  }
  WriteFileAtomically(csv_path, Csv(out.trials, keys, monitor));
  WriteFileAtomically((fs::path(out.out_dir) / "tune.svg").string(),
                      Svg(out.trials, monitor, s + 1));
  if (out.best.trial == 0) throw Error("tune: no trial finished within the budget");
  o.Best(out.best);
  // The best configuration as a config file of its own (the features too, where
  // model.embedding_dim set an id feature's width), trained as `train` trains it.
  train::Config best = TrialConfig(base, out.best.params, base.training.epochs);
  best.training.refit = base.training.refit;
  best.training.checkpoint = base.training.checkpoint;
  best.Validate("tune: the best trial's settings");
  out.best_config = (fs::path(out.out_dir) / "best.yaml").string();
  WriteFileAtomically(out.best_config, "# The best configuration of `twotower tune` (trial " +
                                           std::to_string(out.best.trial) + ", " + monitor + " " +
                                           data::NumberText(out.best.value, false) + " at " +
                                           std::to_string(out.best.epochs) +
                                           " epochs): train with\n#   twotower train --config " +
                                           out.best_config + "\n" + best.ToYaml());
  if (request.refit_best) {
    TrainRequest final_request;
    final_request.config_path = out.best_config;
    final_request.progress = request.progress;
    out.final_run = Train(final_request, &o);
    out.trained_final = true;
  }
  return out;
}

}  // namespace twotower::app
