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
      {"sid:2000010", "skipped: unsupported protocol 'http'"},
      {"sid:2000010", "skipped: unsupported keyword 'http.user_agent'"},
      {"sid:2000011", "skipped: unsupported keyword 'pcre'"},
      {"sid:2000012", "skipped: unsupported keyword 'flowbits'"},
      {"sid:2000013", "skipped: unsupported keyword 'threshold'"},
      {"sid:2000014", "skipped: unsupported keyword 'byte_test'"},
      {"sid:2000015", "skipped: unsupported action 'reject'"},
      {"sid:2000016", "error: undefined variable '$UNDEFINED_NET'"},
      {"sid:2000017", "skipped: unsupported keyword 'http_uri'"},
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
  // flow, offset and depth are supported now: sid 2000011 is skipped for pcre alone.
  EXPECT_EQ(r.out.find("'flow'"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("'offset'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("6 of 14 rules loaded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("default drop"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped 7 unsupported, 1 invalid"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 invalid rule"), std::string::npos) << r.out;  // the undefined variable fails the check
}

TEST(RulesCli, CleanFileExitsZeroWithSummary) {
  TempFile f(
      "var NET [198.18.0.0/15, 2001:db8::/32]\n"
      "drop tcp any any -> $NET 23 (msg:\"telnet\"; sid:1;)\n"
      "alert udp any any -> $NET 9999 (content:\"a|00|b\"; content:\"X\"; nocase; sid:2;)\n"
      "default pass\n");
  auto r = run_proc({AGENT_BIN, "rules", "check", f.path, "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("2 of 2 rules loaded (0 pass, 1 drop, 1 alert), 2 distinct content patterns, default pass (line 4)"),
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

TEST(RulesCli, UnsupportedRulesAreSkippedStrictRefuses) {
  TempFile f(
      "alert http $HOME_NET any -> $EXTERNAL_NET any (msg:\"UA\"; flow:established,to_server; http.user_agent; "
      "content:\"curl/\"; sid:1;)\n"
      "alert tcp $EXTERNAL_NET any -> $HOME_NET 445 (msg:\"SMB\"; flow:established,to_server; content:\"|ff|SMB\"; "
      "offset:4; depth:4; sid:2;)\n"
      "alert udp $HOME_NET any -> any 53 (msg:\"DNS\"; content:\"|07|example|03|com|00|\"; nocase; distance:12; sid:3;)\n"
      "drop tcp $EXTERNAL_NET any -> $HOME_NET 23 (msg:\"telnet\"; flow:to_server; flags:S; sid:4;)\n"
      "alert tcp any any -> any any (msg:\"bits\"; flowbits:isset,x; sid:5;)\n");
  auto r = run_proc({AGENT_BIN, "rules", "check", f.path});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("3 of 5 rules loaded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped 2 unsupported, 0 invalid"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("$HOME_NET = [192.168.0.0/16,10.0.0.0/8,172.16.0.0/12] (default)"), std::string::npos) << r.out;
  auto s = run_proc({AGENT_BIN, "rules", "check", f.path, "--strict"});
  EXPECT_EQ(s.exit_code, gpo::cli::kFailure) << s.out;
  EXPECT_NE(s.out.find("--strict"), std::string::npos) << s.out;
}

TEST(RulesCli, VariablesFromVarConfigAndSuricataYaml) {
  TempFile rules("alert tcp $EXTERNAL_NET any -> $HOME_NET $HTTP_PORTS (sid:1;)\n");
  const std::string yaml = "/tmp/gpo-rules-test-" + std::to_string(getpid()) + ".yaml";
  const std::string toml = "/tmp/gpo-rules-test-" + std::to_string(getpid()) + ".toml";
  std::ofstream(yaml) << "%YAML 1.1\n---\nvars:\n  address-groups:\n    HOME_NET: \"[198.18.0.0/15]\"\n"
                         "    EXTERNAL_NET: \"!$HOME_NET\"\n  port-groups:\n    HTTP_PORTS: \"[80,8080]\"\n";
  std::ofstream(toml) << "[vars]\nHOME_NET = \"[198.19.0.0/16]\"\n";
  auto y = run_proc({AGENT_BIN, "rules", "check", rules.path, "--suricata-yaml", yaml});
  EXPECT_EQ(y.exit_code, 0) << y.out;
  EXPECT_NE(y.out.find("$HOME_NET = [198.18.0.0/15] (suricata.yaml " + yaml + ")"), std::string::npos) << y.out;
  EXPECT_NE(y.out.find("$HTTP_PORTS = [80,8080]"), std::string::npos) << y.out;
  auto c = run_proc({AGENT_BIN, "rules", "check", rules.path, "--suricata-yaml", yaml, "--config", toml});
  EXPECT_NE(c.out.find("$HOME_NET = [198.19.0.0/16] (config " + toml + ")"), std::string::npos) << c.out;
  auto v = run_proc({AGENT_BIN, "rules", "check", rules.path, "--config", toml, "--var", "HOME_NET=10.0.0.0/8"});
  EXPECT_NE(v.out.find("$HOME_NET = 10.0.0.0/8 (--var)"), std::string::npos) << v.out;
  auto bad = run_proc({AGENT_BIN, "rules", "check", rules.path, "--var", "HOME_NET"});
  EXPECT_EQ(bad.exit_code, gpo::cli::kUsage) << bad.out;
  std::ofstream(yaml) << "vars: [unclosed\n";
  auto broken = run_proc({AGENT_BIN, "rules", "check", rules.path, "--suricata-yaml", yaml});
  EXPECT_EQ(broken.exit_code, gpo::cli::kUsage) << broken.out;
  EXPECT_NE(broken.out.find(yaml), std::string::npos) << broken.out;
  unlink(yaml.c_str());
  unlink(toml.c_str());
}

TEST(RulesCli, RunAcceptsAConfigWithAVarsTable) {
  const std::string toml = "/tmp/gpo-rules-run-" + std::to_string(getpid()) + ".toml";
  std::ofstream(toml) << "[run]\nbatch-size = 32\n[vars]\nHOME_NET = [\"198.18.0.0/16\", \"fd00::/8\"]\n";
  auto r = run_proc({AGENT_BIN, "run", "--config", toml, "--print-config"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("batch-size=32"), std::string::npos) << r.out;
  // rules check reads the same table: a TOML array is a list.
  TempFile rules("alert tcp any any -> $HOME_NET any (sid:1;)\n");
  auto c = run_proc({AGENT_BIN, "rules", "check", rules.path, "--config", toml});
  EXPECT_EQ(c.exit_code, 0) << c.out;
  EXPECT_NE(c.out.find("$HOME_NET = [198.18.0.0/16,fd00::/8] (config " + toml + ")"), std::string::npos) << c.out;
  unlink(toml.c_str());
}
