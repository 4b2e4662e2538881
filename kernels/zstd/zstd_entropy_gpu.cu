// zstd stage 2 on the GPU: the blocks of a batch entropy-coded in parallel by
// the portable block encoder (zstd_entropy_block.h, the CPU reference's code),
// then frames assembled: sizes per input, a prefix sum, headers and a copy of
// every block into place. No host work per byte; the host only plans buffers.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/common/cuda_buffers.h"
#include "kernels/zstd/zstd_entropy_block.h"
#include "kernels/zstd/zstd_entropy.h"
#include "kernels/zstd/zstd_entropy_steps_gpu.cuh"

namespace gpo::zstd::entropy {

namespace {

// Per-input facts the kernels need (built on the host from the input sizes).
struct InputInfo {
  uint64_t size;
  uint32_t first_block;
  uint32_t nblocks;
};

// One thread per block: the whole block through the portable encoder into its
// slot (len + 3 bytes at src + 3 * b of the slot buffer).
__global__ void k_encode_blocks(const uint8_t* in, const BlockDesc* blocks, uint32_t nblocks, const Sequence* seqs,
                                const InputInfo* inputs, uint8_t* lits, uint32_t* ofv, uint8_t* slots,
                                uint32_t* block_sizes) {
  const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const BlockDesc bd = blocks[b];
  const enc::BlockScratch ws{lits + bd.src, ofv + bd.seq_first};
  const bool last = uint64_t(bd.pos) + bd.len == inputs[bd.input].size;
  block_sizes[b] = uint32_t(enc::encode_block(in + bd.src, bd.len, seqs + bd.seq_first, bd.seq_count, bd.pos == 0,
                                              last, ws, slots + bd.src + 3 * uint64_t(b)));
}

// One thread per input: its frame size and where each of its blocks goes.
__global__ void k_frame_sizes(const InputInfo* inputs, uint32_t ninputs, const uint32_t* block_sizes,
                              uint64_t* block_dst, uint64_t* frame_sizes, uint32_t window_log) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i > ninputs) return;
  if (i == ninputs) {  // the scan's extra element: offsets[ninputs] = total
    frame_sizes[i] = 0;
    return;
  }
  const InputInfo in = inputs[i];
  uint8_t hdr[enc::kFrameHeaderMax];
  uint64_t p = enc::write_frame_header(hdr, in.size, window_log);
  for (uint32_t k = 0; k < in.nblocks; ++k) {
    block_dst[in.first_block + k] = p;
    p += block_sizes[in.first_block + k];
  }
  frame_sizes[i] = p + (in.nblocks == 0 ? 3 : 0);
}

__global__ void k_headers(const InputInfo* inputs, uint32_t ninputs, const uint64_t* offsets, uint8_t* out,
                          uint32_t window_log) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= ninputs) return;
  uint8_t* o = out + offsets[i];
  const size_t h = enc::write_frame_header(o, inputs[i].size, window_log);
  if (inputs[i].nblocks == 0) enc::write_block_header(o + h, true, 0, 0);
}

// One CTA per block: its slot copied into the frame.
__global__ void k_assemble(const BlockDesc* blocks, const uint8_t* slots, const uint32_t* block_sizes,
                           const uint64_t* block_dst, const uint64_t* offsets, uint8_t* out) {
  const uint32_t b = blockIdx.x;
  const BlockDesc bd = blocks[b];
  const uint8_t* s = slots + bd.src + 3 * uint64_t(b);
  uint8_t* d = out + offsets[bd.input] + block_dst[b];
  const uint32_t n = block_sizes[b];
  for (uint32_t k = threadIdx.x; k < n; k += blockDim.x) d[k] = s[k];
}

// ---- The parallel path: per block, literals by a CTA (kLitThreads), the
// sequences section by a warp, both as the steps of zstd_entropy_steps.h
// (GPO_HD, or cooperative in zstd_entropy_steps_gpu.cuh), then sizes, prefix
// sums and one copy into place. Decisions and bits are the same as
// enc::encode_block's (the GPU test checks it byte for byte).

constexpr int kLitThreads = 256;
constexpr int kLitWarps = kLitThreads / 32;
constexpr uint64_t kHufStride = enc::kMaxBlock + 64;  // per-block stream scratch (4-byte aligned)

// Optional phase timing (GPO_ZSTD_ENC_PHASES=1 in the environment): thread 0
// of every CTA adds the clock cycles of each phase; ~GpuEncoder prints the
// averages. Off: one flag read per CTA.
__device__ int d_phase_on;
__device__ unsigned long long d_phase_sum[8], d_phase_cnt[8];
#define GPO_PHASE(k)                                                 \
  if (phase_on && threadIdx.x == 0) {                                \
    const long long t_ = clock64();                                  \
    atomicAdd(&d_phase_sum[k], (unsigned long long)(t_ - t_phase));  \
    atomicAdd(&d_phase_cnt[k], 1ull);                                \
    t_phase = t_;                                                    \
  }
