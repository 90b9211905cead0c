// twotower convert: a table between CSV and Parquet.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/core/error.h"
#include "twotower/data/csv.h"
#include "twotower/data/parquet.h"
#include "twotower/data/table.h"

namespace twotower::cli {
namespace {

struct ConvertArgs {
  std::string in, out;
  std::string compression = "snappy";
  int64_t row_group_rows = 1'000'000;
};

int RunConvert(const ConvertArgs& a, bool parquet_flags_given) {
  if (parquet_flags_given && data::TableFormatOf(a.out) != data::TableFormat::kParquet) {
    throw Error("convert: --compression and --row-group-rows apply to Parquet output, and " +
                a.out + " is written as CSV (its name does not end in .parquet)");
  }
  data::ParquetWriteOptions options;
  options.compression = data::ParseParquetCompression(a.compression, "--compression");
  options.row_group_rows = a.row_group_rows;
  const int64_t rows = data::ConvertTable(a.in, a.out, options);
  std::cout << "wrote " << a.out << ": " << rows << " rows\n";
  return 0;
}

}  // namespace

Registered DefineConvert(CLI::App* app, Common* /*common*/) {
  auto cv_p = std::make_shared<ConvertArgs>();
  ConvertArgs& cv = *cv_p;
  auto* convert = app->add_subcommand(
      "convert", "convert a table between CSV and Parquet (by suffix: .parquet or other)");
  convert->add_option("in", cv.in, "input table (.csv or .parquet)")->required();
  convert->add_option("out", cv.out, "output table (.csv or .parquet)")->required();
  convert
      ->add_option("--compression", cv.compression,
                   "Parquet page codec: snappy, zstd, gzip, none (Parquet output only)")
      ->capture_default_str();
  convert->add_option("--row-group-rows", cv.row_group_rows, "rows per Parquet row group")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  return {convert, [cv_p, convert] {
            return RunConvert(*cv_p, convert->get_option("--compression")->count() > 0 ||
                                         convert->get_option("--row-group-rows")->count() > 0);
          }};
}

}  // namespace twotower::cli
