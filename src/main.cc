// The `twotower` command: dispatches to src/cli/.
#include <malloc.h>

#include <csignal>
#include <cstdio>

#include "cli/cli.h"
#include "cli/commands.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"

int main(int argc, char** argv) {
  // A write past the file size limit (ulimit -f) raises SIGXFSZ, whose default action kills the
  // process before it can remove its temporary file or say which file: ignored, the write fails
  // with EFBIG instead and the error names the file (core/files.h).
  std::signal(SIGXFSZ, SIG_IGN);
  // glibc gives the free memory at the top of its heap back to the OS as soon as 128 KiB are
  // free there, and the next allocation faults it back in page by page. Training frees and
  // allocates the evaluation's matrices every epoch (and a short last batch resizes the step's
  // buffers): the lab's 30 epochs took 40,000 page faults and 1.85 s at one thread, against
  // 3,000 and 1.46 s with these settings (perf stat; times in bench/run_contention.sh). Freed
  // memory up to 256 MiB stays with the process for reuse; glibc's own defaults hold for the
  // Python module, whose host process owns these settings.
#ifdef __GLIBC__
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
  // Ctrl-C and SIGTERM remove the temporary files being written (src/cli/cli.h).
  twotower::cli::InstallInterruptHandler();
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
