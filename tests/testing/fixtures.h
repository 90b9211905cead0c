// Small fixture builders shared by several test files: hand-written bytes and in-memory tables.
#ifndef TWOTOWER_TESTS_TESTING_FIXTURES_H_
#define TWOTOWER_TESTS_TESTING_FIXTURES_H_

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "twotower/data/csv.h"

namespace twotower::testing {

// Little-endian float32 bytes, written out by hand (independent of the file writers under test).
inline std::string FloatBytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  }
  return out;
}

// A table built in memory: `rows` of values in `columns` order, file lines 2, 3, ...
inline data::Table MakeTable(const std::string& source, const std::vector<std::string>& columns,
                             const std::vector<std::vector<std::string>>& rows) {
  data::Table t;
  t.source = source;
  t.columns = columns;
  t.cells.resize(columns.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < columns.size(); ++c) t.cells[c].push_back(rows[r][c]);
    t.lines.push_back(static_cast<int64_t>(r) + 2);
  }
  return t;
}

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_FIXTURES_H_
