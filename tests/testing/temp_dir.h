// Test helpers for code that touches files: TempDir, a fresh, uniquely named directory under the
// system temp directory, removed (with everything in it) when the object goes out of scope;
// ReadBytes; and ErrorMessage, which runs a callable that must throw twotower::Error.
#ifndef TWOTOWER_TESTS_TESTING_TEMP_DIR_H_
#define TWOTOWER_TESTS_TESTING_TEMP_DIR_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "twotower/core/error.h"

namespace twotower::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    std::filesystem::path base = std::filesystem::temp_directory_path();
    for (int attempt = 0;; ++attempt) {
      std::ostringstream name;
      name << "twotower_test_" << ::getpid() << "_" << ticks << "_" << counter++;
      path_ = base / name.str();
      std::error_code ec;
      if (std::filesystem::create_directory(path_, ec)) break;
      if (attempt > 100)
        throw std::runtime_error("cannot create a temp dir under " + base.string());
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The path of `name` inside the directory, as a string.
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  // Writes `content` to `name` (creating parent directories) and returns its path.
  std::string Write(const std::string& name, std::string_view content) const {
    const std::filesystem::path p = path_ / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    return p.string();
  }

 private:
  std::filesystem::path path_;
};

// The whole file as bytes ("" when it cannot be read).
inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs `f`, which must throw twotower::Error, and returns the message ("" and a test failure when
// it does not throw, or throws something else).
template <typename F>
std::string ErrorMessage(F&& f) {
  try {
    f();
  } catch (const twotower::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected twotower::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected twotower::Error, nothing was thrown";
  return "";
}

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_TEMP_DIR_H_
