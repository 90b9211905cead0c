#include "twotower/core/parallel.h"

#include <gtest/gtest.h>
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "testing/temp_dir.h"

namespace twotower {
namespace {

// These tests are about sharing itself: the pool must not run their tasks alone because another
// test process is busy beside them (the load reading, tested below, is off).
class ParallelForTest : public ::testing::Test {
 protected:
  void SetUp() override { SetLoadFileForTesting(nullptr, 0); }
};

// Every index runs exactly once, with a slot in range that no other running body holds.
void CheckEveryIndexOnce(int64_t n, int threads) {
  std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
  std::vector<std::atomic<bool>> busy(static_cast<size_t>(std::max(threads, 1)));
  std::atomic<int> bad_slot{0}, shared_slot{0};
  auto body = [&](int64_t i, int slot) {
    if (slot < 0 || slot >= std::max(threads, 1)) {
      ++bad_slot;
      return;
    }
    if (busy[static_cast<size_t>(slot)].exchange(true)) ++shared_slot;
    runs[static_cast<size_t>(i)].fetch_add(1);
    volatile double x = 0;  // a little work, so that bodies overlap
    for (int k = 0; k < 200; ++k) x = x + k * 0.5;
    busy[static_cast<size_t>(slot)].store(false);
  };
  ParallelFor(n, threads, IndexBody(body));
  EXPECT_EQ(bad_slot.load(), 0);
  EXPECT_EQ(shared_slot.load(), 0) << "two bodies ran with one slot at once";
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(runs[static_cast<size_t>(i)].load(), 1) << "index " << i << " of " << n;
  }
}

TEST_F(ParallelForTest, RunsEveryIndexOnceOnDistinctSlots) {
  for (int threads : {1, 2, 3, 4}) {
    for (int64_t n : {0, 1, 2, 7, 1000, 20000}) CheckEveryIndexOnce(n, threads);
  }
}

TEST_F(ParallelForTest, ManyTasksInARowStayCorrect) {
  // Tasks a few microseconds apart, as a training step posts them: the generation handshake
  // between caller and workers is exercised thousands of times.
  std::vector<int64_t> sums(3000);
  for (size_t t = 0; t < sums.size(); ++t) {
    std::atomic<int64_t> sum{0};
    auto body = [&](int64_t i, int) { sum.fetch_add(i + 1); };
    ParallelFor(static_cast<int64_t>(t % 5), 2, IndexBody(body));
    sums[t] = sum.load();
  }
  for (size_t t = 0; t < sums.size(); ++t) {
    const int64_t n = static_cast<int64_t>(t % 5);
    ASSERT_EQ(sums[t], n * (n + 1) / 2) << "task " << t;
  }
}

TEST_F(ParallelForTest, OneThreadRunsInOrderOnTheCaller) {
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<int64_t> order;
  bool elsewhere = false;
  auto body = [&](int64_t i, int slot) {
    order.push_back(i);
    elsewhere |= std::this_thread::get_id() != caller || slot != 0;
  };
  ParallelFor(50, 1, IndexBody(body));
  ASSERT_EQ(order.size(), 50u);
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
  EXPECT_FALSE(elsewhere);
}

TEST_F(ParallelForTest, NestedCallsRunSeriallyOnTheBodysThread) {
  std::atomic<int> wrong{0}, inner_runs{0};
  auto outer = [&](int64_t, int) {
    const std::thread::id me = std::this_thread::get_id();
    int64_t expected = 0;
    auto inner = [&](int64_t j, int slot) {
      if (std::this_thread::get_id() != me || slot != 0 || j != expected++) ++wrong;
      ++inner_runs;
    };
    ParallelFor(10, 4, IndexBody(inner));
  };
  ParallelFor(8, 2, IndexBody(outer));
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(inner_runs.load(), 80);
}

TEST_F(ParallelForTest, BodiesRunWithOneOpenMpThreadAndTheCallersCountIsKept) {
  // Eigen and any OpenMP code inside a body stay on the body's thread.
  const int before = omp_get_max_threads();
  omp_set_num_threads(3);
  std::atomic<int> wider{0};
  auto body = [&](int64_t, int) {
    if (omp_get_max_threads() != 1) ++wider;
  };
  ParallelFor(100, 2, IndexBody(body));
  EXPECT_EQ(wider.load(), 0);
  EXPECT_EQ(omp_get_max_threads(), 3);
  omp_set_num_threads(before);
}

TEST_F(ParallelForTest, TheLowestThrowingIndexIsRethrownAndThePoolStaysUsable) {
  auto body = [](int64_t i, int) {
    if (i == 3) throw std::runtime_error("index 3");
  };
  // Index 3 is claimed before any later index can fail (nothing else throws).
  try {
    ParallelFor(100, 2, IndexBody(body));
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "index 3");
  }
  CheckEveryIndexOnce(500, 2);
}

