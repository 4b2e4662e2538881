// `gpuoffload-agent rules ...` through the real binary: a realistic Suricata-style
// file with supported and unsupported rules, a clean file, help, usage errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "common/proc.h"

using gpo::test::run_proc;

namespace {

const std::string kSample = std::string(RULES_DATA_DIR) + "/suricata_sample.rules";

// 1-based line of the first line containing `needle` in `path`.
int line_of(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::string l;
  for (int n = 1; std::getline(in, l); ++n)
    if (l.find(needle) != std::string::npos) return n;
  return -1;
}

struct TempFile {
  std::string path = "/tmp/gpo-rules-test-" + std::to_string(getpid()) + ".rules";
  explicit TempFile(const std::string& text) { std::ofstream(path) << text; }
  ~TempFile() { unlink(path.c_str()); }
};

}  // namespace

TEST(RulesCli, SampleFileReportsEveryUnsupportedRuleByLineAndKeyword) {
  auto r = run_proc({AGENT_BIN, "rules", "check", kSample});
  EXPECT_EQ(r.exit_code, gpo::cli::kFailure) << r.out;
  struct Want {
    const char* sid;
    const char* message;
  } wants[] = {
      {"sid:2000010", "unsupported protocol 'http'"},    {"sid:2000010", "unsupported keyword 'flow'"},
      {"sid:2000010", "unsupported keyword 'http.user_agent'"}, {"sid:2000010", "unsupported keyword 'startswith'"},
      {"sid:2000011", "unsupported keyword 'offset'"},   {"sid:2000011", "unsupported keyword 'depth'"},
      {"sid:2000011", "unsupported keyword 'pcre'"},     {"sid:2000012", "unsupported keyword 'flowbits'"},
      {"sid:2000013", "unsupported keyword 'threshold'"}, {"sid:2000014", "unsupported keyword 'byte_test'"},
      {"sid:2000015", "unsupported action 'reject'"},    {"sid:2000016", "undefined variable '$UNDEFINED_NET'"},
      {"sid:2000017", "unsupported keyword 'http_uri'"},
  };
  for (auto& w : wants) {
    int line = line_of(kSample, w.sid);
    ASSERT_GT(line, 0) << w.sid;
    std::string prefix = kSample + ":" + std::to_string(line) + ":";
    bool found = false;
    std::istringstream lines(r.out);
    for (std::string l; std::getline(lines, l);)
      found |= l.rfind(prefix, 0) == 0 && l.find(w.message) != std::string::npos;
    EXPECT_TRUE(found) << "missing '" << prefix << "... " << w.message << "' in:\n" << r.out;
  }
  // Supported rules, the commented-out one and ignored keywords raise nothing.
  for (const char* sid : {"sid:2000001", "sid:2000002", "sid:2000003", "sid:2000004", "sid:2000005", "sid:2000099"})
    EXPECT_EQ(r.out.find(kSample + ":" + std::to_string(line_of(kSample, sid)) + ":"), std::string::npos) << sid;
  int continued = line_of(kSample, "two contents");
  EXPECT_EQ(r.out.find(kSample + ":" + std::to_string(continued) + ":"), std::string::npos);
  EXPECT_EQ(r.out.find("'rev'"), std::string::npos);
  EXPECT_EQ(r.out.find("'classtype'"), std::string::npos);
  EXPECT_NE(r.out.find("6 rules loaded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("default drop"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("15 problems"), std::string::npos) << r.out;
}

TEST(RulesCli, CleanFileExitsZeroWithSummary) {
  TempFile f(
      "var NET [198.18.0.0/15, 2001:db8::/32]\n"
      "drop tcp any any -> $NET 23 (msg:\"telnet\"; sid:1;)\n"
      "alert udp any any -> $NET 9999 (content:\"a|00|b\"; content:\"X\"; nocase; sid:2;)\n"
      "default pass\n");
  auto r = run_proc({AGENT_BIN, "rules", "check", f.path, "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("2 rules loaded (0 pass, 1 drop, 1 alert), 2 distinct content patterns, default pass (line 4)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("matcher:"), std::string::npos) << r.out;
}

TEST(RulesCli, MissingDefaultLineIsReportedAsImplicitPass) {
  TempFile f("pass tcp any any -> any 1 (sid:1;)\n");
  auto r = run_proc({AGENT_BIN, "rules", "check", f.path});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("no 'default' line: pass"), std::string::npos) << r.out;
}

TEST(RulesCli, MissingFileIsAUsageError) {
  auto r = run_proc({AGENT_BIN, "rules", "check", "/nonexistent/x.rules"});
  EXPECT_EQ(r.exit_code, gpo::cli::kUsage) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/x.rules"), std::string::npos) << r.out;
}

TEST(RulesCli, HelpShowsAnExampleRule) {
  auto r = run_proc({AGENT_BIN, "rules", "check", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("sid:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("default pass"), std::string::npos) << r.out;
}

TEST(RulesCli, BuiltInDefaultRulesPrintAndCheckClean) {
  auto r = run_proc({AGENT_BIN, "rules", "default"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("default pass"), std::string::npos);
  TempFile f(r.out);
  auto c = run_proc({AGENT_BIN, "rules", "check", f.path});
  EXPECT_EQ(c.exit_code, 0) << c.out;
}
