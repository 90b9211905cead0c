#include "twotower/data/encoder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include "twotower/core/error.h"

namespace twotower::data {
namespace {

// FNV-1a, 64-bit: a fixed, documented hash, so bucketed ids land in the same rows on every
// platform and standard library (std::hash is implementation-defined).
uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

}  // namespace

namespace {

// Vocabularies are stored in the model file as JSON strings, which must be UTF-8: a value in
// another encoding is refused where it is read, not when the model is saved.
void RequireUtf8(const std::string& value, const std::string& where, const std::string& column) {
  if (IsValidUtf8(value)) return;
  // The value with bytes >= 0x80 written as \xNN: the message itself stays valid text.
  std::string shown;
  for (unsigned char c : value.substr(0, 60)) {
    if (c < 0x80) {
      shown += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      shown += buf;
    }
  }
  throw Error(where + ": column '" + column + "': \"" + shown + "\"" +
              " is not UTF-8 text (convert the file to UTF-8)");
}

}  // namespace

bool IsMissingValue(const std::string& value) {
  return value.empty() || value == "NA" || value == "NaN" || value == "nan" || value == "null";
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n;
    if (c < 0x80) {
      n = 0;
    } else if ((c >> 5) == 6) {
      n = 1;
    } else if ((c >> 4) == 14) {
      n = 2;
    } else if ((c >> 3) == 30) {
      n = 3;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (int k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n + 1;
  }
  return true;
}

std::vector<std::string> SplitList(const std::string& value, const std::string& delimiter) {
  std::vector<std::string> out;
  if (delimiter.empty()) {
    std::string token = Trim(value);
    if (!token.empty()) out.push_back(std::move(token));
    return out;
  }
  size_t start = 0;
  while (true) {
    const size_t end = value.find(delimiter, start);
    std::string token = Trim(value.substr(start, end == std::string::npos ? end : end - start));
    if (!token.empty()) out.push_back(std::move(token));
    if (end == std::string::npos) break;
    start = end + delimiter.size();
  }
  return out;
}

EntityEncoder::EntityEncoder(EntitySchema schema) : schema_(std::move(schema)) {
  for (const FeatureSpec& spec : schema_.features) {
    Column c;
    c.spec = spec;
    columns_.push_back(std::move(c));
  }
  Layout();
}

void EntityEncoder::Layout() {
  int offset = 0;
  learned_.clear();
  for (Column& c : columns_) {
    if (c.spec.learned()) {
      c.offset = static_cast<int>(learned_.size());
      LearnedFeature f;
      f.column = c.spec.column;
      f.rows = c.spec.type == FeatureType::kId && c.spec.buckets > 0
                   ? c.spec.buckets
                   : static_cast<int64_t>(c.vocabulary.size()) + 1;
      f.dim = c.spec.dim;
      f.pooling = c.spec.type == FeatureType::kMultiHot ? c.spec.pooling : Pooling::kSum;
      f.oov_row = !(c.spec.type == FeatureType::kId && c.spec.buckets > 0);
      learned_.push_back(f);
      continue;
    }
    c.offset = offset;
    if (c.spec.type == FeatureType::kNumeric) {
      offset += c.spec.missing == Missing::kMean ? 2 : 1;
    } else {
      offset += static_cast<int>(c.vocabulary.size());
    }
  }
  width_ = offset;
}

namespace {

// A numeric feature's cell: a finite number within a 32-bit float's range, the range the towers
// compute in. A larger one (1e200, or 8.98846567431158e307, Stata's missing-value code written
// out) would overflow the fitted variance to infinity and poison the model: refused here, where
// it enters, naming the file, row and column.
double FeatureNumber(const std::string& value, const std::string& where,
                     const std::string& column) {
  const double x = ParseNumber(value, where, column);
  if (std::fabs(x) > std::numeric_limits<float>::max()) {
    throw Error(where + ": column '" + column + "': " + Quote(value) +
                " is outside the range of a 32-bit float (about +-3.4e38), which the towers "
                "compute in (expected a number in that range; a missing-value code? give the "
                "cell empty and `missing: mean` in the feature spec)");
  }
  return x;
}

}  // namespace

void EntityEncoder::Fit(const Table& table, const std::vector<int64_t>& rows) {
  for (Column& c : columns_) {
    const std::vector<std::string>& values = table.Column(c.spec.column);
    const std::string& name = c.spec.column;
    switch (c.spec.type) {
      case FeatureType::kNumeric: {
        // Two passes in double: exact enough and independent of row order up to rounding.
        double sum = 0.0;
        int64_t n = 0;
        for (int64_t r : rows) {
          if (IsMissingValue(values[r])) {
            if (c.spec.missing == Missing::kMean) continue;
            float unused;
            EncodeDense(c, values[r], table.Where(r), &unused);  // throws the missing-value error
          }
          sum += FeatureNumber(values[r], table.Where(r), name);
          ++n;
        }
        c.mean = n == 0 ? 0.0 : sum / static_cast<double>(n);
        double sq = 0.0;
        for (int64_t r : rows) {
          if (c.spec.missing == Missing::kMean && IsMissingValue(values[r])) continue;
          const double d = FeatureNumber(values[r], table.Where(r), name) - c.mean;
          sq += d * d;
        }
        const double var = n == 0 ? 0.0 : sq / static_cast<double>(n);
        c.std = var > 1e-12 ? std::sqrt(var) : 1.0;
        if (!std::isfinite(c.mean) || !std::isfinite(c.std)) {  // cannot happen in range; checked
          throw Error(ErrorCode::kInternal, table.source + ": column '" + name +
                                                "': the fitted mean or standard deviation is not "
                                                "finite");
        }
        break;
      }
      case FeatureType::kCategorical:
      case FeatureType::kId: {
        if (c.spec.type == FeatureType::kId && c.spec.buckets > 0) break;
        std::set<std::string> vocabulary;
        for (int64_t r : rows) {
          RequireUtf8(values[r], table.Where(r), name);
          vocabulary.insert(values[r]);
        }
        c.vocabulary.assign(vocabulary.begin(), vocabulary.end());
        break;
      }
      case FeatureType::kMultiHot: {
        std::set<std::string> vocabulary;
        for (int64_t r : rows) {
          const std::vector<std::string> tokens = SplitList(values[r], c.spec.delimiter);
          if (tokens.empty()) {
            throw Error(table.Where(r) + ": column '" + name + "': empty list (expected one or " +
                        "more values separated by " + Quote(c.spec.delimiter) + ")");
          }
          RequireUtf8(values[r], table.Where(r), name);
          vocabulary.insert(tokens.begin(), tokens.end());
        }
        c.vocabulary.assign(vocabulary.begin(), vocabulary.end());
        break;
      }
    }
  }
  Layout();
}

int EntityEncoder::Lookup(const Column& column, const std::string& value) const {
  const auto it = std::lower_bound(column.vocabulary.begin(), column.vocabulary.end(), value);
  if (it == column.vocabulary.end() || *it != value) return -1;
  return static_cast<int>(it - column.vocabulary.begin());
}

void EntityEncoder::AppendBag(const Column& c, const std::string& value, const std::string& where,
                              std::vector<int32_t>* ids) const {
  if (c.spec.type == FeatureType::kMultiHot) {
    const std::vector<std::string> tokens = SplitList(value, c.spec.delimiter);
    if (tokens.empty()) {
      throw Error(where + ": column '" + c.spec.column + "': empty list (expected one or more " +
                  "values separated by " + Quote(c.spec.delimiter) + ")");
    }
    for (const std::string& t : tokens) ids->push_back(Lookup(c, t) + 1);
    return;
  }
  if (c.spec.type == FeatureType::kId && c.spec.buckets > 0) {
    ids->push_back(static_cast<int32_t>(Fnv1a64(value) % static_cast<uint64_t>(c.spec.buckets)));
    return;
  }
  ids->push_back(Lookup(c, value) + 1);  // -1 (unseen) becomes the out-of-vocabulary row 0
}

void EntityEncoder::EncodeDense(const Column& c, const std::string& value, const std::string& where,
                                float* row) const {
  if (c.spec.type == FeatureType::kNumeric) {
    if (c.spec.missing == Missing::kMean && IsMissingValue(value)) {
      row[c.offset] = 0.0f;  // the mean, standardised
      row[c.offset + 1] = 1.0f;
      return;
    }
    if (c.spec.missing == Missing::kError && IsMissingValue(value)) {
      throw Error(where + ": column '" + c.spec.column + "': missing value " + Quote(value) +
                  " (expected a number; `missing: mean` in the feature spec imputes the mean)");
    }
    const double x = FeatureNumber(value, where, c.spec.column);
    const float z = static_cast<float>((x - c.mean) / c.std);
    if (!std::isfinite(z)) {
      throw Error(where + ": column '" + c.spec.column + "': " + Quote(value) +
                  " is too far from the training mean to encode as a 32-bit float");
    }
    row[c.offset] = z;
    return;
  }
  const int k = Lookup(c, value);
  if (k >= 0) row[c.offset + k] = 1.0f;
}

void EntityEncoder::Encode(const Table& table, EncodedTable* out) const {
  const int64_t n = table.num_rows();
  out->dense.setZero(n, width_);
  out->bags.assign(learned_.size(), Bags{});
  for (const Column& c : columns_) {
    const std::vector<std::string>& values = table.Column(c.spec.column);
    if (c.spec.learned()) {
      Bags& bags = out->bags[c.offset];
      bags.offsets.reserve(n + 1);
      for (int64_t r = 0; r < n; ++r) {
        AppendBag(c, values[r], table.Where(r), &bags.ids);
        bags.offsets.push_back(static_cast<int64_t>(bags.ids.size()));
      }
      continue;
    }
    for (int64_t r = 0; r < n; ++r)
      EncodeDense(c, values[r], table.Where(r), out->dense.row(r).data());
  }
}

void EntityEncoder::Encode(const Table& table, Matrix* out) const {
  if (!learned_.empty()) {
    throw Error("EntityEncoder::Encode: this side has learned features; use EncodedTable");
  }
  EncodedTable t;
  Encode(table, &t);
  *out = std::move(t.dense);
}

void EntityEncoder::EncodeRow(const std::vector<std::pair<std::string, std::string>>& row,
                              const std::string& where, EncodedTable* out) const {
  out->dense.setZero(1, width_);
  out->bags.assign(learned_.size(), Bags{});
  for (const Column& c : columns_) {
    const std::string* value = nullptr;
    for (const auto& [name, v] : row) {
      if (name == c.spec.column) value = &v;
    }
    if (value == nullptr) throw Error(where + ": missing field '" + c.spec.column + "'");
    if (c.spec.learned()) {
      Bags& bags = out->bags[c.offset];
      AppendBag(c, *value, where, &bags.ids);
      bags.offsets.push_back(static_cast<int64_t>(bags.ids.size()));
    } else {
      EncodeDense(c, *value, where, out->dense.data());
    }
  }
}

void EntityEncoder::EncodeRow(const std::vector<std::pair<std::string, std::string>>& row,
                              const std::string& where, float* out) const {
  if (!learned_.empty()) {
    throw Error("EntityEncoder::EncodeRow: this side has learned features; use EncodedTable");
  }
  EncodedTable t;
  EncodeRow(row, where, &t);
  std::copy(t.dense.data(), t.dense.data() + width_, out);
}

std::vector<std::string> EntityEncoder::OutputNames() const {
  std::vector<std::string> names;
  for (const Column& c : columns_) {
    if (c.spec.learned()) continue;
    if (c.spec.type == FeatureType::kNumeric) {
      names.push_back(c.spec.column);
      if (c.spec.missing == Missing::kMean) names.push_back(c.spec.column + "_missing");
    } else {
      for (const std::string& v : c.vocabulary) names.push_back(c.spec.column + "=" + v);
    }
  }
  return names;
}

nlohmann::json EntityEncoder::ToJson() const {
  nlohmann::json columns = nlohmann::json::array();
  for (const Column& c : columns_) {
    nlohmann::json j = data::ToJson(c.spec);
    if (c.spec.type == FeatureType::kNumeric) {
      j["mean"] = c.mean;
      j["std"] = c.std;
    } else if (!(c.spec.type == FeatureType::kId && c.spec.buckets > 0)) {
      j["vocabulary"] = c.vocabulary;
    }
    columns.push_back(j);
  }
  nlohmann::json out = {{"id", schema_.id_column}, {"columns", columns}};
  if (schema_.history.enabled()) out["history"] = data::ToJson(schema_.history);
  return out;
}

EntityEncoder EntityEncoder::FromJson(const nlohmann::json& json, const std::string& where) {
  EntityEncoder encoder;
  try {
    encoder.schema_.id_column = json.at("id").get<std::string>();
    for (const auto& j : json.at("columns")) {
      Column c;
      nlohmann::json spec = j;
      for (const char* fitted : {"mean", "std", "vocabulary"}) spec.erase(fitted);
      c.spec = FeatureSpecFromJson(spec, where + ": encoder");
      const std::string w = where + ": encoder column '" + c.spec.column + "'";
      if (c.spec.type == FeatureType::kNumeric) {
        c.mean = j.at("mean").get<double>();
        c.std = j.at("std").get<double>();
        if (!(c.std > 0.0) || !std::isfinite(c.mean) || !std::isfinite(c.std)) {
          throw Error(w + ": invalid mean/std");
        }
      } else if (!(c.spec.type == FeatureType::kId && c.spec.buckets > 0)) {
        c.vocabulary = j.at("vocabulary").get<std::vector<std::string>>();
        if (std::adjacent_find(c.vocabulary.begin(), c.vocabulary.end(), std::greater_equal<>()) !=
            c.vocabulary.end()) {
          throw Error(w + ": vocabulary not sorted or with repeats");
        }
        if (c.vocabulary.size() >= (size_t{1} << 31) - 1) throw Error(w + ": vocabulary too large");
      }
      encoder.schema_.features.push_back(c.spec);
      encoder.columns_.push_back(std::move(c));
    }
    if (json.contains("history")) {
      encoder.schema_.history =
          HistorySpecFromJson(json.at("history"), where + ": encoder history");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed encoder state: " + e.what());
  }
  encoder.Layout();
  return encoder;
}

nlohmann::json FeatureEncoder::ToJson() const {
  return {{"user", user.ToJson()}, {"item", item.ToJson()}};
}

FeatureEncoder FeatureEncoder::FromJson(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object() || !json.contains("user") || !json.contains("item")) {
    throw Error(where + ": malformed encoder state: expected 'user' and 'item'");
  }
  FeatureEncoder encoder;
  encoder.user = EntityEncoder::FromJson(json["user"], where);
  encoder.item = EntityEncoder::FromJson(json["item"], where);
  return encoder;
}

bool EntityEncoder::IdAlone() const {
  return width_ == 0 && columns_.size() == 1 && columns_[0].spec.column == schema_.id_column &&
         columns_[0].spec.type == FeatureType::kId && columns_[0].spec.buckets == 0 &&
         !schema_.history.enabled();
}

std::vector<int64_t> EntityEncoder::UnknownIdRows(const EncodedTable& table) const {
  std::vector<int64_t> rows;
  for (const Column& c : columns_) {
    if (c.spec.column != schema_.id_column || c.spec.type != FeatureType::kId ||
        c.spec.buckets > 0) {
      continue;
    }
    const Bags& bag = table.bags.at(static_cast<size_t>(c.offset));
    for (int64_t r = 0; r < bag.rows(); ++r) {
      const int64_t b = bag.offsets[r], e = bag.offsets[r + 1];
      if (e - b == 1 && bag.ids[b] == 0) rows.push_back(r);
    }
    break;
  }
  return rows;
}

}  // namespace twotower::data
