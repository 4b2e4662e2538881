// The steps of zstd stage 2 that the GPU runs cooperatively (a warp or a CTA
// per block), as device functions the kernels (zstd_entropy_gpu.cu) and the
// GPU tests call. Each names its CPU twin in zstd_entropy_steps.h (the
// Huffman build's parts: zstd_entropy_coders.h), with the same contract, so
// a test runs the device step on a block and compares. The steps that are
// the same code on both sides are GPO_HD functions there.
#pragma once
#if !defined(__CUDACC__)
#error "device code: include from .cu files only"
#endif
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/zstd/zstd_entropy_block.h"

namespace gpo::zstd::enc {

inline constexpr uint32_t kFullWarp = 0xFFFFFFFFu;

// ---------------------------------------------------------- literals

inline constexpr int kLitThreads = 256;  // the literals kernel's CTA: a thread per symbol
inline constexpr int kLitWarps = kLitThreads / 32;
inline constexpr uint32_t kBitmapWords = kMaxBlock / 32;             // a bit per source byte
inline constexpr uint32_t kWordsPerWarp = kBitmapWords / kLitWarps;  // gather: 16 KiB of source per warp
using LitScan = cub::BlockScan<uint64_t, kLitThreads>;

// Copies n bytes from s to d, any alignment, with all threads of the CTA:
// aligned 4-byte stores, source words joined by funnel shifts (a source word
// read past the end holds the last byte, so it stays inside the allocation).
__device__ inline void cta_copy(uint8_t* d, const uint8_t* s, uint32_t n) {
  const uint32_t tid = threadIdx.x, nt = blockDim.x;
  uint32_t head = uint32_t(4 - (reinterpret_cast<uintptr_t>(d) & 3)) & 3;
  if (head > n) head = n;
  if (tid < head) d[tid] = s[tid];
  d += head;
  s += head;
  n -= head;
  const uint32_t nw = n / 4;
  uint32_t* dw = reinterpret_cast<uint32_t*>(d);
  const uint32_t sh = uint32_t(reinterpret_cast<uintptr_t>(s) & 3);
  if (sh == 0) {
    const uint32_t* sw = reinterpret_cast<const uint32_t*>(s);
    for (uint32_t k = tid; k < nw; k += nt) dw[k] = sw[k];
  } else {
    const uint32_t* sw = reinterpret_cast<const uint32_t*>(s - sh);
    for (uint32_t k = tid; k < nw; k += nt) dw[k] = __funnelshift_r(sw[k], sw[k + 1], 8 * sh);
  }
  const uint32_t t = n & 3;
  if (tid < t) d[4 * nw + tid] = s[4 * nw + tid];
}

// Calls f(byte) for p[c1 - 1], p[c1 - 2], ..., p[c0]: aligned 4-byte loads
// (the next one issued before the current word is used), bytes at the edges.
template <typename F>
__device__ inline void bytes_backward(const uint8_t* p, uint32_t c0, uint32_t c1, F&& f) {
  uint32_t q = c1;
  while (q > c0 && (reinterpret_cast<uintptr_t>(p + q) & 3)) f(uint32_t(p[--q]));
  if (q >= c0 + 4) {
    uint32_t nxt = *reinterpret_cast<const uint32_t*>(p + q - 4);
    while (q >= c0 + 4) {
      const uint32_t w = nxt;
      if (q >= c0 + 8) nxt = *reinterpret_cast<const uint32_t*>(p + q - 8);
      f(w >> 24);
      f((w >> 16) & 255u);
      f((w >> 8) & 255u);
      f(w & 255u);
      q -= 4;
    }
  }
  while (q > c0) f(uint32_t(p[--q]));
}

// Sets bits [lo, hi) of a bitmap. Runs of different sequences are disjoint,
// so only their edge words need atomics.
__device__ inline void mark_range(uint32_t* bm, uint32_t lo, uint32_t hi) {
  if (lo >= hi) return;
  const uint32_t w0 = lo >> 5, w1 = (hi - 1) >> 5;
  const uint32_t m0 = ~0u << (lo & 31), m1 = ~0u >> (31 - ((hi - 1) & 31));
  if (w0 == w1) {
    atomicOr(bm + w0, m0 & m1);
    return;
  }
  atomicOr(bm + w0, m0);
  for (uint32_t w = w0 + 1; w < w1; ++w) bm[w] = ~0u;
  atomicOr(bm + w1, m1);
}

// Step "literal positions", first part (the CTA): a block scan of
// (lit_len, lit_len + match_len), packed in one 64-bit sum, gives every
// sequence its source position; each marks its literals in bm (kBitmapWords
// words, cleared here). Returns the totals, literals << 32 | source bytes
// the sequences cover (every thread). carry: a shared word. The second part,
// mark_trailing_literals_cta, marks the literals after the last match. CPU
// twin of both: mark_literal_positions.
__device__ GPO_FORCEINLINE uint64_t mark_sequence_literals_cta(const Sequence* s, uint32_t nseq, uint32_t* bm,
                                                               LitScan::TempStorage& scan_tmp, uint64_t& carry) {
  const uint32_t tid = threadIdx.x;
  for (uint32_t k = tid; k < kBitmapWords; k += kLitThreads) bm[k] = 0;
  if (tid == 0) carry = 0;
  __syncthreads();
  constexpr uint32_t kItems = 4;
  for (uint32_t base = 0; base < nseq; base += kLitThreads * kItems) {
    uint64_t v[kItems];
    uint32_t ll[kItems];
#pragma unroll
    for (uint32_t k = 0; k < kItems; ++k) {
      const uint32_t i = base + tid * kItems + k;
      ll[k] = 0;
      v[k] = 0;
      if (i < nseq) {
        const Sequence q = s[i];
        ll[k] = q.lit_len;
        v[k] = (uint64_t(q.lit_len) << 32) | (q.lit_len + q.match_len);
      }
    }
    uint64_t agg;
    LitScan(scan_tmp).ExclusiveSum(v, v, agg);
    const uint64_t c = carry;
#pragma unroll
    for (uint32_t k = 0; k < kItems; ++k) {
      const uint32_t sp = uint32_t(c + v[k]);  // source bytes before the sequence
      mark_range(bm, sp, sp + ll[k]);
    }
    __syncthreads();
    if (tid == 0) carry = c + agg;
    __syncthreads();
  }
  return carry;
}

// Step "literal positions", second part (the CTA): marks source bytes
// [covered, len) in bm, whole words by all threads.
__device__ GPO_FORCEINLINE void mark_trailing_literals_cta(uint32_t* bm, uint32_t covered, uint32_t len) {
  const uint32_t tid = threadIdx.x;
  const uint32_t lo = covered, w0 = (lo + 31) / 32, w1 = len / 32;  // whole words [w0, w1)
  if (w0 > w1) {
    if (tid == 0) mark_range(bm, lo, len);
  } else {
    for (uint32_t w = w0 + tid; w < w1; w += kLitThreads) bm[w] = ~0u;
    if (tid == 0) {
      mark_range(bm, lo, w0 * 32);
      mark_range(bm, w1 * 32, len);
    }
  }
  __syncthreads();
}

// Step "gather" (the CTA): the bytes of src[0..len) marked in bm, in order,
// into lits, and their histogram hist (256 counts). Warp w compacts source
// words [kWordsPerWarp w, kWordsPerWarp (w + 1)) of the bitmap (16 KiB), 32
// words (1 KiB of source) per step: each lane one word's 32 bytes, output
// offsets by a warp scan of the counts; a histogram per warp (warp_hist,
// cleared here), summed at the end. warp_lits: kLitWarps shared words. CPU
// twin: gather_marked_literals.
__device__ GPO_FORCEINLINE void gather_literals_cta(const uint8_t* src, uint32_t len, const uint32_t* bm,
                                                    uint8_t* lits, uint32_t (*warp_hist)[256], uint32_t* warp_lits,
                                                    uint32_t* hist) {
  const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (uint32_t k = tid; k < kLitWarps * 256; k += kLitThreads) (&warp_hist[0][0])[k] = 0;
  const uint32_t nwords = (len + 31) / 32;
  const uint32_t w_lo = min(nwords, warp * kWordsPerWarp), w_hi = min(nwords, w_lo + kWordsPerWarp);
  uint32_t cnt = 0;
  for (uint32_t w = w_lo + lane; w < w_hi; w += 32) cnt += __popc(bm[w]);
  for (uint32_t d = 16; d > 0; d >>= 1) cnt += __shfl_xor_sync(kFullWarp, cnt, d);
  if (lane == 0) warp_lits[warp] = cnt;
  __syncthreads();
  uint32_t out_base = 0;
  for (uint32_t k = 0; k < warp; ++k) out_base += warp_lits[k];
  const bool aligned = (reinterpret_cast<uintptr_t>(src) & 15) == 0;
  uint32_t* my_hist = warp_hist[warp];
  for (uint32_t w0 = w_lo; w0 < w_hi; w0 += 32) {
    const uint32_t w = w0 + lane;
    const uint32_t m = w < w_hi ? bm[w] : 0;
    const uint32_t n = __popc(m);
    uint32_t incl = n;
    for (uint32_t d = 1; d < 32; d <<= 1) {
      const uint32_t t = __shfl_up_sync(kFullWarp, incl, d);
      if (lane >= d) incl += t;
    }
    const uint32_t total = __shfl_sync(kFullWarp, incl, 31);
    if (m) {
      const uint32_t p0 = w * 32;
      uint32_t x[8];
      if (aligned && p0 + 32 <= len) {
        const uint4 a4 = *reinterpret_cast<const uint4*>(src + p0);
        const uint4 b4 = *reinterpret_cast<const uint4*>(src + p0 + 16);
        x[0] = a4.x; x[1] = a4.y; x[2] = a4.z; x[3] = a4.w;
        x[4] = b4.x; x[5] = b4.y; x[6] = b4.z; x[7] = b4.w;
      } else {
#pragma unroll
        for (uint32_t k = 0; k < 8; ++k) {
          uint32_t v = 0;
#pragma unroll
          for (uint32_t y = 0; y < 4; ++y) {
            const uint32_t p = p0 + 4 * k + y;
            if (p < len) v |= uint32_t(src[p]) << (8 * y);
          }
          x[k] = v;
        }
      }
      uint32_t o = out_base + incl - n;
#pragma unroll
      for (uint32_t j = 0; j < 32; ++j) {
        if ((m >> j) & 1u) {
          const uint32_t c = (x[j >> 2] >> ((j & 3) * 8)) & 255u;
          lits[o++] = uint8_t(c);
          atomicAdd(my_hist + c, 1u);
        }
      }
    }
    out_base += total;
  }
  __syncthreads();
  uint32_t h = 0;
  for (int w = 0; w < kLitWarps; ++w) h += warp_hist[w][tid];
  hist[tid] = h;
  __syncthreads();
}

// Step "symbol ranks" (the CTA, a thread per symbol): order[rank] = s for
// every symbol present in hist, by huf_symbol_rank. CPU twin: huf_rank_symbols.
__device__ GPO_FORCEINLINE void rank_symbols_cta(const uint32_t* hist, uint8_t* order) {
  const uint32_t tid = threadIdx.x;
  if (hist[tid]) order[huf_symbol_rank(hist, tid)] = uint8_t(tid);
  __syncthreads();
}

struct PlanScalars {
  unsigned long long bits;  // estimated size of the Huffman streams
  uint32_t last_sym, maxd;
};

// Work arrays of the CTA-parallel Huffman plan (in the literals kernel's
// shared memory, in the union after the gather).
struct HufCtaScratch {
  uint32_t w[2][256];          // leaf weights, by sorted position (double buffer for re-sorting)
  uint16_t leaf_sym[2][256];
  uint32_t node_w[512];
  uint16_t parent[512];
  uint16_t anc[512];           // pointer jumping's ancestors
  uint8_t depth[512];
  uint32_t wcnt[kLitWarps][kHufMaxBits + 2];  // per warp: symbols per code length
  uint32_t nb_per_len[kHufMaxBits + 2];
  uint32_t val_per_len[kHufMaxBits + 2];
};

// The depth of every node of a tree of n >= 2 leaves (the CTA): pointer
// jumping over the parent links, depth(i) = hops to the root. Returns the
// deepest leaf's (every thread); maxd: a shared word. CPU twin: huf_depths.
__device__ GPO_FORCEINLINE uint32_t huf_depths_cta(const uint16_t* parent, uint32_t n, uint16_t* anc, uint8_t* depth,
                                                   uint32_t& maxd) {
  const uint32_t tid = threadIdx.x;
  if (tid == 0) maxd = 0;
  const uint32_t root = 2 * n - 2;
  for (uint32_t i = tid; i <= root; i += kLitThreads) {
    anc[i] = i == root ? uint16_t(root) : parent[i];
    depth[i] = i == root ? 0 : 1;
  }
  __syncthreads();
  for (uint32_t round = 0; round < 9; ++round) {  // 2^9 > 511 nodes
    uint16_t a[2];
    uint8_t d[2];
    for (uint32_t k = 0; k < 2; ++k) {
      const uint32_t i = tid + k * kLitThreads;
      if (i <= root) {
        const uint32_t up = anc[i];
        d[k] = uint8_t(depth[i] + depth[up]);
        a[k] = anc[up];
      }
    }
    __syncthreads();
    for (uint32_t k = 0; k < 2; ++k) {
      const uint32_t i = tid + k * kLitThreads;
      if (i <= root) {
        depth[i] = d[k];
        anc[i] = a[k];
      }
    }
    __syncthreads();
  }
  if (tid < n) atomicMax(&maxd, uint32_t(depth[tid]));
  __syncthreads();
  return maxd;
}

// A tree too deep (the CTA): the n leaves' counts w halved, as huf_build
// does, and the leaves ranked again by (count, symbol) into w_out, sym_out.
__device__ GPO_FORCEINLINE void huf_halve_leaves_cta(uint32_t* w, const uint16_t* leaf_sym, uint32_t n,
                                                     uint32_t* w_out, uint16_t* sym_out) {
  const uint32_t tid = threadIdx.x;
  uint32_t wi = 0, si = 0;
  if (tid < n) {
    wi = (w[tid] + 1) >> 1;
    si = leaf_sym[tid];
    w[tid] = wi;
  }
  __syncthreads();
  if (tid < n) {
    uint32_t rank = 0;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t wk = w[k];
      rank += (wk < wi) | ((wk == wi) & (leaf_sym[k] < si));
    }
    w_out[rank] = wi;
    sym_out[rank] = uint16_t(si);
  }
  __syncthreads();
}

