#include "twotower/data/encoder.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "twotower/core/error.h"

namespace twotower::data {

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
  for (Column& c : columns_) {
    c.offset = offset;
    offset += c.spec.type == FeatureType::kNumeric ? 1 : static_cast<int>(c.vocabulary.size());
  }
  width_ = offset;
}

void EntityEncoder::Fit(const Table& table, const std::vector<int64_t>& rows) {
  for (Column& c : columns_) {
    const std::vector<std::string>& values = table.Column(c.spec.column);
    if (c.spec.type == FeatureType::kNumeric) {
      // Two passes in double: exact enough and independent of row order up to rounding.
      double sum = 0.0;
      for (int64_t r : rows) sum += ParseNumber(values[r], table.Where(r), c.spec.column);
      const double n = static_cast<double>(rows.size());
      c.mean = rows.empty() ? 0.0 : sum / n;
      double sq = 0.0;
      for (int64_t r : rows) {
        const double d = ParseNumber(values[r], table.Where(r), c.spec.column) - c.mean;
        sq += d * d;
      }
      const double var = rows.empty() ? 0.0 : sq / n;
      c.std = var > 1e-12 ? std::sqrt(var) : 1.0;
    } else {
      std::set<std::string> vocabulary;
      for (int64_t r : rows) vocabulary.insert(values[r]);
      c.vocabulary.assign(vocabulary.begin(), vocabulary.end());
    }
  }
  Layout();
}

int EntityEncoder::Lookup(const Column& column, const std::string& value) const {
  const auto it = std::lower_bound(column.vocabulary.begin(), column.vocabulary.end(), value);
  if (it == column.vocabulary.end() || *it != value) return -1;
  return static_cast<int>(it - column.vocabulary.begin());
}

void EntityEncoder::Encode(const Table& table, Matrix* out) const {
  out->setZero(table.num_rows(), width_);
  for (const Column& c : columns_) {
    const std::vector<std::string>& values = table.Column(c.spec.column);
    for (int64_t r = 0; r < table.num_rows(); ++r) {
      if (c.spec.type == FeatureType::kNumeric) {
        const double x = ParseNumber(values[r], table.Where(r), c.spec.column);
        const float z = static_cast<float>((x - c.mean) / c.std);
        if (!std::isfinite(z)) {
          throw Error(table.Where(r) + ": column '" + c.spec.column + "': " + Quote(values[r]) +
                      " is too far from the training mean to encode as a 32-bit float");
        }
        (*out)(r, c.offset) = z;
      } else {
        const int k = Lookup(c, values[r]);
        if (k >= 0) (*out)(r, c.offset + k) = 1.0f;
      }
    }
  }
}

void EntityEncoder::EncodeRow(const std::vector<std::pair<std::string, std::string>>& row,
                              const std::string& where, float* out) const {
  std::fill(out, out + width_, 0.0f);
  for (const Column& c : columns_) {
    const std::string* value = nullptr;
    for (const auto& [name, v] : row) {
      if (name == c.spec.column) value = &v;
    }
    if (value == nullptr) throw Error(where + ": missing field '" + c.spec.column + "'");
    if (c.spec.type == FeatureType::kNumeric) {
      const double x = ParseNumber(*value, where, c.spec.column);
      const float z = static_cast<float>((x - c.mean) / c.std);
      if (!std::isfinite(z)) {
        throw Error(where + ": field '" + c.spec.column + "': " + Quote(*value) +
                    " is too far from the training mean to encode as a 32-bit float");
      }
      out[c.offset] = z;
    } else {
      const int k = Lookup(c, *value);
      if (k >= 0) out[c.offset + k] = 1.0f;
    }
  }
}

std::vector<std::string> EntityEncoder::OutputNames() const {
  std::vector<std::string> names;
  for (const Column& c : columns_) {
    if (c.spec.type == FeatureType::kNumeric) {
      names.push_back(c.spec.column);
    } else {
      for (const std::string& v : c.vocabulary) names.push_back(c.spec.column + "=" + v);
    }
  }
  return names;
}

nlohmann::json EntityEncoder::ToJson() const {
  nlohmann::json columns = nlohmann::json::array();
  for (const Column& c : columns_) {
    nlohmann::json j = {{"column", c.spec.column}, {"type", FeatureTypeName(c.spec.type)}};
    if (c.spec.type == FeatureType::kNumeric) {
      j["mean"] = c.mean;
      j["std"] = c.std;
    } else {
      j["vocabulary"] = c.vocabulary;
    }
    columns.push_back(j);
  }
  return {{"id", schema_.id_column}, {"columns", columns}};
}

EntityEncoder EntityEncoder::FromJson(const nlohmann::json& json, const std::string& where) {
  EntityEncoder encoder;
  try {
    encoder.schema_.id_column = json.at("id").get<std::string>();
    for (const auto& j : json.at("columns")) {
      Column c;
      c.spec.column = j.at("column").get<std::string>();
      c.spec.type = ParseFeatureType(j.at("type").get<std::string>(), where);
      if (c.spec.type == FeatureType::kNumeric) {
        c.mean = j.at("mean").get<double>();
        c.std = j.at("std").get<double>();
        if (!(c.std > 0.0) || !std::isfinite(c.mean)) {
          throw Error(where + ": encoder column '" + c.spec.column + "': invalid mean/std");
        }
      } else {
        c.vocabulary = j.at("vocabulary").get<std::vector<std::string>>();
        if (!std::is_sorted(c.vocabulary.begin(), c.vocabulary.end())) {
          throw Error(where + ": encoder column '" + c.spec.column + "': vocabulary not sorted");
        }
      }
      encoder.schema_.features.push_back(c.spec);
      encoder.columns_.push_back(std::move(c));
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

}  // namespace twotower::data
