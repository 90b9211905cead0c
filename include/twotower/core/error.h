// Error: the one typed error every boundary (files, config, flags, model files, requests) throws.
//
// The message names the subject (file, file:line, config key, request field), what was wrong and
// what was expected, e.g. `users.csv:17: column 'age': expected a number, got "abc"`. An error
// also carries a code, the kind of failure (the canonical codes of leveldb's `Status` and absl's
// `StatusCode`, cut to the ones a caller acts on differently), and, where there is one, the field
// it concerns (a request's JSON field, a config key, a flag). Front ends map the code, never the
// message: `main` through ExitCode (cli), the server through one table of HTTP statuses (serve),
// the Python module to exception classes. Library calls that get impossible arguments from a
// programmer (mismatched shapes) throw it too, with the component's name, since a library user's
// mistake must not become undefined behaviour in a release build.
// Thread-safe: it is an immutable value.
#ifndef TWOTOWER_CORE_ERROR_H_
#define TWOTOWER_CORE_ERROR_H_

#include <stdexcept>
#include <string>

namespace twotower {

enum class ErrorCode {
  kInvalidArgument,  // a value from outside is malformed or out of range (the default)
  kNotFound,         // a named user, item, variant, file or route does not exist
  kCorruptData,      // a file's bytes contradict its own format (model, index, Parquet, npy)
  kIo,               // the operating system refused a read, write or rename
  kConflict,     // valid on its own, but not with the state it meets (absl: FAILED_PRECONDITION)
  kUnavailable,  // cannot be done now: past a deadline, out of memory; try again
  kInternal,     // an invariant of twotower broke: a bug to report
};

// "invalid_argument", "not_found", "corrupt_data", "io", "conflict", "unavailable", "internal".
const char* ErrorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  // kInvalidArgument, no field.
  explicit Error(const std::string& message)
      : std::runtime_error(message), code_(ErrorCode::kInvalidArgument) {}
  // `field`: the request field, config key or flag the error concerns ("" = none).
  Error(ErrorCode code, const std::string& message, std::string field = "")
      : std::runtime_error(message), code_(code), field_(std::move(field)) {}

  ErrorCode code() const noexcept { return code_; }
  const std::string& field() const noexcept { return field_; }

 private:
  ErrorCode code_;
  std::string field_;
};

// Throws the error of a file that could not be opened, `err` the errno of the failed open:
// Error(kNotFound) for ENOENT, else Error(kIo), message "<path>: cannot open: <strerror(err)>".
// Every open of a file from outside goes through it, so that front ends can tell a missing file
// by its code and message (the Python module raises FileNotFoundError for it).
[[noreturn]] void ThrowCannotOpen(const std::string& path, int err);

// Quotes a value for an error message: "abc" with control characters escaped and long values cut.
std::string Quote(const std::string& value);

}  // namespace twotower

#endif  // TWOTOWER_CORE_ERROR_H_