// Canonical codes of the lengths t.len, t.max_bits the longest (the CTA, a
// thread per symbol): code(s) = the first code of its length + the symbols of
// that length before s, counted by warp match. Also bits += hist * length
// over the symbols (bits: a shared counter, zero before). CPU twin:
// huf_canonical_codes, and huf_stream_bits.
__device__ GPO_FORCEINLINE void huf_canonical_codes_cta(HufTable& t, const uint32_t* hist, HufCtaScratch& hs,
                                                        unsigned long long& bits) {
  const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid < kHufMaxBits + 2) hs.nb_per_len[tid] = 0;
  if (tid < kLitWarps * (kHufMaxBits + 2)) (&hs.wcnt[0][0])[tid] = 0;
  __syncthreads();
  const uint32_t len = t.len[tid];
  if (len) atomicAdd(&hs.nb_per_len[len], 1u);
  const uint32_t peers = __match_any_sync(kFullWarp, len);
  const uint32_t in_warp = __popc(peers & ((1u << lane) - 1));
  if (in_warp == 0) hs.wcnt[warp][len] = __popc(peers);
  {
    const uint64_t my_bits = uint64_t(hist[tid]) * len;
    if (my_bits) atomicAdd(&bits, (unsigned long long)my_bits);
  }
  __syncthreads();
  if (tid == 0) huf_first_codes(hs.nb_per_len, t.max_bits, hs.val_per_len);
  __syncthreads();
  if (len) {
    uint32_t before = 0;
    for (uint32_t w2 = 0; w2 < warp; ++w2) before += hs.wcnt[w2][len];
    t.code[tid] = uint16_t(hs.val_per_len[len] + before + in_warp);
  }
  __syncthreads();
}

