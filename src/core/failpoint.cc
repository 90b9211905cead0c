#include "twotower/core/failpoint.h"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace twotower {
namespace {

struct Armed {
  std::string name;  // empty: no failpoint
  long pass = 1;
  mutable std::atomic<long> seen{0};
  Armed() {
    const char* env = std::getenv("TWOTOWER_FAILPOINT");
    if (env == nullptr) return;
    name = env;
    const size_t hash = name.find('#');
    if (hash != std::string::npos) {
      pass = std::strtol(name.c_str() + hash + 1, nullptr, 10);
      name.resize(hash);
      if (pass < 1) {  // a count that cannot be met would silently never fire
        std::fprintf(stderr, "TWOTOWER_FAILPOINT: '#' must be followed by a pass >= 1\n");
        std::abort();
      }
    }
  }
};

const Armed& armed() {
  static Armed a;
  return a;
}

}  // namespace

void FailPoint(const char* name) {
  const Armed& a = armed();
  if (a.name.empty() || a.name != name) return;
  if (a.seen.fetch_add(1) + 1 == a.pass) ::raise(SIGKILL);
}

}  // namespace twotower
