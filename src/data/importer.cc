#include "twotower/data/importer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/rng.h"
#include "twotower/core/text.h"
#include "twotower/data/dataset.h"
#include "twotower/data/table.h"

namespace twotower::data {
namespace {

namespace fs = std::filesystem;

bool EndsWithIgnoringCase(const std::string& s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i) {
    char c = s[s.size() - suffix.size() + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != suffix[i]) return false;
  }
  return true;
}

// "-12", "0", "42": the text an int64 prints as (no '+', no leading zeros), so that an id column
// written as integers reads back as the same ids.
bool IsCanonicalInteger(std::string_view s) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return false;
  return std::to_string(v) == s;
}

bool ParsesAsNumber(std::string_view s, double* v) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(*v);
}

// The log's rows as text cells of the wanted columns, whatever the file's form: a CSV with a
// header or a Parquet file through TableReader (batches; Parquet cells as ParquetColumn::Text),
// anything else (TSV, another delimiter, no header row) line by line here: TableReader reads
// RFC 4180 CSV only, and IANA's TSV has no quoting to honour, so a split at the delimiter is the
// whole format.
class LogRows {
 public:
  LogRows(const ImportOptions& o) : path_(o.interactions) {
    std::string delim = o.delimiter;
    if (delim == "tab" || delim == "\\t") delim = "\t";
    if (delim.empty()) {
      if (EndsWithIgnoringCase(path_, ".tsv") || EndsWithIgnoringCase(path_, ".tab")) {
        delim = "\t";
      } else if (TableFormatOf(path_) == TableFormat::kParquet) {
        delim = "";
      } else {
        delim = ",";
      }
    } else if (delim != "," && delim != "\t" && delim != ";" && delim != "|") {
      throw Error("--delimiter: expected one of , tab ; | (got " + Quote(o.delimiter) + ")");
    }
    if (delim.empty() || (delim == "," && o.names.empty())) {
      if (!o.names.empty() && TableFormatOf(path_) == TableFormat::kParquet) {
        throw Error("--names: " + path_ + " is Parquet, whose columns have names already");
      }
      table_ = TableReader::Open(path_);
      names_ = table_->column_names();
      numbered_ = table_->format() == TableFormat::kParquet;
    } else {
      delim_ = delim[0];
      // Tabs kept: a row that ends in empty fields keeps them, so a short row is refused.
      lines_ = std::make_unique<TextLineReader>(path_, delim_ == '\t'
                                                           ? TextLineReader::Blanks::kKeepTabs
                                                           : TextLineReader::Blanks::kDropTrailing);
      if (o.names.empty()) {
        std::string header;
        if (!lines_->Next(&header)) throw Error(path_ + ": empty file (expected a header row)");
        names_ = Split(header);
        // A header's trailing tabs name nothing (some exporters end every line with one).
        while (names_.size() > 1 && names_.back().empty()) names_.pop_back();
        header_lines_ = 1;
      } else {
        names_ = o.names;
      }
      std::set<std::string> seen;
      for (const std::string& n : names_) {
        if (!seen.insert(n).second) {
          throw Error(path_ + ": column " + Quote(n) + " appears twice in the " +
                      (o.names.empty() ? "header" : "--names list"));
        }
      }
    }
  }

  const std::vector<std::string>& names() const { return names_; }
  bool numbered_rows() const { return numbered_; }
  int Require(const std::string& name, const char* flag) const {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return static_cast<int>(i);
    }
    std::string found;
    for (const std::string& n : names_) found += (found.empty() ? "" : ", ") + n;
    throw Error(std::string(flag) + ": " + path_ + " has no column " + Quote(name) +
                " (found: " + found + ")");
  }

  // Calls fn(cells, line) for every row: cells[k] is column columns[k]'s text.
  template <typename Fn>
  void ForEach(const std::vector<int>& columns, Fn fn) {
    std::vector<std::string> cells(columns.size());
    if (table_) {
      std::vector<ParquetColumn> batch;
      while (const int64_t n = table_->Next(columns, &batch)) {
        for (int64_t r = 0; r < n; ++r) {
          for (size_t k = 0; k < columns.size(); ++k) cells[k] = batch[k].Text(r);
          fn(cells, table_->Line(r));
        }
      }
      return;
    }
    std::string line;
    while (lines_->Next(&line)) {
      std::vector<std::string> f = Split(line);
      // Empty fields past the last column (a trailing tab) hold nothing: dropped. A short row
      // is refused: its missing fields cannot be told from empty ones.
      while (f.size() > names_.size() && f.back().empty()) f.pop_back();
      if (f.size() != names_.size()) {
        throw Error(lines_->Where() + ": expected " + std::to_string(names_.size()) +
                    " fields separated by " +
                    (delim_ == '\t' ? std::string("tabs") : Quote(std::string(1, delim_))) +
                    ", got " + std::to_string(f.size()));
      }
      for (size_t k = 0; k < columns.size(); ++k)
        cells[k] = f[columns[k]];  // a column may be wanted twice
      fn(cells, lines_->line());
    }
  }

 private:
  std::vector<std::string> Split(const std::string& line) const {
    std::vector<std::string> out;
    if (delim_ == ',') {
      SplitCsvLine(line, lines_->Where(), &out);
      return out;
    }
    size_t start = 0;
    while (true) {
      const size_t end = line.find(delim_, start);
      out.push_back(line.substr(start, end == std::string::npos ? end : end - start));
      if (end == std::string::npos) return out;
      start = end + 1;
    }
  }

  std::string path_;
  std::unique_ptr<TableReader> table_;
  std::unique_ptr<TextLineReader> lines_;
  std::vector<std::string> names_;
  char delim_ = ',';
  bool numbered_ = false;
  int header_lines_ = 0;
};