// Step "Huffman plan" (the CTA, a thread per symbol): plan_literals(nl,
// hist, t, tree, ws, order), the same result: the parts over all symbols in
// parallel; only the two-queue merge and the weights' description stay on
// one thread. order: the present symbols ranked (rank_symbols_cta). CPU twin:
// plan_literals.
__device__ inline void plan_literals_cta(uint32_t nl, const uint32_t* hist, const uint8_t* order, HufTable& t,
                                         uint8_t* tree, HufCtaScratch& hs, HufTreeScratch& tree_ws, LitPlan& plan,
                                         PlanScalars& sc) {
  const uint32_t tid = threadIdx.x;
  if (tid == 0) {
    sc.bits = 0;
    sc.last_sym = 0;
  }
  __syncthreads();
  const bool present = hist[tid] != 0;
  if (present) atomicMax(&sc.last_sym, tid);
  const uint32_t n = uint32_t(__syncthreads_count(present));
  const uint32_t last_sym = sc.last_sym;
  LitPlan p{LitMode::kRaw, last_sym, 0, 0, 0};
  if (plan_without_table(p, nl, n)) {
    if (tid == 0) plan = p;
    __syncthreads();
    return;
  }
  t.len[tid] = 0;
  t.code[tid] = 0;
  if (tid == 0) t.last_sym = last_sym;
  int cur = 0;
  if (tid < n) {
    hs.leaf_sym[0][tid] = order[tid];
    hs.w[0][tid] = hist[order[tid]];
  }
  __syncthreads();
  uint32_t maxd = 0;
  for (;;) {  // as huf_build: the tree, until it is shallow enough
    if (tid == 0) huf_merge(hs.w[cur], n, hs.node_w, hs.parent);
    __syncthreads();
    maxd = huf_depths_cta(hs.parent, n, hs.anc, hs.depth, sc.maxd);
    if (maxd <= kHufMaxBits) break;
    huf_halve_leaves_cta(hs.w[cur], hs.leaf_sym[cur], n, hs.w[cur ^ 1], hs.leaf_sym[cur ^ 1]);
    cur ^= 1;
  }
  if (tid == 0) t.max_bits = maxd;
  if (tid < n) t.len[hs.leaf_sym[cur][tid]] = hs.depth[tid];
  huf_canonical_codes_cta(t, hist, hs, sc.bits);
  if (tid == 0) plan = plan_huffman_literals(p, nl, sc.bits, t, tree, tree_ws);
  __syncthreads();
}

