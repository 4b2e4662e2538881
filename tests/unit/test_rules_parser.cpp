// Rule file parser: every syntax feature, and every problem with its line and keyword.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include "kernels/classify/tables.h"
#include "rules/default_rules.h"
#include "rules/parser.h"

using namespace gpo::rules;

namespace {

ParseResult ok_parse(const std::string& text) {
  ParseResult r = parse_rules(text);
  for (auto& d : r.problems) ADD_FAILURE() << format_diagnostic("t", d);
  return r;
}

Rule one(const std::string& text) {
  auto r = ok_parse(text);
  EXPECT_EQ(r.set.rules.size(), 1u) << text;
  return r.set.rules.empty() ? Rule{} : r.set.rules[0];
}

// The single problem of `text`; checks its line and keyword.
Diagnostic problem(const std::string& text, uint32_t line, const std::string& keyword) {
  ParseResult r = parse_rules(text);
  EXPECT_EQ(r.problems.size(), 1u) << text;
  if (r.problems.empty()) return {};
  EXPECT_EQ(r.problems[0].line, line) << r.problems[0].message;
  EXPECT_EQ(r.problems[0].keyword, keyword) << r.problems[0].message;
  return r.problems[0];
}

Cidr v4(const char* a, int len, bool neg = false) {
  Cidr c;
  c.family = 4;
  inet_pton(AF_INET, a, c.addr.data());
  c.prefix_len = uint8_t(len);
  c.negated = neg;
  return c;
}

bool same(const Cidr& a, const Cidr& b) {
  return a.family == b.family && a.addr == b.addr && a.prefix_len == b.prefix_len && a.negated == b.negated;
}

}  // namespace

TEST(RulesParser, MinimalRule) {
  Rule r = one("alert tcp any any -> any 80 (msg:\"web\"; sid:7;)");
  EXPECT_EQ(r.action, GPO_ACT_ALERT);
  EXPECT_EQ(r.proto, "tcp");
  EXPECT_EQ(r.proto_mask, gpo::classify::kProtoTcp);
  EXPECT_TRUE(r.src.is_any());
  EXPECT_TRUE(r.sport.is_any());
  EXPECT_TRUE(r.dst.is_any());
  ASSERT_EQ(r.dport.entries.size(), 1u);
  EXPECT_EQ(r.dport.entries[0].lo, 80);
  EXPECT_EQ(r.dport.entries[0].hi, 80);
  EXPECT_EQ(r.msg, "web");
  EXPECT_EQ(r.sid, 7u);
  EXPECT_EQ(r.line, 1u);
  EXPECT_FALSE(r.bidirectional);
}

TEST(RulesParser, ActionsAndProtocols) {
  EXPECT_EQ(one("pass ip any any -> any any (sid:1;)").action, GPO_ACT_PASS);
  EXPECT_EQ(one("drop ip any any -> any any (sid:1;)").action, GPO_ACT_DROP);
  EXPECT_EQ(one("pass ip any any -> any any (sid:1;)").proto_mask, gpo::classify::kProtoAnyIp);
  EXPECT_EQ(one("pass udp any any -> any any (sid:1;)").proto_mask, gpo::classify::kProtoUdp);
  EXPECT_EQ(one("pass icmp any any -> any any (sid:1;)").proto_mask,
            gpo::classify::kProtoIcmp4 | gpo::classify::kProtoIcmp6);
  EXPECT_EQ(one("pass icmpv4 any any -> any any (sid:1;)").proto_mask, gpo::classify::kProtoIcmp4);
  EXPECT_EQ(one("pass icmpv6 any any -> any any (sid:1;)").proto_mask, gpo::classify::kProtoIcmp6);
  auto d = problem("reject tcp any any -> any any (sid:1;)", 1, "reject");
  EXPECT_EQ(d.col, 1u);
  EXPECT_NE(d.message.find("unsupported action 'reject'"), std::string::npos) << d.message;
  d = problem("alert http any any -> any any (sid:1;)", 1, "http");
  EXPECT_EQ(d.col, 7u);
  EXPECT_NE(d.message.find("unsupported protocol 'http'"), std::string::npos);
}

