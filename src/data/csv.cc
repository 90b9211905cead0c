#include "twotower/data/csv.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "twotower/core/error.h"
#include "twotower/data/parquet.h"
#include "twotower/data/table.h"

namespace twotower::data {
namespace {

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Scans `record` from *pos with SplitCsvLine's rules (a quote opens a field only at the field's
// start; "" inside is a quote) and returns true when it ends inside a quoted field. *pos and
// *in_quotes carry the scan over, so a record growing line by line is scanned once, not once per
// line (a stray quote in a large file would make that quadratic).
bool EndsInsideQuotes(std::string_view record, size_t* pos, bool* in_quotes) {
  size_t i = *pos;
  while (true) {
    if (!*in_quotes) {
      if (i < record.size() && record[i] == '"') {
        *in_quotes = true;
        ++i;
      } else {
        const size_t comma = record.find(',', i);
        if (comma == std::string_view::npos) {
          *pos = record.size();
          return false;
        }
        i = comma + 1;
        continue;
      }
    }
    // Inside quotes: find the closing quote (one not followed by another).
    while (true) {
      if (i >= record.size()) {
        *pos = record.size();
        return true;
      }
      if (record[i] == '"') {
        if (i + 1 < record.size() && record[i + 1] == '"') {
          i += 2;
          continue;
        }
        ++i;
        *in_quotes = false;
        break;
      }
      ++i;
    }
    const size_t comma = record.find(',', i);
    if (comma == std::string_view::npos) {
      *pos = record.size();
      return false;
    }
    i = comma + 1;
  }
}

}  // namespace

void SplitCsvLine(std::string_view line, const std::string& where, std::vector<std::string>* out) {
  out->clear();
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::string field;
  size_t i = 0;
  while (true) {
    field.clear();
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
          } else {
            ++i;
            closed = true;
            break;
          }
        } else {
          field += line[i++];
        }
      }
      if (!closed) throw Error(where + ": unterminated quoted field");
      if (i < line.size() && line[i] != ',') {
        throw Error(where + ": unexpected character after a quoted field (expected ',')");
      }
    } else {
      const size_t end = line.find(',', i);
      const size_t stop = end == std::string_view::npos ? line.size() : end;
      field.assign(line.substr(i, stop - i));
      i = stop;
    }
    out->push_back(field);
    if (i >= line.size()) break;
    ++i;  // the comma
    if (i == line.size()) {
      out->emplace_back();
      break;
    }
  }
}

std::string CsvField(std::string_view value) {
  // Blanks at either end are quoted too: readers (ours among them) drop them from unquoted
  // fields at the end of a line.
  const bool edge_blank = !value.empty() && (value.front() == ' ' || value.front() == '\t' ||
                                             value.back() == ' ' || value.back() == '\t');
  if (!edge_blank && value.find_first_of(",\"\n\r") == std::string_view::npos) {
    return std::string(value);
  }
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

double ParseNumber(std::string_view text, const std::string& where, const std::string& column) {
  const std::string_view t = Trim(text);
  double value = 0.0;
  const char* begin = t.data();
  const char* end = t.data() + t.size();
  if (t.size() > 1 && *begin == '+' && begin[1] != '-') ++begin;
  const auto result = std::from_chars(begin, end, value);
  if (t.empty() || result.ec != std::errc() || result.ptr != end || !std::isfinite(value)) {
    throw Error(where + ": column '" + column + "': expected a number, got " +
                Quote(std::string(text)));
  }
  return value;
}

int64_t ParseInteger(std::string_view text, const std::string& where, const std::string& column) {
  const std::string_view t = Trim(text);
  int64_t value = 0;
  const auto result = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || result.ec != std::errc() || result.ptr != t.data() + t.size()) {
    throw Error(where + ": column '" + column + "': expected an integer, got " +
                Quote(std::string(text)));
  }
  return value;
}

bool CsvReader::ReadRecord(std::string* record) {
  while (true) {
    if (!lines_.NextRaw(&raw_, &ending_)) return false;
    record_line_ = lines_.line();
    if (Trim(raw_).empty()) continue;  // a blank line between records
    *record = raw_;
    size_t pos = 0;
    bool in_quotes = false;
    while (EndsInsideQuotes(*record, &pos, &in_quotes)) {
      // The line end is part of the quoted field: keep it, exactly, and go on.
      const std::string ending = ending_;
      if (!lines_.NextRaw(&raw_, &ending_)) {
        throw Error(Where() + ": quoted field not closed before the end of the file");
      }
      record->append(ending);
      record->append(raw_);
    }
    size_t keep = record->size();
    while (keep > 0 && ((*record)[keep - 1] == ' ' || (*record)[keep - 1] == '\t')) --keep;
    record->resize(keep);
    return true;
  }
}

CsvReader::CsvReader(const std::string& path) : path_(path), lines_(path) {
  {
    // A Parquet file under another name would read as one odd column of binary "text".
    char magic[4] = {};
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f != nullptr) {
      const size_t got = std::fread(magic, 1, 4, f);
      std::fclose(f);
      if (got == 4 && std::memcmp(magic, "PAR1", 4) == 0) {
        throw Error(path +
                    ": this is a Parquet file (it starts with PAR1), read as CSV because "
                    "its name does not end in .parquet: rename it");
      }
    }
  }
  if (!ReadRecord(&buffer_)) throw Error(path + ": file is empty, expected a header line");
  SplitCsvLine(buffer_, Where(), &header_);
  for (size_t i = 0; i < header_.size(); ++i) {
    header_[i] = std::string(Trim(header_[i]));
    for (size_t j = 0; j < i; ++j) {
      if (header_[j] == header_[i]) {
        throw Error(Where() + ": column " + Quote(header_[i]) + " appears twice in the header " +
                    "(columns " + std::to_string(j + 1) + " and " + std::to_string(i + 1) +
                    "): rename one");
      }
    }
  }
}

int CsvReader::FindColumn(const std::string& name) const {
  for (size_t i = 0; i < header_.size(); ++i) {
    if (header_[i] == name) return static_cast<int>(i);
  }
  return -1;
}

int CsvReader::RequireColumn(const std::string& name) const {
  const int index = FindColumn(name);
  if (index < 0) {
    throw Error(path_ + ": missing column '" + name + "' (found: " + JoinNames(header_) + ")");
  }
  return index;
}

bool CsvReader::Next(std::vector<std::string>* fields) {
  if (!ReadRecord(&buffer_)) return false;
  SplitCsvLine(buffer_, Where(), fields);
  if (fields->size() != header_.size()) {
    throw Error(Where() + ": expected " + std::to_string(header_.size()) + " columns, got " +
                std::to_string(fields->size()));
  }
  return true;
}

int Table::FindColumn(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == name) return static_cast<int>(i);
  }
  return -1;
}

const std::vector<std::string>& Table::Column(const std::string& name) const {
  const int index = FindColumn(name);
  if (index < 0) {
    throw Error(source + ": missing column '" + name + "' (found: " + JoinNames(columns) + ")");
  }
  return cells[index];
}

}  // namespace twotower::data