// Step "four streams" (the CTA, 64 threads per stream): the Huffman streams
// of lits[0..nl) (nl >= 256, split by huf_stream_range) coded with t, stream
// k at byte stream_off[k] (4-byte aligned) of words, stream_bytes[k] bytes.
// Each thread takes a chunk of its stream: its bit count first, then a
// suffix sum over the stream's threads places its bits (symbols go in last
// first, so later chunks come first); whole words are stored, edge words
// ORed. Returns false (every thread), having written nothing to words, when
// the streams do not fit in cap bytes. warp_bits: kLitWarps shared words; ok:
// a shared flag. CPU twin: huf_encode_4streams.
__device__ GPO_FORCEINLINE bool huf_pack_streams_cta(const HufTable& t, const uint8_t* lits, uint32_t nl, size_t cap,
                                                     uint32_t* words, uint32_t* warp_bits, uint32_t* stream_bytes,
                                                     uint32_t* stream_off, int& ok) {
  const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const uint32_t k = tid / 64, j = tid % 64;
  uint32_t a, e;
  huf_stream_range(nl, k, a, e);
  const uint32_t per = (e - a + 63) / 64;
  const uint32_t c0 = min(e, a + j * per), c1 = min(e, c0 + per);
  uint32_t nb = 0;
  bytes_backward(lits, c0, c1, [&](uint32_t s) { nb += t.len[s]; });
  // Bits of this thread's later chunks (they come first in the stream) and
  // the stream's total: a suffix sum over the 64 threads of the stream.
  uint32_t sfx = nb;
  for (uint32_t d = 1; d < 32; d <<= 1) {
    const uint32_t v = __shfl_down_sync(kFullWarp, sfx, d);
    if (lane + d < 32) sfx += v;
  }
  if (lane == 0) warp_bits[warp] = sfx;
  __syncthreads();
  const uint32_t later = sfx - nb + ((warp & 1) == 0 ? warp_bits[warp + 1] : 0);
  if (tid == 0) {
    size_t used = 0;
    uint32_t off = 0;
    ok = 1;
    for (uint32_t s = 0; s < 4; ++s) {
      const uint32_t tb = warp_bits[2 * s] + warp_bits[2 * s + 1];
      const uint32_t bytes = tb / 8 + 1;  // with the end mark
      if (bytes > cap - used) ok = 0;
      used += bytes;
      stream_bytes[s] = bytes;
      stream_off[s] = off;
      off += (bytes + 3) & ~3u;
    }
  }
  __syncthreads();
  if (!ok) return false;
  const uint32_t nwords = (stream_off[3] + stream_bytes[3] + 3) / 4;
  for (uint32_t w = tid; w < nwords; w += kLitThreads) words[w] = 0;
  __syncthreads();
  const uint32_t start = later;  // bits of this stream's later chunks
  uint32_t* sw = words + stream_off[k] / 4;
  uint32_t w = start >> 5, nacc = start & 31;
  uint64_t acc = 0;
  bool first = true;
  bytes_backward(lits, c0, c1, [&](uint32_t s) {
    acc |= uint64_t(t.code[s]) << nacc;
    nacc += t.len[s];
    if (nacc >= 32) {
      if (first) atomicOr(sw + w, uint32_t(acc)); else sw[w] = uint32_t(acc);
      first = false;
      ++w;
      acc >>= 32;
      nacc -= 32;
    }
  });
  if (j == 0) {  // the stream's first literal is written last: end mark
    acc |= uint64_t(1) << nacc;
    nacc += 1;
  }
  if (nacc > 0) atomicOr(sw + w, uint32_t(acc));
  __syncthreads();
  return true;
}

