// The GPU classifier against the CPU classifier (and the naive reference):
// the same rule id, action and cacheable on every frame, for random rule
// sets (the unit tests' generator), Suricata-style rule files up to 100K
// rules, IPv4/IPv6, VLAN, IPv6 extension headers, fragments, truncated and
// garbage frames, and the asynchronous double-buffered interface.
// Skips without a usable GPU.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <random>

#include "bench/classify_workload.h"
#include "kernels/classify/classify_cpu.h"
#include "kernels/classify/classify_runner.h"
#include "rules/compiler.h"
#include "rules/default_rules.h"
#include "rules/parser.h"
#include "bench/rules_corpus.h"
#include "unit/rules_corpus_traffic.h"
#include "unit/rules_frames.h"
#include "unit/rules_reference.h"

using gpo::classify::CpuClassifier;
using gpo::classify::Frame;
using gpo::classify::GpuClassifier;
using gpo::classify::RuleTables;
using gpo::classify::Verdict;
using gpo::test::build_frame;
using gpo::test::FrameSpec;
using gpo::test::Gen;

namespace {

// A macro: GTEST_SKIP() only leaves the function it is written in.
#define REQUIRE_GPU()                                                                         \
  do {                                                                                        \
    std::string why;                                                                          \
    if (GpuClassifier::device_count(&why) <= 0) GTEST_SKIP() << "no usable GPU: " << why; \
  } while (0)

struct Compiled {
  gpo::rules::RuleSet set;
  std::shared_ptr<const RuleTables> tables;
};

Compiled compile_text(const std::string& text, uint32_t depth = gpo::classify::kDefaultInspectDepth) {
  auto r = gpo::rules::parse_rules(text);
  if (!r.problems.empty())
    ADD_FAILURE() << r.problems.size() << " problems, first: " << gpo::rules::format_diagnostic("rules", r.problems[0]);
  return {r.set, std::make_shared<RuleTables>(gpo::rules::compile(r.set, {depth}))};
}

std::vector<Frame> as_frames(const std::vector<std::vector<uint8_t>>& bytes, const std::vector<uint8_t>* flows = nullptr) {
  std::vector<Frame> f;
  for (size_t i = 0; i < bytes.size(); ++i)
    f.push_back({bytes[i].data(), uint32_t(bytes[i].size()), flows ? (*flows)[i] : uint8_t(0)});
  return f;
}

// GPU == CPU on every frame (with flow context `flows` when given); returns
// how many frames matched a rule. The GPU must have decided most frames itself.
size_t expect_same(const std::shared_ptr<const RuleTables>& t, const std::vector<std::vector<uint8_t>>& bytes,
                   const std::string& what, const std::vector<uint8_t>* flows = nullptr,
                   std::optional<size_t> exact_cpu_retries = std::nullopt) {
  auto frames = as_frames(bytes, flows);
  std::vector<Verdict> cpu(frames.size()), gpu(frames.size());
  CpuClassifier c(t);
  c.classify(frames, cpu);
  GpuClassifier g(t);
  g.classify(frames, gpu);
  if (exact_cpu_retries)
    EXPECT_EQ(g.cpu_retries(), *exact_cpu_retries) << what << ": frames the CPU decided again";
  else
    EXPECT_LT(g.cpu_retries(), frames.size() / 10 + 1) << what << ": the CPU decided too many frames";
  size_t matched = 0, bad = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    matched += cpu[i].rule_id != 0;
    if (cpu[i].rule_id != gpu[i].rule_id || cpu[i].action != gpu[i].action || cpu[i].cacheable != gpu[i].cacheable) {
      if (++bad <= 5)
        ADD_FAILURE() << what << ": frame " << i << " (len " << frames[i].len << "): cpu sid " << cpu[i].rule_id
                      << " action " << int(cpu[i].action) << " cacheable " << cpu[i].cacheable << ", gpu sid "
                      << gpu[i].rule_id << " action " << int(gpu[i].action) << " cacheable " << gpu[i].cacheable;
    }
  }
  EXPECT_EQ(bad, 0u) << what;
  return matched;
}

}  // namespace

