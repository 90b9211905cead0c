#include "twotower/core/threads.h"

#include <omp.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>
#include <vector>

#include "twotower/core/dist.h"

namespace twotower {
namespace {

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text;
}

bool ParseInt64(std::string_view s, int64_t* out) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// ceil(quota / period), or 0 for no quota or an unexpected value.
int QuotaCpus(int64_t quota, int64_t period) {
  if (quota <= 0 || period <= 0) return 0;
  return static_cast<int>(std::min<int64_t>((quota + period - 1) / period, 1 << 20));
}

// cgroup v2's cpu.max: "max 100000" or "150000 100000".
int CpuMaxCpus(const std::string& text) {
  const size_t space = text.find(' ');
  if (space == std::string::npos) return 0;
  int64_t quota = 0, period = 0;
  if (!ParseInt64(std::string_view(text).substr(0, space), &quota)) return 0;
  if (!ParseInt64(std::string_view(text).substr(space + 1), &period)) return 0;
  return QuotaCpus(quota, period);
}

// The path and its ancestors, the path first: "/a/b" gives "/a/b", "/a", "".
std::vector<std::string> SelfAndAncestors(std::string path) {
  std::vector<std::string> out;
  while (!path.empty() && path.back() == '/') path.pop_back();
  for (;;) {
    out.push_back(path);
    if (path.empty()) break;
    const size_t slash = path.rfind('/');
    path = slash == std::string::npos ? std::string() : path.substr(0, slash);
  }
  return out;
}

void KeepSmaller(int cpus, int* limit) {
  if (cpus > 0 && (*limit == 0 || cpus < *limit)) *limit = cpus;
}

}  // namespace

int CgroupCpuLimit(const std::string& proc_self_cgroup, const std::string& fs_root) {
  int limit = 0;
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {  // cgroup v2
      for (const std::string& base : {fs_root, fs_root + "/unified"}) {
        for (const std::string& dir : SelfAndAncestors(path)) {
          KeepSmaller(CpuMaxCpus(ReadSmallFile(base + dir + "/cpu.max")), &limit);
        }
      }
      continue;
    }
    bool cpu = false;  // v1: the hierarchy with the cpu controller ("cpu" or "cpu,cpuacct")
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) cpu |= name == "cpu";
    if (!cpu) continue;
    for (const std::string& base : {fs_root + "/" + controllers, fs_root + "/cpu"}) {
      for (const std::string& dir : SelfAndAncestors(path)) {
        int64_t quota = 0, period = 0;
        if (ParseInt64(ReadSmallFile(base + dir + "/cpu.cfs_quota_us"), &quota) &&
            ParseInt64(ReadSmallFile(base + dir + "/cpu.cfs_period_us"), &period)) {
          KeepSmaller(QuotaCpus(quota, period), &limit);
        }
      }
    }
  }
  return limit;
}

int ProcessCgroupCpuLimit() {
  return CgroupCpuLimit(ReadSmallFile("/proc/self/cgroup"), "/sys/fs/cgroup");
}

int SetThreads(int threads) {
  if (threads <= 0) {
    // mpirun may have bound this rank to cores of its own (fewer than the machine's): those
    // are its own. Unbound ranks on one machine share its cores.
    // A cgroup quota (a container's --cpus) caps them; ranks in one container share it.
    const int procs = omp_get_num_procs();
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    const int quota = ProcessCgroupCpuLimit();
    if (procs < online) {
      // Bound to cores of its own; the container's quota is still shared by its ranks.
      threads = quota > 0 ? std::min(procs, std::max(1, quota / dist::LocalSize())) : procs;
    } else {
      threads = std::max(1, (quota > 0 ? std::min(procs, quota) : procs) / dist::LocalSize());
    }
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
