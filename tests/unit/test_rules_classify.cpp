// Compiler + CPU classifier against the naive reference classifier of
// unit/rules_reference.h: per rule, straight from the parsed rule (not the compiled
// tables), on the 5-tuple and payload the test put into each raw frame (not the parser's view).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <random>

#include "kernels/classify/contents.h"
#include "kernels/classify/classify_cpu.h"
#include "rules/compiler.h"
#include "rules/parser.h"
#include "unit/rules_frames.h"
#include "unit/rules_reference.h"

using gpo::classify::CpuClassifier;
using gpo::classify::Frame;
using gpo::classify::Verdict;
using gpo::test::build_frame;
using gpo::test::FrameSpec;
using gpo::test::ip16;
using namespace gpo::rules;
using gpo::test::Gen;
using gpo::test::reference;

namespace {

// ---- helpers -------------------------------------------------------------------

struct Compiled {
  RuleSet set;
  std::shared_ptr<const gpo::classify::RuleTables> tables;
};

Compiled compile_text(const std::string& text, uint32_t depth = gpo::classify::kDefaultInspectDepth) {
  ParseResult r = parse_rules(text);
  for (auto& d : r.problems) ADD_FAILURE() << format_diagnostic("rules", d) << "\n" << text;
  Compiled c{r.set, nullptr};
  c.tables = std::make_shared<gpo::classify::RuleTables>(compile(r.set, {depth}));
  return c;
}

Verdict classify(CpuClassifier& cls, const FrameSpec& f) {
  auto bytes = build_frame(f);
  Frame fr{bytes.data(), uint32_t(bytes.size()), f.flow};
  Verdict v;
  cls.classify({&fr, 1}, {&v, 1});
  return v;
}

FrameSpec pkt(const char* src, uint16_t sport, const char* dst, uint16_t dport, std::string payload = "",
              uint8_t proto = 6) {
  FrameSpec f;
  f.src = ip16(src);
  f.dst = ip16(dst);
  f.ip_version = std::string(src).find(':') != std::string::npos ? 6 : 4;
  f.sport = sport;
  f.dport = dport;
  f.proto = proto;
  f.payload = std::move(payload);
  return f;
}

#define EXPECT_VERDICT(v, sid_, action_, cacheable_)                     \
  do {                                                                 \
    Verdict vv = (v);                                                  \
    EXPECT_EQ(vv.rule_id, uint32_t(sid_));                             \
    EXPECT_EQ(int(vv.action), int(action_));                           \
    EXPECT_EQ(vv.cacheable, bool(cacheable_));                         \
  } while (0)

}  // namespace

// ---- semantics, case by case ----------------------------------------------------------------

TEST(RulesClassify, FirstMatchInFileOrderThenDefault) {
  auto c = compile_text(
      "pass tcp 198.18.0.0/24 any -> any 80 (sid:10;)\n"
      "drop tcp any any -> any 80 (sid:20;)\n"
      "alert tcp any any -> any any (sid:30;)\n"
      "default drop\n");
  CpuClassifier cls(c.tables);
  EXPECT_VERDICT(classify(cls, pkt("198.18.0.5", 1000, "198.18.1.1", 80)), 10, GPO_ACT_PASS, true);
  EXPECT_VERDICT(classify(cls, pkt("198.19.0.5", 1000, "198.18.1.1", 80)), 20, GPO_ACT_DROP, true);
  EXPECT_VERDICT(classify(cls, pkt("198.19.0.5", 1000, "198.18.1.1", 81)), 30, GPO_ACT_ALERT, true);
  EXPECT_VERDICT(classify(cls, pkt("198.19.0.5", 1000, "198.18.1.1", 81, "", 17)), 0, GPO_ACT_DROP, true);
  EXPECT_EQ(c.tables->lines[c.tables->rule_by_sid.at(20)], 2u);
}

