// libFuzzer target: the ids file beside item embeddings (its `# twotower-ids` line, ids, line
// ends), read with a fixed 3 x 2 .npy.
#include "fuzz_input.h"
#include "twotower/app/app.h"
#include "twotower/core/error.h"
#include "twotower/data/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string npy = [] {
    const std::string p = twotower::fuzz::InputPath(".npy");
    twotower::Matrix m(3, 2);
    m << 1, 2, 3, 4, 5, 6;
    twotower::data::WriteNpy(p, m);
    return p;
  }();
  twotower::fuzz::WriteInput(twotower::app::IdsPath(npy), data, size);
  try {
    (void)twotower::app::ReadItemEmbeddings(npy);
  } catch (const twotower::Error&) {
  }
  return 0;
}