TEST(GpuClassify, RandomRuleSetsAgreeWithCpuAndReference) {
  REQUIRE_GPU();
  Gen g(20261125);
  size_t checked = 0, matched = 0;
  for (int set_no = 0; set_no < 60; ++set_no) {
    std::string text = "var NET [198.18.0.0/15, 2001:db8::/32]\n";
    int rules = 1 + int(g.n(40));
    for (int i = 0; i < rules; ++i) text += g.rule(uint32_t(100 + i));
    static const char* defaults[] = {"default pass\n", "default drop\n", "default alert\n", ""};
    text += defaults[g.n(4)];
    uint32_t depth = g.coin(2) ? gpo::classify::kDefaultInspectDepth : 1 + g.n(24);
    auto c = compile_text(text, depth);
    std::vector<FrameSpec> specs;
    std::vector<std::vector<uint8_t>> bytes;
    for (int i = 0; i < 500; ++i) {
      specs.push_back(g.frame());
      bytes.push_back(build_frame(specs.back()));
    }
    matched += expect_same(c.tables, bytes, "set " + std::to_string(set_no) + "\n" + text);
    // And the CPU classifier is the reference's equal (so both are right).
    CpuClassifier cpu(c.tables);
    for (size_t i = 0; i < specs.size(); ++i) {
      Verdict want = gpo::test::reference(c.set, specs[i], depth);
      Verdict got = cpu.classify_one({bytes[i].data(), uint32_t(bytes[i].size()), specs[i].flow});
      ASSERT_EQ(got.rule_id, want.rule_id);
    }
    checked += bytes.size();
  }
  EXPECT_GT(matched, checked / 10);
}

// flow, dsize, flags, itype/icode, ttl, ip_proto, isdataat and content
// windows (offset/depth/distance/within) in the rules; flow state, TCP flags,
// TTL and ICMP type/code varied in the frames: GPU == CPU == reference.
TEST(GpuClassify, RichRuleSetsAgreeWithCpuAndReference) {
  REQUIRE_GPU();
  Gen g(20261206);
  g.rich = true;
  size_t checked = 0, matched = 0;
  for (int set_no = 0; set_no < 80; ++set_no) {
    std::string text = "var NET [198.18.0.0/15, 2001:db8::/32]\n";
    int rules = 1 + int(g.n(40));
    for (int i = 0; i < rules; ++i) text += g.rule(uint32_t(100 + i));
    text += "default drop\n";
    uint32_t depth = g.coin(2) ? gpo::classify::kDefaultInspectDepth : 1 + g.n(24);
    auto c = compile_text(text, depth);
    std::vector<FrameSpec> specs;
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<uint8_t> flows;
    for (int i = 0; i < 500; ++i) {
      specs.push_back(g.frame());
      bytes.push_back(build_frame(specs.back()));
      flows.push_back(specs.back().flow);
    }
    matched += expect_same(c.tables, bytes, "rich set " + std::to_string(set_no) + "\n" + text, &flows);
    CpuClassifier cpu(c.tables);
    for (size_t i = 0; i < specs.size(); ++i) {
      Verdict want = gpo::test::reference(c.set, specs[i], depth);
      Verdict got = cpu.classify_one({bytes[i].data(), uint32_t(bytes[i].size()), specs[i].flow});
      ASSERT_EQ(got.rule_id, want.rule_id);
      ASSERT_EQ(got.cacheable, want.cacheable);
    }
    checked += bytes.size();
  }
  EXPECT_GT(matched, checked / 20);
}

// 20,000 rules in the shape of ET Open (bench/rules_corpus.h), traffic
// aimed at the loadable ones and near misses: GPU == CPU.
TEST(GpuClassify, EtShapedCorpusAgreesWithCpu) {
  REQUIRE_GPU();
  const auto corpus = gpo::bench::make_et_corpus(20000, 7);
  auto r = gpo::rules::parse_rules(corpus.text, gpo::test::corpus_parse_options());
  auto tables = std::make_shared<const RuleTables>(gpo::rules::compile(r.set));
  const auto specs = gpo::test::corpus_traffic(corpus, 8);
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<uint8_t> flows;
  for (const auto& f : specs) {
    bytes.push_back(build_frame(f));
    flows.push_back(f.flow);
  }
  const size_t matched = expect_same(tables, bytes, "ET-shaped corpus", &flows);
  EXPECT_GT(matched, bytes.size() / 3);
  std::printf("ET-shaped corpus: %zu of 20000 rules loaded, %zu frames, %zu matched a rule\n", r.set.rules.size(),
              bytes.size(), matched);
}

