// The GPU matcher's layout and scan code (match_gpu.h), run on the CPU: the
// same scan_span()/scan_to_bits() the CUDA kernel runs, against the CPU
// matcher (match::scan) on random pattern sets and payloads: nocase, binary
// bytes, patterns longer than the payload, inspection depth, unaligned
// payloads, and payloads split into chunks as the batch kernel splits them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/match/match.h"
#include "kernels/match/match_gpu.h"

using gpo::match::Pattern;
namespace mg = gpo::match::gpu;

namespace {

using Ids = std::set<uint32_t>;

// The CPU classifier's view: which patterns occur in the first min(len, depth) bytes.
Ids cpu_ids(const gpo::match::Matcher& m, const uint8_t* p, uint32_t len, uint32_t depth) {
  Ids ids;
  gpo::match::scan(m, p, std::min(len, depth), [&](uint32_t id, size_t) { ids.insert(id); });
  return ids;
}

Ids bits_ids(const std::vector<uint32_t>& bits, uint32_t num_patterns) {
  Ids ids;
  for (uint32_t id = 0; id < num_patterns; ++id)
    if (mg::has_hit(bits.data(), id)) ids.insert(id);
  return ids;
}

Ids gpu_layout_ids(const mg::MatcherView& v, const uint8_t* p, uint32_t len, uint32_t depth) {
  std::vector<uint32_t> bits(v.bitset_words() + 1, 0);
  mg::scan_to_bits(v, p, len, depth, bits.data());
  EXPECT_EQ(bits.back(), 0u) << "wrote past bitset_words()";
  return bits_ids(bits, v.num_patterns);
}

// Union over chunks [k*chunk, (k+1)*chunk) of scan_span, as the kernel's threads do it.
Ids chunked_ids(const mg::MatcherView& v, const uint8_t* p, uint32_t len, uint32_t depth, uint32_t chunk) {
  const uint32_t n = std::min(len, depth);
  Ids ids;
  for (uint32_t b = 0; b < n; b += chunk) mg::scan_span(v, p, n, b, b + chunk, [&](uint32_t id) { ids.insert(id); });
  return ids;
}

std::vector<Pattern> random_patterns(std::mt19937& rng, const std::string& alpha, size_t count, size_t max_len) {
  std::vector<Pattern> pats(count);
  for (auto& p : pats) {
    size_t len = 1 + rng() % max_len;
    for (size_t i = 0; i < len; ++i) p.bytes += alpha[rng() % alpha.size()];
    p.nocase = rng() % 3 == 0;
  }
  return pats;
}

}  // namespace

TEST(MatchGpuLayout, TablesCarryRowOffsetsAndHitFlags) {
  std::vector<Pattern> pats = {{"abc", false}, {"XYZ", true}, {"bc", false}};
  auto m = gpo::match::build(pats);
  auto img = mg::build_image(m);
  EXPECT_EQ(img.num_patterns, 3u);
  EXPECT_EQ(img.max_pattern_len, 3u);
  ASSERT_EQ(img.classes.size(), 256u);
  EXPECT_EQ(img.classes['x'] >> 16, img.classes['X'] >> 16);  // folded: same class
  EXPECT_NE(img.classes['b'] & 0xffff, 0u);
  const std::pair<const gpo::match::Automaton*, const mg::MatcherImage::Automaton*> pairs[] = {{&m.exact, &img.exact},
                                                                                           {&m.folded, &img.folded}};
  for (auto [a, g] : pairs) {
    ASSERT_TRUE(g->active);
    ASSERT_EQ(g->next.size(), a->next.size());
    for (size_t i = 0; i < a->next.size(); ++i) {
      const uint32_t t = a->next[i];
      EXPECT_EQ(g->next[i] & ~mg::kHitFlag, t * a->num_classes);
      EXPECT_EQ((g->next[i] & mg::kHitFlag) != 0, a->out_first[t + 1] > a->out_first[t]);
    }
  }
}

TEST(MatchGpuLayout, ExamplesAndDepth) {
  std::vector<Pattern> pats = {{"he", false}, {"she", false}, {"HERS", true}, {std::string("\x00\xff", 2), false}};
  auto m = gpo::match::build(pats);
  auto img = mg::build_image(m);
  auto v = img.view();
  std::string text = std::string("ushers\x00\xff", 8);
  auto p = reinterpret_cast<const uint8_t*>(text.data());
  EXPECT_EQ(gpu_layout_ids(v, p, 8, 1500), (Ids{0, 1, 2, 3}));
  EXPECT_EQ(gpu_layout_ids(v, p, 8, 7), (Ids{0, 1, 2}));  // \x00\xff straddles the depth: no match
  EXPECT_EQ(gpu_layout_ids(v, p, 8, 5), (Ids{0, 1}));     // "hers" straddles
  EXPECT_EQ(gpu_layout_ids(v, p, 8, 0), Ids{});
  EXPECT_EQ(gpu_layout_ids(v, p, 2, 1500), Ids{});        // patterns longer than the payload
}

TEST(MatchGpuLayout, NoPatternsAndOneKindOnly) {
  std::string text = "Anything AT all";
  auto p = reinterpret_cast<const uint8_t*>(text.data());
  {
    auto m = gpo::match::build({});
    auto img = mg::build_image(m);
    auto v = img.view();
    EXPECT_EQ(v.bitset_words(), 0u);
    EXPECT_FALSE(img.exact.active || img.folded.active);
    int hits = 0;
    mg::scan_payload(v, p, uint32_t(text.size()), 1500, [&](uint32_t) { ++hits; });
    EXPECT_EQ(hits, 0);
  }
  for (bool nocase : {false, true}) {
    std::vector<Pattern> pats = {{"at", nocase}, {"all", nocase}};
    auto m = gpo::match::build(pats);
    auto img = mg::build_image(m);
    EXPECT_EQ(img.exact.active, !nocase);
    EXPECT_EQ(img.folded.active, nocase);
    EXPECT_EQ(gpu_layout_ids(img.view(), p, uint32_t(text.size()), 1500), nocase ? (Ids{0, 1}) : (Ids{1}));
  }
}

