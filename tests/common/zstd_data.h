// Test inputs for zstd compression: the data kinds the issue names, made
// deterministically (seeded) so a failure reproduces; and the check of a
// frame by libzstd.
#pragma once
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace gpo::test {

enum class ZstdKind { text, binary, compressed, zeros, random };
inline const char* kind_name(ZstdKind k) {
  switch (k) {
    case ZstdKind::text: return "text";
    case ZstdKind::binary: return "binary";
    case ZstdKind::compressed: return "compressed";
    case ZstdKind::zeros: return "zeros";
    case ZstdKind::random: return "random";
  }
  return "?";
}
inline constexpr ZstdKind kZstdKinds[] = {ZstdKind::text, ZstdKind::binary, ZstdKind::compressed, ZstdKind::zeros,
                                          ZstdKind::random};
inline constexpr size_t kZstdSizes[] = {0, 1, 3, 127 * 1024, 128 * 1024 + 1, 10 * 1024 * 1024};

inline std::vector<uint8_t> zstd_data(ZstdKind kind, size_t n, uint32_t seed = 1) {
  std::mt19937_64 rng(seed * 7919 + n);
  std::vector<uint8_t> v;
  v.reserve(n + 64);
  switch (kind) {
    case ZstdKind::text: {  // words with a skewed frequency, lines, punctuation
      static const char* words[] = {"the", "of", "and", "packet", "queue", "offload", "kernel", "device",
                                    "a", "to", "in", "is", "buffer", "batch", "compress", "stream",
                                    "for", "with", "block", "sequence", "match", "literal", "window", "zstd"};
      while (v.size() < n) {
        const size_t w = std::min<size_t>(rng() % 24, rng() % 24);
        for (const char* c = words[w]; *c; ++c) v.push_back(uint8_t(*c));
        v.push_back(rng() % 11 == 0 ? '\n' : (rng() % 7 == 0 ? ',' : ' '));
      }
      break;
    }
    case ZstdKind::binary: {  // records: small ints, pointers that share high bytes, opcodes
      while (v.size() < n) {
        const uint64_t rec[4] = {rng() % 256, 0x00007f3a12000000ULL + (rng() % 4096) * 16, rng() % 3 ? 0 : rng(),
                                 0x48894c2408ULL + (rng() % 8)};
        for (uint64_t x : rec)
          for (int b = 0; b < 8; ++b) v.push_back(uint8_t(x >> (8 * b)));
      }
      break;
    }
    case ZstdKind::compressed: {  // zstd frames of text: little left to find
      auto t = zstd_data(ZstdKind::text, 1 << 20, seed);
      std::vector<uint8_t> c(ZSTD_compressBound(t.size()));
      while (v.size() < n) {
        t[rng() % t.size()] ^= 1;  // each frame differs
        const size_t k = ZSTD_compress(c.data(), c.size(), t.data(), t.size(), 3);
        v.insert(v.end(), c.begin(), c.begin() + k);
      }
      break;
    }
    case ZstdKind::zeros: v.assign(n, 0); break;
    case ZstdKind::random:
      while (v.size() < n) v.push_back(uint8_t(rng()));
      break;
  }
  v.resize(n);
  return v;
}

// What libzstd makes of frame, expecting at most expect bytes; empty, with a
// test failure, when it is not a valid frame.
inline std::vector<uint8_t> decompress(std::span<const uint8_t> frame, size_t expect) {
  std::vector<uint8_t> out(expect + 1);
  const size_t r = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  EXPECT_FALSE(ZSTD_isError(r)) << ZSTD_getErrorName(r);
  out.resize(ZSTD_isError(r) ? 0 : r);
  return out;
}

}  // namespace gpo::test
