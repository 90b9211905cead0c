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

}  // namespace twotower