TEST(RulesClassify, UnparseableFramesGetTheDefaultUncached) {
  auto c = compile_text("pass ip any any -> any any (sid:1;)\ndefault drop\n");
  CpuClassifier cls(c.tables);
  auto bytes = build_frame(pkt("198.18.0.1", 1, "198.18.0.2", 2));
  for (uint32_t len : {0u, 13u, 30u, uint32_t(bytes.size() - 1)}) {
    Frame f{bytes.data(), len};
    Verdict v = cls.classify_one(f);
    EXPECT_VERDICT(v, 0, GPO_ACT_DROP, false);
  }
  bytes[12] = 0x08;
  bytes[13] = 0x06;  // ARP
  EXPECT_VERDICT(cls.classify_one({bytes.data(), uint32_t(bytes.size())}), 0, GPO_ACT_DROP, false);
}

TEST(RulesClassify, ContentMissBeforeTheDecidingRuleIsNotCacheable) {
  auto c = compile_text(
      "drop tcp any any -> any 80 (msg:\"evil payload\"; content:\"evil\"; sid:1;)\n"
      "pass tcp any any -> any 80 (sid:2;)\n"
      "drop udp any any -> any 53 (content:\"x\"; sid:3;)\n"
      "default pass\n");
  CpuClassifier cls(c.tables);
  EXPECT_VERDICT(classify(cls, pkt("198.18.0.1", 5, "198.18.0.2", 80, "GET /")), 2, GPO_ACT_PASS, false);
  EXPECT_VERDICT(classify(cls, pkt("198.18.0.1", 5, "198.18.0.2", 80, "an evil one")), 1, GPO_ACT_DROP, true);
  EXPECT_EQ(c.tables->msg_of(1), "evil payload");
  EXPECT_EQ(c.tables->msg_of(0), "");
  // Header of rule 1 does not match (port 81): its content does not matter, cacheable.
  EXPECT_VERDICT(classify(cls, pkt("198.18.0.1", 5, "198.18.0.2", 81, "GET /")), 0, GPO_ACT_PASS, true);
  // Default reached after a content miss: not cacheable either.
  EXPECT_VERDICT(classify(cls, pkt("198.18.0.1", 5, "198.18.0.2", 53, "y", 17)), 0, GPO_ACT_PASS, false);
}

TEST(RulesClassify, ContentsNocaseHexNegationAllMustMatch) {
  auto c = compile_text(
      "drop tcp any any -> any 1 (content:\"GET\"; content:\"host|3a|\"; nocase; sid:1;)\n"
      "drop tcp any any -> any 2 (content:\"|00 ff 0d 0a|\"; sid:2;)\n"
      "drop tcp any any -> any 3 (content:\"a\"; content:!\"b\"; sid:3;)\n");
  CpuClassifier cls(c.tables);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 1, "GET / HTTP/1.1\r\nHOST: x")).rule_id, 1u);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 1, "get / HTTP/1.1\r\nHOST: x")).rule_id, 0u);  // GET is case-sensitive
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 1, "GET / HTTP/1.1\r\n")).rule_id, 0u);          // one of two
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 2, std::string("x\x00\xff\r\ny", 6))).rule_id, 2u);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 2, std::string("x\x00\xfe\r\ny", 6))).rule_id, 0u);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 3, "aaa")).rule_id, 3u);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 3, "aab")).rule_id, 0u);
}

TEST(RulesClassify, InspectionDepthBoundary) {
  const uint32_t depth = 16;
  auto c = compile_text("drop udp any any -> any any (content:\"MARK\"; sid:1;)\n", depth);
  CpuClassifier cls(c.tables);
  std::string ends_at_depth = std::string(depth - 4, '.') + "MARK";
  std::string one_past = std::string(depth - 3, '.') + "MARK";
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 1, ends_at_depth + "tail", 17)).rule_id, 1u);
  EXPECT_VERDICT(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 1, one_past, 17)), 0, GPO_ACT_PASS, false);
}