TEST_F(ParallelForTest, TwoCallersAtOnceBothFinish) {
  // One of them gets the pool; the other runs its indices itself.
  std::atomic<int64_t> a{0}, b{0};
  auto add_a = [&](int64_t i, int) { a.fetch_add(i); };
  auto add_b = [&](int64_t i, int) { b.fetch_add(i); };
  std::thread other([&] {
    for (int r = 0; r < 200; ++r) ParallelFor(1000, 2, IndexBody(add_b));
  });
  for (int r = 0; r < 200; ++r) ParallelFor(1000, 2, IndexBody(add_a));
  other.join();
  EXPECT_EQ(a.load(), 200 * 999 * 1000 / 2);
  EXPECT_EQ(b.load(), 200 * 999 * 1000 / 2);
}

TEST_F(ParallelForTest, TheCallerDoesNotWaitForAWorkerThatIsNotRunning) {
  // A worker is kept away from its CPU: the first index it claims blocks until the test lets it
  // go. Meanwhile the caller must run every other index of that task, and of later tasks, by
  // itself: it never waits for an index that nobody has started. (The task that the blocked
  // worker holds an index of is finished only when it is let go.)
  std::atomic<bool> release{false};
  std::atomic<int> blocked{0};
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int64_t> by_caller{0};
  auto body = [&](int64_t, int) {
    if (std::this_thread::get_id() != caller) {
      if (blocked.fetch_add(1) == 0) {
        while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      return;
    }
    by_caller.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  };
  std::thread letgo([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    release.store(true);
  });
  ParallelFor(200, 2, IndexBody(body));
  letgo.join();
  // The worker took at most one index (it stayed blocked until release); the caller ran the
  // others (199, or 200 if the worker arrived after the caller had claimed everything).
  EXPECT_LE(blocked.load(), 1);
  EXPECT_GE(by_caller.load(), 199);
}

// After sharing was turned off (Learn's back-off), a short task runs on the caller alone; a long
// one (past about 2 ms) hands its remaining indices to the workers and sharing is back on.
// Every index still runs exactly once.
TEST_F(ParallelForTest, ALongTaskStartedAloneSharesTheRest) {
  std::vector<std::atomic<int>> runs(2000);
  std::atomic<int64_t> by_workers{0};
  const std::thread::id caller = std::this_thread::get_id();
  auto body = [&](int64_t i, int) {
    runs[static_cast<size_t>(i)].fetch_add(1);
    if (std::this_thread::get_id() != caller) by_workers.fetch_add(1);
    // Sleeping, not spinning: a worker gets its CPU even on a loaded machine.
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  };
  auto quick = [&](int64_t i, int) {
    runs[static_cast<size_t>(i)].fetch_add(1);
    if (std::this_thread::get_id() != caller) by_workers.fetch_add(1);
  };
  StartAloneForTesting(2);
  const ParallelStats before = GetParallelStats();
  ParallelFor(50, 2, IndexBody(quick));  // well under 2 ms: alone
  EXPECT_EQ(by_workers.load(), 0);
  EXPECT_EQ(GetParallelStats().serial_tasks, before.serial_tasks + 1);
  ParallelFor(2000, 2, IndexBody(body));  // 2000 x 100 us: shared after the first 2 ms
  for (size_t i = 0; i < runs.size(); ++i) {
    ASSERT_EQ(runs[i].load(), i < 50 ? 2 : 1) << "index " << i;
  }
  EXPECT_GT(by_workers.load(), 0);
  const ParallelStats after = GetParallelStats();
  EXPECT_EQ(after.serial_tasks, before.serial_tasks + 2);
  EXPECT_GT(after.indices_by_workers, before.indices_by_workers);
}

// The first task of a process is shared too: a worker made for it takes part. (Each worker once
// read the published generation itself, after starting; usually the task it was made for was
// published by then, and it sat that task out: a first long task, such as an HNSW build from
// Python, ran on one core.) In a child process, whose pool starts empty (pthread_atfork).
TEST_F(ParallelForTest, TheFirstTaskOfAProcessIsShared) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    SetLoadFileForTesting(nullptr, 0);  // the child's pool is a new one
    std::atomic<int64_t> by_others{0};
    const std::thread::id caller = std::this_thread::get_id();
    auto body = [&](int64_t, int) {
      if (std::this_thread::get_id() != caller) by_others.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    };
    ParallelFor(400, 2, IndexBody(body));  // 200 ms on one thread
    _exit(by_others.load() > 0 && GetParallelStats().tasks == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "no worker took part in the first task";
}

TEST(ParallelBlocksTest, CoversTheRangeInFixedBlocks) {
  for (int threads : {1, 2}) {
    std::vector<std::atomic<int>> hits(1001);
    std::atomic<int> bad{0};
    ParallelBlocks(1001, 64, threads, [&](int64_t b, int64_t e) {
      if (b % 64 != 0 || e - b > 64 || (e - b < 64 && e != 1001)) ++bad;
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    });
    EXPECT_EQ(bad.load(), 0);
    for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

TEST_F(ParallelForTest, RefusesMoreThanTwoToThe31Indices) {
  auto body = [](int64_t, int) {};
  EXPECT_THROW(ParallelFor(int64_t{1} << 31, 2, IndexBody(body)), std::length_error);
  EXPECT_THROW(ParallelFor(-1, 2, IndexBody(body)), std::length_error);
}

// The load reading (parallel.h): while the machine's runnable threads, less the pool's own,
// leave fewer than two CPUs free, a task runs on the caller alone; when the load goes away,
// tasks are shared again. The count comes from a file in /proc/loadavg's format.
TEST(ParallelLoadTest, TasksRunAloneWhileOtherProcessesHoldTheCpusAndShareWhenTheyLeave) {
  testing::TempDir dir;
  const std::string file = dir.Write("loadavg", "2.00 1.50 1.00 1000/2000 4242\n");
  SetLoadFileForTesting(file.c_str(), 2);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int64_t> elsewhere{0}, runs{0};
  auto body = [&](int64_t, int slot) {
    if (std::this_thread::get_id() != caller || slot != 0) elsewhere.fetch_add(1);
    runs.fetch_add(1);
  };
  StartAloneForTesting(0);  // no back-off left from anything before
  // Each task is a few microseconds; one that the OS preempted for over 2 ms (a busy test
  // beside this one) shares its rest, as it should: such a round is tried again, up to 5 times.
  bool alone = false;
  ParallelStats loaded;
  for (int round = 0; round < 5 && !alone; ++round) {
    const ParallelStats before = GetParallelStats();
    elsewhere = 0;
    runs = 0;
    for (int t = 0; t < 20; ++t) ParallelFor(50, 2, IndexBody(body));
    loaded = GetParallelStats();
    EXPECT_EQ(runs.load(), 20 * 50);
    EXPECT_EQ(loaded.load_limited_tasks, before.load_limited_tasks + 20);
    alone = elsewhere.load() == 0 && loaded.tasks == before.tasks;
  }
  EXPECT_TRUE(alone) << "a worker ran indices while the CPUs were taken, in 5 rounds of 20 tasks";

  // The others leave: only this process's threads are runnable. Within a few samples (1 ms
  // apart) tasks are shared again.
  dir.Write("loadavg", "2.00 1.50 1.00 1/2000 4242\n");
  StartAloneForTesting(0);
  for (int t = 0; t < 2000 && GetParallelStats().tasks == loaded.tasks; ++t) {
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    ParallelFor(50, 2, IndexBody(body));
  }
  const ParallelStats after = GetParallelStats();
  EXPECT_GT(after.tasks, loaded.tasks) << "tasks were not shared again after the load left";
  EXPECT_LT(after.load_limited_tasks - loaded.load_limited_tasks, 200u);
  SetLoadFileForTesting(nullptr, 0);
}

// A long task under load starts alone and, past about 2 ms, shares what is left: an index
// build of seconds must not run on one core because a small process was busy when it began.
TEST(ParallelLoadTest, ALongTaskUnderLoadSharesItsRest) {
  testing::TempDir dir;
  const std::string file = dir.Write("loadavg", "2.00 1.50 1.00 1000/2000 4242\n");
  SetLoadFileForTesting(file.c_str(), 2);
  StartAloneForTesting(0);
  std::vector<std::atomic<int>> runs(2000);
  std::atomic<int64_t> by_workers{0};
  const std::thread::id caller = std::this_thread::get_id();
  auto body = [&](int64_t i, int) {
    runs[static_cast<size_t>(i)].fetch_add(1);
    if (std::this_thread::get_id() != caller) by_workers.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::microseconds(100));  // a worker gets its CPU
  };
  const ParallelStats before = GetParallelStats();
  ParallelFor(2000, 2, IndexBody(body));
  for (size_t i = 0; i < runs.size(); ++i) ASSERT_EQ(runs[i].load(), 1) << "index " << i;
  EXPECT_GT(by_workers.load(), 0);
  EXPECT_EQ(GetParallelStats().load_limited_tasks, before.load_limited_tasks + 1);
  SetLoadFileForTesting(nullptr, 0);
}

// A file not in proc(5)'s format turns the reading off: tasks are shared as before.
TEST(ParallelLoadTest, AnUnreadableCountTurnsTheReadingOff) {
  testing::TempDir dir;
  for (const char* text : {"", "garbage\n", "1.0 1.0 1.0 x/10 1\n", "1.0 1.0 1.0 7\n"}) {
    const std::string file = dir.Write("loadavg", text);
    SetLoadFileForTesting(file.c_str(), 2);
    const ParallelStats before = GetParallelStats();
    std::atomic<int64_t> runs{0};
    auto body = [&](int64_t, int) { runs.fetch_add(1); };
    for (int t = 0; t < 5; ++t) ParallelFor(100, 2, IndexBody(body));
    EXPECT_EQ(runs.load(), 500);
    EXPECT_EQ(GetParallelStats().load_limited_tasks, before.load_limited_tasks) << text;
  }
  SetLoadFileForTesting(nullptr, 0);
}

}  // namespace
}  // namespace twotower
