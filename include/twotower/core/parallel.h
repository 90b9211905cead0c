// Work sharing that degrades gracefully when the CPU is shared (issue 28, "no collapse under
// contention").
//
// OpenMP's parallel regions hand every thread a fixed share and end in a barrier: when another
// process keeps a core busy, the operating system deschedules one of the team's threads and the
// others wait for it (libgomp spins while it waits, taking the core it needs). Training the lab
// with two threads beside one busy process took 2x longer than with one thread.
//
// ParallelFor shares work by claiming instead: indices are taken one at a time from a shared
// counter by the calling thread and by pool workers that are running. A worker the OS has
// descheduled claims nothing, the caller runs whatever nobody has claimed, and the caller waits
// only for indices that other threads have started, blocking in the kernel (futex) after a short
// spin. Idle workers spin briefly for the next task (a training step posts one every few tens of
// microseconds), yielding the CPU while they spin, and stop spinning while they keep arriving
// too late to claim anything, which is what happens under contention. A worker descheduled in
// the middle of an index can still hold the caller for a scheduler time slice: the caller keeps
// a running estimate of what sharing saves (its own time plus the workers' CPU time, against the
// task's wall time) and runs tasks alone for a while, with exponential back-off, when sharing
// loses (parallel.cc, Learn). The caller also reads, every millisecond, how many threads the
// whole machine has running or ready to run (/proc/loadavg, proc(5)); less its own, that is what
// other processes demand, and a task is shared with at most the CPUs they leave free (at least
// the caller: beside one busy process on 2 cores a task runs as with one thread; parallel.cc,
// LoadMonitor). A task run alone that is still going after about 2 ms (a scheduler time slice)
// shares its remaining indices: an estimate learned from small tasks does not hold a long one
// (an index build of seconds) to one core.
//
// Which thread runs an index never changes a result when bodies write disjoint outputs and sums
// that cross indices are kept per index and added in index order by the caller, as every caller
// in twotower does except HNSW's concurrent inserts (hnswlib's graph depends on their timing).
#ifndef TWOTOWER_CORE_PARALLEL_H_
#define TWOTOWER_CORE_PARALLEL_H_

#include <cstdint>
#include <type_traits>
#include <utility>

namespace twotower {

// A non-owning reference to a callable `void(int64_t index, int slot)`: no allocation.
class IndexBody {
 public:
  template <typename F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, IndexBody>)
      IndexBody(F& f)  // NOLINT(google-explicit-constructor): built at the call site only
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, int64_t i, int slot) { (*static_cast<F*>(o))(i, slot); }) {}
  void operator()(int64_t index, int slot) const { call_(object_, index, slot); }

 private:
  void* object_;
  void (*call_)(void*, int64_t, int);
};

// Runs body(i, slot) once for every i in [0, n), on the calling thread and on up to
// threads - 1 pool workers (threads <= 0: omp_get_max_threads(), the count core/threads.h set).
// `slot` is in [0, threads): the caller is slot 0, and no two bodies of this call run with the
// same slot at the same time, so a body may use per-slot scratch space owned by this call (a
// nested or concurrent serial call runs its bodies with slot 0 too). Bodies must not fork().
// Runs serially, in index order, with slot 0 when n <= 1, threads is 1, the call is nested in
// another ParallelFor body or an OpenMP region, or another thread is using the pool.
// Errors: the exception of the lowest index that threw is rethrown to the caller after every
// claimed index has finished; indices not claimed by then are not run.
// n: at most 2^31 - 1 (std::length_error otherwise).
void ParallelFor(int64_t n, int threads, IndexBody body);

// Runs a() and b(), concurrently when a pool worker is free to take b (ParallelFor with two
// indices); b runs on the caller after a otherwise. Exceptions as ParallelFor.
template <typename A, typename B>
void ParallelInvoke(int threads, A&& a, B&& b) {
  auto body = [&](int64_t i, int) {
    if (i == 0) {
      a();
    } else {
      b();
    }
  };
  ParallelFor(2, threads, IndexBody(body));
}

// Runs body(begin, end) for the consecutive blocks [begin, end) of [0, n), each `block` long
// (the last one shorter), through ParallelFor. The blocks do not depend on the thread count, so
// neither does a result that is computed block by block (a matrix product split by output rows
// gives the same bits as the whole one: Eigen's single-threaded depth blocking depends only on
// the depth and the cache sizes).
template <typename F>
void ParallelBlocks(int64_t n, int64_t block, int threads, const F& body) {
  if (n <= 0) return;
  const int64_t blocks = (n + block - 1) / block;
  auto each = [&](int64_t b, int) { body(b * block, b + 1 == blocks ? n : (b + 1) * block); };
  ParallelFor(blocks, threads, IndexBody(each));
}

// Rows per block for matrix products split by ParallelBlocks: a 128-row block of a 128-wide
// layer is about 4 MFLOP, tens of microseconds, well above the cost of a claim.
inline constexpr int64_t kProductRows = 128;

// What the pool has done since the process started: for tests and benchmarks.
struct ParallelStats {
  uint64_t tasks = 0;               // tasks shared with the workers
  uint64_t indices_by_workers = 0;  // indices of those that workers ran
  uint64_t serial_tasks = 0;        // tasks run by the caller alone because sharing did not pay
  uint64_t load_limited_tasks = 0;  // tasks run by the caller alone: other processes held the
                                    // other CPUs
};
ParallelStats GetParallelStats();

// TWOTOWER_LOAD_AWARE: unset, empty or "1" (the default) share tasks with the CPUs that other
// processes leave free (above); "0" shares them with every thread asked for, whatever the load
// (as before this reading existed; for benchmarks). Returns whether the reading is on; throws Error
// naming the variable and its values for anything else. Read once, when the pool starts.
bool LoadAware();

// Tests: the next `tasks` shared tasks start alone, as after a losing estimate (Learn).
void StartAloneForTesting(int64_t tasks);

// Tests: the pool reads the machine's runnable-thread count from `path` (a file in
// /proc/loadavg's format) and takes the machine to have `cpus` CPUs, from the next task on;
// path nullptr turns the load reading off (tests of sharing itself, which another test process
// beside them must not turn into serial runs).
void SetLoadFileForTesting(const char* path, int cpus);

}  // namespace twotower

#endif  // TWOTOWER_CORE_PARALLEL_H_