// A position search over the kernel's budget goes back to the CPU, with the same verdict.
TEST(GpuClassify, PositionSearchOverBudgetRetriesOnCpu) {
  REQUIRE_GPU();
  std::string text = "alert tcp any any -> any any (content:\"a\"; ";
  for (int i = 0; i < 10; ++i) text += "content:\"a\"; distance:0; within:60; ";
  text += "content:\"b\"; distance:0; within:1; sid:1;)\n";
  auto c = compile_text(text);
  std::vector<std::vector<uint8_t>> bytes;
  for (int i = 0; i < 64; ++i) {
    FrameSpec f;
    f.src = gpo::test::ip16("198.18.0.1");
    f.dst = gpo::test::ip16("198.18.0.2");
    f.sport = 1;
    f.dport = 2;
    f.payload = std::string(1400, 'a') + (i % 2 ? "b" : "");
    bytes.push_back(build_frame(f));
  }
  auto frames = as_frames(bytes);
  std::vector<Verdict> cpu(frames.size()), gpu(frames.size());
  CpuClassifier cc(c.tables);
  cc.classify(frames, cpu);
  GpuClassifier g(c.tables);
  g.classify(frames, gpu);
  EXPECT_GT(g.cpu_retries(), 0u);
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(gpu[i].rule_id, cpu[i].rule_id) << i;
    EXPECT_EQ(cpu[i].rule_id, i % 2 ? 1u : 0u) << i;
  }
}

// Frames the parser rejects or stops early on: every truncation of valid
// frames, non-first fragments (IPv4 and IPv6), a third VLAN tag, ARP, random bytes.
TEST(GpuClassify, TruncatedFragmentedAndGarbageFrames) {
  REQUIRE_GPU();
  auto c = compile_text(
      "drop tcp any any -> any 80 (content:\"evil\"; sid:1;)\n"
      "alert ip any any -> any any (sid:2;)\n"
      "default drop\n");
  std::vector<std::vector<uint8_t>> bytes;
  for (int v : {4, 6})
    for (int vlans : {0, 1, 2}) {
      FrameSpec f;
      f.ip_version = v;
      f.src = gpo::test::ip16(v == 4 ? "198.18.0.1" : "2001:db8::1");
      f.dst = gpo::test::ip16(v == 4 ? "198.18.0.2" : "2001:db8::2");
      f.sport = 1234;
      f.dport = 80;
      f.payload = "an evil payload";
      f.vlans = vlans;
      if (v == 6) f.ipv6_ext = {0, 60};
      auto full = build_frame(f);
      for (size_t len = 0; len <= full.size(); ++len) bytes.emplace_back(full.begin(), full.begin() + long(len));
      auto frag = full;  // IPv4: fragment offset 1
      size_t l3 = 14 + 4 * size_t(vlans);
      if (v == 4) {
        frag[l3 + 7] = 1;
        bytes.push_back(frag);
      }
    }
  {  // IPv6 fragment header with offset != 0
    FrameSpec f;
    f.ip_version = 6;
    f.src = gpo::test::ip16("2001:db8::1");
    f.dst = gpo::test::ip16("2001:db8::2");
    f.dport = 80;
    f.ipv6_ext = {44};
    auto b = build_frame(f);
    bytes.push_back(b);  // offset 0: parses
    b[14 + 40 + 3] = 0x08;
    bytes.push_back(b);
  }
  std::mt19937 rng(5);
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> b(rng() % 200);
    for (auto& x : b) x = uint8_t(rng());
    if (b.size() > 14 && rng() % 2) {
      b[12] = rng() % 2 ? 0x08 : 0x86;
      b[13] = b[12] == 0x08 ? 0x00 : 0xdd;
      b[14] = b[12] == 0x08 ? 0x45 : 0x60;
    }
    bytes.push_back(b);
  }
  FrameSpec three;
  three.vlans = 2;
  auto b3 = build_frame(three);
  b3.insert(b3.begin() + 20, {0x81, 0x00, 0x00, 0x01});  // a third tag
  bytes.push_back(b3);
  expect_same(c.tables, bytes, "truncated/fragments/garbage");
}

