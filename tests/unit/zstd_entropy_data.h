// Inputs for the zstd stage-2 tests (CPU and GPU): the data kinds to cover
// (text, executable code, already-compressed, zeros, random, mixed), made from
// files on the machine and a fixed seed, so both tests see the same bytes.
#pragma once
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/zstd/zstd_find.h"

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

// Inputs made from sequences written directly (not found by a parse), in
// stage 1's layout: inputs back to back (16-byte aligned), blocks, sequences.
// The input is made by executing the sequences, so frames must decompress to
// it. shape 0: the most sequences a block can hold (no literals, matches of
// 4); 1: one sequence per block; 2: every sequence the same (RLE streams,
// repeat offsets); 3: long literal runs and long matches (large codes); 4:
// random small sequences; 5: no sequence at all (all literals).
inline constexpr int kShapes = 6;
struct Shaped {
  std::vector<std::vector<uint8_t>> inputs;
  std::vector<uint8_t> batch;
  std::vector<gpo::zstd::gpu::BlockDesc> blocks;
  std::vector<gpo::zstd::gpu::Sequence> seqs;
};
inline Shaped make_shape(int shape) {
  namespace zg = gpo::zstd::gpu;
  std::mt19937 rng(uint32_t(100 + shape));
  const std::vector<size_t> input_sizes = {100, 5000, 128 * 1024, 300 * 1024 + 5, 1 << 20};
  Shaped r;
  std::vector<std::vector<zg::Sequence>> per_block;  // in block order over all inputs
  for (size_t n : input_sizes) {
    std::vector<uint8_t> d;
    for (size_t pos = 0; pos < n; pos += zg::kBlockBytes) {
      const uint32_t len = uint32_t(std::min<size_t>(zg::kBlockBytes, n - pos));
      std::vector<zg::Sequence> bs;
      uint32_t at = 0;  // bytes of the block made so far
      auto lit = [&](uint32_t k) {
        for (uint32_t i = 0; i < k; ++i) d.push_back(uint8_t(shape == 2 ? 'x' : rng() % (shape == 4 ? 16 : 256)));
        at += k;
      };
      while (shape != 5) {
        uint32_t ll = 0, ml = 4, off = 1;
        if (shape == 0) {
          ll = d.empty() ? 1 : 0;
          off = 1 + rng() % 3;
        } else if (shape == 1) {
          ll = 1 + rng() % 100;
          ml = len / 2;
          off = 1 + rng() % 50;
        } else if (shape == 2) {
          ll = 3;
          ml = 7;
          off = 1;
        } else if (shape == 3) {
          ll = rng() % 2 ? rng() % 40000 : rng() % 70;
          ml = 4 + (rng() % 2 ? rng() % 60000 : rng() % 300);
          off = 1 + rng() % 200000;
        } else {
          ll = rng() % 12;
          ml = 4 + rng() % 40;
          off = 1 + (rng() % 4 ? rng() % 64 : rng() % 100000);
        }
        if (uint64_t(at) + ll + ml > len || (shape == 1 && !bs.empty())) break;
        lit(ll);
        off = std::min<uint32_t>({off, uint32_t(d.size()), zg::kMaxOffset});
        for (uint32_t i = 0; i < ml; ++i) d.push_back(d[d.size() - off]);
        at += ml;
        bs.push_back({ll, ml, off});
      }
      lit(len - at);  // trailing literals
      per_block.push_back(std::move(bs));
    }
    r.inputs.push_back(std::move(d));
  }
  std::vector<uint64_t> sizes, offsets;
  uint64_t extent = 0;
  for (const auto& in : r.inputs) {
    sizes.push_back(in.size());
    offsets.push_back(extent);
    extent += (in.size() + 15) / 16 * 16;
  }
  r.batch.assign(extent, 0);
  for (size_t i = 0; i < r.inputs.size(); ++i) std::copy(r.inputs[i].begin(), r.inputs[i].end(), r.batch.begin() + offsets[i]);
  const uint64_t slots = zg::plan_blocks(sizes, offsets, r.blocks);
  r.seqs.assign(slots, zg::Sequence{0, 0, 0});
  for (size_t b = 0; b < r.blocks.size(); ++b) {
    std::copy(per_block[b].begin(), per_block[b].end(), r.seqs.begin() + r.blocks[b].seq_first);
    r.blocks[b].seq_count = uint32_t(per_block[b].size());
    uint32_t covered = 0;
    for (const zg::Sequence& q : per_block[b]) covered += q.lit_len + q.match_len;
    r.blocks[b].trailing_literals = r.blocks[b].len - covered;
  }
  return r;
}