constexpr const char* kPhaseNames[8] = {"lit.scan", "lit.gather", "lit.plan", "lit.streams",
                                        "lit.place", "seq.pass1", "seq.tables", "seq.pass2"};

// ---- Sequences: one warp per block, the steps of enc::encode_sequences.
// Pass 1 (forward, 32 sequences at a time): offset values and code counts.
// Then lanes 0-2 choose the three streams' modes and build their FSE tables,
// lane 0 writes the header, all in shared memory. Pass 2 (backward, 32 at a
// time): the bitstream. Same bits as enc::encode_sequences.

constexpr uint32_t kFull = enc::kFullWarp;
constexpr uint32_t kSeqHdrStride = 320;                      // count, modes, up to 3 table descriptions
constexpr uint64_t kSeqBitsStride = enc::kMaxBlock + 256;    // bytes per block, multiple of 4
static_assert(kSeqHdrStride >= 3 + 1 + 3 * enc::kSeqTableDescMax);

struct SeqShared {
  enc::FseCTable ct[3];
  enc::FseBuildScratch build[3];
  uint32_t cnt[3][enc::kFseMaxSymbols];
  int16_t norm[3][enc::kFseMaxSymbols];
  uint8_t desc[3][enc::kSeqTableDescMax];
  enc::SeqStreamPlan plan[3];
  uint32_t ring[enc::kSeqRingWords];
};

// The sequences section of block blockIdx.x: its header (count, modes, table
// descriptions) at hdr_all + kSeqHdrStride * b (hdr_sizes[b] bytes), its
// bitstream at bits_all + kSeqBitsStride * b; seq_sizes[b] = the section's
// size, 0 when it does not fit the block (len bytes).
__global__ void __launch_bounds__(32) k_sequences(const BlockDesc* blocks, const Sequence* seqs, uint32_t* ofv_all,
                                                  uint8_t* hdr_all, uint32_t* bits_all, uint32_t* hdr_sizes,
                                                  uint32_t* seq_sizes) {
  __shared__ SeqShared sh;
  const uint32_t b = blockIdx.x, lane = threadIdx.x;
  const BlockDesc bd = blocks[b];
  const uint32_t nseq = bd.seq_count, len = bd.len;
  const Sequence* S = seqs + bd.seq_first;
  uint32_t* OV = ofv_all + bd.seq_first;
  uint8_t* hdr_out = hdr_all + uint64_t(kSeqHdrStride) * b;
  uint32_t* words = bits_all + (kSeqBitsStride / 4) * uint64_t(b);
  const int phase_on = d_phase_on;
  long long t_phase = phase_on ? clock64() : 0;
  if (nseq == 0) {  // as enc::encode_sequences (the block is raw anyway: all literals)
    if (lane == 0) {
      hdr_out[0] = 0;
      hdr_sizes[b] = 1;
      seq_sizes[b] = len >= 4 ? 1 : 0;
    }
    return;
  }
  enc::seq_values_and_counts_warp(S, nseq, bd.pos == 0, OV, sh.cnt, lane);
  GPO_PHASE(5);
  if (lane < 3) {
    const int w = int(lane);  // LL, OF, ML
    sh.plan[w] = enc::build_seq_table(w, sh.cnt[w], nseq, sh.norm[w], sh.desc[w], sh.ct[w], sh.build[w]);
  }
  __syncwarp();
  uint32_t hdr_size = 0;
  if (lane == 0) {
    hdr_size = enc::write_seq_header(hdr_out, kSeqHdrStride, nseq, sh.plan, sh.desc);
    hdr_sizes[b] = hdr_size;
  }
  hdr_size = __shfl_sync(enc::kFullWarp, hdr_size, 0);
  GPO_PHASE(6);
  const uint32_t stream_bytes =
      enc::seq_bitstream_warp(S, OV, nseq, sh.ct, sh.ring, words, uint32_t(kSeqBitsStride / 4), lane);
  if (lane == 0) {
    const uint64_t size = uint64_t(hdr_size) + stream_bytes;
    seq_sizes[b] = size <= len ? uint32_t(size) : 0;
  }
  GPO_PHASE(7);
}

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

constexpr uint32_t kBitmapWords = enc::kMaxBlock / 32;          // a bit per source byte
constexpr uint32_t kWordsPerWarp = kBitmapWords / kLitWarps;     // gather: 16 KiB of source per warp

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

struct PlanScalars {
  unsigned long long bits;  // estimated size of the Huffman streams
  uint32_t last_sym, maxd;
};

