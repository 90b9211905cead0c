// safetensors files (the Hugging Face format): an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}, "__metadata__": {string: string}}, then the raw
// little-endian tensor bytes. We read and write F32 tensors; Python's `safetensors` loads ours.
// Reading validates everything that comes from the file: sizes, offsets, overlaps, dtypes.
// Thread-safe: free functions with no shared state.
#ifndef TWOTOWER_MODEL_SAFETENSORS_H_
#define TWOTOWER_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace twotower::model {

struct Tensor {
  std::vector<int64_t> shape;  // {} for a scalar
  std::vector<float> data;     // row-major, product(shape) values
};

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Writes atomically. Tensors are laid out in name order.
void WriteSafetensors(const std::string& path, const SafetensorsFile& file);
// Throws Error("<path>: ...") for a missing, truncated or malformed file, or a non-F32 tensor.
SafetensorsFile ReadSafetensors(const std::string& path);
// The same from bytes already in memory; errors name `name` where ReadSafetensors names the path.
SafetensorsFile ParseSafetensors(std::string_view bytes, const std::string& name);

}  // namespace twotower::model

#endif  // TWOTOWER_MODEL_SAFETENSORS_H_
