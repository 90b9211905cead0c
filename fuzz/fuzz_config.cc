// libFuzzer target: the YAML training config (yaml-cpp, then every setting's checks).
#include <string>

#include "twotower/core/error.h"
#include "twotower/train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const twotower::train::Config c = twotower::train::Config::FromYamlString(text, "fuzz.yaml");
    c.Validate("fuzz.yaml");
    (void)c.ToYaml();
  } catch (const twotower::Error&) {
  }
  return 0;
}
