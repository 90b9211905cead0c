// Thread settings: the thread count of core/parallel.h (kept as OpenMP's) and Eigen's.
#ifndef TWOTOWER_CORE_THREADS_H_
#define TWOTOWER_CORE_THREADS_H_

#include <string>

namespace twotower {

// Sets the calling thread's number of worker threads for core/parallel.h's ParallelFor (kept as
// OpenMP's thread count, omp_get_max_threads()); Eigen's own threading is turned off (the large
// products are split by core/parallel.h instead).
// threads <= 0 means all cores: this process's (its affinity mask), at most the CPUs its cgroup's
// quota allows (CgroupCpuLimit), divided among the mpirun ranks on this machine when they share
// them (core/dist.h). Returns the number in effect. Call before starting work.
int SetThreads(int threads);

// The CPUs a cgroup CPU quota allows this process, rounded up (a container started with
// `--cpus 1.5` gets 2), or 0 when there is no quota. Threads beyond the quota do not run at
// once: the cgroup is throttled until the next period, and a thread waiting for a throttled
// sibling waits for the rest of that period (100 ms by default).
// `proc_self_cgroup`: the text of /proc/self/cgroup (cgroups(7): "hierarchy:controllers:path"
// lines). `fs_root`: where the cgroup file systems are mounted (/sys/fs/cgroup). Reads cgroup
// v2's cpu.max ("QUOTA PERIOD" or "max PERIOD", in microseconds) under fs_root and
// fs_root/unified, and v1's cpu.cfs_quota_us / cpu.cfs_period_us (quota -1: none) under
// fs_root/<controllers> and fs_root/cpu, for the process's cgroup and each of its ancestors
// (the smallest quota wins; a directory that is not there, as in a container whose cgroup is its
// root, is skipped). A file in another format counts as no quota. Never throws.
int CgroupCpuLimit(const std::string& proc_self_cgroup, const std::string& fs_root);

// CgroupCpuLimit for this process (/proc/self/cgroup, /sys/fs/cgroup): 0 for no quota.
int ProcessCgroupCpuLimit();

// SetThreads for a scope: the calling thread's thread count is put back as it was when it ends, so
// that a library call (app::Train from Python, a test) leaves the process's settings as it found
// them.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;
  int threads() const { return threads_; }  // the number in effect in the scope

 private:
  int threads_, previous_omp_;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_THREADS_H_