// Step "into place" (the CTA): the four streams packed by
// huf_pack_streams_cta copied back to back behind the head, then the head
// (write_huf_literals_head: header, tree description, jump table). Returns
// the section's size on thread 0.
__device__ GPO_FORCEINLINE uint32_t place_huf_literals_cta(uint8_t* out, const LitPlan& plan, const uint8_t* tree,
                                                           uint32_t nl, const uint8_t* streams,
                                                           const uint32_t* stream_bytes, const uint32_t* stream_off) {
  uint8_t* op = out + plan.lh + plan.tree + 6;
  uint32_t dst = 0;
  for (uint32_t s = 0; s < 4; ++s) {
    cta_copy(op + dst, streams + stream_off[s], stream_bytes[s]);
    dst += stream_bytes[s];
  }
  return threadIdx.x == 0 ? uint32_t(write_huf_literals_head(out, plan, tree, nl, stream_bytes)) : 0;
}

// The literals kernel's shared memory: the steps' work arrays, those of
// successive steps in a union.
struct LitShared {
  union {
    struct {
      uint32_t bitmap[kBitmapWords];  // literal positions of the block
      uint32_t hist[kLitWarps][256];  // per-warp histograms
    } g;                              // gather
    HufCtaScratch cta_plan;           // then the Huffman plan's work arrays
    HufTreeScratch tree_ws;           // then the weights' description's
  };
  PlanScalars plan_sc;
  uint32_t warp_lits[kLitWarps];
  uint32_t h[256];
  uint32_t warp_bits[kLitWarps];
  HufTable t;
  uint8_t tree[160];
  uint8_t order[256];
  LitPlan plan;
  uint64_t carry;
  uint32_t stream_bytes[4];
  uint32_t stream_off[4];  // 4-byte aligned offsets in the block's stream scratch
  int ok;
};