TEST(RulesClassify, AddressFamiliesAndIpv6Cidrs) {
  auto c = compile_text(
      "drop ip 2001:db8:1::/48 any -> any any (sid:1;)\n"
      "drop ip ::/0 any -> any any (sid:2;)\n"   // every IPv6 packet, no IPv4 one
      "drop ip 0.0.0.0/0 any -> 10.0.0.0/8 any (sid:3;)\n");
  CpuClassifier cls(c.tables);
  EXPECT_EQ(classify(cls, pkt("2001:db8:1:ffff::1", 1, "2001:db8::2", 2)).rule_id, 1u);
  EXPECT_EQ(classify(cls, pkt("2001:db8:2::1", 1, "2001:db8::2", 2)).rule_id, 2u);
  EXPECT_EQ(classify(cls, pkt("1.2.3.4", 1, "10.9.9.9", 2)).rule_id, 3u);
  EXPECT_EQ(classify(cls, pkt("1.2.3.4", 1, "11.9.9.9", 2)).rule_id, 0u);
  // An IPv6 packet whose address looks v4-mapped is still IPv6.
  EXPECT_EQ(classify(cls, pkt("::ffff:1.2.3.4", 1, "::ffff:10.0.0.1", 2)).rule_id, 2u);
}

TEST(RulesClassify, NegationListsRangesAndBidirectional) {
  auto c = compile_text(
      "var NET [198.18.0.0/16, !198.18.5.0/24]\n"
      "drop tcp $NET any -> any [22, 1000:1010, !1005] (sid:1;)\n"
      "drop tcp !$NET any -> any !80 (sid:2;)\n"
      "alert udp 198.18.0.1 53 <> 198.18.0.2 any (sid:3;)\n");
  CpuClassifier cls(c.tables);
  EXPECT_EQ(classify(cls, pkt("198.18.1.1", 1, "1.1.1.1", 22)).rule_id, 1u);
  EXPECT_EQ(classify(cls, pkt("198.18.1.1", 1, "1.1.1.1", 1004)).rule_id, 1u);
  EXPECT_EQ(classify(cls, pkt("198.18.1.1", 1, "1.1.1.1", 1005)).rule_id, 0u);
  EXPECT_EQ(classify(cls, pkt("198.18.5.1", 1, "1.1.1.1", 22)).rule_id, 2u);  // excluded from $NET
  EXPECT_EQ(classify(cls, pkt("198.18.5.1", 1, "1.1.1.1", 80)).rule_id, 0u);
  EXPECT_EQ(classify(cls, pkt("198.18.0.1", 53, "198.18.0.2", 999, "", 17)).rule_id, 3u);
  EXPECT_EQ(classify(cls, pkt("198.18.0.2", 999, "198.18.0.1", 53, "", 17)).rule_id, 3u);  // reverse direction
  EXPECT_EQ(classify(cls, pkt("198.18.0.2", 53, "198.18.0.1", 999, "", 17)).rule_id, 0u);
}

TEST(RulesClassify, IcmpRulesAndProtocolsWithoutPorts) {
  auto c = compile_text(
      "drop icmpv6 any any -> any any (sid:1;)\n"
      "alert icmp any any -> any any (content:\"ping\"; sid:2;)\n"
      "pass ip any any -> any any (content:\"gre\"; sid:3;)\n");
  CpuClassifier cls(c.tables);
  EXPECT_EQ(classify(cls, pkt("2001:db8::1", 0, "2001:db8::2", 0, "ping", 58)).rule_id, 1u);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 0, "10.0.0.2", 0, "a ping", 1)).rule_id, 2u);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 0, "10.0.0.2", 0, "gre body", 47)).rule_id, 3u);
}

// ---- randomized: compiler + classifier == reference --------------------------------


