// zstd stage 2's entropy coders (RFC 8878) as portable code that g++ and nvcc
// compile alike (__host__ __device__): the forward bit writer, FSE
// (normalization, table description, encoder table), Huffman (length-limited
// table, canonical codes, weights description, one stream) and the sequence
// codes with their predefined distributions. Integer only, so the CPU and the
// GPU take the same decisions. The block's steps (zstd_entropy_steps.h) and the
// block encoder (zstd_entropy_block.h) are built on them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/common/host_device.h"

namespace gpo::zstd::enc {

inline constexpr uint32_t kHufMaxBits = 11;

GPO_HD inline uint32_t highbit(uint32_t v) {  // v > 0
#if defined(__CUDA_ARCH__)
  return 31u - __clz(v);
#else
  return 31u - static_cast<uint32_t>(__builtin_clz(v));
#endif
}

GPO_HD inline void put_le16(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}
GPO_HD inline void put_le24(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
  p[2] = uint8_t(v >> 16);
}
GPO_HD inline void put_le32(uint8_t* p, uint32_t v) {
  put_le16(p, v);
  put_le16(p + 2, v >> 16);
}

// Forward bit writer: bits go in from the low end; the decoder reads the
// stream backwards from the end mark (the highest 1 bit of the last byte).
struct BitWriter {
  uint8_t* start;
  uint8_t* p;
  uint8_t* end;
  uint64_t acc;
  uint32_t n;
  bool overflow;

