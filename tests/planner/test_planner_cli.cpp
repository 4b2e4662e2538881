// calibrate and plan as a user meets them: the real binary, error paths,
// and the quick modes (seconds on the CPU; GPU columns say why they are empty).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/proc.h"
#include "backend/ops.h"
#include "planner/profile.h"

using gpo::test::run_proc;

namespace {

std::string tmp_path() {
  char path[] = "/tmp/gpo-planner-cli-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  unlink(path);
  return path;
}

}  // namespace

TEST(PlanCli, UnknownOpListsTheOps) {
  auto r = run_proc({AGENT_BIN, "plan", "--op", "rot13", "--size", "4096"});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
  EXPECT_NE(r.out.find("unknown op 'rot13'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sha256"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("aes-256-gcm-encrypt"), std::string::npos) << r.out;
}

TEST(PlanCli, BadSizesAreUsageErrors) {
  EXPECT_EQ(run_proc({AGENT_BIN, "plan", "--op", "sha256", "--size", "0"}).exit_code, gpo::cli::kUsage);
  EXPECT_EQ(run_proc({AGENT_BIN, "plan", "--op", "sha256", "--size", "64", "--batch", "0"}).exit_code,
            gpo::cli::kUsage);
  EXPECT_EQ(run_proc({AGENT_BIN, "plan", "--op", "sha256"}).exit_code, gpo::cli::kUsage);  // --size required
}

TEST(PlanCli, WithoutAProfileSaysDefaults) {
  auto r = run_proc({AGENT_BIN, "plan", "--op", "sha256", "--size", "4096", "--batch", "8", "--profile",
                     "/nonexistent/profile.json"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("sha256 x8 of 4096 B"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(": CPU"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("defaults (no profile)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("planner: no profile (defaults), run calibrate"), std::string::npos) << r.out;
}

TEST(PlanCli, FollowsACalibratedProfileOfThisMachine) {
  // A profile "of this machine" where the GPU wins from 1 MiB x 64.
  gpo::planner::Profile p;
  p.machine = gpo::planner::this_machine(0);
  auto& o = p.ops["sha256"];
  o.gpu_kernel = true;
  for (uint64_t s : {4096, 1 << 20})
    for (uint64_t b : {1, 64}) {
      const double bytes = double(s * b);
      o.points.push_back({s, b, bytes, bytes / 4, 40000 + bytes / 40});
    }
  const std::string path = tmp_path();
  gpo::planner::save_profile(p, path);
  auto big = run_proc({AGENT_BIN, "plan", "--op", "sha256", "--size", "1048576", "--batch", "64", "--profile", path,
                       "--assume-gpu", "--json"});
  auto small = run_proc({AGENT_BIN, "plan", "--op", "sha256", "--size", "4096", "--batch", "1", "--profile", path,
                         "--assume-gpu", "--json"});
  auto queued = run_proc({AGENT_BIN, "plan", "--op", "sha256", "--size", "1048576", "--batch", "64", "--profile",
                          path, "--assume-gpu", "--gpu-queued-us", "100000"});
  unlink(path.c_str());
  ASSERT_EQ(big.exit_code, 0) << big.out;
  auto jb = nlohmann::json::parse(big.out.substr(big.out.find('{')));
  EXPECT_EQ(jb["decision"], "gpu") << big.out;
  EXPECT_EQ(jb["source"], "profile") << big.out;
  EXPECT_DOUBLE_EQ(jb["gpu"]["cost_ns"].get<double>(), 40000 + double(64 << 20) / 40);
  ASSERT_EQ(small.exit_code, 0) << small.out;
  EXPECT_EQ(nlohmann::json::parse(small.out.substr(small.out.find('{')))["decision"], "cpu") << small.out;
  EXPECT_EQ(queued.exit_code, 0) << queued.out;
  EXPECT_NE(queued.out.find("CPU (GPU backlog)"), std::string::npos) << queued.out;
}

TEST(CalibrateCli, UnknownOpAndUnwritableProfile) {
  auto r = run_proc({AGENT_BIN, "calibrate", "--quick", "--op", "rot13", "--no-write"});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
  EXPECT_NE(r.out.find("unknown op 'rot13'"), std::string::npos) << r.out;
  r = run_proc({AGENT_BIN, "calibrate", "--quick", "--op", "sha256", "--profile", "/proc/gpo-no/profile.json"});
  EXPECT_EQ(r.exit_code, gpo::cli::kFailure) << r.out;
  EXPECT_NE(r.out.find("--profile PATH"), std::string::npos) << r.out;
}

TEST(CalibrateCli, QuickWritesAProfileThePlannerUses) {
  const std::string path = tmp_path();
  auto r = run_proc({AGENT_BIN, "calibrate", "--quick", "--profile", path}, 120);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("Crossover"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("calibrate ["), std::string::npos) << r.out;  // progress on stderr
  auto l = gpo::planner::load_profile(path, gpo::planner::this_machine(0));
  ASSERT_TRUE(l.profile) << l.why;
  // Every op of the registry was measured on the CPU, and classification too.
  for (const auto& info : gpo::backend::ops()) {
    const std::string op(info.name);
    ASSERT_TRUE(l.profile->ops.count(op)) << op;
    const auto& pts = l.profile->ops.at(op).points;
    ASSERT_FALSE(pts.empty()) << op;
    for (const auto& pt : pts) {
      EXPECT_GT(pt.cpu_ns, 0) << op;
      EXPECT_GT(pt.cpu1_ns, 0) << op;
    }
  }
  EXPECT_FALSE(l.profile->classify.points.empty());
  EXPECT_GT(l.profile->classify_rules, 0u);
  auto plan = run_proc({AGENT_BIN, "plan", "--op", "sha256", "--size", "4096", "--profile", path});
  unlink(path.c_str());
  EXPECT_EQ(plan.exit_code, 0) << plan.out;
  EXPECT_NE(plan.out.find("predictions from: profile"), std::string::npos) << plan.out;
}
