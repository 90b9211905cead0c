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
  int signal = SIGKILL;
  mutable std::atomic<long> seen{0};
  Armed() {
    const char* env = std::getenv("TWOTOWER_FAILPOINT");
    if (env == nullptr) return;
    name = env;
    const size_t equals = name.find('=');
    if (equals != std::string::npos) {
      const std::string what = name.substr(equals + 1);
      name.resize(equals);
      if (what == "INT") {
        signal = SIGINT;
      } else if (what == "TERM") {
        signal = SIGTERM;
      } else if (what != "KILL") {
        std::fprintf(stderr, "TWOTOWER_FAILPOINT: '=' must be followed by KILL, INT or TERM\n");
        std::abort();
      }
    }
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
  if (a.seen.fetch_add(1) + 1 == a.pass) ::raise(a.signal);
}

}  // namespace twotower