struct PositiveRule {
  bool all = true;
  std::string column;
  bool inclusive = true;  // >= (else >)
  double threshold = 0.0;
  bool Holds(double v) const { return all || (inclusive ? v >= threshold : v > threshold); }
  std::string Text() const {
    return all ? "every row" : column + (inclusive ? " >= " : " > ") + NumberText(threshold, false);
  }
};

PositiveRule ParsePositive(const std::string& text) {
  PositiveRule p;
  if (text == "all") return p;
  const size_t at = text.find('>');
  if (at == std::string::npos || at == 0) {
    throw Error("--positive: expected \"all\" or COLUMN>=X / COLUMN>X (e.g. rating>=4), got " +
                Quote(text));
  }
  p.all = false;
  p.column = text.substr(0, at);
  while (!p.column.empty() && p.column.back() == ' ') p.column.pop_back();
  size_t value_at = at + 1;
  if (value_at < text.size() && text[value_at] == '=') {
    ++value_at;
  } else {
    p.inclusive = false;
  }
  std::string value = text.substr(value_at);
  while (!value.empty() && value.front() == ' ') value.erase(value.begin());
  if (p.column.empty() || p.column.find_first_of("=<!") != std::string::npos ||
      !ParsesAsNumber(value, &p.threshold)) {
    throw Error("--positive: expected COLUMN>=X or COLUMN>X with a finite number X, got " +
                Quote(text));
  }
  return p;
}

std::vector<FeatureSpec> ParseFeatureList(const std::string& text, const Table& table,
                                          const std::string& id_column, const char* flag,
                                          std::vector<InferredFeature>* shown) {
  std::vector<FeatureSpec> out;
  if (text == "none") return out;
  if (text == "auto") {
    for (size_t c = 0; c < table.columns.size(); ++c) {
      if (table.columns[c] == id_column) continue;
      InferredFeature f = InferFeature(table.columns[c], table.cells[c]);
      shown->push_back(f);
      if (f.type.empty()) continue;
      FeatureSpec s;
      s.column = f.column;
      s.type = ParseFeatureType(f.type, flag);
      if (s.type == FeatureType::kCategorical) s.encoding = Encoding::kEmbedding;
      // Empty numeric cells: the mean and a was-missing indicator, rather than a refusal at train.
      if (s.type == FeatureType::kNumeric) s.missing = Missing::kMean;
      out.push_back(s);
    }
    return out;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    const size_t colon = item.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) {
      throw Error(std::string(flag) + ": expected auto, none or COLUMN:TYPE,... (types: numeric, " +
                  "categorical, multi_hot), got " + Quote(item));
    }
    FeatureSpec s;
    s.column = item.substr(0, colon);
    if (table.FindColumn(s.column) < 0) table.Column(s.column);  // throws naming the columns
    if (s.column == id_column) {
      throw Error(std::string(flag) + ": " + Quote(s.column) +
                  " is the id column (the tower has its id already)");
    }
    s.type = ParseFeatureType(item.substr(colon + 1), flag);
    if (s.type == FeatureType::kId) {
      throw Error(std::string(flag) + ": " + Quote(s.column) +
                  ": type id is the tower's own id; use categorical for another id-like column");
    }
    if (s.type == FeatureType::kCategorical) s.encoding = Encoding::kEmbedding;
    if (s.type == FeatureType::kNumeric) s.missing = Missing::kMean;
    shown->push_back({s.column, FeatureTypeName(s.type), "given"});
    out.push_back(s);
    start = end + 1;
  }
  return out;
}

