// The ACL decision structure (kernels/classify/acl.h) and the host+device
// decision (decide.h), run on the CPU: the same code the GPU kernel runs,
// checked against the naive reference and the CPU classifier.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "kernels/classify/acl.h"
#include "kernels/classify/classify_cpu.h"
#include "kernels/classify/decide.h"
#include "kernels/classify/frame.h"
#include "rules/compiler.h"
#include "rules/parser.h"
#include "unit/rules_frames.h"
#include "unit/rules_reference.h"

using gpo::classify::CpuClassifier;
using gpo::classify::Frame;
using gpo::classify::RuleTables;
using gpo::classify::Verdict;
using gpo::test::build_frame;
using gpo::test::FrameSpec;
using gpo::test::Gen;
using gpo::test::ip16;
namespace acl = gpo::classify::acl;

namespace {

struct Compiled {
  gpo::rules::RuleSet set;
  std::shared_ptr<const RuleTables> tables;
};

Compiled compile_text(const std::string& text, uint32_t depth = gpo::classify::kDefaultInspectDepth) {
  auto r = gpo::rules::parse_rules(text);
  for (auto& d : r.problems) ADD_FAILURE() << gpo::rules::format_diagnostic("rules", d);
  return {r.set, std::make_shared<RuleTables>(gpo::rules::compile(r.set, {depth}))};
}

// decide() over the index with a lazily scanning presence test, as the kernel does.
Verdict indexed(const RuleTables& t, const acl::Index& idx, const std::vector<uint8_t>& bytes, uint8_t flow = 0) {
  auto p = gpo::classify::parse_frame(bytes.data(), uint32_t(bytes.size()));
  std::vector<uint8_t> seen;
  auto present = [&](uint32_t id) -> int {
    if (seen.empty()) {
      seen.assign(t.matcher.num_patterns() + 1, 0);
      uint32_t n = std::min(p.payload_len, t.inspect_depth);
      gpo::match::scan(t.matcher, bytes.data() + p.payload_offset, n, [&](uint32_t i, size_t) { seen[i] = 1; });
    }
    return seen[id];
  };
  gpo::classify::RulesView rv{t.rules.data(), t.contents.data(), t.content_bytes.data(), t.default_action,
                              t.inspect_depth};
  auto search = [&](const gpo::classify::RuleEntry& r) -> int {
    const uint32_t n = std::min(p.payload_len, t.inspect_depth);
    return gpo::classify::contents_exact(&t.contents[r.content_first], r.content_count, t.content_bytes.data(),
                                         bytes.data() + p.payload_offset, n, p.payload_len);
  };
  Verdict v;
  EXPECT_TRUE(gpo::classify::decide(idx.view(), rv, p, flow, present, search, v));
  return v;
}

std::string random_cidr(std::mt19937& rng, bool v6) {
  if (!v6) {
    int len = int(rng() % 33);
    return std::to_string(rng() % 4 + 198) + "." + std::to_string(rng() % 4 + 16) + "." + std::to_string(rng() % 8) +
           "." + std::to_string(rng() % 256) + "/" + std::to_string(std::max(len, 8));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "2001:db8:%x::%x/%u", unsigned(rng() % 8), unsigned(rng() % 65536),
                unsigned(16 + rng() % 113));
  return buf;
}

}  // namespace