// Work arrays of the CTA-parallel Huffman plan (in the union after the gather).
struct HufCtaScratch {
  uint32_t w[2][256];          // leaf weights, by sorted position (double buffer for re-sorting)
  uint16_t leaf_sym[2][256];
  uint32_t node_w[512];
  uint16_t parent[512];        // then the pointer-jumping ancestor
  uint16_t anc[512];
  uint8_t depth[512];
  uint32_t wcnt[kLitWarps][enc::kHufMaxBits + 2];  // per warp: symbols per code length
  uint32_t nb_per_len[enc::kHufMaxBits + 2];
  uint32_t val_per_len[enc::kHufMaxBits + 2];
};

struct LitShared {
  union {
    struct {
      uint32_t bitmap[kBitmapWords];   // literal positions of the block
      uint32_t hist[kLitWarps][256];   // per-warp histograms
    } g;                               // gather
    HufCtaScratch cta_plan;            // then the Huffman plan's work arrays
    enc::HufTreeScratch tree_ws;       // then the weights' description's
  };
  PlanScalars plan_sc;
  uint32_t warp_lits[kLitWarps];
  uint32_t h[256];
  uint32_t warp_bits[kLitWarps];
  enc::HufTable t;
  uint8_t tree[160];
  uint8_t order[256];
  enc::LitPlan plan;
  uint64_t carry;
  uint32_t stream_bytes[4];
  uint32_t stream_off[4];  // 4-byte aligned offsets in the block's stream scratch
  int ok;
};

// enc::plan_literals(nl, hist, t, tree, ws, order) by the whole CTA (one
// thread per symbol), same result: the parts over all symbols in parallel,
// depths by pointer jumping, canonical codes by warp match; only the
// two-queue merge and the weights' description stay on one thread.
__device__ void plan_literals_cta(uint32_t nl, const uint32_t* hist, const uint8_t* order, enc::HufTable& t,
                                  uint8_t* tree, HufCtaScratch& hs, enc::HufTreeScratch& tree_ws, enc::LitPlan& plan,
                                  PlanScalars& sc) {
  const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) {
    sc.bits = 0;
    sc.last_sym = 0;
    sc.maxd = 0;
  }
  __syncthreads();
  const bool present = hist[tid] != 0;
  if (present) atomicMax(&sc.last_sym, tid);
  const uint32_t n = uint32_t(__syncthreads_count(present));
  const uint32_t last_sym = sc.last_sym;
  enc::LitPlan p{enc::LitMode::kRaw, last_sym, 0, 0, 0};
  if (enc::plan_without_table(p, nl, n)) {
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
  for (;;) {
    // Two-queue merge (one thread), as enc::huf_build.
    if (tid == 0) {
      enc::huf_merge(hs.w[cur], n, hs.node_w, hs.parent);
      sc.maxd = 0;
    }
    __syncthreads();
    // Depths by pointer jumping: depth(i) = hops to the root.
    const uint32_t root = 2 * n - 2;
    for (uint32_t i = tid; i <= root; i += kLitThreads) {
      hs.anc[i] = i == root ? uint16_t(root) : hs.parent[i];
      hs.depth[i] = i == root ? 0 : 1;
    }
    __syncthreads();
    for (uint32_t round = 0; round < 9; ++round) {  // 2^9 > 511 nodes
      uint16_t a[2];
      uint8_t d[2];
      for (uint32_t k = 0; k < 2; ++k) {
        const uint32_t i = tid + k * kLitThreads;
        if (i <= root) {
          const uint32_t up = hs.anc[i];
          d[k] = uint8_t(hs.depth[i] + hs.depth[up]);
          a[k] = hs.anc[up];
        }
      }
      __syncthreads();
      for (uint32_t k = 0; k < 2; ++k) {
        const uint32_t i = tid + k * kLitThreads;
        if (i <= root) {
          hs.depth[i] = d[k];
          hs.anc[i] = a[k];
        }
      }
      __syncthreads();
    }
    if (tid < n) atomicMax(&sc.maxd, uint32_t(hs.depth[tid]));
    __syncthreads();
    maxd = sc.maxd;
    if (maxd <= enc::kHufMaxBits) break;
    // Too deep: halve the counts and sort again by (count, symbol).
    uint32_t wi = 0, si = 0;
    if (tid < n) {
      wi = (hs.w[cur][tid] + 1) >> 1;
      si = hs.leaf_sym[cur][tid];
      hs.w[cur][tid] = wi;
    }
    __syncthreads();
    if (tid < n) {
      uint32_t rank = 0;
      for (uint32_t k = 0; k < n; ++k) {
        const uint32_t wk = hs.w[cur][k];
        rank += (wk < wi) | ((wk == wi) & (hs.leaf_sym[cur][k] < si));
      }
      hs.w[cur ^ 1][rank] = wi;
      hs.leaf_sym[cur ^ 1][rank] = uint16_t(si);
    }
    cur ^= 1;
    __syncthreads();
  }
  if (tid == 0) t.max_bits = maxd;
  if (tid < n) t.len[hs.leaf_sym[cur][tid]] = hs.depth[tid];
  if (tid < enc::kHufMaxBits + 2) hs.nb_per_len[tid] = 0;
  if (tid < kLitWarps * (enc::kHufMaxBits + 2)) (&hs.wcnt[0][0])[tid] = 0;
  __syncthreads();
  // Canonical codes: code(s) = first code of its length + symbols of that
  // length before s.
  const uint32_t len = t.len[tid];
  if (len) atomicAdd(&hs.nb_per_len[len], 1u);
  const uint32_t peers = __match_any_sync(kFull, len);
  const uint32_t in_warp = __popc(peers & ((1u << lane) - 1));
  if (in_warp == 0) hs.wcnt[warp][len] = __popc(peers);
  {
    const uint64_t my_bits = uint64_t(hist[tid]) * len;
    if (my_bits) atomicAdd(&sc.bits, (unsigned long long)my_bits);
  }
  __syncthreads();
  if (tid == 0) {
    uint32_t mn = 0;
    for (uint32_t l = 0; l < enc::kHufMaxBits + 2; ++l) hs.val_per_len[l] = 0;
    for (uint32_t l = maxd; l > 0; --l) {
      hs.val_per_len[l] = mn;
      mn += hs.nb_per_len[l];
      mn >>= 1;
    }
  }
  __syncthreads();
  if (len) {
    uint32_t before = 0;
    for (uint32_t w2 = 0; w2 < warp; ++w2) before += hs.wcnt[w2][len];
    t.code[tid] = uint16_t(hs.val_per_len[len] + before + in_warp);
  }
  __syncthreads();
  if (tid == 0) {
    plan = enc::plan_huffman_literals(p, nl, sc.bits, t, tree, tree_ws);
  }
  __syncthreads();
}