// Reads an items / users table and checks its id column; the table's rows keep their order.
Table ReadEntityTable(const std::string& path, const std::string& id_column, const char* flag) {
  Table t = ReadTable(path);
  if (t.FindColumn(id_column) < 0) {
    std::string found;
    for (const std::string& c : t.columns) found += (found.empty() ? "" : ", ") + c;
    throw Error(std::string(flag) + ": " + path + " has no column " + Quote(id_column) +
                " (the interactions' id column; found: " + found + ")");
  }
  EntityIndex::FromTable(t, id_column);  // duplicate, empty or over-long ids
  return t;
}

void WriteEntityTable(const Table& t, const std::string& path) { WriteTable(path, InferTypes(t)); }

std::string FeatureLine(const FeatureSpec& f) {
  std::string s = "    - {column: " + f.column + ", type: " + FeatureTypeName(f.type);
  if (f.type == FeatureType::kCategorical && f.encoding == Encoding::kEmbedding) {
    s += ", encoding: embedding, dim: 32";
  } else if (f.type == FeatureType::kMultiHot) {
    s += ", dim: 32";
  } else if (f.type == FeatureType::kNumeric && f.missing == Missing::kMean) {
    s += ", missing: mean";
  }
  return s + "}\n";
}

}  // namespace

InferredFeature InferFeature(const std::string& column, const std::vector<std::string>& cells) {
  InferredFeature f;
  f.column = column;
  int64_t filled = 0, empty = 0;
  bool numbers = true, integers = true, delimited = false, capped = false;
  std::unordered_set<std::string> distinct;
  for (const std::string& c : cells) {
    // The encoder's missing values (encoder.cc): "", NA, NaN, nan, null.
    if (c.empty() || c == "NA" || c == "NaN" || c == "nan" || c == "null") {
      ++empty;
      continue;
    }
    ++filled;
    double v = 0;
    if (numbers && !ParsesAsNumber(c, &v)) numbers = false;
    if (integers && !IsCanonicalInteger(c)) integers = false;
    if (c.find('|') != std::string::npos) delimited = true;
    if (distinct.size() < 100'000) {
      distinct.insert(c);
    } else if (!distinct.count(c)) {
      capped = true;  // over 100,000 distinct values: an id or a text, not a category
    }
  }
  const auto n_distinct = static_cast<int64_t>(distinct.size());
  const std::string counts = std::to_string(n_distinct) + " distinct of " + std::to_string(filled);
  if (filled == 0) {
    f.reason = "empty: not a feature";
  } else if (n_distinct == 1) {
    f.reason = "one value: not a feature";
  } else if (numbers && integers && n_distinct <= std::min<int64_t>(1000, filled / 10)) {
    f.type = "categorical";
    f.reason = "integer codes, " + counts;
  } else if (numbers) {
    f.type = "numeric";
    f.reason = "numbers, " + counts;
  } else if (delimited && empty == 0) {
    f.type = "multi_hot";
    f.reason = "'|'-separated lists";
  } else if (delimited) {
    f.reason =
        "'|'-separated lists with empty cells (a multi_hot cell may not be empty): not a "
        "feature; give it with --item-features after filling them";
  } else if (!capped && n_distinct * 2 <= filled) {
    f.type = "categorical";
    f.reason = "text, " + counts;
  } else {
    f.reason = "text, " + counts + ": close to one per row (a name or URL), not a feature";
  }
  return f;
}

void ValidateSplitOptions(const SplitOptions& o) {
  if (o.format != "csv" && o.format != "parquet") {
    throw Error("--format: unknown format " + Quote(o.format) + " (expected: csv, parquet)");
  }
  if (o.split != "random" && o.split != "user-temporal" && o.split != "global-temporal") {
    throw Error("--split: unknown split " + Quote(o.split) +
                " (expected: random, user-temporal, global-temporal)");
  }
  if (!(o.val >= 0.0) || !(o.test > 0.0) || !(o.val + o.test < 1.0)) {
    throw Error("--val/--test: fractions must be >= 0 (test > 0) and sum to less than 1 (got " +
                NumberText(o.val, false) + " and " + NumberText(o.test, false) + ")");
  }
}

