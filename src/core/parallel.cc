#include "twotower/core/parallel.h"

#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "twotower/core/error.h"
#include "twotower/core/threads.h"

// Written by hand: OpenMP (libgomp) and Eigen's thread pool both share work out in fixed parts
// and end in a barrier, which is what collapses under CPU contention (parallel.h). oneTBB's
// work stealing would do, but Debian's libtbb adds a runtime dependency and a second thread
// pool beside libgomp's for two call sites; this is a counter, a futex and a few workers.

namespace twotower {
namespace {

using Clock = std::chrono::steady_clock;
using CallFn = void (*)(void*, int64_t, int);

constexpr uint32_t kClosed = std::numeric_limits<uint32_t>::max();  // no index can be claimed
constexpr int kMaxWorkers = 255;
// An idle worker spins this long for the next task before it sleeps in the kernel: a training
// step posts tasks a few tens of microseconds apart, and a futex wake-up costs about as much.
constexpr auto kSpin = std::chrono::microseconds(200);
// After this many tasks in a row that a worker reached too late to claim anything (the caller
// had taken every index: the worker was not running), it stops spinning and sleeps at once,
// leaving the CPU to whoever was running instead of it, until it claims an index again.
constexpr int kLateLimit = 4;
// A task that runs alone while sharing is off (Learn) and is still going after this long shares
// what is left: the back-off was learned from small tasks, where a descheduled worker costs more
// than it saves, and must not make a long task (an HNSW build of seconds) run on one core. About
// a scheduler time slice, what the back-off protects against.
constexpr auto kSerialProbe = std::chrono::milliseconds(2);
// How often the caller reads how many threads the machine has ready to run (LoadMonitor).
// Reading /proc/loadavg takes a few microseconds; a training step posts tasks every few tens.
constexpr auto kLoadPeriod = std::chrono::milliseconds(1);

#if defined(__x86_64__) || defined(__i386__)
inline void CpuRelax() { __builtin_ia32_pause(); }
#else
inline void CpuRelax() {}
#endif

thread_local bool t_inside = false;  // a pool worker, or a caller holding the pool

// Whether other processes keep CPUs busy, read from the kernel: the fourth field of
// /proc/loadavg counts the threads that are running or ready to run on the whole machine, now
// (proc(5); the load averages themselves are minutes long). Less our own running threads (the
// caller and the workers that are not asleep), that is the demand of everyone else. Sampled
// every kLoadPeriod by the caller, averaged over the last few samples; the pool then shares a
// task with at most (online CPUs - that demand) threads, at least 1. Beside one busy process on
// a 2-core machine a task runs on the caller alone, as with one thread, instead of waking a
// worker that can only take a CPU from the caller or from the busy process. libgomp's
// OMP_DYNAMIC does the same from the one-minute load average, which follows a change of load
// over minutes. Off (the pool uses `threads`) where the file cannot be read or parsed, or where
// this process may not run on every online CPU (a cpuset or an affinity mask: the machine-wide
// count then says little about our CPUs).
struct LoadMonitor {
  int fd = -1;  // /proc/loadavg, kept open (pread at 0 reads it anew); -1: off
  int cpus = 0;
  Clock::time_point next{};
  double others = 0;  // running average of the other runnable threads
};

// The running/ready count of a /proc/loadavg line ("0.12 0.08 0.01 3/451 12345"), or -1.
int ParseRunnable(const char* text, size_t size) {
  const char* p = text;
  const char* end = text + size;
  for (int field = 0; field < 3; ++field) {
    while (p < end && *p != ' ') ++p;
    while (p < end && *p == ' ') ++p;
  }
  int running = -1;
  const auto [q, ec] = std::from_chars(p, end, running);
  if (ec != std::errc() || q == p || q >= end || *q != '/' || running < 0) return -1;
  return running;
}

// One task at a time. The claim word packs the task's generation (high 32 bits) and the next
// index (low 32 bits), so a worker that read an older task's fields cannot claim in a newer
// one: its compare-and-swap expects the older generation. A caller first closes the word for
// its new generation, then writes the fields, then opens it (all sequentially consistent), so a
// field value read from a newer task implies a claim word that no longer matches.
struct Pool {
  std::mutex use;
  std::vector<std::thread> workers;
  std::atomic<uint32_t> wake{0};  // the newest generation, the workers' futex word
  std::atomic<uint64_t> claim{0};
  std::atomic<uint32_t> n{0};
  std::atomic<int> slots{0};
  std::atomic<void*> object{nullptr};
  std::atomic<CallFn> call{nullptr};
  std::atomic<uint32_t> done{0};  // finished indices of the current task, the caller's futex word
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  int64_t error_index = -1;
  std::exception_ptr error;
  std::atomic<uint64_t> tasks{0}, by_workers{0}, serial_tasks{0}, load_limited_tasks{0};
  std::atomic<int> awake{0};  // workers not asleep in the kernel (LoadMonitor)
  // CPU time the workers spent in the current task's bodies (their own clocks, so time a worker
  // spent descheduled does not count).
  std::atomic<int64_t> worker_cpu_ns{0};
  // The caller's running estimate of what sharing saves per task (below), and the back-off that
  // turns sharing off for a while when it does not pay. Touched by the caller holding `use` only.
  double gain_ns = 0;
  int64_t serial_left = 0, backoff = 1, parallel_streak = 0;
  LoadMonitor load;  // the caller's, under `use`
  bool load_started = false;
};

std::atomic<Pool*> g_pool{nullptr};
std::once_flag g_pool_once;

// After fork() only the calling thread exists in the child: the workers are gone, so the child
// starts a new pool (the old one is left behind; it cannot be taken apart without its threads).
// Its load file's descriptor is closed (the rest cannot be taken apart).
void ForgetPoolInChild() {
  Pool* old = g_pool.exchange(nullptr);
  if (old != nullptr && old->load.fd >= 0) close(old->load.fd);
}

Pool* GetPool() {
  std::call_once(g_pool_once, [] { pthread_atfork(nullptr, nullptr, ForgetPoolInChild); });
  Pool* p = g_pool.load();
  if (p != nullptr) return p;
  // Two first callers at once: one pool wins; the other, which has no workers yet, is dropped.
  // (Not a mutex: a child of fork() could inherit it locked.) Never deleted: workers sleep
  // until exit.
  Pool* fresh = new Pool();
  if (g_pool.compare_exchange_strong(p, fresh)) return fresh;
  delete fresh;
  return p;
}

int64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void RunIndex(Pool* p, CallFn call, void* object, uint32_t i, int slot) {
  try {
    call(object, static_cast<int64_t>(i), slot);
  } catch (...) {
    std::lock_guard<std::mutex> lock(p->error_mu);
    if (p->error_index < 0 || static_cast<int64_t>(i) < p->error_index) {
      p->error_index = static_cast<int64_t>(i);
      p->error = std::current_exception();
    }
    p->failed.store(true);
  }
}

// Claims and runs indices of generation `gen` until none is left; returns how many it ran, or -1
// for a worker whose slot the task does not use (it was not late).
int Work(Pool* p, uint32_t gen, int slot, bool worker) {
  int ran = 0;
  uint64_t c = p->claim.load();
  while (static_cast<uint32_t>(c >> 32) == gen) {
    const uint32_t i = static_cast<uint32_t>(c);
    const uint32_t n = p->n.load();
    const int slots = p->slots.load();
    CallFn call = p->call.load();
    void* object = p->object.load();
    if (slot >= slots) return -1;
    if (i >= n || p->failed.load()) break;
    if (!p->claim.compare_exchange_weak(c, c + 1)) continue;  // c reloaded
    ++ran;
    if (worker) {
      const int64_t t0 = ThreadCpuNs();
      RunIndex(p, call, object, i, slot);
      p->worker_cpu_ns.fetch_add(ThreadCpuNs() - t0);
      p->by_workers.fetch_add(1, std::memory_order_relaxed);
    } else {
      RunIndex(p, call, object, i, slot);
    }
    p->done.fetch_add(1);
    p->done.notify_all();
    c = p->claim.load();
  }
  return ran;
}

// `seen`: the generation published before the worker was made. (Read in the new thread, it
// could already be the task it was made for, which it would then sit out.)
void WorkerLoop(Pool* p, int slot, uint32_t seen) {
  t_inside = true;
  omp_set_num_threads(1);  // Eigen's products inside a body stay on this thread (threads.h)
  int late = 0;
  for (;;) {
    uint32_t gen = p->wake.load();
    if (gen == seen && late < kLateLimit) {
      const auto until = Clock::now() + kSpin;
      for (int round = 1; gen == seen; ++round) {
        for (int k = 0; k < 16; ++k) CpuRelax();
        gen = p->wake.load();
        if (gen != seen) break;
        if (round % 16 == 0) {
          if (Clock::now() > until) break;
          sched_yield();  // lets a thread waiting for this CPU run
        }
      }
    }
    if (gen == seen) {
      p->awake.fetch_sub(1);
      p->wake.wait(seen);
      p->awake.fetch_add(1);
      continue;
    }
    seen = gen;
    // A task that does not use this worker's slot counts as late too: such a worker should
    // sleep, not spin, until a task needs it.
    late = Work(p, gen, slot, true) > 0 ? 0 : late + 1;
  }
}

// Whether sharing pays, learned from the tasks that workers took part in. Had the caller run the
// workers' indices itself, the task would have taken its own busy time plus the CPU time the
// workers spent on them; it took `wall`. On an idle machine sharing saves most of the workers'
// time. On a loaded one a worker that is descheduled in the middle of an index (its CPU taken by
// another process) can hold the caller for a scheduler time slice, milliseconds, which is more
// than many tasks save. A running average of the saving that turns negative turns sharing off for
// `backoff` tasks, doubling (up to 1024) each time it happens again; 64 shared tasks in a row
// without it halve the back-off. The results do not depend on which thread runs an index, so
// this changes speed only.
void Learn(Pool* p, Clock::time_point start, Clock::time_point own_end) {
  const double wall = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  const double own = std::chrono::duration<double, std::nano>(own_end - start).count();
  const double saved = own + static_cast<double>(p->worker_cpu_ns.load()) - wall;
  p->gain_ns += (saved - p->gain_ns) / 8;
  if (p->gain_ns < 0) {
    p->serial_left = p->backoff;
    p->backoff = std::min<int64_t>(2 * p->backoff, 1024);
    p->gain_ns = 0;
    p->parallel_streak = 0;
  } else if (++p->parallel_streak >= 64) {
    p->backoff = std::max<int64_t>(1, p->backoff / 2);
    p->parallel_streak = 0;
  }
}

void StartLoadMonitor(LoadMonitor& m, const char* path, int cpus) {
  if (m.fd >= 0) close(m.fd);
  m = LoadMonitor();
  if (cpus < 2) return;  // nothing to share out
  m.fd = open(path, O_RDONLY | O_CLOEXEC);
  m.cpus = cpus;
}

// The machine's CPUs (online) if this process may run on all of them, else 0. Also 0 under a
// cgroup CPU quota below them (a container's --cpus): the machine-wide count then holds other
// containers' threads, which do not take this one's quota, and the thread count already stops
// at the quota (core/threads.h).
int AllCpusOrZero() {
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t set;
  if (online < 2 || sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  if (CPU_COUNT(&set) < online) return 0;
  const int quota = ProcessCgroupCpuLimit();
  if (quota > 0 && quota < online) return 0;
  return static_cast<int>(online);
}

// The number of threads a task may use now, at most `threads` (LoadMonitor).
int FreeCpus(Pool* p, int threads) {
  if (!p->load_started) {
    p->load_started = true;
    bool on = true;
    try {
      on = LoadAware();
    } catch (const Error&) {
      // A bad value: the front ends refuse it before any work (app::CheckKernelSettings).
    }
    StartLoadMonitor(p->load, "/proc/loadavg", on ? AllCpusOrZero() : 0);
  }
  LoadMonitor& m = p->load;
  if (m.fd < 0) return threads;
  const Clock::time_point now = Clock::now();
  if (now >= m.next) {
    m.next = now + kLoadPeriod;
    char buf[128];
    const ssize_t got = pread(m.fd, buf, sizeof(buf), 0);
    const int running = got > 0 ? ParseRunnable(buf, static_cast<size_t>(got)) : -1;
    if (running < 0) {  // not the format proc(5) states: off for good
      close(m.fd);
      m.fd = -1;
      return threads;
    }
    const int ours = 1 + p->awake.load();
    m.others += (std::max(0, running - ours) - m.others) / 4;
  }
  const long busy = std::lround(m.others);
  return static_cast<int>(std::clamp<long>(m.cpus - busy, 1, threads));
}

void RunSerial(int64_t n, IndexBody body) {
  for (int64_t i = 0; i < n; ++i) body(i, 0);
}

}  // namespace

void ParallelFor(int64_t n, int threads, IndexBody body) {
  if (n < 0 || n > std::numeric_limits<int32_t>::max()) {
    throw std::length_error("ParallelFor: " + std::to_string(n) + " indices (at most 2^31 - 1)");
  }
  if (threads <= 0) threads = omp_get_max_threads();
  threads = static_cast<int>(
      std::min<int64_t>({static_cast<int64_t>(threads), n, int64_t{kMaxWorkers} + 1}));
  if (threads <= 1 || t_inside || omp_in_parallel()) return RunSerial(n, body);
  Pool* p = GetPool();
  std::unique_lock<std::mutex> lock(p->use, std::try_to_lock);
  if (!lock.owns_lock()) return RunSerial(n, body);
  // While the caller runs bodies, Eigen's products in them stay on its thread (threads.h), as
  // they do on the workers.
  t_inside = true;
  struct Leave {
    int omp_threads = omp_get_max_threads();
    ~Leave() {
      t_inside = false;
      omp_set_num_threads(omp_threads);
    }
  } leave;
  omp_set_num_threads(1);
  // Other processes keep all but one CPU busy (LoadMonitor), or sharing is turned off for a
  // while (Learn): the caller runs the task alone, unless it turns out long (kSerialProbe); then
  // the rest of the task is shared (and sharing is back on). A long task's indices are claimed
  // one at a time, so a worker the OS deschedules delays it by one index at most.
  const int free_cpus = FreeCpus(p, threads);
  const bool loaded = free_cpus < 2;
  // A loaded task that turns out long shares its rest with one worker, no more: the CPUs are
  // taken, and one claim at a time bounds what a descheduled worker can hold.
  threads = loaded ? std::min(threads, 2) : free_cpus;
  int64_t first = 0;
  if (loaded || p->serial_left > 0) {
    if (loaded) {
      p->load_limited_tasks.fetch_add(1, std::memory_order_relaxed);
    } else {
      --p->serial_left;
      p->serial_tasks.fetch_add(1, std::memory_order_relaxed);
    }
    const Clock::time_point until = Clock::now() + kSerialProbe;
    while (first < n) {
      body(first++, 0);
      if (first < n && Clock::now() > until) break;
    }
    if (first == n) return;
    p->serial_left = 0;
    p->backoff = 1;
    p->gain_ns = 0;
    p->parallel_streak = 0;
  }
  while (static_cast<int>(p->workers.size()) < threads - 1) {
    const int slot = static_cast<int>(p->workers.size()) + 1;
    p->awake.fetch_add(1);  // counted from now: it is ready to run
    try {
      p->workers.emplace_back(WorkerLoop, p, slot, p->wake.load());
    } catch (const std::system_error&) {
      p->awake.fetch_sub(1);
      break;  // the system has no more threads for us: share with the workers there are
    } catch (...) {
      p->awake.fetch_sub(1);
      throw;
    }
    p->workers.back().detach();
  }
  threads = std::min(threads, static_cast<int>(p->workers.size()) + 1);
  if (threads <= 1) {
    for (int64_t i = first; i < n; ++i) body(i, 0);
    return;
  }
  // Publish the task (see Pool): close, write, open, wake.
  const uint32_t gen = p->wake.load() + 1;
  p->claim.store(static_cast<uint64_t>(gen) << 32 | kClosed);
  p->n.store(static_cast<uint32_t>(n));  // indices first .. n-1 (first > 0 after a probe)
  p->slots.store(threads);
  // IndexBody's fields are private; it is copied into this frame and called through a thunk.
  struct Thunk {
    static void Call(void* o, int64_t i, int slot) { (*static_cast<IndexBody*>(o))(i, slot); }
  };
  p->object.store(&body);
  p->call.store(&Thunk::Call);
  p->done.store(0);
  p->failed.store(false);
  p->error_index = -1;
  p->error = nullptr;
  p->worker_cpu_ns.store(0);
  const Clock::time_point start = Clock::now();
  p->claim.store(static_cast<uint64_t>(gen) << 32 | static_cast<uint64_t>(first));
  p->wake.store(gen);
  p->wake.notify_all();
  p->tasks.fetch_add(1, std::memory_order_relaxed);

  const int own = Work(p, gen, 0, false);
  const Clock::time_point own_end = Clock::now();
  // Close the task: nothing more can be claimed; wait for the claimed indices that are running.
  const uint64_t last = p->claim.exchange(static_cast<uint64_t>(gen) << 32 | kClosed);
  const uint32_t claimed = std::min(static_cast<uint32_t>(last), static_cast<uint32_t>(n)) -
                           static_cast<uint32_t>(first);
  uint32_t d = p->done.load();
  for (int k = 0; d != claimed && k < 256; ++k) {
    CpuRelax();
    d = p->done.load();
  }
  while (d != claimed) {
    p->done.wait(d);
    d = p->done.load();
  }
  if (static_cast<uint32_t>(own) < claimed) Learn(p, start, own_end);
  if (p->error) {
    std::exception_ptr e = p->error;
    p->error = nullptr;
    std::rethrow_exception(e);
  }
}

bool LoadAware() {
  const char* v = std::getenv("TWOTOWER_LOAD_AWARE");
  if (v == nullptr || *v == '\0' || std::string_view(v) == "1") return true;
  if (std::string_view(v) == "0") return false;
  throw Error(std::string("TWOTOWER_LOAD_AWARE: unknown value \"") + v +
              "\" (expected 1, the default: share tasks with the CPUs other processes leave "
              "free; or 0: with every thread asked for)");
}

void SetLoadFileForTesting(const char* path, int cpus) {
  Pool* p = GetPool();
  std::lock_guard<std::mutex> lock(p->use);
  p->load_started = true;
  if (path == nullptr) {
    StartLoadMonitor(p->load, "", 0);
  } else {
    StartLoadMonitor(p->load, path, cpus);
  }
}

void StartAloneForTesting(int64_t tasks) {
  Pool* p = GetPool();
  std::lock_guard<std::mutex> lock(p->use);
  p->serial_left = tasks;
}

ParallelStats GetParallelStats() {
  ParallelStats s;
  if (const Pool* p = g_pool.load(); p != nullptr) {
    s.tasks = p->tasks.load(std::memory_order_relaxed);
    s.indices_by_workers = p->by_workers.load(std::memory_order_relaxed);
    s.serial_tasks = p->serial_tasks.load(std::memory_order_relaxed);
    s.load_limited_tasks = p->load_limited_tasks.load(std::memory_order_relaxed);
  }
  return s;
}

}  // namespace twotower