TEST(RulesParser, AddressesAndLists) {
  Rule r = one("drop ip 10.1.2.3 any -> [192.168.0.0/16, !192.168.1.0/24, 2001:db8::/32] any (sid:1;)");
  ASSERT_EQ(r.src.entries.size(), 1u);
  EXPECT_TRUE(same(r.src.entries[0], v4("10.1.2.3", 32)));
  ASSERT_EQ(r.dst.entries.size(), 3u);
  EXPECT_FALSE(r.dst.negated);
  EXPECT_TRUE(same(r.dst.entries[0], v4("192.168.0.0", 16)));
  EXPECT_TRUE(same(r.dst.entries[1], v4("192.168.1.0", 24, true)));
  EXPECT_EQ(r.dst.entries[2].family, 6);
  EXPECT_EQ(r.dst.entries[2].prefix_len, 32);
  // Host bits under the prefix are cleared.
  r = one("drop ip 10.1.2.3/8 any -> !fe80::1/10 any (sid:1;)");
  EXPECT_TRUE(same(r.src.entries[0], v4("10.0.0.0", 8)));
  EXPECT_TRUE(r.dst.negated);
  EXPECT_EQ(r.dst.entries[0].addr[0], 0xfe);
  EXPECT_EQ(r.dst.entries[0].addr[1], 0x80);
  EXPECT_EQ(r.dst.entries[0].addr[15], 0);
  // `any` inside a list is a family-0, prefix-0 entry.
  r = one("drop ip [any, !10.0.0.0/8] any -> any any (sid:1;)");
  ASSERT_EQ(r.src.entries.size(), 2u);
  EXPECT_EQ(r.src.entries[0].family, 0);
  EXPECT_TRUE(r.src.entries[1].negated);

  problem("drop ip 10.0.0.256 any -> any any (sid:1;)", 1, "10.0.0.256");
  problem("drop ip 10.0.0.0/33 any -> any any (sid:1;)", 1, "10.0.0.0/33");
  problem("drop ip any any -> 2001:db8::/129 any (sid:1;)", 1, "2001:db8::/129");
  problem("drop ip !any any -> any any (sid:1;)", 1, "!any");
  problem("drop ip [10.0.0.1 any -> any any (sid:1;)", 1, "");  // unbalanced: wrong field count
}

TEST(RulesParser, Ports) {
  Rule r = one("pass tcp any [80,443,8000:8080] -> any !1024: (sid:1;)");
  ASSERT_EQ(r.sport.entries.size(), 3u);
  EXPECT_EQ(r.sport.entries[2].lo, 8000);
  EXPECT_EQ(r.sport.entries[2].hi, 8080);
  EXPECT_TRUE(r.dport.negated);
  EXPECT_EQ(r.dport.entries[0].lo, 1024);
  EXPECT_EQ(r.dport.entries[0].hi, 65535);
  r = one("pass udp any :1023 -> any [1:5, !3] (sid:1;)");
  EXPECT_EQ(r.sport.entries[0].lo, 0);
  EXPECT_EQ(r.sport.entries[0].hi, 1023);
  EXPECT_TRUE(r.dport.entries[1].negated);
  problem("pass tcp any 70000 -> any any (sid:1;)", 1, "70000");
  problem("pass tcp any 90:80 -> any any (sid:1;)", 1, "90:80");
  problem("pass tcp any x -> any any (sid:1;)", 1, "x");
  auto d = problem("pass icmp any any -> any 80 (sid:1;)", 1, "80");
  EXPECT_NE(d.message.find("tcp or udp"), std::string::npos);
}