// ---------------------------------------------------------- sequences

inline constexpr uint32_t kSeqRingWords = 128;  // > 32 sequences of <= 76 bits + a partial word

// ORs nb bits of v (nb <= 32) at bit p of the window; p moves past them.
__device__ inline void ring_put(uint32_t* ring, uint32_t& p, uint32_t v, uint32_t nb) {
  if (nb == 0) return;
  const uint32_t at = p;
  p += nb;
  if (nb < 32) v &= (1u << nb) - 1;
  const uint32_t w = at >> 5, sh = at & 31;
  atomicOr(ring + w, v << sh);
  if (sh + nb > 32) atomicOr(ring + w + 1, v >> (32 - sh));
}

// Writes the window's whole words (bits below `bits`, window-relative) to
// out at word wbase, keeps the partial word as word 0. Whole warp.
__device__ inline void ring_flush(uint32_t* ring, uint32_t& bits, uint32_t& wbase, uint32_t* out, uint32_t cap_words,
                                  uint32_t lane) {
  __syncwarp();
  const uint32_t nfull = bits >> 5;
  for (uint32_t k = lane; k < nfull; k += 32)
    if (wbase + k < cap_words) out[wbase + k] = ring[k];
  const uint32_t partial = ring[nfull];
  __syncwarp();
  for (uint32_t k = lane; k <= nfull && k < kSeqRingWords; k += 32) ring[k] = 0;
  __syncwarp();
  if (lane == 0) ring[0] = partial;
  __syncwarp();
  wbase += nfull;
  bits &= 31;
}

// The sequences kernel's shared memory (a warp per block): counts, the three
// streams' tables and descriptions, the bitstream's window.
struct SeqShared {
  FseCTable ct[3];
  FseBuildScratch build[3];
  uint32_t cnt[3][kFseMaxSymbols];
  int16_t norm[3][kFseMaxSymbols];
  uint8_t desc[3][kSeqTableDescMax];
  SeqStreamPlan plan[3];
  uint32_t ring[kSeqRingWords];
};

