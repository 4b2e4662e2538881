// Aho-Corasick matcher against a brute-force search on random patterns and texts.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <utility>

#include "kernels/match/match.h"

using gpo::match::Pattern;

namespace {

using Hits = std::multiset<std::pair<uint32_t, size_t>>;  // (pattern id, end offset)

uint8_t fold(uint8_t c) { return (c >= 'A' && c <= 'Z') ? uint8_t(c + 32) : c; }

Hits brute_force(const std::vector<Pattern>& pats, const std::string& text) {
  Hits h;
  for (uint32_t id = 0; id < pats.size(); ++id) {
    const std::string& p = pats[id].bytes;
    for (size_t s = 0; s + p.size() <= text.size(); ++s) {
      bool eq = true;
      for (size_t i = 0; i < p.size() && eq; ++i) {
        uint8_t a = uint8_t(text[s + i]), b = uint8_t(p[i]);
        eq = pats[id].nocase ? fold(a) == fold(b) : a == b;
      }
      if (eq) h.emplace(id, s + p.size());
    }
  }
  return h;
}

Hits ac(const gpo::match::Matcher& m, const std::string& text) {
  Hits h;
  gpo::match::scan(m, reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                   [&](uint32_t id, size_t end) { h.emplace(id, end); });
  return h;
}

}  // namespace

TEST(Match, FindsOverlappingAndNestedPatterns) {
  std::vector<Pattern> pats = {{"he", false}, {"she", false}, {"his", false}, {"hers", false}};
  auto m = gpo::match::build(pats);
  Hits want = {{1, 4}, {0, 4}, {3, 6}};  // "ushers": she@1..4, he@2..4, hers@2..6
  EXPECT_EQ(ac(m, "ushers"), want);
}

TEST(Match, NocaseFoldsOnlyNocasePatterns) {
  std::vector<Pattern> pats = {{"GET", false}, {"host:", true}};
  auto m = gpo::match::build(pats);
  EXPECT_EQ(ac(m, "get / HOST: x"), (Hits{{1, 11}}));
  EXPECT_EQ(ac(m, "GET / Host: x"), (Hits{{0, 3}, {1, 11}}));
}

TEST(Match, BinaryBytesAndNul) {
  std::string p1("\x00\x01\xff", 3), text("ab\x00\x01\xff\x00\x01\xff", 8);
  std::vector<Pattern> pats = {{p1, false}, {std::string("\r\n"), true}};
  auto m = gpo::match::build(pats);
  EXPECT_EQ(ac(m, text), (Hits{{0, 5}, {0, 8}}));
}

TEST(Match, RejectsEmptyPattern) {
  std::vector<Pattern> pats = {{"", false}};
  EXPECT_THROW(gpo::match::build(pats), std::invalid_argument);
}

TEST(Match, NoPatternsMatchesNothing) {
  auto m = gpo::match::build({});
  EXPECT_TRUE(ac(m, "anything").empty());
}

TEST(Match, DuplicatePatternsBothReport) {
  std::vector<Pattern> pats = {{"ab", false}, {"ab", false}, {"AB", true}};
  auto m = gpo::match::build(pats);
  EXPECT_EQ(ac(m, "xab"), (Hits{{0, 3}, {1, 3}, {2, 3}}));
}

// Small alphabets make overlaps, shared prefixes and failure chains common.
TEST(Match, RandomAgainstBruteForce) {
  std::mt19937 rng(12345);
  const std::string alphabets[] = {"ab", "abcA", "aAbBcC\r\n", std::string("\x00\xff" "xyz", 5)};
  for (int round = 0; round < 300; ++round) {
    const std::string& alpha = alphabets[round % 4];
    auto pick = [&] { return alpha[rng() % alpha.size()]; };
    std::vector<Pattern> pats(1 + rng() % 40);
    for (auto& p : pats) {
      size_t len = 1 + rng() % 6;
      for (size_t i = 0; i < len; ++i) p.bytes += pick();
      p.nocase = rng() % 3 == 0;
    }
    auto m = gpo::match::build(pats);
    for (int t = 0; t < 5; ++t) {
      std::string text;
      size_t len = rng() % 200;
      for (size_t i = 0; i < len; ++i) text += pick();
      ASSERT_EQ(ac(m, text), brute_force(pats, text)) << "round " << round << " text " << t;
    }
  }
}

TEST(Match, TablesAreFlatAndConsistent) {
  std::vector<Pattern> pats = {{"abc", false}, {"xyz", true}, {"bc", false}};
  auto m = gpo::match::build(pats);
  for (const auto* a : {&m.exact, &m.folded}) {
    ASSERT_EQ(a->next.size(), size_t(a->num_states) * a->num_classes);
    ASSERT_EQ(a->out_first.size(), size_t(a->num_states) + 1);
    for (uint32_t s : a->next) EXPECT_LT(s, a->num_states);
    for (int b = 0; b < 256; ++b) EXPECT_LT(a->byte_class[b], a->num_classes);
  }
  EXPECT_EQ(m.folded.byte_class['X'], m.folded.byte_class['x']);
  EXPECT_NE(m.exact.byte_class['A'], m.exact.byte_class['a']);  // exact: 'A' is in no pattern
}

// The issue-6 scale (10K patterns): builds in bounded time and space, scans
// correctly. Prints the numbers for the record.
TEST(Match, TenThousandPatterns) {
  std::mt19937 rng(99);
  std::vector<Pattern> pats(10000);
  for (auto& p : pats) {
    size_t len = 4 + rng() % 17;
    for (size_t i = 0; i < len; ++i) p.bytes += char(0x20 + rng() % 95);  // printable ASCII
    p.nocase = rng() % 4 == 0;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto m = gpo::match::build(pats);
  double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string text;
  for (int i = 0; i < 1 << 20; ++i) text += char(0x20 + rng() % 95);
  for (int i = 0; i < 200; ++i) {  // plant some patterns
    const auto& p = pats[rng() % pats.size()].bytes;
    text.replace(rng() % (text.size() - p.size()), p.size(), p);
  }
  t0 = std::chrono::steady_clock::now();
  auto got = ac(m, text);
  double scan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("10000 patterns: build %.3f s; exact %u states x %u classes, nocase %u states x %u classes, %.1f MiB; "
              "scan 1 MiB in %.4f s (%.0f MB/s), %zu hits\n",
              build_s, m.exact.num_states, m.exact.num_classes, m.folded.num_states, m.folded.num_classes,
              m.table_bytes() / 1048576.0, scan_s, text.size() / scan_s / 1e6, got.size());
  EXPECT_GE(got.size(), 200u);
  // Spot-check against brute force on a slice (the whole text would be slow).
  std::string slice = text.substr(0, 4096);
  EXPECT_EQ(ac(m, slice), brute_force(pats, slice));
}