// Patterns that use all 256 byte values (binary contents): 256 byte classes,
// none left for "in no pattern".
TEST(MatchGpuLayout, EveryByteValue) {
  std::mt19937 rng(5);
  std::vector<Pattern> pats;
  for (int b = 0; b < 256; b += 4) pats.push_back({std::string{char(b), char(b + 1), char(b + 2), char(b + 3)}, false});
  pats.push_back({"AbC", true});
  auto m = gpo::match::build(pats);
  EXPECT_EQ(m.exact.num_classes, 256u);
  auto img = mg::build_image(m);
  auto v = img.view();
  for (int t = 0; t < 50; ++t) {
    std::string buf(1 + rng() % 1500, '\0');
    for (auto& c : buf) c = char(rng() % 2 ? rng() % 256 : rng() % 8);
    if (t % 2) buf.replace(rng() % (buf.size() / 2 + 1), 3, "aBc");
    auto p = reinterpret_cast<const uint8_t*>(buf.data());
    const uint32_t len = uint32_t(buf.size());
    Ids brute;  // occurrences by direct comparison
    for (uint32_t id = 0; id < pats.size(); ++id) {
      const std::string& pat = pats[id].bytes;
      for (size_t s = 0; s + pat.size() <= buf.size(); ++s) {
        bool eq = true;
        for (size_t i = 0; i < pat.size() && eq; ++i) {
          uint8_t a = uint8_t(buf[s + i]), b = uint8_t(pat[i]);
          if (pats[id].nocase) a = uint8_t(std::tolower(a)), b = uint8_t(std::tolower(b));
          eq = a == b;
        }
        if (eq) brute.insert(id);
      }
    }
    ASSERT_EQ(cpu_ids(m, p, len, 1500), brute) << t;
    ASSERT_EQ(gpu_layout_ids(v, p, len, 1500), brute) << t;
  }
}

// Random pattern sets over small alphabets (many overlaps), binary bytes,
// nocase; payloads at every alignment, random depths, random chunk sizes.
TEST(MatchGpuLayout, RandomAgainstCpuMatcher) {
  std::mt19937 rng(2026);
  const std::string alphabets[] = {"ab", "abcA", "aAbBcC\r\n", std::string("\x00\xff" "xyZ", 5)};
  for (int round = 0; round < 400; ++round) {
    const std::string& alpha = alphabets[round % 4];
    auto pats = random_patterns(rng, alpha, 1 + rng() % 60, 1 + rng() % 12);
    auto m = gpo::match::build(pats);
    auto img = mg::build_image(m);
    auto v = img.view();
    for (int t = 0; t < 6; ++t) {
      const uint32_t len = rng() % 300;
      std::string buf(len + 4, '\0');
      const uint32_t align = rng() % 4;
      for (uint32_t i = 0; i < len; ++i) buf[align + i] = alpha[rng() % alpha.size()];
      auto p = reinterpret_cast<const uint8_t*>(buf.data()) + align;
      const uint32_t depth = rng() % 2 ? 1500 : rng() % 320;
      const Ids want = cpu_ids(m, p, len, depth);
      ASSERT_EQ(gpu_layout_ids(v, p, len, depth), want) << "round " << round << " text " << t;
      const uint32_t chunk = 1 + rng() % 40;
      ASSERT_EQ(chunked_ids(v, p, len, depth, chunk), want) << "round " << round << " chunk " << chunk;
    }
  }
}

// The scale: 1K and 10K printable patterns (a quarter nocase), random
// binary payloads with planted patterns in mixed case, 64..1500 bytes.
TEST(MatchGpuLayout, ThousandsOfPatterns) {
  std::mt19937 rng(77);
  for (size_t count : {1000u, 10000u}) {
    std::vector<Pattern> pats(count);
    for (auto& p : pats) {
      size_t len = 3 + rng() % 18;
      for (size_t i = 0; i < len; ++i) p.bytes += char(0x20 + rng() % 95);
      p.nocase = rng() % 4 == 0;
    }
    auto m = gpo::match::build(pats);
    auto img = mg::build_image(m);
    auto v = img.view();
    size_t total_hits = 0;
    for (int t = 0; t < 200; ++t) {
      const uint32_t len = t % 2 ? 64 : 64 + rng() % 1437;
      std::string buf(len, '\0');
      for (auto& c : buf) c = char(rng() % 4 ? 0x20 + rng() % 95 : rng());
      for (int k = 0; k < 3; ++k) {
        std::string pat = pats[rng() % count].bytes;
        if (pat.size() > len) continue;
        for (auto& c : pat)
          if (rng() % 2 && c >= 'a' && c <= 'z') c = char(c - 32);
        buf.replace(rng() % (len - pat.size() + 1), pat.size(), pat);
      }
      auto p = reinterpret_cast<const uint8_t*>(buf.data());
      const Ids want = cpu_ids(m, p, len, 1500);
      total_hits += want.size();
      ASSERT_EQ(gpu_layout_ids(v, p, len, 1500), want) << count << " patterns, payload " << t;
      ASSERT_EQ(chunked_ids(v, p, len, 1500, 64), want) << count << " patterns, payload " << t;
    }
    EXPECT_GT(total_hits, 100u);  // the planted patterns were found
  }
}