// The literals section of block blockIdx.x at slot + 3; lit_sizes[b] = its
// size, or 0 when the block will be raw whatever (too few matched bytes).
__global__ void __launch_bounds__(kLitThreads, 4) k_literals(const uint8_t* in, const BlockDesc* blocks,
                                                          const Sequence* seqs,
                                                          uint8_t* lits_all, uint8_t* huf_scratch, uint8_t* slots,
                                                          uint32_t* lit_sizes) {
  using Scan = cub::BlockScan<uint64_t, kLitThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ LitShared sh;
  const uint32_t b = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const BlockDesc bd = blocks[b];
  const uint32_t nseq = bd.seq_count, len = bd.len;
  const Sequence* S = seqs + bd.seq_first;
  const uint8_t* src = in + bd.src;
  uint8_t* lits = lits_all + bd.src;
  uint8_t* out = slots + bd.src + 3 * uint64_t(b) + 3;
  const int phase_on = d_phase_on;
  long long t_phase = phase_on ? clock64() : 0;

  // 1. Prefix sums of (lit_len, lit_len + match_len), packed in one 64-bit
  // sum; every sequence marks its literals' source positions in a bitmap.
  uint32_t* bm = sh.g.bitmap;
  for (uint32_t k = tid; k < kBitmapWords; k += kLitThreads) bm[k] = 0;
  if (tid == 0) sh.carry = 0;
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
        const Sequence q = S[i];
        ll[k] = q.lit_len;
        v[k] = (uint64_t(q.lit_len) << 32) | (q.lit_len + q.match_len);
      }
    }
    uint64_t agg;
    Scan(scan_tmp).ExclusiveSum(v, v, agg);
    const uint64_t c = sh.carry;