  GPO_HD inline void init(uint8_t* out, size_t cap) {
    start = p = out;
    end = out + cap;
    acc = 0;
    n = 0;
    overflow = false;
  }
  GPO_HD inline void add(uint32_t v, uint32_t nb) {  // nb <= 32
    acc |= (uint64_t(v) & ((uint64_t(1) << nb) - 1)) << n;
    n += nb;
    if (n >= 32) {
      if (end - p >= 4) {
        put_le32(p, uint32_t(acc));
        p += 4;
      } else {
        overflow = true;
      }
      acc >>= 32;
      n -= 32;
    }
  }
  // Adds the end mark and flushes. Returns the stream size, or 0 on overflow.
  GPO_HD inline size_t close() {
    add(1, 1);
    while (n > 0) {
      if (p < end) {
        *p++ = uint8_t(acc);
      } else {
        overflow = true;
      }
      acc >>= 8;
      n = n > 8 ? n - 8 : 0;
    }
    return overflow ? 0 : size_t(p - start);
  }
};

// ---------------------------------------------------------------- FSE

inline constexpr uint32_t kFseMaxLog = 9;
inline constexpr uint32_t kFseMaxSymbols = 64;

struct FseCTable {
  uint16_t state[1u << kFseMaxLog];
  int32_t find_state[kFseMaxSymbols];
  uint32_t delta_nb_bits[kFseMaxSymbols];
  uint32_t log;  // 0: RLE (no bits at all)
};

// Work arrays of fse_build. The GPU passes them in shared memory: a local
// array there lives in (slow) local memory.
struct FseBuildScratch {
  uint8_t table_sym[1u << kFseMaxLog];
  uint32_t cumul[kFseMaxSymbols + 1];
};

// Encoder table from a normalized distribution (counts sum to 1 << log; -1 is
// a "less than 1" symbol), spread the way every zstd decoder builds its table.
GPO_HD inline void fse_build(FseCTable& ct, const int16_t* norm, uint32_t max_sym, uint32_t log, FseBuildScratch& ws) {
  const uint32_t size = 1u << log;
  uint32_t high = size - 1;
  uint8_t* table_sym = ws.table_sym;
  uint32_t* cumul = ws.cumul;
  ct.log = log;
  cumul[0] = 0;
  for (uint32_t u = 1; u <= max_sym + 1; ++u) {
    if (norm[u - 1] == -1) {
      cumul[u] = cumul[u - 1] + 1;
      table_sym[high--] = uint8_t(u - 1);
    } else {
      cumul[u] = cumul[u - 1] + uint32_t(norm[u - 1] > 0 ? norm[u - 1] : 0);
    }
  }
  const uint32_t step = (size >> 1) + (size >> 3) + 3, mask = size - 1;
  uint32_t pos = 0;
  for (uint32_t s = 0; s <= max_sym; ++s) {
    for (int i = 0; i < norm[s]; ++i) {
      table_sym[pos] = uint8_t(s);
      do {
        pos = (pos + step) & mask;
      } while (pos > high);
    }
  }
  for (uint32_t u = 0; u < size; ++u) {
    const uint32_t s = table_sym[u];
    ct.state[cumul[s]++] = uint16_t(size + u);
  }
  int32_t total = 0;
  for (uint32_t s = 0; s <= max_sym; ++s) {
    const int c = norm[s];
    if (c == 0) {
      ct.delta_nb_bits[s] = ((log + 1) << 16) - size;
      ct.find_state[s] = 0;
    } else if (c == -1 || c == 1) {
      ct.delta_nb_bits[s] = (log << 16) - size;
      ct.find_state[s] = total - 1;
      total += 1;
    } else {
      const uint32_t max_bits_out = log - highbit(uint32_t(c) - 1);
      const uint32_t min_state_plus = uint32_t(c) << max_bits_out;
      ct.delta_nb_bits[s] = (max_bits_out << 16) - min_state_plus;
      ct.find_state[s] = total - c;
      total += c;
    }
  }
}

GPO_HD inline void fse_build(FseCTable& ct, const int16_t* norm, uint32_t max_sym, uint32_t log) {
  FseBuildScratch ws;
  fse_build(ct, norm, max_sym, log, ws);
}

GPO_HD inline uint32_t fse_init_state(const FseCTable& ct, uint32_t s) {
  if (ct.log == 0) return 0;
  const uint32_t nb = (ct.delta_nb_bits[s] + (1u << 15)) >> 16;
  const uint32_t v = (nb << 16) - ct.delta_nb_bits[s];
  return ct.state[int32_t(v >> nb) + ct.find_state[s]];
}

GPO_HD inline void fse_encode(const FseCTable& ct, uint32_t& state, uint32_t s, BitWriter& bw) {
  if (ct.log == 0) return;
  const uint32_t nb = (state + ct.delta_nb_bits[s]) >> 16;
  bw.add(state, nb);
  state = ct.state[int32_t(state >> nb) + ct.find_state[s]];
}

GPO_HD inline void fse_flush(const FseCTable& ct, uint32_t state, BitWriter& bw) {
  if (ct.log != 0) bw.add(state, ct.log);
}

// Normalizes counts (total > 0) to sum to 1 << log, every present symbol >= 1.
// Integer only, so CPU and GPU agree. Needs (1 << log) >= present symbols.
GPO_HD inline void fse_normalize(int16_t* norm, const uint32_t* cnt, uint32_t max_sym, uint32_t total, uint32_t log) {
  const uint32_t size = 1u << log;
  int32_t sum = 0;
  uint32_t biggest = 0;
  for (uint32_t s = 0; s <= max_sym; ++s) {
    if (cnt[s] == 0) {
      norm[s] = 0;
      continue;
    }
    uint32_t v = uint32_t((uint64_t(cnt[s]) * size + total / 2) / total);
    if (v == 0) v = 1;
    norm[s] = int16_t(v);
    sum += int32_t(v);
    if (cnt[s] > cnt[biggest]) biggest = s;
  }
  int32_t diff = int32_t(size) - sum;
  if (diff > 0) {
    norm[biggest] = int16_t(norm[biggest] + diff);
    return;
  }
  while (diff < 0) {  // take from the largest entries, never below 1
    uint32_t best = 0;
    for (uint32_t s = 1; s <= max_sym; ++s)
      if (norm[s] > norm[best]) best = s;
    int32_t take = norm[best] - 1;
    if (take > -diff) take = -diff;
    if (take <= 0) return;  // cannot happen when size >= present symbols
    norm[best] = int16_t(norm[best] - take);
    diff += take;
  }
}

// fse_write_ncount's output: the low 16 bits of the accumulator, once it
// holds more than 16.
GPO_HD GPO_FORCEINLINE void ncount_flush16(uint8_t*& o, uint32_t& bits, int& nbits_in) {
  if (nbits_in > 16) {
    o[0] = uint8_t(bits);
    o[1] = uint8_t(bits >> 8);
    o += 2;
    bits >>= 16;
    nbits_in -= 16;
  }
}

// FSE table description (RFC 8878 4.1.1). Returns bytes written; out needs
// room for the worst case plus 2 bytes of slack.
GPO_HD inline size_t fse_write_ncount(uint8_t* out, const int16_t* norm, uint32_t max_sym, uint32_t log) {
  uint8_t* o = out;
  const int table_size = 1 << log;
  uint32_t bits = 0;
  int nbits_in = 0;
  bits += (log - 5) << nbits_in;
  nbits_in += 4;
  int remaining = table_size + 1, threshold = table_size, nb = int(log) + 1;
  uint32_t symbol = 0;
  const uint32_t alphabet = max_sym + 1;
  bool prev0 = false;
  while (symbol < alphabet && remaining > 1) {
    if (prev0) {
      uint32_t start = symbol;
      while (symbol < alphabet && norm[symbol] == 0) symbol++;
      if (symbol == alphabet) break;
      while (symbol >= start + 24) {
        start += 24;
        bits += 0xFFFFu << nbits_in;
        o[0] = uint8_t(bits);
        o[1] = uint8_t(bits >> 8);
        o += 2;
        bits >>= 16;
      }
      while (symbol >= start + 3) {
        start += 3;
        bits += 3u << nbits_in;
        nbits_in += 2;
      }
      bits += (symbol - start) << nbits_in;
      nbits_in += 2;
      ncount_flush16(o, bits, nbits_in);
    }
    int count = norm[symbol++];
    const int max = (2 * threshold - 1) - remaining;
    remaining -= count < 0 ? -count : count;
    count++;
    if (count >= threshold) count += max;
    bits += uint32_t(count) << nbits_in;
    nbits_in += nb;
    nbits_in -= (count < max);
    prev0 = (count == 1);
    while (remaining < threshold) {
      nb--;
      threshold >>= 1;
    }
    ncount_flush16(o, bits, nbits_in);
  }
  o[0] = uint8_t(bits);
  o[1] = uint8_t(bits >> 8);
  o += (nbits_in + 7) / 8;
  return size_t(o - out);
}

// zstd's rule for a table's accuracy: small inputs get small tables.
GPO_HD inline uint32_t fse_table_log(uint32_t max_log, uint32_t n, uint32_t max_sym) {
  uint32_t log = max_log;
  const uint32_t max_bits_src = n > 1 ? highbit(n - 1) : 0;
  if (max_bits_src >= 2 && max_bits_src - 2 < log) log = max_bits_src - 2;
  uint32_t min_bits = highbit(n) + 1;
  const uint32_t mb2 = highbit(max_sym > 0 ? max_sym : 1) + 2;
  if (mb2 < min_bits) min_bits = mb2;
  if (min_bits > log) log = min_bits;
  if (log < 5) log = 5;
  if (log > max_log) log = max_log;
  return log;
}

// Fixed-point -log2 helpers (1/256 bit) for mode decisions, integer only.
GPO_HD inline uint32_t log2_fp8(uint32_t x) {  // x > 0: log2(x) * 256, mantissa linear
  const uint32_t h = highbit(x);
  const uint32_t frac = h >= 8 ? (x >> (h - 8)) & 255 : (x << (8 - h)) & 255;
  return h * 256 + frac;
}

// ------------------------------------------------------------- Huffman

struct HufTable {
  uint16_t code[256];
  uint8_t len[256];
  uint32_t max_bits;
  uint32_t last_sym;
};

// Work arrays of huf_build (in shared memory on the GPU, see FseBuildScratch).
struct HufBuildScratch {
  uint32_t w[256];
  uint32_t node_w[512];
  uint16_t leaf_sym[256];
  uint16_t parent[512];
  uint8_t depth[512];
  uint32_t nb_per_len[kHufMaxBits + 2];
  uint32_t val_per_len[kHufMaxBits + 2];
};

// The Huffman tree of n >= 2 leaves sorted by ascending weight w: node_w and
// parent (2n - 1 nodes, leaves first, root last) by the two-queue merge
// (leaves [li, n) and inner nodes [ni, next), both ascending). Shared by the
// CPU/one-thread plan and the GPU's CTA plan, so both build the same tree.
GPO_HD inline void huf_merge(const uint32_t* w, uint32_t n, uint32_t* node_w, uint16_t* parent) {
  for (uint32_t i = 0; i < n; ++i) node_w[i] = w[i];
  uint32_t li = 0, ni = n, next = n;
  while (next < 2 * n - 1) {
    uint32_t pick[2];
    for (int k = 0; k < 2; ++k) {
      if (li < n && (ni >= next || node_w[li] <= node_w[ni])) {
        pick[k] = li++;
      } else {
        pick[k] = ni++;
      }
    }
    node_w[next] = node_w[pick[0]] + node_w[pick[1]];
    parent[pick[0]] = uint16_t(next);
    parent[pick[1]] = uint16_t(next);
    next++;
  }
}

// The first canonical code of each length 1..max_bits (zstd's order: the
// longest codes first) from the number of symbols of each length;
// val_per_len has kHufMaxBits + 2 entries.
GPO_HD inline void huf_first_codes(const uint32_t* nb_per_len, uint32_t max_bits, uint32_t* val_per_len) {
  for (uint32_t l = 0; l < kHufMaxBits + 2; ++l) val_per_len[l] = 0;
  uint32_t mn = 0;
  for (uint32_t l = max_bits; l > 0; --l) {
    val_per_len[l] = mn;
    mn += nb_per_len[l];
    mn >>= 1;
  }
}

// Sorts n leaves by (count, symbol): insertion sort (n <= 256).
GPO_HD inline void huf_sort_leaves(uint32_t* w, uint16_t* leaf_sym, uint32_t n) {
  for (uint32_t i = 1; i < n; ++i) {
    const uint32_t wi = w[i];
    const uint16_t si = leaf_sym[i];
    uint32_t j = i;
    while (j > 0 && (w[j - 1] > wi || (w[j - 1] == wi && leaf_sym[j - 1] > si))) {
      w[j] = w[j - 1];
      leaf_sym[j] = leaf_sym[j - 1];
      j--;
    }
    w[j] = wi;
    leaf_sym[j] = si;
  }
}

// The depth of every node of a tree of n >= 2 leaves (huf_merge's parent
// links, 2n - 1 nodes, root last): hops to the root. Returns the deepest
// leaf's. CPU twin of the literals kernel's huf_depths_cta.
GPO_HD inline uint32_t huf_depths(const uint16_t* parent, uint32_t n, uint8_t* depth) {
  const uint32_t root = 2 * n - 2;
  depth[root] = 0;
  uint32_t maxd = 0;
  for (int32_t i = int32_t(root) - 1; i >= 0; --i) {
    depth[i] = uint8_t(depth[parent[i]] + 1);
    if (uint32_t(i) < n && depth[i] > maxd) maxd = depth[i];
  }
  return maxd;
}

// Canonical codes in zstd's order (the longest codes first, by symbol within
// a length) of the lengths t.len, t.max_bits the longest. CPU twin of the
// literals kernel's huf_canonical_codes_cta.
GPO_HD inline void huf_canonical_codes(HufTable& t, HufBuildScratch& ws) {
  uint32_t* nb_per_len = ws.nb_per_len;
  uint32_t* val_per_len = ws.val_per_len;
  for (uint32_t l = 0; l < kHufMaxBits + 2; ++l) nb_per_len[l] = 0;
  for (uint32_t s = 0; s < 256; ++s) nb_per_len[t.len[s]]++;
  huf_first_codes(nb_per_len, t.max_bits, val_per_len);
  for (uint32_t s = 0; s < 256; ++s)
    if (t.len[s]) t.code[s] = uint16_t(val_per_len[t.len[s]]++);
}

// Length-limited (<= kHufMaxBits) Huffman code from a histogram with >= 2
// symbols: a two-queue Huffman build; when too deep, counts are halved
// (keeping every present symbol) and the build is redone. Canonical codes
// (huf_canonical_codes).
// order (optional): the present symbols already sorted by (count, symbol),
// e.g. ranked in parallel by the GPU; the result is the same either way (the
// sort below is then linear).
GPO_HD inline void huf_build(const uint32_t* hist, HufTable& t, HufBuildScratch& ws, const uint8_t* order = nullptr) {
  uint16_t* leaf_sym = ws.leaf_sym;
  uint32_t* w = ws.w;
  uint32_t n = 0;
  for (uint32_t s = 0; s < 256; ++s) {
    t.len[s] = 0;
    t.code[s] = 0;
    if (hist[s]) {
      n++;
      t.last_sym = s;
    }
  }
  if (order) {
    for (uint32_t i = 0; i < n; ++i) {
      leaf_sym[i] = order[i];
      w[i] = hist[order[i]];
    }
  } else {
    uint32_t k = 0;
    for (uint32_t s = 0; s < 256; ++s)
      if (hist[s]) {
        leaf_sym[k] = uint16_t(s);
        w[k] = hist[s];
        k++;
      }
  }
  for (;;) {
    huf_sort_leaves(w, leaf_sym, n);
    huf_merge(w, n, ws.node_w, ws.parent);
    const uint32_t maxd = huf_depths(ws.parent, n, ws.depth);
    if (maxd <= kHufMaxBits) {
      t.max_bits = maxd;
      for (uint32_t i = 0; i < n; ++i) t.len[leaf_sym[i]] = ws.depth[i];
      break;
    }
    for (uint32_t i = 0; i < n; ++i) w[i] = (w[i] + 1) >> 1;
  }
  huf_canonical_codes(t, ws);
}

// Bits of the literals of histogram hist coded with t.
GPO_HD inline uint64_t huf_stream_bits(const uint32_t* hist, const HufTable& t) {
  uint64_t bits = 0;
  for (uint32_t s = 0; s < 256; ++s) bits += uint64_t(hist[s]) * t.len[s];
  return bits;
}
GPO_HD inline void huf_build(const uint32_t* hist, HufTable& t, const uint8_t* order = nullptr) {
  HufBuildScratch ws;
  huf_build(hist, t, ws, order);
}

// Work arrays of huf_write_tree (shared memory on the GPU).
struct HufTreeScratch {
  FseCTable ct;
  FseBuildScratch build;
  uint32_t cnt[16];
  int16_t norm[16];
  uint8_t wt[256];
  uint8_t fse_buf[160];
};

// Huffman tree description (RFC 8878 4.2.1): weights of symbols
// 0..last_sym-1 (the last one is implied). Returns bytes, 0 if none fits.
GPO_HD inline size_t huf_write_tree(const HufTable& t, uint8_t* out, size_t cap, HufTreeScratch& ws) {
  const uint32_t nw = t.last_sym;
  uint8_t* wt = ws.wt;
  for (uint32_t s = 0; s < nw; ++s) wt[s] = t.len[s] ? uint8_t(t.max_bits + 1 - t.len[s]) : 0;
  const size_t direct = nw <= 128 ? 1 + (nw + 1) / 2 : 0;
  // FSE-compressed weights (two interleaved states, accuracy <= 6).
  size_t fse_size = 0;
  uint8_t* fse_buf = ws.fse_buf;
  constexpr size_t kFseBuf = sizeof(ws.fse_buf);
  if (nw >= 2) {
    uint32_t* cnt = ws.cnt;
    for (uint32_t v = 0; v < 16; ++v) cnt[v] = 0;
    uint32_t max_w = 0, max_c = 0;
    for (uint32_t s = 0; s < nw; ++s) {
      cnt[wt[s]]++;
      if (wt[s] > max_w) max_w = wt[s];
    }
    for (uint32_t v = 0; v <= max_w; ++v)
      if (cnt[v] > max_c) max_c = cnt[v];
    if (max_c < nw && max_c > 1) {
      const uint32_t log = 6;
      int16_t* norm = ws.norm;
      fse_normalize(norm, cnt, max_w, nw, log);
      size_t h = 1 + fse_write_ncount(fse_buf + 1, norm, max_w, log);
      FseCTable& ct = ws.ct;
      fse_build(ct, norm, max_w, log, ws.build);
      BitWriter bw;
      bw.init(fse_buf + h, kFseBuf - h - 2);
      uint32_t st[2] = {0, 0};
      bool init[2] = {false, false};
      for (int32_t i = int32_t(nw) - 1; i >= 0; --i) {
        const int k = i & 1;  // even positions belong to state 1, odd to state 2
        if (!init[k]) {
          st[k] = fse_init_state(ct, wt[i]);
          init[k] = true;
        } else {
          fse_encode(ct, st[k], wt[i], bw);
        }
      }
      fse_flush(ct, st[1], bw);
      fse_flush(ct, st[0], bw);
      const size_t bs = bw.close();
      if (bs && h + bs - 1 < 128) {
        fse_size = h + bs;
        fse_buf[0] = uint8_t(fse_size - 1);
      }
    }
  }
  if (fse_size && (direct == 0 || fse_size < direct)) {
    if (fse_size > cap) return 0;
    for (size_t i = 0; i < fse_size; ++i) out[i] = fse_buf[i];
    return fse_size;
  }
  if (direct == 0 || direct > cap) return 0;
  out[0] = uint8_t(127 + nw);
  for (uint32_t k = 0; k < nw; k += 2) {
    const uint8_t lo = k + 1 < nw ? wt[k + 1] : 0;
    out[1 + k / 2] = uint8_t((wt[k] << 4) | lo);
  }
  return direct;
}

// One Huffman stream of lits[0..n), symbols written last first.
GPO_HD inline size_t huf_encode_stream(const HufTable& t, const uint8_t* lits, uint32_t n, uint8_t* out, size_t cap) {
  BitWriter bw;
  bw.init(out, cap);
  for (uint32_t i = n; i-- > 0;) {
    const uint8_t s = lits[i];
    bw.add(t.code[s], t.len[s]);
  }
  return bw.close();
}

// -------------------------------------------------------------- codes

GPO_HD inline uint32_t ll_base(uint32_t c) {
  static constexpr uint32_t b[36] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,   10,  11,  12,   13,   14,   15,   16,    18,
                              20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
  return b[c];
}
GPO_HD inline uint32_t ll_bits(uint32_t c) {
  static constexpr uint8_t b[36] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  1,  1,
                             1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  return b[c];
}
GPO_HD inline uint32_t ml_base(uint32_t c) {
  static constexpr uint32_t b[53] = {3,   4,   5,   6,    7,    8,    9,    10,   11,    12,    13,    14,    15,    16,
                              17,  18,  19,  20,   21,   22,   23,   24,   25,    26,    27,    28,    29,    30,
                              31,  32,  33,  34,   35,   37,   39,   41,   43,    47,    51,    59,    67,    83,
                              99,  131, 259, 515,  1027, 2051, 4099, 8195, 16387, 32771, 65539};
  return b[c];
}
GPO_HD inline uint32_t ml_bits(uint32_t c) {
  static constexpr uint8_t b[53] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  return b[c];
}
// Codes by range arithmetic, no table lookups (RFC 8878 3.1.1.3.2.1; the
// unit test checks them against the base tables for every length). Every
// base is a multiple of 1 << bits, so the extra bits are the value's low bits.
GPO_HD inline uint32_t ll_code(uint32_t ll) {  // ll < 131072
  if (ll < 16) return ll;
  if (ll < 24) return 16 + ((ll - 16) >> 1);
  if (ll < 32) return 20 + ((ll - 24) >> 2);
  if (ll < 48) return 22 + ((ll - 32) >> 3);
  if (ll < 64) return 24;
  return 19 + highbit(ll);
}
GPO_HD inline uint32_t ml_code(uint32_t ml) {  // 3 <= ml < 131075
  const uint32_t v = ml - 3;
  if (v < 32) return v;
  if (v < 40) return 32 + ((v - 32) >> 1);
  if (v < 48) return 36 + ((v - 40) >> 2);
  if (v < 64) return 38 + ((v - 48) >> 3);
  if (v < 96) return 40 + ((v - 64) >> 4);
  if (v < 128) return 42;
  return 36 + highbit(v);
}
// Extra bits of a code (= ll_bits / ml_bits, without the tables).
GPO_HD inline uint32_t ll_code_bits(uint32_t c) {
  if (c < 16) return 0;
  if (c < 20) return 1;
  if (c < 22) return 2;
  if (c < 24) return 3;
  if (c == 24) return 4;
  return c - 19;
}
GPO_HD inline uint32_t ml_code_bits(uint32_t c) {
  if (c < 32) return 0;
  if (c < 36) return 1;
  if (c < 38) return 2;
  if (c < 40) return 3;
  if (c < 42) return 4;
  if (c == 42) return 5;
  return c - 36;
}

GPO_HD inline const int16_t* predefined_norm(int which) {  // 0 LL, 1 OF, 2 ML
  // RFC 8878 3.1.1.3.2.2: default distributions.
  static constexpr int16_t ll[36] = {4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2,  2,  2,
                                     2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1};
  static constexpr int16_t of[29] = {1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1};
  static constexpr int16_t ml[53] = {1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1};
  return which == 0 ? ll : which == 1 ? of : ml;
}
GPO_HD inline uint32_t predefined_max_sym(int which) { return which == 0 ? 35 : which == 1 ? 28 : 52; }
GPO_HD inline uint32_t predefined_log(int which) { return which == 1 ? 5 : 6; }
GPO_HD inline uint32_t max_log_of(int which) { return which == 1 ? 8 : 9; }

}  // namespace gpo::zstd::enc
