// libFuzzer target: the Parquet reader (footer, schema, every page of every column chunk).
// Any input must end in decoded columns or a twotower::Error; anything else (a crash, a hang, an
// uncaught exception, an allocation sized by a claim the bytes cannot back) is a finding. The
// reader's limits are lowered so that a file claiming a huge chunk is refused by the reader, not
// by libFuzzer's malloc limit.
#include "fuzz_input.h"
#include "twotower/core/error.h"
#include "twotower/data/parquet.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = twotower::fuzz::InputPath(".parquet");
  twotower::fuzz::WriteInput(path, data, size);
  try {
    twotower::data::ParquetReadOptions options;
    options.max_chunk_bytes = int64_t{64} << 20;
    options.max_page_bytes = int64_t{16} << 20;
    twotower::data::ParquetReader reader(path, options);
    twotower::data::ParquetColumn column;
    for (int g = 0; g < reader.num_row_groups(); ++g) {
      for (size_t c = 0; c < reader.columns().size(); ++c) {
        try {
          reader.ReadColumn(g, static_cast<int>(c), &column);
          for (int64_t r = 0; r < column.size(); ++r) (void)column.Text(r);
        } catch (const twotower::Error&) {
        }
      }
    }
  } catch (const twotower::Error&) {
  }
  return 0;
}
