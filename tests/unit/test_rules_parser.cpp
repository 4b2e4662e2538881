// Rule file parser: every syntax feature, and every problem with its line and keyword.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <chrono>
#include <random>

#include "kernels/classify/classify.h"
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

  auto d = problem("drop tcp $MY_NET any -> any any (sid:1;)", 1, "$MY_NET");
  EXPECT_NE(d.message.find("undefined variable '$MY_NET'"), std::string::npos);
  EXPECT_NE(d.message.find("--var MY_NET="), std::string::npos) << d.message;
  EXPECT_EQ(d.col, 10u);
  EXPECT_EQ(d.kind, Diagnostic::kInvalid);
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
      "alert tcp any any -> any 80 (msg:\"x\"; flowbits:isset,a; content:\"a\"; depth:4; pcre:\"/x;y/i\"; sid:2;)\n"
      "alert tcp any any -> any 80 (msg:\"h\"; http.uri; content:\"/x\"; sid:3;)\n"
      "default drop\n");
  ASSERT_EQ(r.problems.size(), 3u);
  EXPECT_EQ(r.problems[0].line, 3u);
  EXPECT_EQ(r.problems[0].keyword, "flowbits");
  EXPECT_EQ(r.problems[0].message, "unsupported keyword 'flowbits': state across packets or flows");
  EXPECT_EQ(r.problems[0].col, 39u);
  EXPECT_EQ(r.problems[0].kind, Diagnostic::kUnsupported);
  EXPECT_EQ(r.problems[1].keyword, "pcre");  // the ';' inside the quoted regex does not split it
  EXPECT_EQ(r.problems[2].line, 4u);
  EXPECT_EQ(r.problems[2].keyword, "http.uri");
  ASSERT_EQ(r.set.rules.size(), 1u);  // only the clean rule loads
  EXPECT_EQ(r.set.rules[0].sid, 1u);
  EXPECT_EQ(r.set.default_action, GPO_ACT_DROP);
  EXPECT_EQ(format_diagnostic("f.rules", r.problems[1]).rfind("f.rules:3:", 0), 0u);
  Coverage c = coverage(r);
  EXPECT_EQ(c.rules, 3u);
  EXPECT_EQ(c.loaded, 1u);
  EXPECT_EQ(c.unsupported, 2u);
  EXPECT_EQ(c.invalid, 0u);
  EXPECT_EQ(coverage_line(c), "1 of 3 rules loaded; skipped 2 unsupported, 0 invalid; top reasons: flowbits 1, http.uri 1, pcre 1");
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

// ---- keywords of public rule sets ----------------------------------------------------

