#include "twotower/core/threads.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>

#include "twotower/core/dist.h"

namespace twotower {

int SetThreads(int threads) {
  // All cores: those this process may run on, divided among the mpirun ranks on this machine
  // (at least one), so that ranks never oversubscribe the cores they share.
  if (threads <= 0) {
    threads = std::max(1, omp_get_num_procs() / dist::LocalSize());
  }
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  return threads;
}

ScopedThreads::ScopedThreads(int threads)
    : previous_omp_(omp_get_max_threads()), previous_eigen_(Eigen::nbThreads()) {
  threads_ = SetThreads(threads);
}

ScopedThreads::~ScopedThreads() {
  omp_set_num_threads(previous_omp_);
  Eigen::setNbThreads(previous_eigen_);
}

}  // namespace twotower