// One input in stage 1's layout on its own: blocks (src indexes data,
// seq_first indexes seqs) and sequences.
struct ParsedInput {
  std::string name;
  std::vector<uint8_t> data;
  std::vector<gpo::zstd::gpu::BlockDesc> blocks;
  std::vector<gpo::zstd::gpu::Sequence> seqs;
};

// Stage 1's parse of one input by the CPU finder (the GPU finder's twin).
inline ParsedInput stage1_parse(std::string name, std::vector<uint8_t> in) {
  ParsedInput p{std::move(name), std::move(in), {}, {}};
  const uint64_t size = p.data.size(), off = 0;
  const uint64_t slots = gpo::zstd::gpu::plan_blocks({&size, 1}, {&off, 1}, p.blocks);
  p.seqs.resize(slots);
  gpo::zstd::gpu::cpu_find(p.data, p.blocks, p.seqs);
  return p;
}

// The inputs of the block encoder's step tests: every data kind at the sizes
// up to a few blocks (1 byte, a short block, a full one, a tail), parsed by
// stage 1, and the inputs of every sequence shape.
inline const std::vector<ParsedInput>& step_inputs() {
  static const std::vector<ParsedInput> inputs = [] {
    std::vector<ParsedInput> v;
    for (const Kind& k : kinds())
      for (size_t n : sizes())
        if (n > 0 && n <= 300 * 1024 + 77) v.push_back(stage1_parse(std::string(k.name) + " " + std::to_string(n), k.make(n)));
    for (int shape = 0; shape < kShapes; ++shape) {
      Shaped sh = make_shape(shape);
      uint64_t base = 0;
      for (size_t i = 0; i < sh.inputs.size(); ++i) {
        ParsedInput p{"shape " + std::to_string(shape) + " input " + std::to_string(i), sh.inputs[i], {}, {}};
        for (gpo::zstd::gpu::BlockDesc b : sh.blocks)
          if (b.input == i) {
            p.seqs.insert(p.seqs.end(), sh.seqs.begin() + b.seq_first, sh.seqs.begin() + b.seq_first + b.seq_count);
            b.src -= base;
            b.seq_first = uint32_t(p.seqs.size() - b.seq_count);
            p.blocks.push_back(b);
          }
        base += (sh.inputs[i].size() + 15) / 16 * 16;
        v.push_back(std::move(p));
      }
    }
    return v;
  }();
  return inputs;
}

// The 256 symbol counts of literals.
inline std::vector<uint32_t> histogram(const std::vector<uint8_t>& lits) {
  std::vector<uint32_t> h(256, 0);
  for (uint8_t c : lits) h[c]++;
  return h;
}

// Literals for the literals steps beyond the blocks' own: empty, one byte,
// one symbol, every symbol once and evenly, skewed alphabets of 2..256
// symbols (direct and FSE-coded Huffman weights), Fibonacci counts (a tree
// too deep for 11 bits).
inline std::vector<std::pair<std::string, std::vector<uint8_t>>> literal_edge_cases() {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> v;
  v.push_back({"empty", {}});
  v.push_back({"one byte", {42}});
  v.push_back({"one symbol x 5000", std::vector<uint8_t>(5000, 7)});
  std::vector<uint8_t> all(256);
  for (int s = 0; s < 256; ++s) all[s] = uint8_t(s);
  v.push_back({"every symbol once", all});
  std::vector<uint8_t> even(256 * 64);
  for (size_t i = 0; i < even.size(); ++i) even[i] = uint8_t(i * 97);
  v.push_back({"every symbol evenly", even});
  for (int alphabet : {2, 5, 40, 120, 129, 200, 256}) {
    std::vector<uint8_t> lits(20000 + 37 * alphabet);
    std::mt19937 rng{uint32_t(alphabet)};
    std::geometric_distribution<int> g(0.03);
    for (auto& b : lits) b = uint8_t(std::min(alphabet - 1, g(rng)) * (256 / alphabet));
    v.push_back({"alphabet " + std::to_string(alphabet), lits});
  }
  std::vector<uint8_t> fib;
  uint32_t f0 = 1, f1 = 1;
  for (int s = 0; s < 24; ++s) {
    fib.insert(fib.end(), f0, uint8_t(s));
    const uint32_t t = f0 + f1;
    f0 = f1;
    f1 = t;
  }
  v.push_back({"fibonacci counts", fib});
  return v;
}

}  // namespace gpo::test::zstd_data