TEST(RulesParser, FlowAndPacketKeywords) {
  using namespace gpo::classify;
  Rule r = one(
      "alert tcp any any -> any 445 (flow:established,to_server; flags:PA,12; dsize:>10; ttl:<128; "
      "ip_proto:tcp; sid:1;)");
  EXPECT_EQ(r.flow_set, kFlowEstablished | kFlowToServer);
  EXPECT_EQ(r.flow_clear, 0);
  EXPECT_EQ(r.tcp_flags.op, kUintMaskEq);
  EXPECT_EQ(r.tcp_flags.a, 0x3fu);  // CWR and ECE ignored
  EXPECT_EQ(r.tcp_flags.b, 0x18u);
  EXPECT_EQ(r.dsize.op, kUintGt);
  EXPECT_EQ(r.dsize.a, 10u);
  EXPECT_EQ(r.ttl.op, kUintLt);
  EXPECT_EQ(r.ip_proto.a, 6u);
  r = one("alert tcp any any -> any any (flow:not_established,from_server; flags:*SF; dsize:10<>20; sid:1;)");
  EXPECT_EQ(r.flow_set, kFlowToClient);
  EXPECT_EQ(r.flow_clear, kFlowEstablished);
  EXPECT_EQ(r.tcp_flags.op, kUintMaskNe);
  EXPECT_EQ(r.tcp_flags.a, 0x03u);
  EXPECT_EQ(r.tcp_flags.b, 0u);
  EXPECT_EQ(r.dsize.op, kUintRange);
  r = one("alert icmp any any -> any any (itype:8; icode:!0; flow:stateless; sid:1;)");
  EXPECT_TRUE(r.icmp_only);
  EXPECT_EQ(r.itype.op, kUintEq);
  EXPECT_EQ(r.icode.op, kUintNe);
  EXPECT_EQ(r.flow_set | r.flow_clear, 0);
  EXPECT_EQ(one("alert tcp any any -> any any (flags:0; sid:1;)").tcp_flags.op, kUintEq);
  EXPECT_EQ(one("alert tcp any any -> any any (flags:!R; sid:1;)").tcp_flags.op, kUintMaskNe);

  problem("alert tcp any any -> any any (flow:to_server,to_client; sid:1;)", 1, "flow");
  problem("alert tcp any any -> any any (flow:established,not_established; sid:1;)", 1, "flow");
  problem("alert tcp any any -> any any (flow:sideways; sid:1;)", 1, "flow");
  EXPECT_EQ(problem("alert tcp any any -> any any (flow:established,only_stream; sid:1;)", 1, "flow").kind,
            Diagnostic::kUnsupported);
  problem("alert tcp any any -> any any (flags:SX; sid:1;)", 1, "flags");
  problem("alert tcp any any -> any any (flags:+S,C; sid:1;)", 1, "flags");
  problem("alert udp any any -> any any (flags:S; sid:1;)", 1, "flags");
  problem("alert tcp any any -> any any (itype:8; sid:1;)", 1, "itype");
  problem("alert tcp any any -> any any (dsize:<0; sid:1;)", 1, "dsize");
  problem("alert tcp any any -> any any (dsize:5<>6; sid:1;)", 1, "dsize");  // empty exclusive range
  problem("alert tcp any any -> any any (ttl:256; sid:1;)", 1, "ttl");
  problem("alert ip any any -> any any (ip_proto:nosuch; sid:1;)", 1, "ip_proto");
}

TEST(RulesParser, ContentWindowsAndIsdataat) {
  Rule r = one(
      "alert tcp any any -> any any (content:\"|ff|SMB\"; offset:4; depth:4; content:\"x\"; distance:2; within:10; "
      "isdataat:5,relative; content:\"y\"; distance:-3; isdataat:!100; sid:1;)");
  ASSERT_EQ(r.contents.size(), 3u);
  EXPECT_TRUE(r.contents[0].has_offset && r.contents[0].has_depth);
  EXPECT_EQ(r.contents[0].offset, 4u);
  EXPECT_EQ(r.contents[0].depth, 4u);
  EXPECT_TRUE(r.contents[1].relative());
  EXPECT_EQ(r.contents[1].distance, 2);
  EXPECT_EQ(r.contents[1].within, 10);
  EXPECT_EQ(r.contents[1].isdataat_rel, 5);
  EXPECT_EQ(r.contents[2].distance, -3);
  EXPECT_EQ(r.isdataat.op, gpo::classify::kUintLe);
  EXPECT_EQ(r.isdataat.a, 100u);
  r = one("alert tcp any any -> any any (content:\"GET\"; startswith; fast_pattern; sid:1;)");
  EXPECT_EQ(r.contents[0].depth, 3u);

  problem("alert tcp any any -> any any (content:\"abcd\"; depth:3; sid:1;)", 1, "depth");  // shorter than the content
  problem("alert tcp any any -> any any (content:\"a\"; content:\"bc\"; within:1; sid:1;)", 1, "within");
  problem("alert tcp any any -> any any (content:\"a\"; offset:1; distance:1; sid:1;)", 1, "distance");
  problem("alert tcp any any -> any any (content:\"a\"; depth:4; depth:5; sid:1;)", 1, "depth");
  problem("alert tcp any any -> any any (offset:4; content:\"a\"; sid:1;)", 1, "offset");
  problem("alert tcp any any -> any any (content:\"a\"; offset:70000; sid:1;)", 1, "offset");
  EXPECT_EQ(problem("alert tcp any any -> any any (content:!\"a\"; within:5; sid:1;)", 1, "within").kind,
            Diagnostic::kUnsupported);
  EXPECT_EQ(problem("alert tcp any any -> any any (content:!\"a\"; content:\"b\"; distance:0; sid:1;)", 1, "distance").kind,
            Diagnostic::kUnsupported);
  EXPECT_EQ(problem("alert tcp any any -> any any (content:\"a\"; isdataat:!2,relative; sid:1;)", 1, "isdataat").kind,
            Diagnostic::kUnsupported);
  EXPECT_EQ(problem("alert tcp any any -> any any (content:\"a\"; endswith; sid:1;)", 1, "endswith").kind,
            Diagnostic::kUnsupported);
}