#pragma unroll
    for (uint32_t k = 0; k < kItems; ++k) {
      const uint32_t sp = uint32_t(c + v[k]);  // source bytes before the sequence
      mark_range(bm, sp, sp + ll[k]);
    }
    __syncthreads();
    if (tid == 0) sh.carry = c + agg;
    __syncthreads();
  }
  const uint64_t tot = sh.carry;
  GPO_PHASE(0);
  const uint32_t nl = uint32_t(tot >> 32) + (len - uint32_t(tot));
  if (size_t(nl) + 3 + 4 >= len) {  // enc::encode_block's first test: raw block
    if (tid == 0) lit_sizes[b] = 0;
    return;
  }
  {  // the trailing literals
    const uint32_t lo = uint32_t(tot), w0 = (lo + 31) / 32, w1 = len / 32;  // whole words [w0, w1)
    if (w0 > w1) {
      if (tid == 0) mark_range(bm, lo, len);
    } else {
      for (uint32_t w = w0 + tid; w < w1; w += kLitThreads) bm[w] = ~0u;
      if (tid == 0) {
        mark_range(bm, lo, w0 * 32);
        mark_range(bm, w1 * 32, len);
      }
    }
  }
  for (uint32_t k = tid; k < kLitWarps * 256; k += kLitThreads) (&sh.g.hist[0][0])[k] = 0;
  __syncthreads();

  // 2. Gather: warp w compacts the literals of source words [512 w, 512 w +
  // 512) of the bitmap (16 KiB), 32 words (1 KiB of source) per step: each
  // lane one word's 32 bytes, output offsets by a warp scan of the counts.
  {
    const uint32_t nwords = (len + 31) / 32;
    const uint32_t w_lo = min(nwords, warp * kWordsPerWarp), w_hi = min(nwords, w_lo + kWordsPerWarp);
    uint32_t cnt = 0;
    for (uint32_t w = w_lo + lane; w < w_hi; w += 32) cnt += __popc(bm[w]);
    for (uint32_t d = 16; d > 0; d >>= 1) cnt += __shfl_xor_sync(kFull, cnt, d);
    if (lane == 0) sh.warp_lits[warp] = cnt;
    __syncthreads();
    uint32_t out_base = 0;
    for (uint32_t k = 0; k < warp; ++k) out_base += sh.warp_lits[k];
    const bool aligned = (reinterpret_cast<uintptr_t>(src) & 15) == 0;
    uint32_t* hist = sh.g.hist[warp];
    for (uint32_t w0 = w_lo; w0 < w_hi; w0 += 32) {
      const uint32_t w = w0 + lane;
      const uint32_t m = w < w_hi ? bm[w] : 0;
      const uint32_t n = __popc(m);
      uint32_t incl = n;
      for (uint32_t d = 1; d < 32; d <<= 1) {
        const uint32_t t = __shfl_up_sync(kFull, incl, d);
        if (lane >= d) incl += t;
      }
      const uint32_t total = __shfl_sync(kFull, incl, 31);
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
            atomicAdd(hist + c, 1u);
          }
        }
      }
      out_base += total;
    }
  }
  __syncthreads();
  {
    uint32_t h = 0;
    for (int w = 0; w < kLitWarps; ++w) h += sh.g.hist[w][tid];
    sh.h[tid] = h;
  }
  __syncthreads();
  GPO_PHASE(1);

  // 3. Symbols ranked by (count, symbol) in parallel, so the Huffman build
  // (one thread) does not sort; then the decisions, same code as the CPU.
  {
    const uint32_t my = sh.h[tid];
    if (my) {
      uint32_t rank = 0;
      for (uint32_t s = 0; s < 256; ++s) {
        const uint32_t o = sh.h[s];
        rank += (o != 0) & ((o < my) | ((o == my) & (s < tid)));
      }
      sh.order[rank] = uint8_t(tid);
    }
  }
  __syncthreads();
  // The CTA-parallel plan: on the H100 the literals kernel took 3.0 ms for
  // 256 MiB with it, 3.6 ms with enc::plan_literals on one thread.
  plan_literals_cta(nl, sh.h, sh.order, sh.t, sh.tree, sh.cta_plan, sh.tree_ws, sh.plan, sh.plan_sc);
  GPO_PHASE(2);
  const enc::LitPlan plan = sh.plan;
  if (plan.mode == enc::LitMode::kRle) {
    if (tid == 0) {
      const size_t h = enc::lit_plain_header(out, 1, nl);
      out[h] = uint8_t(plan.rle_sym);
      lit_sizes[b] = uint32_t(h + 1);
    }
    return;
  }
  bool raw = plan.mode == enc::LitMode::kRaw;
  if (!raw && nl < 256) {  // one small stream: one thread, as on the CPU
    if (tid == 0) lit_sizes[b] = uint32_t(enc::encode_planned_literals(plan, sh.t, sh.tree, lits, nl, out));
    return;
  }
  if (!raw) {
    // 4. Four streams, 64 threads each: bit counts, then each thread's bits at
    // its offset (symbols go in last first, so later chunks come first).
    const uint32_t seg = (nl + 3) / 4, k = tid / 64, j = tid % 64;
    const uint32_t a = k * seg, e = k == 3 ? nl : (k + 1) * seg;
    const uint32_t per = (e - a + 63) / 64;
    const uint32_t c0 = min(e, a + j * per), c1 = min(e, c0 + per);
    uint32_t nb = 0;
    bytes_backward(lits, c0, c1, [&](uint32_t s) { nb += sh.t.len[s]; });
    // Bits of this thread's later chunks (they come first in the stream) and
    // the stream's total: a suffix sum over the 64 threads of the stream.
    uint32_t sfx = nb;
    for (uint32_t d = 1; d < 32; d <<= 1) {
      const uint32_t t = __shfl_down_sync(kFull, sfx, d);
      if (lane + d < 32) sfx += t;
    }
    if (lane == 0) sh.warp_bits[warp] = sfx;
    __syncthreads();
    const uint32_t later = sfx - nb + ((warp & 1) == 0 ? sh.warp_bits[warp + 1] : 0);
    if (tid == 0) {
      size_t used = plan.tree + 6;
      uint32_t off = 0;
      sh.ok = 1;
      for (uint32_t s = 0; s < 4; ++s) {
        const uint32_t tb = sh.warp_bits[2 * s] + sh.warp_bits[2 * s + 1];
        const uint32_t bytes = tb / 8 + 1;  // with the end mark
        if (bytes > plan.cap - used) sh.ok = 0;
        used += bytes;
        sh.stream_bytes[s] = bytes;
        sh.stream_off[s] = off;
        off += (bytes + 3) & ~3u;
      }
    }
    __syncthreads();
    raw = !sh.ok;
    if (!raw) {
      uint32_t* words = reinterpret_cast<uint32_t*>(huf_scratch + kHufStride * b);
      const uint32_t nwords = (sh.stream_off[3] + sh.stream_bytes[3] + 3) / 4;
      for (uint32_t w = tid; w < nwords; w += kLitThreads) words[w] = 0;
      __syncthreads();
      const uint32_t start = later;  // bits of this stream's later chunks
      uint32_t* sw = words + sh.stream_off[k] / 4;
      uint32_t w = start >> 5, nacc = start & 31;
      uint64_t acc = 0;
      bool first = true;
      bytes_backward(lits, c0, c1, [&](uint32_t s) {
        acc |= uint64_t(sh.t.code[s]) << nacc;
        nacc += sh.t.len[s];
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
      GPO_PHASE(3);
      // 5. Into place: header, tree, jump table, streams.
      const uint8_t* sb = huf_scratch + kHufStride * b;
      uint8_t* op = out + plan.lh + plan.tree + 6;
      uint32_t dst = 0;
      for (uint32_t s = 0; s < 4; ++s) {
        cta_copy(op + dst, sb + sh.stream_off[s], sh.stream_bytes[s]);
        dst += sh.stream_bytes[s];
      }
      if (tid == 0) {
        for (size_t x = 0; x < plan.tree; ++x) out[plan.lh + x] = sh.tree[x];
        for (uint32_t s = 0; s < 3; ++s) enc::put_le16(out + plan.lh + plan.tree + 2 * s, sh.stream_bytes[s]);
        const uint32_t cs = uint32_t(plan.tree + 6 + dst);
        enc::huf_lit_header(out, nl, cs);
        lit_sizes[b] = uint32_t(plan.lh + cs);
      }
      GPO_PHASE(4);
      return;
    }
  }
  // Raw literals.
  const size_t h = enc::lit_plain_header(out, 0, nl);  // every thread: same bytes, cheap
  cta_copy(out + h, lits, nl);
  if (tid == 0) lit_sizes[b] = uint32_t(h + nl);
}

// Final block sizes (and the raw decision) exactly as enc::encode_block.
__device__ inline bool block_is_raw(uint32_t ls, uint32_t ss, uint32_t len) {
  return ls == 0 || ss == 0 || ss > len - ls || ls + ss >= len;
}
__global__ void k_block_sizes(const BlockDesc* blocks, uint32_t nblocks, const uint32_t* lit_sizes,
                              const uint32_t* seq_sizes, uint32_t* block_sizes) {
  const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const uint32_t len = blocks[b].len, ls = lit_sizes[b], ss = seq_sizes[b];
  block_sizes[b] = block_is_raw(ls, ss, len) ? 3 + len : 3 + ls + ss;
}

// One CTA per block: block header, then the literals and sequences sections
// (or the raw bytes) straight into the frame.
__global__ void k_assemble_split(const uint8_t* in, const BlockDesc* blocks, const InputInfo* inputs,
                                 const uint8_t* slots, const uint8_t* seq_hdr, const uint32_t* seq_hdr_sizes,
                                 const uint32_t* seq_bits, const uint32_t* lit_sizes, const uint32_t* seq_sizes,
                                 const uint64_t* block_dst, const uint64_t* offsets, uint8_t* out) {
  const uint32_t b = blockIdx.x;
  const BlockDesc bd = blocks[b];
  uint8_t* d = out + offsets[bd.input] + block_dst[b];
  const uint32_t len = bd.len, ls = lit_sizes[b], ss = seq_sizes[b];
  const bool last = uint64_t(bd.pos) + len == inputs[bd.input].size;
  if (block_is_raw(ls, ss, len)) {
    if (threadIdx.x == 0) enc::write_block_header(d, last, 0, len);
    cta_copy(d + 3, in + bd.src, len);
    return;
  }
  if (threadIdx.x == 0) enc::write_block_header(d, last, 2, ls + ss);
  cta_copy(d + 3, slots + bd.src + 3 * uint64_t(b) + 3, ls);
  const uint32_t hs = seq_hdr_sizes[b];
  cta_copy(d + 3 + ls, seq_hdr + uint64_t(kSeqHdrStride) * b, hs);
  cta_copy(d + 3 + ls + hs, reinterpret_cast<const uint8_t*>(seq_bits) + kSeqBitsStride * b, ss - hs);
}


}  // namespace

