// The GPU matcher's batch kernel (DeviceMatcher) against the CPU matcher:
// per payload, the set of patterns that occur in the first `depth` bytes.
// Random pattern sets (overlapping, binary, nocase), payload lengths from 0 to
// 1500, unaligned payloads, batches small enough that payloads are split into
// chunks, the shared-memory rows on and off, 10K patterns. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "kernels/match/match.h"
#include "kernels/match/match_gpu.h"

using gpo::match::Pattern;
namespace mg = gpo::match::gpu;

namespace {

struct Batch {
  std::vector<uint8_t> data;
  std::vector<mg::PayloadRef> refs;
};

// The CPU classifier's view of each payload, as bitsets in DeviceMatcher's format.
std::vector<uint32_t> cpu_bits(const gpo::match::Matcher& m, const Batch& b, uint32_t depth) {
  const uint32_t words = (m.num_patterns() + 31) / 32;
  std::vector<uint32_t> bits(b.refs.size() * words, 0);
  for (size_t i = 0; i < b.refs.size(); ++i) {
    const auto& r = b.refs[i];
    gpo::match::scan(m, b.data.data() + r.offset, std::min(r.len, depth),
                     [&](uint32_t id, size_t) { bits[i * words + id / 32] |= 1u << (id % 32); });
  }
  return bits;
}

class GpuMatch : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!mg::gpu_usable(&why)) GTEST_SKIP() << "no GPU: " << why;
  }
  std::mt19937 rng_{4242};

  std::vector<Pattern> patterns(const std::string& alpha, size_t count, size_t max_len) {
    std::vector<Pattern> pats(count);
    for (auto& p : pats) {
      size_t len = 1 + rng_() % max_len;
      for (size_t i = 0; i < len; ++i) p.bytes += alpha[rng_() % alpha.size()];
      p.nocase = rng_() % 3 == 0;
    }
    return pats;
  }
  // Payloads at odd offsets in one buffer; some carry planted patterns in mixed case.
  Batch payloads(const std::string& alpha, const std::vector<Pattern>& pats, size_t n, uint32_t max_len) {
    Batch b;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t len = rng_() % (max_len + 1);
      b.data.resize(b.data.size() + rng_() % 4);  // misalign
      mg::PayloadRef r{uint32_t(b.data.size()), len};
      std::string s(len, '\0');
      for (auto& c : s) c = alpha[rng_() % alpha.size()];
      if (!pats.empty() && len > 0 && rng_() % 2) {
        std::string p = pats[rng_() % pats.size()].bytes;
        for (auto& c : p)
          if (rng_() % 2 && c >= 'a' && c <= 'z') c = char(c - 32);
        if (p.size() <= len) s.replace(rng_() % (len - p.size() + 1), p.size(), p);
      }
      b.data.insert(b.data.end(), s.begin(), s.end());
      b.refs.push_back(r);
    }
    return b;
  }
};

}  // namespace