TEST(RulesParser, Variables) {
  auto r = ok_parse(
      "drop tcp $HOME_NET any -> !$HOME_NET $WEB (sid:1;)\n"  // used before its definition: fine
      "var HOME_NET [10.0.0.0/8, 192.168.0.0/16]\n"
      "portvar WEB [80,443]\n"
      "ipvar DNS \"1.1.1.1\"\n"
      "drop udp [$DNS, 8.8.8.8] any -> [!$HOME_NET, 1.2.3.4] 53 (sid:2;)\n");
  ASSERT_EQ(r.set.rules.size(), 2u);
  EXPECT_EQ(r.set.variables, 3u);
  const Rule& a = r.set.rules[0];
  EXPECT_EQ(a.src.entries.size(), 2u);
  EXPECT_FALSE(a.src.negated);
  EXPECT_TRUE(a.dst.negated);
  EXPECT_EQ(a.dport.entries.size(), 2u);
  const Rule& b = r.set.rules[1];
  ASSERT_EQ(b.src.entries.size(), 2u);
  EXPECT_TRUE(same(b.src.entries[0], v4("1.1.1.1", 32)));
  ASSERT_EQ(b.dst.entries.size(), 3u);  // !$HOME_NET spliced as two negated entries
  EXPECT_TRUE(b.dst.entries[0].negated);
  EXPECT_TRUE(b.dst.entries[1].negated);
  EXPECT_FALSE(b.dst.entries[2].negated);

  auto d = problem("drop tcp $HOME_NET any -> any any (sid:1;)", 1, "$HOME_NET");
  EXPECT_NE(d.message.find("undefined variable '$HOME_NET'"), std::string::npos);
  EXPECT_EQ(d.col, 10u);
  problem("var A 1.2.3.4\nvar A 5.6.7.8\n", 2, "A");
  problem("var 9X 1.2.3.4\n", 1, "var");
  problem("var A $A\ndrop ip $A any -> any any (sid:1;)\n", 2, "$A");  // self-reference
}

TEST(RulesParser, Contents) {
  Rule r = one(
      "alert tcp any any -> any any (content:\"GET \"; content:\"|0d 0A|Host|3a|\"; nocase; "
      "content:!\"a\\\"b\\;c\\\\\"; sid:1;)");
  ASSERT_EQ(r.contents.size(), 3u);
  EXPECT_EQ(r.contents[0].bytes, "GET ");
  EXPECT_FALSE(r.contents[0].nocase);
  EXPECT_EQ(r.contents[1].bytes, "\r\nHost:");
  EXPECT_TRUE(r.contents[1].nocase);
  EXPECT_EQ(r.contents[2].bytes, "a\"b;c\\");
  EXPECT_TRUE(r.contents[2].negated);
  r = one("alert udp any any -> any any (content:\"|00 ff|x|00|\"; sid:1;)");
  EXPECT_EQ(r.contents[0].bytes, std::string("\x00\xffx\x00", 4));

  problem("alert tcp any any -> any any (nocase; content:\"a\"; sid:1;)", 1, "nocase");
  problem("alert tcp any any -> any any (content:\"|0g|\"; sid:1;)", 1, "content");
  problem("alert tcp any any -> any any (content:\"|0d 0|\"; sid:1;)", 1, "content");
  problem("alert tcp any any -> any any (content:\"|0d\"; sid:1;)", 1, "content");
  problem("alert tcp any any -> any any (content:\"\"; sid:1;)", 1, "content");
  problem("alert tcp any any -> any any (content:abc; sid:1;)", 1, "content");
  problem("alert tcp any any -> any any (msg:\"unterminated; sid:1;)", 1, "");
}

TEST(RulesParser, IgnoredKeywordsAreAccepted) {
  Rule r = one(
      "alert tcp any any -> any any (msg:\"x\"; content:\"abc\"; fast_pattern; rev:3; classtype:trojan-activity; "
      "metadata:created_at 2020_01_01, updated_at 2021_02_02; reference:url,example.com; priority:1; gid:1; sid:9;)");
  EXPECT_EQ(r.sid, 9u);
  EXPECT_EQ(r.contents.size(), 1u);
}

