// The command line as a user meets it: help that teaches, versions, clear usage errors.
#include <gtest/gtest.h>

#include "cli/commands.h"
#include "common/proc.h"

using gpo::test::run_proc;

TEST(Cli, VersionNamesTheLibraries) {
  auto r = run_proc({AGENT_BIN, "version"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("gpuoffload-agent "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("libbpf 1."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("OpenSSL 3"), std::string::npos) << r.out;
}

TEST(Cli, HelpListsEverySubcommand) {
  auto r = run_proc({AGENT_BIN, "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  for (const char* sub : {"run", "status", "rules", "version"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub << " missing from:\n" << r.out;
}

TEST(Cli, NoSubcommandIsAUsageError) {
  auto r = run_proc({AGENT_BIN});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
}

TEST(Cli, UnknownOptionIsAUsageError) {
  auto r = run_proc({AGENT_BIN, "version", "--no-such-flag"});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
  EXPECT_NE(r.out.find("no-such-flag"), std::string::npos) << r.out;
}