TEST(ClassifyAcl, RandomRuleSetsAgreeWithReference) {
  Gen g(424242);
  g.rich = true;  // decide() is the GPU kernel's code: every keyword goes through it here
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  int checked = 0, matched = 0, uncached = 0;
  for (int set_no = 0; set_no < 300 && std::chrono::steady_clock::now() < deadline; ++set_no) {
    std::string text = "var NET [198.18.0.0/15, 2001:db8::/32]\n";
    int rules = 1 + int(g.n(25));
    for (int i = 0; i < rules; ++i) text += g.rule(uint32_t(100 + i));
    static const char* defaults[] = {"default pass\n", "default drop\n", "default alert\n", ""};
    text += defaults[g.n(4)];
    uint32_t depth = g.coin(2) ? gpo::classify::kDefaultInspectDepth : 1 + g.n(24);
    auto c = compile_text(text, depth);
    acl::Index idx = acl::build(*c.tables);
    for (int i = 0; i < 100; ++i) {
      FrameSpec f = g.frame();
      Verdict want = gpo::test::reference(c.set, f, depth);
      Verdict got = indexed(*c.tables, idx, build_frame(f), f.flow);
      ASSERT_EQ(got.rule_id, want.rule_id) << "set " << set_no << " frame " << i << "\n" << text;
      ASSERT_EQ(got.action, want.action);
      ASSERT_EQ(got.cacheable, want.cacheable) << "set " << set_no << " frame " << i << "\n" << text;
      ++checked;
      matched += want.rule_id != 0;
      uncached += !want.cacheable;
    }
  }
  EXPECT_GT(checked, 5000);
  EXPECT_GT(matched, checked / 10);
  EXPECT_GT(uncached, checked / 50);
}

// Several chunks (> kChunkSlots slots), bidirectional rules straddling a
// chunk edge, wide address and port variety: equal to the CPU classifier.
TEST(ClassifyAcl, ManyChunksAgreeWithCpuClassifier) {
  std::mt19937 rng(99);
  std::string text;
  const int kRules = 5000;
  for (int i = 0; i < kRules; ++i) {
    bool v6 = rng() % 3 == 0;
    std::string proto = (const char*[]){"tcp", "udp", "ip"}[rng() % 3];
    bool ported = proto != "ip";
    auto port = [&] {
      switch (rng() % 4) {
        case 0: return std::string("any");
        case 1: return std::to_string(rng() % 2000);
        case 2: {
          unsigned a = rng() % 2000;
          return std::to_string(a) + ":" + std::to_string(a + rng() % 100);
        }
        default: return "![" + std::to_string(rng() % 2000) + "," + std::to_string(rng() % 2000) + "]";
      }
    };
    std::string src = rng() % 4 == 0 ? "any" : random_cidr(rng, v6);
    std::string dst = rng() % 4 == 0 ? "any" : (rng() % 5 == 0 ? "!" : "") + random_cidr(rng, v6);
    text += std::string((const char*[]){"pass", "drop", "alert"}[rng() % 3]) + " " + proto + " " + src + " " +
            (ported ? port() : "any") + (rng() % 6 == 0 ? " <> " : " -> ") + dst + " " + (ported ? port() : "any") +
            " (" + (rng() % 8 == 0 ? "content:\"ab\"; " : "") + "sid:" + std::to_string(i + 1) + ";)\n";
  }
  text += "default drop\n";
  auto c = compile_text(text);
  acl::Index idx = acl::build(*c.tables);
  EXPECT_GT(idx.num_chunks, 2u);
  CpuClassifier cpu(c.tables);
  int matched = 0;
  for (int i = 0; i < 20000; ++i) {
    FrameSpec f;
    f.ip_version = rng() % 3 == 0 ? 6 : 4;
    std::string a = f.ip_version == 4 ? random_cidr(rng, false) : random_cidr(rng, true);
    std::string b = f.ip_version == 4 ? random_cidr(rng, false) : random_cidr(rng, true);
    f.src = ip16(a.substr(0, a.find('/')));
    f.dst = ip16(b.substr(0, b.find('/')));
    f.proto = (const uint8_t[]){6, 17, 47}[rng() % 3];
    if (f.proto != 47) {
      f.sport = uint16_t(rng() % 2100);
      f.dport = uint16_t(rng() % 2100);
    }
    f.payload = rng() % 2 ? "xxabyy" : "xxxx";
    auto bytes = build_frame(f);
    Verdict want = cpu.classify_one({bytes.data(), uint32_t(bytes.size())});
    Verdict got = indexed(*c.tables, idx, bytes);
    ASSERT_EQ(got.rule_id, want.rule_id) << "frame " << i;
    ASSERT_EQ(got.action, want.action);
    ASSERT_EQ(got.cacheable, want.cacheable) << "frame " << i;
    matched += want.rule_id != 0;
  }
  EXPECT_GT(matched, 2000);
}