// Random rule sets and frames: the CPU classifier equals the reference on
// every frame. Returns (frames, matched a rule, not cacheable).
std::array<int, 3> random_sets_agree(Gen& g, int sets, int max_rules, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int checked = 0, matched_rule = 0, uncached = 0;
  for (int set_no = 0; set_no < sets && std::chrono::steady_clock::now() < deadline; ++set_no) {
    std::string text = "var NET [198.18.0.0/15, 2001:db8::/32]\n";
    int rules = 1 + int(g.n(uint32_t(max_rules)));
    for (int i = 0; i < rules; ++i) text += g.rule(uint32_t(100 + i));
    static const char* defaults[] = {"default pass\n", "default drop\n", "default alert\n", ""};
    text += defaults[g.n(4)];
    uint32_t depth = g.coin(2) ? gpo::classify::kDefaultInspectDepth : 1 + g.n(24);
    auto c = compile_text(text, depth);
    EXPECT_EQ(c.set.rules.size(), size_t(rules)) << text;
    if (c.set.rules.size() != size_t(rules)) return {checked, matched_rule, uncached};
    CpuClassifier cls(c.tables);

    std::vector<FrameSpec> specs;
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<Frame> frames;
    for (int i = 0; i < 100; ++i) {
      specs.push_back(g.frame());
      bytes.push_back(build_frame(specs.back()));
    }
    for (size_t i = 0; i < bytes.size(); ++i) frames.push_back({bytes[i].data(), uint32_t(bytes[i].size()), specs[i].flow});
    std::vector<Verdict> got(frames.size());
    cls.classify(frames, got);  // the batch interface
    for (size_t i = 0; i < frames.size(); ++i) {
      Verdict want = reference(c.set, specs[i], depth);
      const bool same = got[i].rule_id == want.rule_id && got[i].action == want.action && got[i].cacheable == want.cacheable;
      EXPECT_TRUE(same) << "set " << set_no << " frame " << i << ": got sid " << got[i].rule_id << " cacheable "
                        << got[i].cacheable << ", want sid " << want.rule_id << " cacheable " << want.cacheable
                        << "\npayload '" << specs[i].payload << "' flow " << int(specs[i].flow) << "\n" << text;
      if (!same) return {checked, matched_rule, uncached};
      ++checked;
      matched_rule += want.rule_id != 0;
      uncached += !want.cacheable;
    }
  }
  return {checked, matched_rule, uncached};
}

TEST(RulesClassify, RandomRuleSetsAgreeWithReference) {
  Gen g(20261125);
  auto [checked, matched_rule, uncached] = random_sets_agree(g, 300, 25, 20);
  // The generator must exercise both outcomes, or the comparison proves little.
  EXPECT_GT(checked, 5000);
  EXPECT_GT(matched_rule, checked / 10);
  EXPECT_GT(uncached, checked / 50);
  RecordProperty("frames_checked", checked);
}

// The same with flow, dsize, flags, itype/icode, ttl, ip_proto, isdataat and
// content windows in the rules, and flow state, TCP flags, TTL and ICMP
// type/code varied in the frames.
TEST(RulesClassify, RandomRichRuleSetsAgreeWithReference) {
  Gen g(20261206);
  g.rich = true;
  auto [checked, matched_rule, uncached] = random_sets_agree(g, 400, 25, 25);
  EXPECT_GT(checked, 5000);
  EXPECT_GT(matched_rule, checked / 20);
  EXPECT_GT(uncached, checked / 20);
  RecordProperty("frames_checked", checked);
}

