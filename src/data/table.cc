#include "twotower/data/table.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>

#include "twotower/core/error.h"
#include "twotower/core/files.h"

namespace twotower::data {
namespace {

void AppendCsvRows(const std::vector<ParquetColumn>& columns, int64_t begin, int64_t end,
                   std::string* out) {
  for (int64_t r = begin; r < end; ++r) {
    for (size_t c = 0; c < columns.size(); ++c) {
      if (c > 0) out->push_back(',');
      const std::string text = columns[c].Text(r);
      // A one-column row with an empty cell would be a blank line, which readers (ours, per
      // core/text.h) skip: written as "" so the row survives.
      if (columns.size() == 1 && text.empty()) {
        out->append("\"\"");
      } else {
        out->append(CsvField(text));
      }
    }
    out->push_back('\n');
  }
}

template <typename Names>
std::string CsvHeader(const Names& names) {
  std::string out;
  for (size_t c = 0; c < names.size(); ++c) {
    if (c > 0) out.push_back(',');
    out.append(CsvField(names[c].name));
  }
  out.push_back('\n');
  return out;
}

// Digits only, with an optional leading '-': text that looks like an integer (an id).
bool LooksInteger(const std::string& s) {
  const size_t start = !s.empty() && s[0] == '-' ? 1 : 0;
  if (start == s.size()) return false;
  for (size_t i = start; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// An integer whose decimal text is exactly `s`: no sign but '-', no leading zeros, no "-0",
// within int64. "007" or "+5" are not (they would come back as "7" and "5").
bool IsInteger(const std::string& s) {
  if (!LooksInteger(s)) return false;
  const size_t start = s[0] == '-' ? 1 : 0;
  if (s[start] == '0' && (s.size() > start + 1 || start == 1)) return false;
  int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// A finite number: no leading '+' and no leading zeros ("0042", "00.5"), which would not come
// back as written.
bool IsNumber(const std::string& s, double* v) {
  if (s.empty() || s[0] == '+') return false;
  const size_t start = s[0] == '-' ? 1 : 0;
  if (s.size() > start + 1 && s[start] == '0' && s[start + 1] >= '0' && s[start + 1] <= '9') {
    return false;
  }
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(*v)) return false;
  return !(LooksInteger(s) && s[start] == '0' && s.size() > start + 1);
}

}  // namespace

namespace {

class CsvTableReader final : public TableReader {
 public:
  explicit CsvTableReader(const std::string& path) : reader_(path) {}
  const std::string& path() const override { return reader_.path(); }
  TableFormat format() const override { return TableFormat::kCsv; }
  const std::vector<std::string>& column_names() const override { return reader_.header(); }
  int64_t num_rows_hint() const override { return -1; }
  int RequireColumn(const std::string& name) const override { return reader_.RequireColumn(name); }
  int64_t Line(int64_t r) const override { return lines_[r]; }

  int64_t Next(const std::vector<int>& columns, std::vector<ParquetColumn>* out) override {
    out->resize(columns.size());
    for (ParquetColumn& col : *out) {
      // The strings keep their buffers from batch to batch; the rest is emptied.
      std::vector<std::string> strings = std::move(col.strings);
      col.Clear();
      col.type = ParquetType::kString;
      col.is_unsigned = false;
      col.strings = std::move(strings);
    }
    lines_.clear();
    int64_t n = 0;
    while (n < kCsvBatchRows && reader_.Next(&fields_)) {
      for (size_t i = 0; i < columns.size(); ++i) {
        ParquetColumn& col = (*out)[i];
        if (static_cast<int64_t>(col.strings.size()) <= n) col.strings.emplace_back();
        col.strings[n].assign(fields_[columns[i]]);
        col.string_index.push_back(static_cast<int32_t>(n));
      }
      lines_.push_back(reader_.line());
      ++n;
    }
    for (ParquetColumn& col : *out) col.strings.resize(n);
    return n;
  }

 private:
  CsvReader reader_;
  std::vector<std::string> fields_;
  std::vector<int64_t> lines_;
};

class ParquetTableReader final : public TableReader {
 public:
  explicit ParquetTableReader(const std::string& path) : reader_(path) {
    for (const ParquetColumnInfo& c : reader_.columns()) names_.push_back(c.name);
  }
  const std::string& path() const override { return reader_.path(); }
  TableFormat format() const override { return TableFormat::kParquet; }
  const std::vector<std::string>& column_names() const override { return names_; }
  int64_t num_rows_hint() const override { return reader_.num_rows(); }
  int RequireColumn(const std::string& name) const override { return reader_.RequireColumn(name); }
  int64_t Line(int64_t r) const override { return first_ + r + 1; }

  int64_t Next(const std::vector<int>& columns, std::vector<ParquetColumn>* out) override {
    first_ += rows_;
    rows_ = 0;
    // A row group of no rows is skipped: 0 means the end of the file.
    while (next_ < reader_.num_row_groups() && reader_.row_group_rows(next_) == 0) ++next_;
    if (next_ >= reader_.num_row_groups()) return 0;
    out->resize(columns.size());
    for (size_t i = 0; i < columns.size(); ++i) reader_.ReadColumn(next_, columns[i], &(*out)[i]);
    rows_ = reader_.row_group_rows(next_);
    ++next_;
    return rows_;
  }

 private:
  ParquetReader reader_;
  std::vector<std::string> names_;
  int next_ = 0;       // the next row group
  int64_t first_ = 0;  // rows before the last batch
  int64_t rows_ = 0;   // rows of the last batch
};

class CsvTableWriter final : public TableWriter {
 public:
  CsvTableWriter(const std::string& path, const std::vector<ParquetColumnSpec>& columns)
      : file_(path) {
    file_.Write(CsvHeader(columns));
  }
  TableFormat format() const override { return TableFormat::kCsv; }
  void Write(const std::vector<ParquetColumn>& columns) override {
    const int64_t n = columns.empty() ? 0 : columns[0].size();
    for (int64_t r = 0; r < n; r += 65536) {
      buffer_.clear();
      AppendCsvRows(columns, r, std::min(n, r + 65536), &buffer_);
      file_.Write(buffer_);
    }
  }
  void Close() override { file_.Commit(); }

 private:
  AtomicFile file_;
  std::string buffer_;
};

class ParquetTableWriter final : public TableWriter {
 public:
  ParquetTableWriter(const std::string& path, std::vector<ParquetColumnSpec> columns,
                     const ParquetWriteOptions& options)
      : writer_(path, std::move(columns), options) {}
  TableFormat format() const override { return TableFormat::kParquet; }
  void Write(const std::vector<ParquetColumn>& columns) override { writer_.Write(columns); }
  void Close() override { writer_.Close(); }

 private:
  ParquetWriter writer_;
};

}  // namespace

TableFormat TableFormatOf(const std::string& path) {
  constexpr std::string_view kSuffix = ".parquet";  // in any case: .PARQUET, .Parquet
  if (path.size() <= kSuffix.size()) return TableFormat::kCsv;
  for (size_t i = 0; i < kSuffix.size(); ++i) {
    const char c = path[path.size() - kSuffix.size() + i];
    if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != kSuffix[i]) return TableFormat::kCsv;
  }
  return TableFormat::kParquet;
}

namespace {

// A .tsv / .tab table would be read as CSV, its rows as one column named after the whole header
// line: refused instead (the interactions importer reads tab-separated logs itself).
void RefuseTabSeparated(const std::string& path, bool writing) {
  auto ends = [&](std::string_view suffix) {
    if (path.size() <= suffix.size()) return false;
    for (size_t i = 0; i < suffix.size(); ++i) {
      const char c = path[path.size() - suffix.size() + i];
      if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != suffix[i]) return false;
    }
    return true;
  };
  if (!ends(".tsv") && !ends(".tab")) return;
  if (writing) {
    throw Error(path +
                ": tab-separated by its name, but tables are written as CSV "
                "(comma-separated) or Parquet: name it .csv or .parquet");
  }
  throw Error(path +
              ": tab-separated by its name, but tables are read as CSV (comma-separated, "
              "RFC 4180) or Parquet (.parquet); `twotower data interactions "
              "--interactions FILE.tsv` reads a tab-separated log");
}

}  // namespace

std::unique_ptr<TableReader> TableReader::Open(const std::string& path) {
  RefuseTabSeparated(path, false);
  if (TableFormatOf(path) == TableFormat::kParquet) {
    return std::make_unique<ParquetTableReader>(path);
  }
  return std::make_unique<CsvTableReader>(path);
}

int TableReader::FindColumn(const std::string& name) const {
  const std::vector<std::string>& names = column_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

std::string TableReader::Where(int64_t r) const {
  return path() + (format() == TableFormat::kParquet ? ": row " : ":") + std::to_string(Line(r));
}

std::unique_ptr<TableWriter> TableWriter::Open(const std::string& path,
                                               std::vector<ParquetColumnSpec> columns,
                                               const ParquetWriteOptions& options) {
  RefuseTabSeparated(path, true);
  if (TableFormatOf(path) == TableFormat::kParquet) {
    return std::make_unique<ParquetTableWriter>(path, std::move(columns), options);
  }
  return std::make_unique<CsvTableWriter>(path, columns);
}

Table ReadTable(const std::string& path) {
  const std::unique_ptr<TableReader> reader = TableReader::Open(path);
  Table table;
  table.source = path;
  table.numbered_rows = reader->format() == TableFormat::kParquet;
  table.columns = reader->column_names();
  const int num_columns = static_cast<int>(table.columns.size());
  table.cells.resize(num_columns);
  if (reader->num_rows_hint() >= 0) {
    for (auto& cells : table.cells) cells.reserve(reader->num_rows_hint());
    table.lines.reserve(reader->num_rows_hint());
  }
  std::vector<int> all(num_columns);
  for (int c = 0; c < num_columns; ++c) all[c] = c;
  std::vector<ParquetColumn> batch;
  for (int64_t g = 0, n = 0; (n = reader->Next(all, &batch)) > 0; ++g) {
    for (int c = 0; c < num_columns; ++c) {
      ParquetColumn& column = batch[c];
      if (column.type == ParquetType::kString && reader->format() == TableFormat::kParquet) {
        // One long dictionary entry referenced by every row would be copied into every cell:
        // the chunk's text is bounded as the reader bounds its decoded values.
        int64_t bytes = 0;
        for (int64_t r = 0; r < column.size(); ++r) {
          if (!column.IsNull(r))
            bytes += static_cast<int64_t>(column.strings[column.string_index[r]].size());
        }
        if (bytes > ParquetReadOptions().max_chunk_bytes) {
          throw Error(path + ": row group " + std::to_string(g) + ", column " +
                      Quote(table.columns[c]) + ": " + std::to_string(bytes) +
                      " bytes of text, more than the reader's limit");
        }
      }
      if (reader->format() == TableFormat::kCsv) {
        // Each CSV cell is its own entry: moved, not copied.
        for (int64_t r = 0; r < n; ++r) table.cells[c].push_back(std::move(column.strings[r]));
      } else {
        for (int64_t r = 0; r < n; ++r) table.cells[c].push_back(column.Text(r));
      }
    }
    for (int64_t r = 0; r < n; ++r) table.lines.push_back(reader->Line(r));
  }
  return table;
}

ParquetColumn& TypedTable::AddColumn(const std::string& name, ParquetType type, bool optional) {
  specs.push_back({name, type, optional});
  columns.emplace_back();
  columns.back().type = type;
  return columns.back();
}

void WriteTable(const std::string& path, const TypedTable& table,
                const ParquetWriteOptions& options) {
  const std::unique_ptr<TableWriter> writer = TableWriter::Open(path, table.specs, options);
  writer->Write(table.columns);
  writer->Close();
}

TypedTable InferTypes(const Table& table) {
  TypedTable out;
  for (size_t c = 0; c < table.columns.size(); ++c) {
    const std::vector<std::string>& cells = table.cells[c];
    // DOUBLE only when every cell is the text the writers print for its value (NumberText):
    // then Parquet -> CSV gives back the cell as written. "1.10", "2.50", "1.0", "1e3", "007",
    // "+5" and integers a double does not hold exactly (12345678901234567890) would come back
    // as other text (and "1.1" / "1.10" as one id), so such a column stays STRING.
    bool integers = true, numbers = true, any_empty = false;
    for (const std::string& s : cells) {
      if (s.empty()) {
        any_empty = true;
        continue;
      }
      if (integers && !IsInteger(s)) integers = false;
      if (!integers && numbers) {
        double v = 0.0;
        numbers = IsNumber(s, &v) && NumberText(v, false) == s;
      }
      if (!numbers) break;
    }
    if (!any_empty) {
      for (const std::string& s : cells) any_empty |= s.empty();
    }
    const ParquetType type = integers  ? ParquetType::kInt64
                             : numbers ? ParquetType::kDouble
                                       : ParquetType::kString;
    ParquetColumn& col = out.AddColumn(table.columns[c], type, any_empty);
    if (any_empty) col.valid.reserve(cells.size());
    for (const std::string& s : cells) {
      if (any_empty) col.valid.push_back(s.empty() ? 0 : 1);
      switch (type) {
        case ParquetType::kInt64: {
          int64_t x = 0;
          if (!s.empty()) std::from_chars(s.data(), s.data() + s.size(), x);
          col.ints.push_back(x);
          break;
        }
        case ParquetType::kDouble: {
          double x = 0.0;
          if (!s.empty()) IsNumber(s, &x);
          col.doubles.push_back(x);
          break;
        }
        default:
          if (s.empty()) {
            col.string_index.push_back(-1);
          } else {
            col.string_index.push_back(static_cast<int32_t>(col.strings.size()));
            col.strings.push_back(s);
          }
          break;
      }
    }
  }
  return out;
}

int64_t ConvertTable(const std::string& in, const std::string& out,
                     const ParquetWriteOptions& options) {
  if (TableFormatOf(in) == TableFormat::kCsv) {
    const Table table = ReadTable(in);
    for (size_t c = 0; c < table.columns.size(); ++c) {
      if (table.columns[c].empty()) {
        throw Error(in + ":1: column " + std::to_string(c + 1) +
                    " has an empty name in the header (a table column needs one)");
      }
    }
    const TypedTable typed = InferTypes(table);
    WriteTable(out, typed, options);
    return typed.num_rows();
  }
  ParquetReader reader(in);
  std::vector<ParquetColumnSpec> specs;
  for (const ParquetColumnInfo& c : reader.columns()) {
    if (!c.unsupported.empty()) {
      throw Error(in + ": column " + Quote(c.name) + ": " + c.unsupported + " is not supported");
    }
    // Unsigned 64-bit values do not fit the writer's signed INT64: refuse rather than wrap.
    if (c.is_unsigned && c.type == ParquetType::kInt64 &&
        TableFormatOf(out) == TableFormat::kParquet) {
      throw Error(in + ": column " + Quote(c.name) +
                  ": unsigned 64-bit integers cannot be written (twotower writes signed INT64)");
    }
    specs.push_back({c.name,
                     c.is_unsigned && c.type == ParquetType::kInt32 ? ParquetType::kInt64 : c.type,
                     c.optional});
  }
  std::vector<ParquetColumn> columns(specs.size());
  const int num_columns = static_cast<int>(specs.size());
  const std::unique_ptr<TableWriter> writer = TableWriter::Open(out, specs, options);
  for (int g = 0; g < reader.num_row_groups(); ++g) {
    for (int c = 0; c < num_columns; ++c) {
      reader.ReadColumn(g, c, &columns[c]);
      if (writer->format() == TableFormat::kParquet) {
        // UINT_32 values are held as int64 already; they are written as INT64. (CSV keeps the
        // flag: the text of an unsigned value is its own.)
        columns[c].type = specs[c].type;
        columns[c].is_unsigned = false;
      }
    }
    writer->Write(columns);
  }
  writer->Close();
  return reader.num_rows();
}

}  // namespace twotower::data
