// libFuzzer target: .npy embeddings (header dictionary, dtype, order, shape, data).
#include "fuzz_input.h"
#include "twotower/core/error.h"
#include "twotower/data/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = twotower::fuzz::InputPath(".npy");
  twotower::fuzz::WriteInput(path, data, size);
  try {
    (void)twotower::data::ReadNpy(path);
  } catch (const twotower::Error&) {
  }
  return 0;
}