// Throughput of the CPU reference, for the record (bounded: ~1 s).
TEST(RulesClassify, CpuThroughput) {
  Gen g(7);
  std::string text = "var NET [198.18.0.0/15, 2001:db8::/32]\n";
  for (int i = 0; i < 1000; ++i) text += g.rule(uint32_t(1 + i));
  text += "default pass\n";
  auto c = compile_text(text);
  CpuClassifier cls(c.tables);
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<Frame> frames;
  for (int i = 0; i < 1024; ++i) {
    FrameSpec f = g.frame();
    f.payload += std::string(512, 'p');
    bytes.push_back(build_frame(f));
  }
  for (auto& b : bytes) frames.push_back({b.data(), uint32_t(b.size())});
  std::vector<Verdict> out(frames.size());
  size_t done = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(800)) {
    cls.classify(frames, out);
    done += frames.size();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("cpu classifier: 1000 rules, %u patterns, %zu frames in %.2f s = %.0f frames/s\n",
              c.tables->matcher.num_patterns(), done, s, done / s);
  EXPECT_GT(done, 0u);
}

// ---- keywords of public rule sets, case by case ----------------------------------------

TEST(RulesClassify, ContentWindowsHandChecked) {
  auto c = compile_text(
      "alert tcp any any -> any 1 (content:\"|ff|SMB\"; offset:4; depth:4; sid:1;)\n"
      "alert tcp any any -> any 2 (content:\"GET\"; startswith; content:\"HTTP\"; distance:1; within:12; sid:2;)\n"
      "alert tcp any any -> any 3 (content:\"a\"; content:\"b\"; distance:0; within:2; sid:3;)\n"
      "alert tcp any any -> any 4 (content:\"x\"; isdataat:3,relative; sid:4;)\n"
      "alert tcp any any -> any 5 (content:\"ab\"; content:\"bc\"; distance:-1; within:2; sid:5;)\n"
      "alert tcp any any -> any 6 (isdataat:5; dsize:<7; sid:6;)\n"
      "alert tcp any any -> any 7 (content:!\"bad\"; depth:5; content:\"ok\"; sid:7;)\n");
  CpuClassifier cls(c.tables);
  auto sid = [&](uint16_t port, std::string payload) {
    return classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", port, std::move(payload))).rule_id;
  };
  // offset:4 depth:4: the 4 bytes at [4, 8).
  EXPECT_EQ(sid(1, std::string("\0\0\0\0\xffSMB", 8)), 1u);
  EXPECT_EQ(sid(1, std::string("\0\0\0\xffSMB", 7)), 0u);          // at 3
  EXPECT_EQ(sid(1, std::string("\0\0\0\0\0\xffSMB", 9)), 0u);      // ends at 9 > 8
  // startswith; then HTTP starting >= 1 byte after GET and ending within 12 bytes of it.
  EXPECT_EQ(sid(2, "GET / HTTP/1.1"), 2u);                         // GET ends at 3, HTTP at [6, 10)
  EXPECT_EQ(sid(2, "GETHTTP"), 0u);                                // distance 1 not kept
  EXPECT_EQ(sid(2, "GET /abcdefghij HTTP"), 0u);                   // HTTP ends at 20 > 3 + 1 + 12
  EXPECT_EQ(sid(2, " GET / HTTP"), 0u);                            // GET not at the start
  // The first 'a' has no 'b' within 2 bytes, a later one has: the search tries it.
  EXPECT_EQ(sid(3, "a..ab"), 3u);
  EXPECT_EQ(sid(3, "a..a.b"), 3u);
  EXPECT_EQ(sid(3, "a..a..b"), 0u);
  // isdataat:3,relative: 3 bytes follow the match.
  EXPECT_EQ(sid(4, "x123"), 4u);
  EXPECT_EQ(sid(4, "x12"), 0u);
  EXPECT_EQ(sid(4, "x12x123"), 4u);  // the second x has 3 bytes after it... and so had the first: any works
  // Negative distance: bc in [ab's end - 1, ab's end + 1): overlapping ab.
  EXPECT_EQ(sid(5, "abc"), 5u);
  EXPECT_EQ(sid(5, "abxbc"), 0u);
  // Absolute isdataat: data at offset 5 means more than 5 bytes.
  EXPECT_EQ(sid(6, "123456"), 6u);
  EXPECT_EQ(sid(6, "12345"), 0u);
  EXPECT_EQ(sid(6, "1234567"), 0u);
  // A negated content in a window: "bad" only counts in the first 5 bytes.
  EXPECT_EQ(sid(7, "ok.....bad"), 7u);
  EXPECT_EQ(sid(7, "ok bad"), 7u);  // bad ends at 6: outside depth 5
  EXPECT_EQ(sid(7, "okbad"), 0u);
}