TEST(RulesParser, UnsupportedKeywordsAreReportedByLineAndKeyword) {
  auto r = parse_rules(
      "# header comment\n"
      "pass tcp any any -> any 22 (sid:1;)\n"
      "alert tcp any any -> any 80 (msg:\"x\"; flow:established,to_server; content:\"a\"; depth:4; pcre:\"/x;y/i\"; sid:2;)\n"
      "alert tcp any any -> any 80 (msg:\"h\"; http.uri; content:\"/x\"; sid:3;)\n"
      "default drop\n");
  ASSERT_EQ(r.problems.size(), 4u);
  EXPECT_EQ(r.problems[0].line, 3u);
  EXPECT_EQ(r.problems[0].keyword, "flow");
  EXPECT_EQ(r.problems[0].message, "unsupported keyword 'flow'");
  EXPECT_EQ(r.problems[0].col, 39u);
  EXPECT_EQ(r.problems[1].keyword, "depth");
  EXPECT_EQ(r.problems[2].keyword, "pcre");  // the ';' inside the quoted regex does not split it
  EXPECT_EQ(r.problems[3].line, 4u);
  EXPECT_EQ(r.problems[3].keyword, "http.uri");
  ASSERT_EQ(r.set.rules.size(), 1u);  // only the clean rule loads
  EXPECT_EQ(r.set.rules[0].sid, 1u);
  EXPECT_EQ(r.set.default_action, GPO_ACT_DROP);
  EXPECT_EQ(format_diagnostic("f.rules", r.problems[2]).rfind("f.rules:3:", 0), 0u);
}

TEST(RulesParser, CommentsBlankLinesCrlfAndContinuations) {
  auto r = ok_parse(
      "\n"
      "   # indented comment\n"
      "# alert tcp any any -> any any (pcre:\"/x/\"; sid:99;)\n"
      "pass tcp any any -> any 1 (sid:1;)\r\n"
      "drop tcp any any \\\n"
      "   -> any 2 (msg:\"two lines\"; \\\n"
      "   sid:2;)\n"
      "alert udp any any -> any 3 (sid:3;)\n");
  ASSERT_EQ(r.set.rules.size(), 3u);
  EXPECT_EQ(r.set.comment_lines, 2u);
  EXPECT_EQ(r.set.rules[0].line, 4u);
  EXPECT_EQ(r.set.rules[1].line, 5u);
  EXPECT_EQ(r.set.rules[1].msg, "two lines");
  EXPECT_EQ(r.set.rules[2].line, 8u);
}

TEST(RulesParser, DefaultPolicy) {
  auto r = ok_parse("pass tcp any any -> any 1 (sid:1;)\n");
  EXPECT_FALSE(r.set.default_explicit);
  EXPECT_EQ(r.set.default_action, GPO_ACT_PASS);
  r = ok_parse("pass tcp any any -> any 1 (sid:1;)\ndefault drop\n# trailing comment\n");
  EXPECT_TRUE(r.set.default_explicit);
  EXPECT_EQ(r.set.default_action, GPO_ACT_DROP);
  EXPECT_EQ(r.set.default_line, 2u);
  EXPECT_EQ(ok_parse("default alert\n").set.default_action, GPO_ACT_ALERT);
  problem("default drop\npass tcp any any -> any 1 (sid:1;)\n", 2, "default");
  problem("default drop\ndefault pass\n", 2, "default");
  problem("default reject\n", 1, "default");
}

TEST(RulesParser, SidProblems) {
  problem("pass tcp any any -> any 1 (msg:\"x\";)", 1, "sid");
  problem("pass tcp any any -> any 1 (sid:0;)", 1, "sid");
  problem("pass tcp any any -> any 1 (sid:4294967296;)", 1, "sid");
  problem("pass tcp any any -> any 1 (sid:1; sid:2;)", 1, "sid");
  auto d = problem("pass tcp any any -> any 1 (sid:5;)\npass tcp any any -> any 2 (sid:5;)\n", 2, "sid");
  EXPECT_NE(d.message.find("first on line 1"), std::string::npos);
}

TEST(RulesParser, DirectionAndShape) {
  EXPECT_TRUE(one("pass tcp any any <> any 1 (sid:1;)").bidirectional);
  problem("pass tcp any any <- any 1 (sid:1;)", 1, "<-");
  problem("pass tcp any any -> any (sid:1;)", 1, "");
  problem("pass tcp any any -> any 1", 1, "");
  problem("pass tcp any any -> any 1 (sid:1;", 1, "");
}

TEST(RulesParser, BuiltInDefaultRulesAreClean) {
  auto r = ok_parse(std::string(default_rules_text()));
  EXPECT_GE(r.set.rules.size(), 2u);
  EXPECT_TRUE(r.set.default_explicit);
  EXPECT_EQ(r.set.default_action, GPO_ACT_PASS);
}
