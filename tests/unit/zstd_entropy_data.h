// Inputs for the zstd stage-2 tests (CPU and GPU): the data kinds of issue 7
// (text, executable code, already-compressed, zeros, random, mixed), made from
// files on the machine and a fixed seed, so both tests see the same bytes.
#pragma once
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace gpo::test::zstd_data {

inline std::vector<uint8_t> read_prefix(const std::string& path, size_t max) {
  std::ifstream f(path, std::ios::binary);
  std::vector<uint8_t> v(max);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(max));
  v.resize(size_t(f.gcount()));
  return v;
}

// Text-like: a real text file repeated/cut to n bytes, else generated words.
inline std::vector<uint8_t> text(size_t n) {
  std::vector<uint8_t> src;
  for (const char* p : {"/usr/share/common-licenses/GPL-3", "/usr/include/stdio.h", "/etc/services"}) {
    src = read_prefix(p, 1 << 20);
    if (src.size() > 1000) break;
  }
  std::vector<uint8_t> v(n);
  if (src.size() > 1000) {
    for (size_t i = 0; i < n; ++i) v[i] = src[(i + (i / src.size()) * 7) % src.size()];
    return v;
  }
  std::mt19937 rng(7);
  static const char* words[] = {"the ", "offload ", "kernel ", "block ", "zstd ", "frame\n", "GPU ", "of "};
  std::string s;
  while (s.size() < n) s += words[rng() % 8];
  std::memcpy(v.data(), s.data(), n);
  return v;
}

// Executable code: the test binary itself (ELF), repeated to n bytes.
inline std::vector<uint8_t> binary(size_t n) {
  std::vector<uint8_t> src = read_prefix("/proc/self/exe", 8 << 20);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = src.empty() ? uint8_t(i * 31) : src[i % src.size()];
  return v;
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// Already compressed: zstd frames of text, concatenated to n bytes.
inline std::vector<uint8_t> compressed(size_t n) {
  std::vector<uint8_t> t = text(std::max<size_t>(n * 4, 4096));
  std::vector<uint8_t> c(ZSTD_compressBound(t.size()));
  c.resize(ZSTD_compress(c.data(), c.size(), t.data(), t.size(), 3));
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = c[i % c.size()];
  return v;
}

// Mixed: runs, text, random and a small alphabet, in 10 KiB pieces.
inline std::vector<uint8_t> mixed(size_t n) {
  std::vector<uint8_t> t = text(n), r = random_bytes(n, 9), v(n);
  std::mt19937 rng(3);
  for (size_t i = 0; i < n; i += 10240) {
    const int kind = int(rng() % 4);
    for (size_t j = i; j < std::min(n, i + 10240); ++j)
      v[j] = kind == 0 ? uint8_t('a' + (j / 300) % 3) : kind == 1 ? t[j] : kind == 2 ? r[j] : uint8_t("ACGT"[r[j] & 3]);
  }
  return v;
}

struct Kind {
  const char* name;
  std::vector<uint8_t> (*make)(size_t);
};
inline const std::vector<Kind>& kinds() {
  static const std::vector<Kind> k = {
      {"text", text},
      {"binary", binary},
      {"compressed", compressed},
      {"zeros", [](size_t n) { return std::vector<uint8_t>(n, 0); }},
      {"random", [](size_t n) { return random_bytes(n); }},
      {"mixed", mixed},
  };
  return k;
}

inline const std::vector<size_t>& sizes() {
  static const std::vector<size_t> s = {0, 1, 2, 17, 100, 1000, 5000, 127 * 1024, 128 * 1024, 128 * 1024 + 1,
                                        300 * 1024 + 77, 1 << 20, (3 << 20) + 12345};
  return s;
}

}  // namespace gpo::test::zstd_data
