#include "twotower/core/threads.h"

#include <omp.h>

#include <Eigen/Core>

namespace twotower {

int SetThreads(int threads) {
  if (threads <= 0) threads = omp_get_num_procs();
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
