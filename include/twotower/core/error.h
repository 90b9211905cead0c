// Error: the one typed error every boundary (files, config, flags, model files) throws.
//
// The message names the subject (file, file:line, config key), what was wrong and what was
// expected, e.g. `users.csv:17: column 'age': expected a number, got "abc"`. `main` catches it,
// prints the message and exits non-zero. Library calls that get impossible arguments from a
// programmer (mismatched shapes) throw it too, with the component's name, since a library user's
// mistake must not become undefined behaviour in a release build.
// Thread-safe: it is an immutable value.
#ifndef TWOTOWER_CORE_ERROR_H_
#define TWOTOWER_CORE_ERROR_H_

#include <stdexcept>
#include <string>

namespace twotower {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Quotes a value for an error message: "abc" with control characters escaped and long values cut.
std::string Quote(const std::string& value);

}  // namespace twotower

#endif  // TWOTOWER_CORE_ERROR_H_