TEST_F(GpuMatch, RandomSetsAgainstCpuMatcher) {
  const std::string alphabets[] = {"ab", "abcA", "aAbBcC\r\n", std::string("\x00\xff" "xyZ", 5)};
  for (int round = 0; round < 40; ++round) {
    const std::string& alpha = alphabets[round % 4];
    auto pats = patterns(alpha, 1 + rng_() % 200, 1 + rng_() % 16);
    auto m = gpo::match::build(pats);
    mg::DeviceMatcher dm(m);
    if (round % 2) dm.set_hot_bytes(0);
    // Small batches of long payloads (split into chunks) and larger mixed ones.
    const size_t n = round % 3 == 0 ? 1 + rng_() % 8 : 1 + rng_() % 3000;
    // Up to 1500 bytes (split into chunks) or up to 60 (one thread per payload).
    Batch b = payloads(alpha, pats, n, (round / 4) % 2 == 0 ? 1500 : 60);
    for (uint32_t depth : {1500u, 100u, 7u}) {
      std::vector<uint32_t> got;
      dm.scan(b.data, b.refs, depth, got);
      const auto want = cpu_bits(m, b, depth);
      ASSERT_EQ(got, want) << "round " << round << " depth " << depth << " n " << n;
      // The compact form: the same ids, increasing, per payload.
      std::vector<uint32_t> offsets, ids;
      dm.scan_lists(b.data, b.refs, depth, offsets, ids);
      ASSERT_EQ(offsets.size(), n + 1);
      ASSERT_EQ(offsets.back(), ids.size());
      const uint32_t words = dm.bitset_words();
      std::vector<uint32_t> from_lists(want.size(), 0);
      for (size_t i = 0; i < n; ++i)
        for (uint32_t k = offsets[i]; k < offsets[i + 1]; ++k) {
          if (k > offsets[i]) {
            ASSERT_LT(ids[k - 1], ids[k]);
          }
          from_lists[i * words + ids[k] / 32] |= 1u << (ids[k] % 32);
        }
      ASSERT_EQ(from_lists, want) << "lists, round " << round << " depth " << depth;
    }
  }
}

TEST_F(GpuMatch, TenThousandPrintablePatterns) {
  std::string printable;
  for (int c = 0x20; c < 0x7f; ++c) printable += char(c);
  std::vector<Pattern> pats(10000);
  for (auto& p : pats) {
    size_t len = 4 + rng_() % 17;
    for (size_t i = 0; i < len; ++i) p.bytes += printable[rng_() % printable.size()];
    p.nocase = rng_() % 4 == 0;
  }
  auto m = gpo::match::build(pats);
  mg::DeviceMatcher dm(m);
  for (size_t n : {size_t(16), size_t(20000)}) {
    Batch b = payloads(printable, pats, n, 1500);
    std::vector<uint32_t> got;
    dm.scan(b.data, b.refs, 1500, got);
    auto want = cpu_bits(m, b, 1500);
    size_t hits = 0;
    for (uint32_t w : want) hits += __builtin_popcount(w);
    EXPECT_GT(hits, n / 8);  // the planted patterns (in about half of the payloads) are found
    ASSERT_EQ(got, want) << n << " payloads";
  }
}

TEST_F(GpuMatch, NoPatterns) {
  auto m = gpo::match::build({});
  mg::DeviceMatcher dm(m);
  Batch b = payloads("abc", {}, 10, 100);
  std::vector<uint32_t> got{1, 2, 3};
  dm.scan(b.data, b.refs, 1500, got);
  EXPECT_TRUE(got.empty());
  std::vector<uint32_t> offsets, ids{7};
  dm.scan_lists(b.data, b.refs, 1500, offsets, ids);
  EXPECT_EQ(offsets, std::vector<uint32_t>(11, 0));
  EXPECT_TRUE(ids.empty());
}

// enqueue_scan with a max_len below the real longest payload still scans it whole.
TEST_F(GpuMatch, EnqueueWithUnderstatedMaxLen) {
  std::vector<Pattern> pats = {{"needle", false}, {"HAY", true}};
  auto m = gpo::match::build(pats);
  mg::DeviceMatcher dm(m);
  std::string text(1400, '.');
  text.replace(1390, 6, "needle");
  text.replace(700, 3, "hay");
  mg::PayloadRef ref{0, uint32_t(text.size())};
  uint8_t* d_data = nullptr;
  mg::PayloadRef* d_ref = nullptr;
  uint32_t* d_bits = nullptr;
  ASSERT_EQ(cudaMalloc(&d_data, text.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_ref, sizeof ref), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_bits, 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_data, text.data(), text.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_ref, &ref, sizeof ref, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(dm.enqueue_scan(d_data, d_ref, 1, 64, 1500, d_bits, nullptr), 0);
  uint32_t bits = 0;
  ASSERT_EQ(cudaMemcpy(&bits, d_bits, 4, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(bits, 3u);
  cudaFree(d_data);
  cudaFree(d_ref);
  cudaFree(d_bits);
}