TEST(ClassifyAcl, EmptyRuleSetAndUnparsedFramesGiveTheDefault) {
  auto c = compile_text("default drop\n");
  acl::Index idx = acl::build(*c.tables);
  EXPECT_EQ(idx.num_chunks, 0u);
  FrameSpec f;
  f.src = ip16("10.0.0.1");
  f.dst = ip16("10.0.0.2");
  f.sport = 1;
  f.dport = 2;
  Verdict v = indexed(*c.tables, idx, build_frame(f));
  EXPECT_EQ(v.rule_id, 0u);
  EXPECT_EQ(v.action, GPO_ACT_DROP);
  EXPECT_TRUE(v.cacheable);
  auto bytes = build_frame(f);
  bytes.resize(20);
  v = indexed(*c.tables, idx, bytes);
  EXPECT_EQ(v.action, GPO_ACT_DROP);
  EXPECT_FALSE(v.cacheable);
}

// The first match sits in a late chunk; the same header also matches later
// rules; slot order decides, not chunk contents.
TEST(ClassifyAcl, FirstMatchAcrossChunkEdges) {
  std::string text;
  const uint32_t n = 3 * acl::kChunkSlots + 5;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t port = i == acl::kChunkSlots * 2 + 1 ? 4242 : 10000 + i;
    text += "drop tcp any any -> any " + std::to_string(port) + " (sid:" + std::to_string(i + 1) + ";)\n";
  }
  text += "alert tcp any any -> any 4242 (sid:999999;)\n";
  auto c = compile_text(text);
  acl::Index idx = acl::build(*c.tables);
  EXPECT_EQ(idx.num_chunks, 4u);
  FrameSpec f;
  f.src = ip16("10.0.0.1");
  f.dst = ip16("10.0.0.2");
  f.dport = 4242;
  EXPECT_EQ(indexed(*c.tables, idx, build_frame(f)).rule_id, acl::kChunkSlots * 2 + 2);
  f.dport = uint16_t(10000 + n - 1);
  EXPECT_EQ(indexed(*c.tables, idx, build_frame(f)).rule_id, n);
  f.dport = 9999;
  EXPECT_EQ(indexed(*c.tables, idx, build_frame(f)).rule_id, 0u);
}

// Memory stays bounded with many distinct prefixes: classes are per chunk,
// never intervals x rules bits (20K distinct /32 would need 50 MB per field).
TEST(ClassifyAcl, MemoryStaysBoundedForDistinctPrefixes) {
  std::string text;
  const int kRules = 20000;
  for (int i = 0; i < kRules; ++i)
    text += "drop tcp 10." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) + ".1 any -> 172.16." +
            std::to_string(i % 200) + ".0/24 " + std::to_string(i % 1000) + " (sid:" + std::to_string(i + 1) + ";)\n";
  auto c = compile_text(text);
  acl::Index idx = acl::build(*c.tables);
  // src: 2 edges per rule; per chunk at most (2 * 2048 + 1) classes of 260 B.
  const size_t per_field_bound =
      size_t(idx.num_chunks) * (2 * acl::kChunkSlots + 1) * (acl::kWordsPerChunk * 8 + 4) +
      size_t(idx.f[acl::kSrc4].num_intervals) * idx.num_chunks * 4 + size_t(2 * kRules + 1) * 4;
  EXPECT_LE(idx.f[acl::kSrc4].bytes(), per_field_bound);
  EXPECT_LT(idx.bytes(), size_t(64) << 20);
  FrameSpec f;
  f.src = ip16("10.7.0.1");  // rule index 7 * 256
  f.dst = ip16("172.16." + std::to_string(7 * 256 % 200) + ".9");
  f.dport = uint16_t(7 * 256 % 1000);
  EXPECT_EQ(indexed(*c.tables, idx, build_frame(f)).rule_id, 7u * 256 + 1);
  f.src = ip16("10.7.0.2");
  EXPECT_EQ(indexed(*c.tables, idx, build_frame(f)).rule_id, 0u);
}