TEST(RulesClassify, PacketKeywordsHandChecked) {
  auto c = compile_text(
      "alert tcp any any -> any 1 (flags:S; sid:1;)\n"
      "alert tcp any any -> any 1 (flags:SA+; sid:2;)\n"
      "alert tcp any any -> any 1 (flags:!A; sid:3;)\n"
      "alert tcp any any -> any 2 (flags:S,12; sid:4;)\n"
      "alert ip any any -> any any (itype:8; icode:0; sid:5;)\n"
      "alert ip any any -> any any (ttl:<2; sid:6;)\n"
      "alert udp any any -> any 3 (dsize:3<>6; sid:7;)\n"
      "alert ip any any -> any any (ip_proto:47; sid:8;)\n"
      "alert tcp any any -> any 4 (flow:established,to_server; sid:9;)\n"
      "alert tcp any any -> any 4 (flow:not_established; sid:10;)\n");
  CpuClassifier cls(c.tables);
  auto with = [&](FrameSpec f) { return classify(cls, f).rule_id; };
  FrameSpec f = pkt("10.0.0.1", 9, "10.0.0.2", 1);
  f.tcp_flags = 0x02;
  EXPECT_EQ(with(f), 1u);
  f.tcp_flags = 0x12;
  EXPECT_EQ(with(f), 2u);  // not exactly S; at least S and A
  f.tcp_flags = 0x01;
  EXPECT_EQ(with(f), 3u);  // not all of {A}
  f.tcp_flags = 0x10;
  EXPECT_EQ(with(f), 0u);
  f = pkt("10.0.0.1", 9, "10.0.0.2", 2);
  f.tcp_flags = 0xc2;  // SYN with CWR and ECE, ignored
  EXPECT_EQ(with(f), 4u);
  f = pkt("10.0.0.1", 0, "10.0.0.2", 0, "", 1);
  f.icmp_type = 8;
  EXPECT_EQ(with(f), 5u);
  f.icmp_type = 0;
  EXPECT_EQ(with(f), 0u);
  f.ttl = 1;
  EXPECT_EQ(with(f), 6u);
  EXPECT_EQ(with(pkt("10.0.0.1", 9, "10.0.0.2", 3, "1234", 17)), 7u);
  EXPECT_EQ(with(pkt("10.0.0.1", 9, "10.0.0.2", 3, "123456", 17)), 0u);  // exclusive range
  EXPECT_EQ(with(pkt("10.0.0.1", 0, "10.0.0.2", 0, "gre", 47)), 8u);
  f = pkt("10.0.0.1", 9, "10.0.0.2", 4);
  EXPECT_EQ(with(f), 10u);  // no flow information: not established, no direction
  f.flow = gpo::classify::kFlowToServer | gpo::classify::kFlowEstablished;
  EXPECT_EQ(with(f), 9u);
  f.flow = gpo::classify::kFlowToClient | gpo::classify::kFlowEstablished;
  Verdict v = classify(cls, f);
  EXPECT_EQ(v.rule_id, 0u);
  EXPECT_FALSE(v.cacheable);  // a later packet of the flow may be established and to the server
}

