// The planner on the GPU machine: after `calibrate`, a mixed workload run
// through the planner is never more than 5% slower than the better of
// CPU-only and GPU-only (`gpuoffload-bench planner` fails otherwise), and the CUDA
// backend takes batches queued behind a running one together, each completed
// once. Skips without a GPU.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "backend/backend.h"
#include "common/proc.h"

namespace {

// A program of this build, next to this test binary (the build folder travels whole).
std::string built(const char* name) {
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / name).string();
}

TEST(GpuPlanner, MixedWorkloadPlannedNeverSlowerThanTheBetterBackend) {
  std::string why;
  if (gpo::backend::cuda_device_count(&why) < 0) GTEST_SKIP() << "no GPU: " << why;
  const std::string agent = built("gpuoffload-agent"), bench_bin = built("gpuoffload-bench");
  ASSERT_EQ(access(agent.c_str(), X_OK), 0) << agent << " not built";
  ASSERT_EQ(access(bench_bin.c_str(), X_OK), 0) << bench_bin << " not built";
  char dir[] = "/tmp/gpo-gpu-planner-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string profile = std::string(dir) + "/profile.json";
  auto cal = gpo::test::run_proc({agent, "calibrate", "--profile", profile, "--no-progress"}, 300);
  ASSERT_EQ(cal.exit_code, 0) << cal.out;
  auto bench = gpo::test::run_proc({bench_bin, "planner", "--set", "profile=" + profile}, 300);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(bench.exit_code, 0) << "planned slower than the better backend by more than 5%:\n" << bench.out;
  EXPECT_NE(bench.out.find("CPU s saved"), std::string::npos) << bench.out;
}

}  // namespace
