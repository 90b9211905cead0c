// The `twotower` command: dispatches to src/cli/.
#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"

int main(int argc, char** argv) {
  // A write past the file size limit (ulimit -f) raises SIGXFSZ, whose default action kills the
  // process before it can remove its temporary file or say which file: ignored, the write fails
  // with EFBIG instead and the error names the file (core/files.h).
  std::signal(SIGXFSZ, SIG_IGN);
  // Started by mpirun: join its job (core/dist.h); rank 0 alone prints what a run prints.
  try {
    twotower::dist::Init(&argc, &argv);
  } catch (const twotower::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  if (twotower::dist::Distributed() && !twotower::dist::IsRoot()) {
    if (std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
  }
  const int code = twotower::cli::Main(argc, argv);
  twotower::dist::Finalize();
  return code;
}