TEST(RulesParser, MetadataIsKeptForAlerts) {
  Rule r = one(
      "alert tcp any any -> any any (msg:\"m\"; classtype:trojan-activity; reference:url,example.com; "
      "reference:cve,2020-0001; metadata:a b, c d; priority:2; gid:3; rev:7; sid:9;)");
  EXPECT_EQ(r.classtype, "trojan-activity");
  EXPECT_EQ(r.references.size(), 2u);
  EXPECT_EQ(r.metadata, "a b, c d");
  EXPECT_EQ(r.priority, 2);
  EXPECT_EQ(r.gid, 3u);
  EXPECT_EQ(r.rev, 7u);
}

TEST(RulesParser, AppLayerProtocolsAndActionsAreUnsupportedNotInvalid) {
  auto r = parse_rules(
      "alert http any any -> any any (sid:1;)\n"
      "reject tcp any any -> any any (sid:2;)\n"
      "alrt tcp any any -> any any (sid:3;)\n");
  ASSERT_EQ(r.problems.size(), 3u);
  EXPECT_EQ(r.problems[0].kind, Diagnostic::kUnsupported);
  EXPECT_EQ(r.problems[0].reason, "protocol http");
  EXPECT_EQ(r.problems[1].kind, Diagnostic::kUnsupported);
  EXPECT_EQ(r.problems[1].reason, "action reject");
  EXPECT_EQ(r.problems[2].kind, Diagnostic::kInvalid);
}

// ---- variables from outside the file ---------------------------------------------------

TEST(RulesParser, OutsideVariablesOverrideTheFileAndDefaultsFillTheRest) {
  ParseOptions o;
  o.vars.push_back({"HOME_NET", "[198.18.0.0/15]", "--var"});
  o.vars.push_back({"HOME_NET", "10.0.0.0/8", "config c.toml"});  // later: lower precedence
  auto r = parse_rules(
      "var HOME_NET 1.2.3.4\n"
      "alert tcp $EXTERNAL_NET any -> $HOME_NET $HTTP_PORTS (sid:1;)\n",
      o);
  ASSERT_TRUE(r.ok()) << r.problems[0].message;
  const Rule& a = r.set.rules[0];
  ASSERT_EQ(a.dst.entries.size(), 1u);
  EXPECT_TRUE(same(a.dst.entries[0], v4("198.18.0.0", 15)));
  EXPECT_TRUE(a.src.negated);  // EXTERNAL_NET's default: !$HOME_NET
  ASSERT_EQ(a.dport.entries.size(), 1u);
  EXPECT_EQ(a.dport.entries[0].lo, 80);  // HTTP_PORTS' default
  ASSERT_EQ(r.var_notes.size(), 3u);
  EXPECT_NE(r.var_notes[1].find("$HOME_NET = [198.18.0.0/15] (--var (overrides line 1))"), std::string::npos)
      << r.var_notes[1];
  EXPECT_NE(r.var_notes[2].find("(default)"), std::string::npos) << r.var_notes[2];
  o.default_vars = false;
  r = parse_rules("alert tcp any any -> any $HTTP_PORTS (sid:1;)\n", o);
  EXPECT_EQ(r.problems.size(), 1u);
}

// ---- any input: bounded time, memory and stack ------------------------------------------

TEST(RulesParser, DeeplyNestedListsAreRefusedNotACrash) {
  // 100,000 '[' used to recurse once per bracket and overflow the stack.
  std::string deep = "alert ip " + std::string(100000, '[') + "1.2.3.4" + std::string(100000, ']') +
                     " any -> any any (sid:1;)\n";
  auto r = parse_rules(deep);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].message.find("nest more than 32 levels"), std::string::npos) << r.problems[0].message;
  // Just inside the limit still parses.
  std::string ok = "alert ip " + std::string(30, '[') + "1.2.3.4" + std::string(30, ']') + " any -> any any (sid:1;)\n";
  EXPECT_TRUE(parse_rules(ok).ok());
  // Unbalanced brackets and a nested variable chain.
  EXPECT_FALSE(parse_rules("alert ip " + std::string(50000, '[') + " any -> any any (sid:1;)\n").ok());
  std::string chain;
  for (int i = 0; i < 100; ++i) chain += "var V" + std::to_string(i) + " [$V" + std::to_string(i + 1) + "]\n";
  chain += "var V100 1.2.3.4\nalert ip $V0 any -> any any (sid:1;)\n";
  r = parse_rules(chain);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].message.find("nest more than"), std::string::npos) << r.problems[0].message;
}