// The GPU's budgeted search and the CPU's exact sweep against the brute-force
// reference, on random chains over small alphabets (many occurrences) and on
// adversarial payloads that exhaust the budget.
TEST(RulesClassify, PositionSearchAgreesWithReference) {
  std::mt19937 rng(99);
  int checked = 0, held = 0, unknown = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string text = "alert tcp any any -> any any (";
    const int k = 1 + int(rng() % 4);
    bool prev_pos = false;
    for (int i = 0; i < k; ++i) {
      std::string w(1 + rng() % 2, 'a');
      for (char& ch : w) ch = "ab"[rng() % 2];
      const bool neg = rng() % 6 == 0;
      text += std::string("content:") + (neg ? "!" : "") + "\"" + w + "\"; ";
      if (rng() % 3 == 0) {
        if (rng() % 2) text += "offset:" + std::to_string(rng() % 4) + "; ";
        if (rng() % 2) text += "depth:" + std::to_string(w.size() + rng() % 6) + "; ";
      } else if (!neg && prev_pos && rng() % 3) {
        if (rng() % 2) text += "distance:" + std::to_string(int(rng() % 7) - 3) + "; ";
        text += "within:" + std::to_string(w.size() + rng() % 5) + "; ";
      }
      if (!neg && rng() % 5 == 0) text += "isdataat:" + std::to_string(rng() % 4) + ",relative; ";
      prev_pos = !neg;
    }
    text += "sid:1;)\n";
    ParseResult r = parse_rules(text);
    ASSERT_TRUE(r.ok()) << text << format_diagnostic("t", r.problems[0]);
    auto t = compile(r.set);
    std::string payload(rng() % 24, 'a');
    for (char& ch : payload) ch = "abc"[rng() % 3];
    const auto* cs = t.contents.data();
    const auto* pool = t.content_bytes.data();
    const auto* buf = reinterpret_cast<const uint8_t*>(payload.data());
    const uint32_t n = uint32_t(payload.size());
    const bool want = gpo::test::ref_contents(r.set.rules[0].contents, 0, 0, payload, payload.size());
    if (!t.rules[0].positional) continue;
    const bool exact = gpo::classify::contents_exact(cs, t.rules[0].content_count, pool, buf, n, n);
    uint32_t starts[gpo::classify::kMaxChainLevels], budget = 1u << 20;
    const int dfs = gpo::classify::contents_search(cs, t.rules[0].content_count, pool, buf, n, n, starts,
                                                   gpo::classify::kMaxChainLevels, budget);
    ASSERT_EQ(exact, want) << text << "payload " << payload;
    ASSERT_EQ(dfs, want ? 1 : 0) << text << "payload " << payload;
    ++checked;
    held += want;
  }
  EXPECT_GT(checked, 2000);
  EXPECT_GT(held, checked / 10);
  EXPECT_LT(held, checked * 9 / 10);
  // Nested within windows over a payload of one letter: the search runs out of
  // budget ("unknown"), the exact sweep still answers, and the classifier too.
  std::string text = "alert tcp any any -> any any (content:\"a\"; ";
  for (int i = 0; i < 8; ++i) text += "content:\"a\"; distance:0; within:40; ";
  text += "content:\"b\"; distance:0; within:1; sid:1;)\n";
  auto c = compile_text(text);
  std::string payload(1400, 'a');
  const auto* buf = reinterpret_cast<const uint8_t*>(payload.data());
  uint32_t starts[gpo::classify::kMaxChainLevels], budget = 1u << 18;
  EXPECT_EQ(gpo::classify::contents_search(c.tables->contents.data(), c.tables->rules[0].content_count,
                                           c.tables->content_bytes.data(), buf, 1400, 1400, starts,
                                           gpo::classify::kMaxChainLevels, budget),
            -1);
  EXPECT_FALSE(gpo::classify::contents_exact(c.tables->contents.data(), c.tables->rules[0].content_count,
                                             c.tables->content_bytes.data(), buf, 1400, 1400));
  CpuClassifier cls(c.tables);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 1, payload)).rule_id, 0u);
  EXPECT_EQ(classify(cls, pkt("10.0.0.1", 9, "10.0.0.2", 1, payload + "b")).rule_id, 1u);
  (void)unknown;
}
