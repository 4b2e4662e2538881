// The benchmark baselines agree with the project's CPU references before
// their rates are trusted: Hyperscan finds the same (payload, pattern) pairs
// as the CPU matcher; rte_acl picks the same first-matching rule as the CPU
// classifier on header rules over IPv4. Each test skips, with the reason, when
// its library is not installed (they are loaded with dlopen).
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "bench/baselines.h"
#include "kernels/classify/classify_cpu.h"
#include "kernels/match/match.h"
#include "rules/compiler.h"
#include "rules/parser.h"
#include "unit/rules_frames.h"

using gpo::match::Pattern;
namespace mg = gpo::match::gpu;
namespace bench = gpo::bench;

TEST(Baselines, HyperscanAgreesWithCpuMatcher) {
  std::string why;
  if (!bench::hyperscan_available(&why)) GTEST_SKIP() << why;
  std::mt19937 rng(31);
  const std::string alpha = std::string("abcAB\x00\xff|;\"", 11);
  for (int round = 0; round < 20; ++round) {
    std::vector<Pattern> pats(1 + rng() % 50);
    for (auto& p : pats) {
      size_t len = 1 + rng() % 8;
      for (size_t i = 0; i < len; ++i) p.bytes += alpha[rng() % alpha.size()];
      p.nocase = rng() % 3 == 0;
    }
    auto m = gpo::match::build(pats);
    std::vector<uint8_t> data;
    std::vector<mg::PayloadRef> refs;
    for (int i = 0; i < 100; ++i) {
      const uint32_t len = rng() % 200;
      refs.push_back({uint32_t(data.size()), len});
      for (uint32_t k = 0; k < len; ++k) data.push_back(uint8_t(alpha[rng() % alpha.size()]));
    }
    const uint32_t depth = round % 2 ? 1500 : 50;
    const uint32_t words = (m.num_patterns() + 31) / 32;
    std::vector<uint32_t> want(refs.size() * words, 0);
    uint64_t pairs = 0;
    for (size_t i = 0; i < refs.size(); ++i)
      gpo::match::scan(m, data.data() + refs[i].offset, std::min(refs[i].len, depth), [&](uint32_t id, size_t) {
        uint32_t& w = want[i * words + id / 32];
        if (!(w & (1u << (id % 32)))) ++pairs;
        w |= 1u << (id % 32);
      });
    std::vector<uint32_t> got;
    auto r = bench::hyperscan_scan(pats, data, refs, depth, 1 + round % 3, 0.0, &got);
    ASSERT_TRUE(r.ran) << r.why_not;
    EXPECT_EQ(got, want) << "round " << round;
    EXPECT_EQ(r.matches, pairs);
    EXPECT_GT(r.items, 0u);
  }
}