struct GpuEncoder::Impl {
  cuda::DevBuf<uint8_t> lits, slots, out, cub_tmp, seq_hdr, huf;
  cuda::DevBuf<uint32_t> ofv, block_sizes, lit_sizes, seq_sizes, seq_hdr_sizes, seq_bits;
  bool one_thread = false;
  cuda::DevBuf<uint64_t> block_dst, frame_sizes, offsets;
  cuda::DevBuf<InputInfo> inputs;
  std::vector<InputInfo> h_inputs;
  // The sequences kernel (a warp per block, latency-bound) runs on a side
  // stream next to the literals kernel.
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  // Optional split of the time (bench): start, literals done, sequences done, end.
  bool profile = false;
  cudaEvent_t prof[4] = {};
  ~Impl() {
    for (cudaEvent_t ev : prof)
      if (ev) cudaEventDestroy(ev);
    if (side) cudaStreamDestroy(side);
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
  }
};

GpuEncoder::GpuEncoder() : impl_(std::make_unique<Impl>()) {
  const char* env = std::getenv("GPO_ZSTD_ENC_PHASES");
  if (env && *env == '1') {
    const int on = 1;
    cudaMemcpyToSymbol(d_phase_on, &on, sizeof(on));
  }
}
GpuEncoder::~GpuEncoder() {
  const char* env = std::getenv("GPO_ZSTD_ENC_PHASES");
  if (!env || *env != '1') return;
  unsigned long long sum[8] = {}, cnt[8] = {};
  if (cudaDeviceSynchronize() != cudaSuccess || cudaMemcpyFromSymbol(sum, d_phase_sum, sizeof(sum)) != cudaSuccess ||
      cudaMemcpyFromSymbol(cnt, d_phase_cnt, sizeof(cnt)) != cudaSuccess)
    return;
  if (cnt[0] == 0 && cnt[5] == 0) return;
  std::fprintf(stderr, "zstd stage 2 phases, clock cycles per block (blocks that got there):");
  for (int k = 0; k < 8; ++k)
    std::fprintf(stderr, " %s %.0f (%llu)", kPhaseNames[k], cnt[k] ? double(sum[k]) / double(cnt[k]) : 0.0, cnt[k]);
  std::fprintf(stderr, "\n");
  const unsigned long long zero[8] = {};
  cudaMemcpyToSymbol(d_phase_sum, zero, sizeof(zero));
  cudaMemcpyToSymbol(d_phase_cnt, zero, sizeof(zero));
}
uint8_t* GpuEncoder::d_out() const { return impl_->out.data(); }
const uint64_t* GpuEncoder::d_offsets() const { return impl_->offsets.data(); }
size_t GpuEncoder::out_capacity() const { return impl_->out.size(); }
void GpuEncoder::set_one_thread_per_block(bool on) { impl_->one_thread = on; }
void GpuEncoder::set_profile(bool on) {
  impl_->profile = on;
  for (cudaEvent_t& ev : impl_->prof)
    if (on && !ev) cudaEventCreate(&ev);
}
GpuEncoder::Split GpuEncoder::last_split() const {
  Split sp;
  const Impl& m = *impl_;
  if (!m.profile || !m.prof[0] || cudaEventSynchronize(m.prof[3]) != cudaSuccess) return sp;
  cudaEventElapsedTime(&sp.literals_ms, m.prof[0], m.prof[1]);
  cudaEventElapsedTime(&sp.sequences_ms, m.prof[0], m.prof[2]);
  cudaEventElapsedTime(&sp.total_ms, m.prof[0], m.prof[3]);
  return sp;
}

