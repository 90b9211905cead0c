#include "twotower/core/threads.h"

#include <gtest/gtest.h>

#include <string>

#include "testing/temp_dir.h"

namespace twotower {
namespace {

using testing::TempDir;

// Quotas written by hand in the kernel's formats (cgroups(7); the kernel's
// Documentation/admin-guide/cgroup-v2.rst "cpu.max", and sched-bwc.rst for v1).
TEST(CgroupCpuLimitTest, ReadsCgroupV2CpuMaxRoundingUp) {
  TempDir dir;
  const std::string root = dir.path().string();
  dir.Write("app/job/cpu.max", "150000 100000\n");  // --cpus 1.5
  EXPECT_EQ(CgroupCpuLimit("0::/app/job\n", root), 2);
  dir.Write("app/job/cpu.max", "100000 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/app/job\n", root), 1);
  dir.Write("app/job/cpu.max", "max 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/app/job\n", root), 0);
  // An ancestor's smaller quota holds for its descendants.
  dir.Write("app/cpu.max", "300000 100000\n");
  dir.Write("app/job/cpu.max", "max 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/app/job\n", root), 3);
  dir.Write("app/job/cpu.max", "500000 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/app/job\n", root), 3);
}

TEST(CgroupCpuLimitTest, ReadsCgroupV2InAContainerWhoseCgroupIsItsRoot) {
  // With a cgroup namespace the path is "/" and the container's own files are at the root.
  TempDir dir;
  dir.Write("cpu.max", "250000 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/\n", dir.path().string()), 3);
  // Without one, the host's path does not exist inside: the root's files still count.
  EXPECT_EQ(CgroupCpuLimit("0::/system.slice/docker-1234.scope\n", dir.path().string()), 3);
}

TEST(CgroupCpuLimitTest, ReadsCgroupV1QuotaAndPeriodOfTheCpuHierarchy) {
  TempDir dir;
  const std::string root = dir.path().string();
  const std::string self =
      "12:memory:/job\n4:cpu,cpuacct:/job\n3:cpuset:/\n1:name=systemd:/job\n0::/job\n";
  dir.Write("cpu,cpuacct/job/cpu.cfs_quota_us", "50000\n");
  dir.Write("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(CgroupCpuLimit(self, root), 1);
  dir.Write("cpu,cpuacct/job/cpu.cfs_quota_us", "-1\n");
  EXPECT_EQ(CgroupCpuLimit(self, root), 0);
  // Mounted as "cpu" (Debian's hybrid layout names each controller alone).
  TempDir other;
  other.Write("cpu/job/cpu.cfs_quota_us", "400000\n");
  other.Write("cpu/job/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(CgroupCpuLimit("1:cpu:/job\n", other.path().string()), 4);
  // Another controller's hierarchy is not the cpu one.
  EXPECT_EQ(CgroupCpuLimit("1:cpuacct:/job\n", other.path().string()), 0);
}

TEST(CgroupCpuLimitTest, NothingReadableMeansNoQuota) {
  TempDir dir;
  const std::string root = dir.path().string();
  EXPECT_EQ(CgroupCpuLimit("", root), 0);
  EXPECT_EQ(CgroupCpuLimit("0::/none\n", root), 0);
  EXPECT_EQ(CgroupCpuLimit("garbage without colons\n", root), 0);
  dir.Write("x/cpu.max", "lots 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/x\n", root), 0);
  dir.Write("x/cpu.max", "100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/x\n", root), 0);
  dir.Write("x/cpu.max", "0 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/x\n", root), 0);
}

}  // namespace
}  // namespace twotower