TEST(Baselines, RteAclAgreesWithCpuClassifier) {
  std::string why;
  if (!bench::rte_acl_available(&why)) GTEST_SKIP() << why;
  std::mt19937 rng(17);
  // Random header rules over 198.18.0.0/15: CIDRs, lists, negations, port ranges, protocols, `<>`.
  auto cidr = [&] {
    const int len = 15 + int(rng() % 18);
    return "198." + std::to_string(18 + rng() % 2) + "." + std::to_string(rng() % 256) + "." +
           std::to_string(rng() % 256) + "/" + std::to_string(len);
  };
  // Negations in every form the rules allow: !entry, [a, !b], ![a, b].
  auto addr = [&] {
    switch (rng() % 14) {
      case 0: return std::string("any");
      case 1: return "[" + cidr() + ", " + cidr() + "]";
      case 2: return "!" + cidr();
      case 3: return "[" + cidr() + ", !" + cidr() + "]";
      case 4: return "![" + cidr() + ", " + cidr() + "]";
      default: return cidr();
    }
  };
  auto port = [&] {
    switch (rng() % 9) {
      case 4: return "!" + std::to_string(rng() % 2048);
      case 5: return "[1:2000, !" + std::to_string(rng() % 2048) + "]";
      case 0: return std::string("any");
      case 1: return std::to_string(rng() % 1024);
      case 2: {
        uint32_t lo = rng() % 60000;
        return std::to_string(lo) + ":" + std::to_string(lo + rng() % 5000);
      }
      default: return "[" + std::to_string(rng() % 1024) + "," + std::to_string(1024 + rng() % 1000) + ":" +
                      std::to_string(3000 + rng() % 1000) + "]";
    }
  };
  const char* actions[] = {"pass", "drop", "alert"};
  std::string text;
  for (int i = 0; i < 300; ++i) {
    const int pr = int(rng() % 4);
    const bool ports = pr < 2;
    text += std::string(actions[rng() % 3]) + " " + (pr == 0 ? "tcp" : pr == 1 ? "udp" : pr == 2 ? "icmp" : "ip") +
            " " + addr() + " " + (ports ? port() : "any") + (rng() % 5 == 0 ? " <> " : " -> ") + addr() + " " +
            (ports ? port() : "any") + " (msg:\"r" + std::to_string(i) + "\"; sid:" + std::to_string(1000 + i) + ";)\n";
  }
  text += "default drop\n";
  auto parsed = gpo::rules::parse_rules(text);
  ASSERT_TRUE(parsed.ok()) << gpo::rules::format_diagnostic("rules", parsed.problems[0]);
  auto tables = std::make_shared<gpo::classify::RuleTables>(gpo::rules::compile(parsed.set));
  gpo::classify::CpuClassifier cpu(tables);

  std::vector<std::vector<uint8_t>> bytes;
  for (int i = 0; i < 3000; ++i) {
    gpo::test::FrameSpec f;
    const uint8_t protos[] = {6, 17, 1, 47};
    f.proto = protos[rng() % 4];
    auto a4 = [&] {
      return gpo::test::ip16("198." + std::to_string(18 + rng() % 2) + "." + std::to_string(rng() % 256) + "." +
                             std::to_string(rng() % 256));
    };
    f.src = a4();
    f.dst = a4();
    if (f.proto == 6 || f.proto == 17) {
      f.sport = uint16_t(rng() % 2 ? rng() % 4096 : rng());
      f.dport = uint16_t(rng() % 2 ? rng() % 4096 : rng());
    }
    bytes.push_back(gpo::test::build_frame(f));
  }
  // One IPv6 frame: skipped by rte_acl (IPv4 only), said so.
  gpo::test::FrameSpec f6;
  f6.ip_version = 6;
  f6.src = gpo::test::ip16("2001:db8::1");
  f6.dst = gpo::test::ip16("2001:db8::2");
  bytes.push_back(gpo::test::build_frame(f6));
  std::vector<gpo::classify::Frame> frames;
  for (auto& b : bytes) frames.push_back({b.data(), uint32_t(b.size())});

  std::vector<uint32_t> sids;
  auto r = bench::rte_acl_classify(*tables, frames, 2, 0.0, &sids);
  ASSERT_TRUE(r.ran) << r.why_not;
  EXPECT_EQ(r.skipped_rules, 0u);
  EXPECT_EQ(r.skipped_items, 1u);
  ASSERT_EQ(sids.size(), frames.size());
  EXPECT_EQ(sids.back(), UINT32_MAX);
  size_t matched = 0;
  std::set<uint32_t> distinct;
  for (size_t i = 0; i + 1 < frames.size(); ++i) {
    const auto v = cpu.classify_one(frames[i]);
    ASSERT_EQ(sids[i], v.rule_id) << "frame " << i;
    matched += v.rule_id != 0;
    distinct.insert(v.rule_id);
  }
  EXPECT_EQ(r.matches, matched);
  EXPECT_GT(distinct.size(), 20u);  // many rules decide, not one catch-all
}

TEST(Baselines, RteAclCountsRulesItCannotExpress) {  // and expresses negations
  std::string why;
  if (!bench::rte_acl_available(&why)) GTEST_SKIP() << why;
  auto parsed = gpo::rules::parse_rules(
      "alert tcp any any -> any 80 (msg:\"c\"; content:\"GET\"; sid:1;)\n"
      "drop tcp !198.18.0.0/16 any -> any any (msg:\"neg\"; sid:2;)\n"
      "pass udp any any -> any 53 (msg:\"dns\"; sid:3;)\n");
  ASSERT_TRUE(parsed.ok());
  auto tables = gpo::rules::compile(parsed.set);
  gpo::test::FrameSpec f;
  f.proto = 17;
  f.src = gpo::test::ip16("198.18.0.1");
  f.dst = gpo::test::ip16("198.18.0.2");
  f.sport = 1000;
  f.dport = 53;
  auto b = gpo::test::build_frame(f);
  gpo::classify::Frame fr{b.data(), uint32_t(b.size())};
  std::vector<uint32_t> sids;
  auto r = bench::rte_acl_classify(tables, {&fr, 1}, 1, 0.0, &sids);
  ASSERT_TRUE(r.ran) << r.why_not;
  EXPECT_EQ(r.skipped_rules, 1u);  // the content rule; the negated one is expressed as CIDRs
  EXPECT_EQ(sids, std::vector<uint32_t>{3});
}
