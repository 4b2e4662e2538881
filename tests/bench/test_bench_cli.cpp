// gpuoffload-bench as a user meets it: the real binary, its help and error
// paths, a quick suite with the CPU reference of the same run; and the
// agent's old `bench` command, which points to it.
#include <gtest/gtest.h>
#include <sched.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "common/proc.h"

using gpo::test::run_proc;

TEST(BenchCli, HelpListsEverySuiteWithItsLine) {
  auto list = run_proc({BENCH_BIN, "--list"});
  ASSERT_EQ(list.exit_code, 0) << list.out;
  auto help = run_proc({BENCH_BIN, "--help"});
  ASSERT_EQ(help.exit_code, 0) << help.out;
  std::istringstream lines(list.out);
  int suites = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    ++suites;
    const std::string name = line.substr(0, line.find(' '));
    const std::string what = line.substr(line.find_first_not_of(' ', name.size()));
    EXPECT_NE(help.out.find("  " + name + " "), std::string::npos) << name << "\n" << help.out;
    EXPECT_NE(help.out.find(what), std::string::npos) << what << "\n" << help.out;
  }
  EXPECT_GE(suites, 7) << list.out;  // the CPU-capable suites are built without CUDA too
  EXPECT_NE(help.out.find("--set"), std::string::npos) << help.out;
}

TEST(BenchCli, ListAndUnknownSuite) {
  auto r = run_proc({BENCH_BIN, "--list"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("crypto"), std::string::npos) << r.out;
  r = run_proc({BENCH_BIN, "no-such-suite"});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
  EXPECT_NE(r.out.find("no suite 'no-such-suite'"), std::string::npos) << r.out;
  r = run_proc({BENCH_BIN, "--quick", "--set", "novalue", "crypto"});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
}

TEST(BenchCli, QuickCryptoPrintsTheCpuReference) {
  auto r = run_proc({BENCH_BIN, "--quick", "--json", "crypto"}, 120);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  ASSERT_EQ(j["suites"].size(), 1u);
  ASSERT_EQ(j["suites"][0]["tables"].size(), 2u);
  const auto& t = j["suites"][0]["tables"][0];
  EXPECT_EQ(t["columns"][3], "CPU 1 core");
  ASSERT_GE(t["rows"].size(), 6u);
  const bool gpu = j["host"]["gpus"].get<int>() > 0;
  for (const auto& row : t["rows"]) {
    EXPECT_GT(std::stod(row[3].get<std::string>()), 0) << row;  // OpenSSL measured in this run
    EXPECT_GT(std::stod(row[4].get<std::string>()), 0) << row;
    if (!gpu) {
      EXPECT_EQ(row[1], "no GPU") << row;
    }
  }
  // The CPU reference: the backend and openssl speed's loop, both measured in this run.
  const auto& ref = j["suites"][0]["tables"][1];
  EXPECT_EQ(ref["columns"][2], "speed loop 1 core");
  EXPECT_EQ(ref["columns"][5].get<std::string>().rfind("per-message loop", 0), 0u) << ref["columns"];
  ASSERT_GE(ref["rows"].size(), 5u);
  for (const auto& row : ref["rows"]) {
    for (int c : {1, 2, 3, 4, 9, 10}) EXPECT_GT(std::stod(row[c].get<std::string>()), 0) << row;
    // A cipher's per-message loop is measured; the others' speed loop already is one.
    const bool cipher = row[0].get<std::string>().rfind("aes-", 0) == 0;
    if (cipher) EXPECT_GT(std::stod(row[5].get<std::string>()), 0) << row;
    else EXPECT_EQ(row[5], "=") << row;
    EXPECT_GT(std::stod(row[6].get<std::string>()), 0) << row;  // backend / per-message loop, "NN%"
  }
}

TEST(BenchCli, CpuPoolGivesThePoolAgainstOpenSslsLoops) {
  auto r = run_proc({BENCH_BIN, "--quick", "--json", "cpu-pool", "--set", "threads=2", "--set", "rounds=2"}, 120);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  const auto& t = j["suites"][0]["tables"][0];
  ASSERT_EQ(t["columns"][3], "per message");
  ASSERT_EQ(t["columns"][10], "pool / per message");
  ASSERT_EQ(t["rows"].size(), 1u);  // --quick: GCM 4 KiB on 2 threads
  const auto& row = t["rows"][0];
  for (int c = 2; c <= 10; ++c) EXPECT_GT(std::stod(row[c].get<std::string>()), 0) << c << ": " << row;
  // Two rounds: the ratios come with the lowest and highest of the rounds.
  EXPECT_NE(row[10].get<std::string>().find("% ("), std::string::npos) << row;
}

TEST(BenchCli, HandoffTimesAWokenThread) {
  auto r = run_proc({BENCH_BIN, "--quick", "--json", "handoff", "--set", "samples=20", "--set", "idle_us=100"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  const auto& t = j["suites"][0]["tables"][0];
  const auto& rows = t["rows"];
  cpu_set_t mask;  // the suite picks its CPUs from the mask it may run on
  ASSERT_EQ(sched_getaffinity(0, sizeof mask, &mask), 0);
  const bool several = CPU_COUNT(&mask) > 1;
  ASSERT_EQ(rows.size(), several ? 3u : 1u) << rows;
  for (const auto& row : rows) {
    EXPECT_EQ(row[1], "100") << row;
    EXPECT_GT(std::stod(row[3].get<std::string>()), 0) << row;  // median, us
    EXPECT_GT(std::stod(row[4].get<std::string>()), 0) << row;  // mean
    EXPECT_GE(std::stod(row[6].get<std::string>()), std::stod(row[3].get<std::string>())) << row;  // p99 >= median
    EXPECT_EQ(row[7], "20") << row;
  }
  EXPECT_EQ(rows[several ? 1 : 0][0], "sleeping, same CPU");
}

TEST(BenchCli, AgentBenchSaysWhereTheBenchmarksWent) {
  auto r = run_proc({AGENT_BIN, "bench", "--quick", "crypto"});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
  EXPECT_NE(r.out.find("run `gpuoffload-bench --quick crypto`"), std::string::npos) << r.out;
  auto help = run_proc({AGENT_BIN, "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.out;
  EXPECT_EQ(help.out.find("bench"), std::string::npos) << "the agent's help still offers bench:\n" << help.out;
}
