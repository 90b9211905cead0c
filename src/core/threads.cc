#include "twotower/core/threads.h"

#include <omp.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>

#include "twotower/core/dist.h"

namespace twotower {

int SetThreads(int threads) {
  if (threads <= 0) {
    // mpirun may have bound this rank to cores of its own (fewer than the machine's): those
    // are its own. Unbound ranks on one machine share its cores.
    const int procs = omp_get_num_procs();
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    threads = procs < online ? procs : std::max(1, procs / dist::LocalSize());
  }
  omp_set_num_threads(threads);
  // Eigen's products run on the calling thread: the large ones are split by rows through
  // core/parallel.h, whose work sharing survives CPU contention where OpenMP's barriers
  // (which Eigen would use) do not.
  Eigen::setNbThreads(1);
  return threads;
}

ScopedThreads::ScopedThreads(int threads) : previous_omp_(omp_get_max_threads()) {
  threads_ = SetThreads(threads);
}

ScopedThreads::~ScopedThreads() { omp_set_num_threads(previous_omp_); }

}  // namespace twotower
