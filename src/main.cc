// The `twotower` command: dispatches to src/cli/.
#include <csignal>

#include "cli/commands.h"

int main(int argc, char** argv) {
  // A write past the file size limit (ulimit -f) raises SIGXFSZ, whose default action kills the
  // process before it can remove its temporary file or say which file: ignored, the write fails
  // with EFBIG instead and the error names the file (core/files.h).
  std::signal(SIGXFSZ, SIG_IGN);
  return twotower::cli::Main(argc, argv);
}