TEST(RulesParser, VariableExpansionIsBounded) {
  // 2.2 KB: a 40-address list, 40 copies of it, 40 copies of that (64,000
  // entries), used by 40 rules on both sides. It used to expand every use
  // anew: 5.1M entries, ~100 MB and most of a second in the parser alone.
  std::string text = "var L0 [";
  for (int i = 0; i < 40; ++i) text += (i ? "," : "") + std::to_string(10 + i) + ".0.0.1";
  text += "]\n";
  for (int i = 1; i <= 2; ++i) {
    text += "var L" + std::to_string(i) + " [";
    for (int k = 0; k < 40; ++k) text += (k ? ",$L" : "$L") + std::to_string(i - 1);
    text += "]\n";
  }
  for (int k = 0; k < 40; ++k) text += "alert ip $L2 any -> $L2 any (sid:" + std::to_string(k + 1) + ";)\n";
  ASSERT_LT(text.size(), 2500u);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = parse_rules(text);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t held = 0;
  for (auto& rule : r.set.rules) held += rule.src.entries.size() + rule.dst.entries.size();
  EXPECT_LE(held, kMaxExpandedEntries);
  ASSERT_FALSE(r.problems.empty());
  EXPECT_NE(r.problems[0].message.find("expand to more than 4194304 entries"), std::string::npos)
      << r.problems[0].message;
  EXPECT_LT(r.set.rules.size(), 40u);
  EXPECT_LT(s, 2.0);  // a bound, not a benchmark
  // One list over 65535 entries is refused at once.
  std::string wide = text.substr(0, text.find("var L2"));
  wide += "var L2 [$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,"
          "$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1,$L1]\n"
          "alert ip $L2 any -> any any (sid:1;)\n";
  r = parse_rules(wide);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].message.find("list has more than 65535 entries"), std::string::npos) << r.problems[0].message;
  // Within the caps, a variable is expanded once and reused: 500 rules of a
  // 4,096-entry list load.
  std::string big = "var A [";
  for (int i = 0; i < 4096; ++i) big += (i ? "," : "") + std::to_string(1 + i / 256) + ".0." + std::to_string(i % 256) + ".1";
  big += "]\n";
  for (int k = 0; k < 500; ++k) big += "alert ip $A any -> any any (sid:" + std::to_string(k + 1) + ";)\n";
  r = parse_rules(big);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.set.rules.size(), 500u);
}

TEST(RulesParser, ArbitraryBytesNeverCrash) {
  std::mt19937 rng(12345);
  const std::string alphabet = "[]$!,:;()\"|\\ \n\tvaranyip->alert01234569abcdefx./content:depth:flow:sid";
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    size_t n = rng() % 300;
    for (size_t k = 0; k < n; ++k) s += rng() % 4 ? alphabet[rng() % alphabet.size()] : char(rng() & 0xff);
    if (rng() % 3 == 0) s = "alert tcp any any -> any any (" + s + ")";
    auto r = parse_rules(s);
    for (auto& d : r.problems) EXPECT_FALSE(d.message.empty());
  }
}

TEST(RulesParser, DiagnosticsStaySmallForHugeTokens) {
  // A broken variable is re-reported at every use: its diagnostic must not
  // carry the 100 KB token each time.
  std::string text = "var A 1.2.3.4/" + std::string(100000, '9') + "\n";
  for (int k = 0; k < 2000; ++k) text += "alert ip $A any -> any any (sid:" + std::to_string(k + 1) + ";)\n";
  auto r = parse_rules(text);
  ASSERT_EQ(r.problems.size(), 2000u);
  size_t bytes = 0;
  for (auto& d : r.problems) bytes += d.message.size() + d.keyword.size() + d.reason.size();
  EXPECT_LT(bytes, 2000u * 600);
}
