// libFuzzer target: the CSV reader (every table: users, items, interactions).
// Any input must end in a table or a twotower::Error; anything else is a finding.
#include "fuzz_input.h"
#include "twotower/core/error.h"
#include "twotower/data/csv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = twotower::fuzz::InputPath(".csv");
  twotower::fuzz::WriteInput(path, data, size);
  try {
    const twotower::data::Table t = twotower::data::ReadTable(path);
    for (const std::string& c : t.columns) (void)t.Column(c);
  } catch (const twotower::Error&) {
  }
  return 0;
}