// Rule files written like ET Open rules, 1K..100K rules, with many patterns.
TEST(GpuClassify, SuricataStyleRuleFilesUpTo100K) {
  REQUIRE_GPU();
  for (uint32_t rules : {1000u, 10000u, 100000u}) {
    gpo::bench::RuleSetSpec rs{rules, rules / 10, 0.3, rules};
    auto c = compile_text(gpo::bench::make_rules(rs));
    gpo::bench::TrafficSpec ts;
    ts.frames = std::min(20000u, 200'000'000u / rules);  // the CPU reference walks every rule
    ts.frame_bytes = 400;
    ts.pattern_share = 0.3;
    ts.seed = rules + 1;
    auto bytes = gpo::bench::make_traffic(rs, ts);
    size_t matched = expect_same(c.tables, bytes, std::to_string(rules) + " rules");
    EXPECT_GT(matched, bytes.size() / 10) << rules << " rules";
  }
}

TEST(GpuClassify, BuiltInDefaultRulesAndSampleFile) {
  REQUIRE_GPU();
  auto c = compile_text(std::string(gpo::rules::default_rules_text()));
  gpo::bench::TrafficSpec ts;
  ts.frames = 2000;
  auto bytes = gpo::bench::make_traffic(gpo::bench::RuleSetSpec{1, 0, 0, 1}, ts);
  FrameSpec f;
  f.src = gpo::test::ip16("198.18.0.1");
  f.dst = gpo::test::ip16("198.18.0.2");
  f.proto = 17;
  f.dport = 9999;
  f.payload = "xx gpo-drop\r\n";
  bytes.push_back(build_frame(f));
  expect_same(c.tables, bytes, "default.rules");
}

// More distinct patterns in one payload than the kernel tracks: those frames
// are classified again on the CPU, so the verdicts still agree.
TEST(GpuClassify, PayloadsWithManyPatternsFallBackExactly) {
  REQUIRE_GPU();
  std::string text;
  for (int i = 0; i < 100; ++i)
    text += "alert tcp any any -> any any (content:\"p" + std::to_string(i) + "q\"; content:\"zz" +
            std::to_string(i) + "\"; sid:" + std::to_string(i + 1) + ";)\n";
  auto c = compile_text(text);
  std::vector<std::vector<uint8_t>> bytes;
  for (int k : {0, 10, 40, 100}) {
    FrameSpec f;
    f.src = gpo::test::ip16("10.0.0.1");
    f.dst = gpo::test::ip16("10.0.0.2");
    for (int i = 0; i < k; ++i) f.payload += "p" + std::to_string(i) + "q ";
    f.payload += "zz" + std::to_string(k == 0 ? 0 : k - 1);
    bytes.push_back(build_frame(f));
  }
  // The frames with 40 and 100 distinct patterns exceed what the kernel tracks
  // (kMaxHits): exactly those two are decided again on the CPU.
  static_assert(GpuClassifier::kMaxHits >= 10 && GpuClassifier::kMaxHits < 40);
  expect_same(c.tables, bytes, "many patterns", nullptr, 2);
}

TEST(GpuClassify, DoubleBufferedSubmitAndCollect) {
  REQUIRE_GPU();
  gpo::bench::RuleSetSpec rs{2000, 200, 0.3, 3};
  auto c = compile_text(gpo::bench::make_rules(rs));
  gpo::bench::TrafficSpec ts;
  ts.frames = 3 * 4096;
  ts.pattern_share = 0.3;
  ts.frame_bytes = 256;
  auto bytes = gpo::bench::make_traffic(rs, ts);
  auto frames = as_frames(bytes);
  std::vector<Verdict> want(frames.size()), got(frames.size());
  CpuClassifier(c.tables).classify(frames, want);
  GpuClassifier g(c.tables, {0, 4096});
  std::span<const Frame> all(frames);
  int a = g.submit(all.subspan(0, 4096));
  int b = g.submit(all.subspan(4096, 4096));
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(g.in_flight(), 2);
  EXPECT_EQ(g.submit(all.subspan(8192, 4096)), -1);  // both buffer sets busy
  pollfd p{g.completion_fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);  // a completion wakes an event loop
  g.collect(a, std::span(got).subspan(0, 4096));
  int d = g.submit(all.subspan(8192, 4096));
  ASSERT_GE(d, 0);
  g.collect(b, std::span(got).subspan(4096, 4096));
  g.collect(d, std::span(got).subspan(8192, 4096));
  EXPECT_EQ(g.in_flight(), 0);
  for (size_t i = 0; i < frames.size(); ++i) {
    ASSERT_EQ(got[i].rule_id, want[i].rule_id) << i;
    ASSERT_EQ(got[i].cacheable, want[i].cacheable) << i;
  }
}