std::vector<uint8_t> SplitLog(const InteractionLog& log, const SplitOptions& o, ImportSummary* s) {
  const size_t n = log.user.size();
  if (n == 0) throw Error(log.source + ": no interactions to split");
  const bool timed = !log.timestamp.empty();
  if (o.split != "random" && !timed) {
    throw Error("--split " + o.split + ": needs a timestamp column (--timestamp)");
  }
  std::vector<uint8_t> split_of(n, 0);
  auto cut = [&](const std::vector<size_t>& order) {
    const size_t m = order.size();
    const size_t n_test = static_cast<size_t>(std::llround(o.test * static_cast<double>(m)));
    const size_t n_val = static_cast<size_t>(std::llround(o.val * static_cast<double>(m)));
    for (size_t k = 0; k < m; ++k) {
      if (k >= m - n_test) {
        split_of[order[k]] = 2;
      } else if (k >= m - n_test - n_val) {
        split_of[order[k]] = 1;
      }
    }
  };
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (o.split == "random") {
    Rng rng(o.seed);
    for (size_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.Below(i + 1)]);
    cut(order);
  } else if (o.split == "global-temporal") {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return log.timestamp[a] < log.timestamp[b]; });
    cut(order);
  } else {
    std::vector<std::vector<size_t>> by_user(log.user_ids.size());
    for (size_t i = 0; i < n; ++i) by_user[log.user[i]].push_back(i);
    for (std::vector<size_t>& rows : by_user) {
      std::stable_sort(rows.begin(), rows.end(),
                       [&](size_t a, size_t b) { return log.timestamp[a] < log.timestamp[b]; });
      const size_t m = rows.size();
      if (m < 3) continue;  // too few to hold any out: all in train
      size_t n_test = std::max<size_t>(1, std::llround(o.test * static_cast<double>(m)));
      size_t n_val =
          o.val > 0 ? std::max<size_t>(1, std::llround(o.val * static_cast<double>(m))) : 0;
      while (n_test + n_val >= m) (n_val > 1 ? n_val : n_test) -= 1;
      for (size_t k = 0; k < m; ++k) {
        if (k >= m - n_test) {
          split_of[rows[k]] = 2;
        } else if (k >= m - n_test - n_val) {
          split_of[rows[k]] = 1;
        }
      }
    }
  }
  // Users without a training row: moved (random), cold (global-temporal), or an error.
  std::vector<int64_t> train_rows(log.user_ids.size(), 0), first_held(log.user_ids.size(), -1);
  for (size_t k = 0; k < n; ++k) {
    const size_t i = order[k];
    if (split_of[i] == 0) {
      ++train_rows[log.user[i]];
    } else if (first_held[log.user[i]] < 0) {
      first_held[log.user[i]] = static_cast<int64_t>(i);
    }
  }
  for (size_t u = 0; u < log.user_ids.size(); ++u) {
    if (train_rows[u] > 0) continue;
    if (o.split == "global-temporal") {
      ++s->cold_users;
    } else if (o.users_need_train_row) {
      split_of[first_held[u]] = 0;
      ++s->moved_to_train;
    } else {
      int64_t rows = 0;
      for (int32_t x : log.user) rows += x == static_cast<int32_t>(u);
      throw Error(log.source + ": the " + o.split + " split leaves user " + log.user_ids[u] +
                  " with no training row (they have " + std::to_string(rows) +
                  "); use smaller --val/--test fractions or another --seed");
    }
  }
  std::vector<uint8_t> item_trained(log.item_ids.size(), 0), item_held(log.item_ids.size(), 0);
  s->train = s->val = s->test = 0;
  for (size_t i = 0; i < n; ++i) {
    (split_of[i] == 0 ? s->train : split_of[i] == 1 ? s->val : s->test) += 1;
    (split_of[i] == 0 ? item_trained : item_held)[log.item[i]] = 1;
  }
  s->cold_items = 0;
  for (size_t j = 0; j < log.item_ids.size(); ++j)
    s->cold_items += item_held[j] && !item_trained[j];
  return split_of;
}