// Pass 1 of the sequences kernel, the whole warp: offset values ov[0..nseq)
// and the code counts cnt of a block's sequences s. Every lane runs the same
// repeat-offset history over 32 sequences at a time (shuffled in) and keeps
// its own sequence's value; counts by shared atomics. CPU twin:
// offset_values, then count_seq_codes.
__device__ GPO_FORCEINLINE void seq_values_and_counts_warp(const Sequence* s, uint32_t nseq, bool frame_start,
                                                           uint32_t* ov, uint32_t (*cnt)[kFseMaxSymbols],
                                                           uint32_t lane) {
  for (uint32_t k = lane; k < 3 * kFseMaxSymbols; k += 32) (&cnt[0][0])[k] = 0;
  __syncwarp();
  RepHistory h;
  h.start(frame_start);
  Sequence nxt{0, 4, 1};
  if (lane < nseq) nxt = s[lane];
  for (uint32_t base = 0; base < nseq; base += 32) {
    const uint32_t i = base + lane;
    const Sequence sq = nxt;
    if (i + 32 < nseq) nxt = s[i + 32];  // next chunk's load in flight during this one
    const uint32_t n_here = min(32u, nseq - base);
    uint32_t my = 0;
#pragma unroll 4
    for (uint32_t j = 0; j < n_here; ++j) {
      const uint32_t o = __shfl_sync(kFullWarp, sq.offset, j);
      const uint32_t l = __shfl_sync(kFullWarp, sq.lit_len, j);
      const uint32_t v = h.code(o, l > 0);
      if (lane == j) my = v;
    }
    if (i < nseq) {
      ov[i] = my;
      const SeqCodes c = seq_codes(sq, my);
      atomicAdd(&cnt[0][c.ll], 1u);
      atomicAdd(&cnt[1][c.of], 1u);
      atomicAdd(&cnt[2][c.ml], 1u);
    }
  }
  __syncwarp();
}