int GpuEncoder::encode(const uint8_t* d_in, uint64_t in_extent, const BlockDesc* d_blocks, uint32_t nblocks,
                       const Sequence* d_seqs, uint64_t seq_slots, std::span<const uint64_t> input_sizes,
                       void* stream_v) {
  Impl& m = *impl_;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  const uint32_t ninputs = uint32_t(input_sizes.size());
  // Blocks follow plan_blocks: input by input, ceil(size / kBlockBytes) each.
  m.h_inputs.resize(ninputs);
  uint32_t fb = 0;
  size_t out_cap = 0;
  for (uint32_t i = 0; i < ninputs; ++i) {
    const uint64_t n = input_sizes[i];
    const uint32_t nb = uint32_t((n + gpu::kBlockBytes - 1) / gpu::kBlockBytes);
    m.h_inputs[i] = {n, fb, nb};
    fb += nb;
    out_cap += enc::frame_bound(n);
  }
  if (fb != nblocks) return int(cudaErrorInvalidValue);
  cudaError_t e;
  if ((e = m.lits.ensure(in_extent)) || (e = m.slots.ensure(in_extent + 3 * uint64_t(nblocks))) ||
      (e = m.ofv.ensure(seq_slots)) || (e = m.block_sizes.ensure(nblocks)) ||
      (e = m.block_dst.ensure(nblocks)) || (e = m.frame_sizes.ensure(ninputs + 1)) ||
      (e = m.offsets.ensure(ninputs + 1)) || (e = m.inputs.ensure(ninputs)) || (e = m.out.ensure(out_cap)))
    return int(e);
  size_t tmp = 0;
  cub::DeviceScan::ExclusiveSum(nullptr, tmp, m.frame_sizes.data(), m.offsets.data(), ninputs + 1, stream);
  if ((e = m.cub_tmp.ensure(tmp))) return int(e);
  if (ninputs &&
      (e = cudaMemcpyAsync(m.inputs.data(), m.h_inputs.data(), ninputs * sizeof(InputInfo), cudaMemcpyHostToDevice, stream)))
    return int(e);
  if (nblocks && m.one_thread) {
    k_encode_blocks<<<nblocks, 1, 0, stream>>>(d_in, d_blocks, nblocks, d_seqs, m.inputs.data(), m.lits.data(),
                                                            m.ofv.data(), m.slots.data(), m.block_sizes.data());
  } else if (nblocks) {
    if ((e = m.seq_hdr.ensure(uint64_t(kSeqHdrStride) * nblocks)) ||
        (e = m.seq_bits.ensure(kSeqBitsStride / 4 * nblocks)) || (e = m.seq_hdr_sizes.ensure(nblocks)) ||
        (e = m.huf.ensure(kHufStride * nblocks)) ||
        (e = m.lit_sizes.ensure(nblocks)) || (e = m.seq_sizes.ensure(nblocks)))
      return int(e);
    if (!m.side && ((e = cudaStreamCreateWithFlags(&m.side, cudaStreamNonBlocking)) ||
                    (e = cudaEventCreateWithFlags(&m.fork, cudaEventDisableTiming)) ||
                    (e = cudaEventCreateWithFlags(&m.join, cudaEventDisableTiming))))
      return int(e);
    if (m.profile) cudaEventRecord(m.prof[0], stream);
    if ((e = cudaEventRecord(m.fork, stream)) || (e = cudaStreamWaitEvent(m.side, m.fork, 0))) return int(e);
    k_sequences<<<nblocks, 32, 0, m.side>>>(d_blocks, d_seqs, m.ofv.data(), m.seq_hdr.data(), m.seq_bits.data(),
                                            m.seq_hdr_sizes.data(), m.seq_sizes.data());
    k_literals<<<nblocks, kLitThreads, 0, stream>>>(d_in, d_blocks, d_seqs, m.lits.data(), m.huf.data(), m.slots.data(),
                                                     m.lit_sizes.data());
    if (m.profile) {
      cudaEventRecord(m.prof[1], stream);
      cudaEventRecord(m.prof[2], m.side);
    }
    if ((e = cudaEventRecord(m.join, m.side)) || (e = cudaStreamWaitEvent(stream, m.join, 0))) return int(e);
    k_block_sizes<<<(nblocks + 127) / 128, 128, 0, stream>>>(d_blocks, nblocks, m.lit_sizes.data(), m.seq_sizes.data(),
                                                             m.block_sizes.data());
  }
  k_frame_sizes<<<(ninputs + 1 + 127) / 128, 128, 0, stream>>>(m.inputs.data(), ninputs, m.block_sizes.data(), m.block_dst.data(),
                                                               m.frame_sizes.data(), kWindowLog);
  cub::DeviceScan::ExclusiveSum(m.cub_tmp.data(), tmp, m.frame_sizes.data(), m.offsets.data(), ninputs + 1, stream);
  if (ninputs) k_headers<<<(ninputs + 127) / 128, 128, 0, stream>>>(m.inputs.data(), ninputs, m.offsets.data(), m.out.data(), kWindowLog);
  if (nblocks && m.one_thread)
    k_assemble<<<nblocks, 256, 0, stream>>>(d_blocks, m.slots.data(), m.block_sizes.data(), m.block_dst.data(), m.offsets.data(), m.out.data());
  else if (nblocks)
    k_assemble_split<<<nblocks, 256, 0, stream>>>(d_in, d_blocks, m.inputs.data(), m.slots.data(), m.seq_hdr.data(),
                                                  m.seq_hdr_sizes.data(), m.seq_bits.data(), m.lit_sizes.data(), m.seq_sizes.data(),
                                                  m.block_dst.data(), m.offsets.data(), m.out.data());
  if (m.profile && !m.one_thread && nblocks) cudaEventRecord(m.prof[3], stream);
  return int(cudaGetLastError());
}

}  // namespace gpo::zstd::entropy