std::vector<std::string> WriteSplits(const InteractionLog& log,
                                     const std::vector<uint8_t>& split_of,
                                     const std::string& out_dir, const SplitOptions& o) {
  const std::string ext = o.format == "parquet" ? ".parquet" : ".csv";
  auto all_integers = [](const std::vector<std::string>& ids) {
    return std::all_of(ids.begin(), ids.end(),
                       [](const std::string& s) { return IsCanonicalInteger(s); });
  };
  const bool int_users = all_integers(log.user_ids), int_items = all_integers(log.item_ids);
  const bool int_time = std::all_of(log.timestamp.begin(), log.timestamp.end(), [](double t) {
    return t == std::floor(t) && std::fabs(t) < 9e15;
  });
  std::vector<ParquetColumnSpec> specs = {
      {log.user_column, int_users ? ParquetType::kInt64 : ParquetType::kString},
      {log.item_column, int_items ? ParquetType::kInt64 : ParquetType::kString}};
  if (!log.rating.empty()) specs.push_back({log.rating_column, ParquetType::kDouble});
  if (!log.weight.empty()) specs.push_back({log.weight_column, ParquetType::kDouble});
  specs.push_back({log.label_column, ParquetType::kInt64});
  if (!log.timestamp.empty()) {
    specs.push_back({log.timestamp_column, int_time ? ParquetType::kInt64 : ParquetType::kDouble});
  }
  const char* names[] = {"train", "val", "test"};
  std::vector<std::string> written;
  constexpr size_t kBatch = 65'536;
  for (int part = 0; part < 3; ++part) {
    const std::string path = (fs::path(out_dir) / names[part] / ("interactions" + ext)).string();
    MakeDirectories((fs::path(out_dir) / names[part]).string());
    std::unique_ptr<TableWriter> w = TableWriter::Open(path, specs);
    std::vector<ParquetColumn> cols(specs.size());
    for (size_t c = 0; c < specs.size(); ++c) cols[c].type = specs[c].type;
    auto flush = [&] {
      if (cols[0].size() > 0) w->Write(cols);
      for (ParquetColumn& c : cols) c.Clear();
      for (size_t c = 0; c < specs.size(); ++c) cols[c].type = specs[c].type;
    };
    auto put_id = [](ParquetColumn* col, bool as_int, const std::string& id) {
      if (as_int) {
        col->ints.push_back(std::stoll(id));
      } else {
        col->string_index.push_back(static_cast<int32_t>(col->strings.size()));
        col->strings.push_back(id);
      }
    };
    for (size_t i = 0; i < split_of.size(); ++i) {
      if (split_of[i] != part) continue;
      size_t c = 0;
      put_id(&cols[c++], int_users, log.user_ids[log.user[i]]);
      put_id(&cols[c++], int_items, log.item_ids[log.item[i]]);
      if (!log.rating.empty()) cols[c++].doubles.push_back(log.rating[i]);
      if (!log.weight.empty()) cols[c++].doubles.push_back(log.weight[i]);
      cols[c++].ints.push_back(log.label[i]);
      if (!log.timestamp.empty()) {
        if (int_time) {
          cols[c++].ints.push_back(static_cast<int64_t>(log.timestamp[i]));
        } else {
          cols[c++].doubles.push_back(log.timestamp[i]);
        }
      }
      if (cols[0].size() >= static_cast<int64_t>(kBatch)) flush();
    }
    flush();
    w->Close();
    written.push_back(path);
  }
  return written;
}

std::string RecipeYaml(const std::string& command, const std::string& out_dir,
                       const std::string& ext, const InteractionLog& log, const RecipeTables& t,
                       const std::string& run_name) {
  std::string y;
  y += "# Written by `" + command + "`: train with\n";
  y += "#   twotower train --config " + (fs::path(out_dir) / "twotower.yaml").string() + "\n";
  y += "# The retrieval recipe: in-batch softmax with logQ correction over id embeddings, the\n";
  y += "# epoch kept on validation Recall@10, then refitted on train + val. A tower without a\n";
  y += "# table is its id alone (the ids come from the interactions).\n";
  y += "data:\n  dir: " + out_dir + "\n";
  y += "  users: " + (t.users_file.empty() ? std::string("\"\"") : t.users_file) + "\n";
  y += "  items: " + (t.items_file.empty() ? std::string("\"\"") : t.items_file) + "\n";
  y += "  train: train/interactions" + ext + "\n  val: val/interactions" + ext + "\n";
  y += "  test: test/interactions" + ext + "\n";
  y += "features:\n  user_id: " + log.user_column + "\n  item_id: " + log.item_column +
       "\n  label: " + log.label_column + "\n";
  if (!log.weight.empty()) y += "  weight: " + log.weight_column + "\n";
  if (t.history) {
    y += "  timestamp: " + log.timestamp_column +
         "\n  history: {length: 50, pooling: attention, heads: 1}\n";
  }
  y += "  user:\n    - {column: " + log.user_column + ", type: id, dim: 256}\n";
  for (const FeatureSpec& f : t.user_features) y += FeatureLine(f);
  y += "  item:\n    - {column: " + log.item_column + ", type: id, dim: 256}\n";
  for (const FeatureSpec& f : t.item_features) y += FeatureLine(f);
  // More than one input block (features besides the id, a history) needs a Linear to the
  // embedding: the towers have no hidden layers in this recipe.
  const bool wide = t.history || !t.user_features.empty() || !t.item_features.empty();
  y += "model:\n  embedding_dim: 256\n  user_hidden_dims: []\n  item_hidden_dims: []\n";
  y += std::string("  projection: ") + (wide ? "true" : "false") + "\n  dropout: 0.0\n";
  y += "training:\n  loss: softmax\n  temperature: 0.2\n  logq_correction: true\n";
  if (!log.weight.empty()) {
    // Counts are heavy-tailed (one pair played 100,000 times): log(1 + x) keeps a row's weight
    // within a small factor of another's (Hu, Koren and Volinsky 2008 use alpha log(1 + x / eps):
    // training.weight_transform: confidence).
    y += "  weight_transform: log1p\n";
  }
  y += "  positives: liked\n  batch_size: 1024\n  learning_rate: 0.002\n  epochs: 100\n";
  y += "  early_stopping_patience: 8\n  monitor: val_recall@10\n  refit: true\n";
  y += "evaluation:\n  k: [10, 20]\n";
  y += "output:\n  dir: experiments/runs\n  name: " + run_name + "\n";
  return y;
}

