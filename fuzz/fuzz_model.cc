// libFuzzer target: model files (safetensors header and tensors, the metadata's JSON, the
// encoder, schema and model config they describe).
#include "fuzz_input.h"
#include "twotower/core/error.h"
#include "twotower/model/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = twotower::fuzz::InputPath(".safetensors");
  twotower::fuzz::WriteInput(path, data, size);
  try {
    (void)twotower::model::LoadModel(path);
  } catch (const twotower::Error&) {
  }
  return 0;
}