// Pass 2 of the sequences kernel, the whole warp: the bitstream of nseq >= 1
// sequences s with offset values ov and tables ct (LL, OF, ML), last sequence
// first, into out (whole words, at most cap_words). ring: a shared window of
// kSeqRingWords words. Each lane loads its own sequence's table entries
// first, so the walk over the three FSE state chains (on every lane) costs
// one shared load per step and stream; a warp scan of bit counts places the
// six fields of each sequence in the window, flushed as whole words. Returns
// the stream size in bytes (every lane). CPU twin: write_seq_bitstream.
__device__ GPO_FORCEINLINE uint32_t seq_bitstream_warp(const Sequence* s, const uint32_t* ov, uint32_t nseq,
                                                       const FseCTable* ct, uint32_t* ring, uint32_t* out,
                                                       uint32_t cap_words, uint32_t lane) {
  for (uint32_t k = lane; k < kSeqRingWords; k += 32) ring[k] = 0;
  __syncwarp();
  const FseCTable& ct_ll = ct[0];
  const FseCTable& ct_of = ct[1];
  const FseCTable& ct_ml = ct[2];
  const uint32_t lg_ll = ct_ll.log, lg_of = ct_of.log, lg_ml = ct_ml.log;
  uint32_t s_ll = 0, s_of = 0, s_ml = 0;  // the same on every lane
  uint32_t bits = 0, wbase = 0;           // window-relative bit count, window start (words)
  const uint32_t last = nseq - 1;
  Sequence nxt{0, 4, 1};
  uint32_t nxt_ov = 4;
  if (lane <= last) {
    nxt = s[last - lane];
    nxt_ov = ov[last - lane];
  }
  for (int32_t hi = int32_t(last); hi >= 0; hi -= 32) {
    const uint32_t n_here = min(32u, uint32_t(hi) + 1);
    const Sequence sq = nxt;
    const uint32_t v_ov = nxt_ov;
    if (int32_t(lane) <= hi - 32) {
      nxt = s[hi - 32 - int32_t(lane)];
      nxt_ov = ov[hi - 32 - int32_t(lane)];
    }
    const SeqCodes c = seq_codes(sq, v_ov);
    const uint32_t cl = c.ll, co = c.of, cm = c.ml;
    // Each lane loads its own symbols' table entries: they are off the state
    // chains, so the serial walk below is one shared load per step and stream.
    const bool in_chunk = lane < n_here;
    const uint32_t d_of = in_chunk && lg_of ? ct_of.delta_nb_bits[co] : 0;
    const uint32_t d_ml = in_chunk && lg_ml ? ct_ml.delta_nb_bits[cm] : 0;
    const uint32_t d_ll = in_chunk && lg_ll ? ct_ll.delta_nb_bits[cl] : 0;
    const int32_t f_of = in_chunk && lg_of ? ct_of.find_state[co] : 0;
    const int32_t f_ml = in_chunk && lg_ml ? ct_ml.find_state[cm] : 0;
    const int32_t f_ll = in_chunk && lg_ll ? ct_ll.find_state[cl] : 0;
    uint32_t v_of = 0, n_of = 0, v_ml = 0, n_ml = 0, v_ll = 0, n_ll = 0;
    uint32_t j = 0;
    if (uint32_t(hi) == last) {  // the walk's first sequence: states start here, no bits
      const uint32_t jm = __shfl_sync(kFullWarp, cm, 0), jo = __shfl_sync(kFullWarp, co, 0),
                     jl = __shfl_sync(kFullWarp, cl, 0);
      s_ml = fse_init_state(ct_ml, jm);
      s_of = fse_init_state(ct_of, jo);
      s_ll = fse_init_state(ct_ll, jl);
      j = 1;
    }
#pragma unroll 4
    for (; j < n_here; ++j) {
      const uint32_t dO = __shfl_sync(kFullWarp, d_of, j), dM = __shfl_sync(kFullWarp, d_ml, j),
                     dL = __shfl_sync(kFullWarp, d_ll, j);
      const int32_t fO = __shfl_sync(kFullWarp, f_of, j), fM = __shfl_sync(kFullWarp, f_ml, j),
                    fL = __shfl_sync(kFullWarp, f_ll, j);
      uint32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0, c0 = 0, c1 = 0;
      if (lg_of) {
        a1 = (s_of + dO) >> 16;
        a0 = s_of;
        s_of = ct_of.state[int32_t(s_of >> a1) + fO];
      }
      if (lg_ml) {
        b1 = (s_ml + dM) >> 16;
        b0 = s_ml;
        s_ml = ct_ml.state[int32_t(s_ml >> b1) + fM];
      }
      if (lg_ll) {
        c1 = (s_ll + dL) >> 16;
        c0 = s_ll;
        s_ll = ct_ll.state[int32_t(s_ll >> c1) + fL];
      }
      if (lane == j) {
        v_of = a0; n_of = a1;
        v_ml = b0; n_ml = b1;
        v_ll = c0; n_ll = c1;
      }
    }
    // This lane's bits in stream order: states OF, ML, LL, then extras LL, ML, OF.
    const uint32_t xl = ll_code_bits(cl), xm = ml_code_bits(cm);
    const uint32_t mine = lane < n_here ? n_of + n_ml + n_ll + xl + xm + co : 0;
    uint32_t incl = mine;
    for (uint32_t d = 1; d < 32; d <<= 1) {
      const uint32_t t = __shfl_up_sync(kFullWarp, incl, d);
      if (lane >= d) incl += t;
    }
    const uint32_t total = __shfl_sync(kFullWarp, incl, 31);
    if (lane < n_here) {
      uint32_t p = bits + incl - mine;
      ring_put(ring, p, v_of, n_of);
      ring_put(ring, p, v_ml, n_ml);
      ring_put(ring, p, v_ll, n_ll);
      ring_put(ring, p, sq.lit_len, xl);
      ring_put(ring, p, sq.match_len - 3, xm);
      ring_put(ring, p, v_ov, co);
    }
    bits += total;
    ring_flush(ring, bits, wbase, out, cap_words, lane);
  }
  // Final states (ML, OF, LL), the end mark, the last words.
  if (lane == 0) {
    ring_put(ring, bits, s_ml, lg_ml);
    ring_put(ring, bits, s_of, lg_of);
    ring_put(ring, bits, s_ll, lg_ll);
    ring_put(ring, bits, 1, 1);
  }
  bits = __shfl_sync(kFullWarp, bits, 0);
  __syncwarp();
  const uint32_t stream_bytes = wbase * 4 + (bits + 7) / 8;
  bits = (bits + 31) & ~31u;  // the partial word too
  ring_flush(ring, bits, wbase, out, cap_words, lane);
  return stream_bytes;
}

}  // namespace gpo::zstd::enc