ImportSummary ImportInteractions(const std::string& out, const ImportOptions& o) {
  ValidateSplitOptions(o.split);
  if (o.duplicates != "refuse" && o.duplicates != "sum") {
    throw Error("--duplicates: expected refuse or sum, got " + Quote(o.duplicates));
  }
  if (o.user.empty() || o.item.empty()) throw Error("--user/--item: a column name is required");
  const PositiveRule positive = ParsePositive(o.positive);
  {
    std::vector<std::pair<std::string, const char*>> named = {{o.user, "--user"},
                                                              {o.item, "--item"},
                                                              {o.rating, "--rating"},
                                                              {o.weight, "--weight"},
                                                              {o.timestamp, "--timestamp"}};
    std::set<std::string> seen;
    for (const auto& [name, flag] : named) {
      if (name.empty()) continue;
      if (!seen.insert(name).second) {
        throw Error(std::string(flag) + ": column " + Quote(name) + " is named by another flag");
      }
    }
  }
  if (o.split.split != "random" && o.timestamp.empty()) {
    throw Error("--split " + o.split.split + ": needs --timestamp (the column ordering time)");
  }
  const fs::path out_dir = fs::absolute(fs::path(out)).lexically_normal();
  for (const std::string* p : {&o.items, &o.users}) {
    std::error_code ec;
    if (!p->empty() && fs::exists(*p, ec) &&
        fs::absolute(fs::path(*p)).lexically_normal().parent_path() == out_dir) {
      throw Error("--out " + out + " holds " + *p +
                  ", which the import would replace: write the output elsewhere");
    }
  }

  // Tables first: their ids check the log's rows.
  ImportSummary s;
  Table items, users;
  const bool has_items = !o.items.empty(), has_users = !o.users.empty();
  std::unordered_map<std::string, int32_t> item_row, user_row;
  if (has_items) {
    items = ReadEntityTable(o.items, o.item, "--items");
    const auto& ids = items.Column(o.item);
    for (size_t r = 0; r < ids.size(); ++r) item_row.emplace(ids[r], static_cast<int32_t>(r));
    s.catalogue_items = items.num_rows();
  }
  if (has_users) {
    users = ReadEntityTable(o.users, o.user, "--users");
    const auto& ids = users.Column(o.user);
    for (size_t r = 0; r < ids.size(); ++r) user_row.emplace(ids[r], static_cast<int32_t>(r));
  }

  LogRows rows(o);
  InteractionLog log;
  log.source = o.interactions;
  log.numbered_rows = rows.numbered_rows();
  log.user_column = o.user;
  log.item_column = o.item;
  if (!o.rating.empty()) log.rating_column = o.rating;
  if (!o.weight.empty()) log.weight_column = o.weight;
  if (!o.timestamp.empty()) log.timestamp_column = o.timestamp;
  // The label's name must not be one of the log's own columns.
  while (log.label_column == o.user || log.label_column == o.item || log.label_column == o.rating ||
         log.label_column == o.weight || log.label_column == o.timestamp) {
    log.label_column = "_" + log.label_column;
  }
  std::vector<int> wanted = {rows.Require(o.user, "--user"), rows.Require(o.item, "--item")};
  const int at_rating = o.rating.empty() ? -1 : static_cast<int>(wanted.size());
  if (!o.rating.empty()) wanted.push_back(rows.Require(o.rating, "--rating"));
  const int at_weight = o.weight.empty() ? -1 : static_cast<int>(wanted.size());
  if (!o.weight.empty()) wanted.push_back(rows.Require(o.weight, "--weight"));
  const int at_time = o.timestamp.empty() ? -1 : static_cast<int>(wanted.size());
  if (!o.timestamp.empty()) wanted.push_back(rows.Require(o.timestamp, "--timestamp"));
  const int at_positive = positive.all ? -1 : static_cast<int>(wanted.size());
  if (!positive.all) wanted.push_back(rows.Require(positive.column, "--positive"));
  std::vector<double> positive_value;
  std::unordered_map<std::string, int32_t> user_code, item_code;
  auto intern = [](const std::string& id, std::unordered_map<std::string, int32_t>* code,
                   std::vector<std::string>* ids) {
    const auto [it, added] = code->emplace(id, static_cast<int32_t>(ids->size()));
    if (added) ids->push_back(id);
    return it->second;
  };
  rows.ForEach(wanted, [&](const std::vector<std::string>& c, int64_t line) {
    log.line.push_back(line);
    const auto where = [&] { return log.Where(log.size()); };
    for (int k = 0; k < 2; ++k) {
      const std::string& id = c[k];
      const std::string& column = k == 0 ? o.user : o.item;
      if (id.empty() || id.size() > kMaxIdBytes) {
        throw Error(
            where() + ": column '" + column + "': expected an id of 1 to " +
            std::to_string(kMaxIdBytes) + " bytes, got " +
            (id.empty() ? std::string("an empty cell") : std::to_string(id.size()) + " bytes"));
      }
      const auto& table_rows = k == 0 ? user_row : item_row;
      if ((k == 0 ? has_users : has_items) && table_rows.count(id) == 0) {
        throw Error(where() + ": " + (k == 0 ? "user " : "item ") + Quote(id) + " is not in " +
                    (k == 0 ? o.users : o.items));
      }
    }
    const std::string w = where();
    log.user.push_back(intern(c[0], &user_code, &log.user_ids));
    log.item.push_back(intern(c[1], &item_code, &log.item_ids));
    auto number = [&](int at, const std::string& column) {
      const double v = ParseNumber(c[at], w, column);
      if (!std::isfinite(v)) {
        throw Error(w + ": column '" + column + "': expected a finite number, got " + Quote(c[at]));
      }
      return v;
    };
    if (at_rating >= 0) log.rating.push_back(number(at_rating, o.rating));
    if (at_weight >= 0) {
      const double v = number(at_weight, o.weight);
      if (v < 0) {
        throw Error(w + ": column '" + o.weight + "': expected a weight >= 0, got " +
                    Quote(c[at_weight]));
      }
      log.weight.push_back(v);
    }
    if (at_time >= 0) log.timestamp.push_back(number(at_time, o.timestamp));
    if (at_positive >= 0) positive_value.push_back(number(at_positive, positive.column));
  });
  s.rows = log.size();
  if (s.rows == 0) throw Error(o.interactions + ": no interactions (expected at least one row)");

  // Repeated (user, item) pairs: refused, or folded into the first row of the pair.
  {
    std::vector<uint32_t> by_pair(log.user.size());
    std::iota(by_pair.begin(), by_pair.end(), 0u);
    std::sort(by_pair.begin(), by_pair.end(), [&](uint32_t a, uint32_t b) {
      return log.user[a] != log.user[b]   ? log.user[a] < log.user[b]
             : log.item[a] != log.item[b] ? log.item[a] < log.item[b]
                                          : a < b;
    });
    std::vector<uint8_t> keep(log.user.size(), 1);
    const bool merge = o.duplicates == "sum";
    // The positive rule's column, if it is the weight, follows the summed weight.
    const bool positive_on_weight = !positive.all && positive.column == o.weight;
    bool repeats = false;
    for (size_t k = 1; k < by_pair.size() && !repeats; ++k) {
      repeats = log.user[by_pair[k]] == log.user[by_pair[k - 1]] &&
                log.item[by_pair[k]] == log.item[by_pair[k - 1]];
    }
    // Summed repeats of a log without weights: a weight column counting them.
    if (merge && repeats && log.weight.empty()) {
      log.weight.assign(log.user.size(), 1.0);
      while (log.weight_column == o.user || log.weight_column == o.item ||
             log.weight_column == o.rating || log.weight_column == o.timestamp) {
        log.weight_column = "_" + log.weight_column;
      }
    }
    size_t run_start = 0;  // where the current (user, item) pair's rows begin in by_pair
    for (size_t k = 1; k < by_pair.size(); ++k) {
      const uint32_t b = by_pair[k];
      const uint32_t a = by_pair[run_start];  // the kept (first) row of this pair
      if (log.user[a] != log.user[b] || log.item[a] != log.item[b]) {
        run_start = k;
        continue;
      }
      if (!merge) {
        throw Error(log.Where(b) + ": user " + Quote(log.user_ids[log.user[b]]) + " and item " +
                    Quote(log.item_ids[log.item[b]]) + " again (first on " +
                    (log.numbered_rows ? "row " : "line ") + std::to_string(log.line[a]) +
                    "): pass --duplicates sum to merge repeats (weights summed, the latest "
                    "timestamp kept), or remove them");
      }
      keep[b] = 0;
      ++s.merged;
      if (!log.weight.empty()) log.weight[a] += log.weight[b];
      const bool later = log.timestamp.empty() || log.timestamp[b] >= log.timestamp[a];
      if (!log.timestamp.empty()) log.timestamp[a] = std::max(log.timestamp[a], log.timestamp[b]);
      if (later) {
        if (!log.rating.empty()) log.rating[a] = log.rating[b];
        if (!positive_value.empty() && !positive_on_weight) positive_value[a] = positive_value[b];
      }
    }
    if (positive_on_weight) {
      for (size_t i = 0; i < positive_value.size(); ++i) positive_value[i] = log.weight[i];
    }
    if (s.merged > 0) {
      size_t w = 0;
      for (size_t i = 0; i < keep.size(); ++i) {
        if (!keep[i]) continue;
        log.user[w] = log.user[i];
        log.item[w] = log.item[i];
        log.line[w] = log.line[i];
        if (!log.rating.empty()) log.rating[w] = log.rating[i];
        if (!log.weight.empty()) log.weight[w] = log.weight[i];
        if (!log.timestamp.empty()) log.timestamp[w] = log.timestamp[i];
        if (!positive_value.empty()) positive_value[w] = positive_value[i];
        ++w;
      }
      for (auto* v : {&log.rating, &log.weight, &log.timestamp, &positive_value}) {
        if (!v->empty()) v->resize(w);
      }
      log.user.resize(w);
      log.item.resize(w);
      log.line.resize(w);
    }
  }
  log.label.resize(log.user.size());
  for (size_t i = 0; i < log.label.size(); ++i) {
    log.label[i] = positive.all ? 1 : positive.Holds(positive_value[i]) ? 1 : 0;
    s.positives += log.label[i];
  }
  if (s.positives == 0) {
    throw Error("--positive: no row is a positive under " + positive.Text() +
                " (training needs positives)");
  }
  s.interactions = log.size();
  s.users = static_cast<int64_t>(log.user_ids.size());
  s.items = static_cast<int64_t>(log.item_ids.size());

  const std::vector<uint8_t> split_of = SplitLog(log, o.split, &s);
  if (s.train == 0 || s.test == 0 || (o.split.val > 0 && s.val == 0)) {
    throw Error(o.interactions + ": the " + o.split.split + " split of " +
                std::to_string(s.interactions) + " interactions leaves train " +
                std::to_string(s.train) + ", val " + std::to_string(s.val) + ", test " +
                std::to_string(s.test) + ": too few to train and evaluate (larger --val/--test " +
                "fractions, or more data)");
  }

  RecipeTables t;
  const std::string ext = o.split.format == "parquet" ? ".parquet" : ".csv";
  // As the MovieLens preset: with each user's next interactions held out, the user tower also
  // reads the user's last 50 positives, pooled by attention (BENCHMARKS.md, "User history").
  t.history = o.split.split == "user-temporal";
  if (has_items) {
    t.item_features =
        ParseFeatureList(o.item_features, items, o.item, "--item-features", &s.item_features);
  } else if (o.item_features != "auto" && o.item_features != "none") {
    throw Error("--item-features: needs --items (the table holding the features)");
  }
  if (has_users) {
    t.user_features =
        ParseFeatureList(o.user_features, users, o.user, "--user-features", &s.user_features);
  } else if (o.user_features != "auto" && o.user_features != "none") {
    throw Error("--user-features: needs --users (the table holding the features)");
  }
  MakeDirectories(out_dir.string());
  // The tables, splits and config belong together: an interrupt (Ctrl-C, SIGTERM) waits until all
  // are in place (core/files.h).
  InterruptHold hold;
  if (has_items) {
    t.items_file = "items" + ext;
    WriteEntityTable(items, (out_dir / t.items_file).string());
    s.written.push_back((out_dir / t.items_file).string());
  }
  if (has_users) {
    t.users_file = "users" + ext;
    WriteEntityTable(users, (out_dir / t.users_file).string());
    s.written.push_back((out_dir / t.users_file).string());
  }
  for (const std::string& p : WriteSplits(log, split_of, out_dir.string(), o.split)) {
    s.written.push_back(p);
  }
  const std::string config = (out_dir / "twotower.yaml").string();
  WriteFileAtomically(config, RecipeYaml("twotower data interactions", out_dir.string(), ext, log,
                                         t, "interactions"));
  s.written.push_back(config);
  return s;
}

}  // namespace twotower::data
