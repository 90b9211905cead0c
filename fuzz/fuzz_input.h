// Shared by the libFuzzer targets (fuzz/README.md): the input as a file, since the parsers
// under test are the ones the commands use, and they read paths.
#ifndef TWOTOWER_FUZZ_FUZZ_INPUT_H_
#define TWOTOWER_FUZZ_FUZZ_INPUT_H_

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace twotower::fuzz {

// A per-process file in /dev/shm (memory; /tmp when absent) holding the last input written.
inline std::string InputPath(const char* suffix) {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/twotower_fuzz_" + std::to_string(getpid()) + suffix;
}

inline void WriteInput(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
}

}  // namespace twotower::fuzz

#endif  // TWOTOWER_FUZZ_FUZZ_INPUT_H_
