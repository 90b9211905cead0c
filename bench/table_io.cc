// Times twotower's table readers and writers for the table benchmark (bench/run_parquet_bench.sh).
// One operation per process, so each peak resident memory (getrusage) is that operation's own.
// Prints one JSON line: the operation, rows, file bytes, seconds, rows/s, MB/s (file bytes per
// second) and peak RSS in MiB.
//
//   bench_table_io read FILE             every column of every row group (Parquet: decoded
//                                        values; CSV: CsvReader's fields), one row group at a time
//   bench_table_io write IN OUT CODEC    IN (Parquet) held in memory, then written as OUT (Parquet
//                                        with CODEC: snappy | zstd | gzip | none, or CSV); only
//                                        the write is timed
//   bench_table_io load USERS ITEMS INTERACTIONS
//                                        what training does with an interactions file:
//                                        ReadInteractions into entity rows (ids looked up in the
//                                        users and items tables, labels, p_true); only that is
//                                        timed
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "twotower/core/error.h"
#include "twotower/data/csv.h"
#include "twotower/data/dataset.h"
#include "twotower/data/parquet.h"
#include "twotower/data/table.h"

using namespace twotower;
using Clock = std::chrono::steady_clock;

namespace {

double PeakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

int64_t FileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

void Report(const char* op, const std::string& file, int64_t rows, double seconds) {
  const int64_t bytes = FileBytes(file);
  std::printf(
      "{\"op\": \"%s\", \"file\": \"%s\", \"rows\": %lld, \"bytes\": %lld, \"seconds\": %.4f, "
      "\"rows_per_s\": %.0f, \"mb_per_s\": %.1f, \"peak_rss_mib\": %.1f}\n",
      op, file.c_str(), static_cast<long long>(rows), static_cast<long long>(bytes), seconds,
      rows / seconds, bytes / 1e6 / seconds, PeakRssMiB());
}

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string op = argc > 1 ? argv[1] : "";
  try {
    if (op == "read" && argc == 3) {
      const std::string path = argv[2];
      const auto t = Clock::now();
      int64_t rows = 0;
      if (data::TableFormatOf(path) == data::TableFormat::kParquet) {
        data::ParquetReader reader(path);
        data::ParquetColumn col;
        for (int g = 0; g < reader.num_row_groups(); ++g) {
          for (size_t c = 0; c < reader.columns().size(); ++c) {
            reader.ReadColumn(g, static_cast<int>(c), &col);
          }
        }
        rows = reader.num_rows();
      } else {
        data::CsvReader reader(path);
        std::vector<std::string> fields;
        while (reader.Next(&fields)) ++rows;
      }
      Report("read", path, rows, Since(t));
      return 0;
    }
    if (op == "write" && argc == 5) {
      const std::string in = argv[2], out = argv[3];
      data::ParquetReader reader(in);
      data::TypedTable table;
      for (const data::ParquetColumnInfo& c : reader.columns())
        table.AddColumn(c.name, c.type, c.optional);
      data::ParquetColumn col;
      for (int g = 0; g < reader.num_row_groups(); ++g) {
        for (size_t c = 0; c < reader.columns().size(); ++c) {
          reader.ReadColumn(g, static_cast<int>(c), &col);
          data::ParquetColumn& dst = table.columns[c];
          dst.ints.insert(dst.ints.end(), col.ints.begin(), col.ints.end());
          dst.doubles.insert(dst.doubles.end(), col.doubles.begin(), col.doubles.end());
          for (int32_t i : col.string_index) {
            dst.string_index.push_back(static_cast<int32_t>(dst.strings.size()));
            dst.strings.push_back(col.strings[i]);
          }
        }
      }
      data::ParquetWriteOptions options;
      options.compression = data::ParseParquetCompression(argv[4], "codec");
      const auto t = Clock::now();
      data::WriteTable(out, table, options);
      Report("write", out, table.num_rows(), Since(t));
      return 0;
    }
    if (op == "load" && argc == 5) {
      data::FeatureSchema schema;
      schema.user.id_column = "user_id";
      schema.item.id_column = "movie_id";
      schema.label_column = "liked";
      const data::Table users = data::ReadTable(argv[2]);
      const data::Table items = data::ReadTable(argv[3]);
      const auto u = data::EntityIndex::FromTable(users, "user_id");
      const auto i = data::EntityIndex::FromTable(items, "movie_id");
      const auto t = Clock::now();
      const data::Interactions x = data::ReadInteractions(argv[4], schema, u, i);
      Report("load", argv[4], x.size(), Since(t));
      return 0;
    }
    std::fprintf(
        stderr,
        "usage: %s read FILE | write IN.parquet OUT CODEC | load USERS ITEMS INTERACTIONS\n",
        argv[0]);
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
