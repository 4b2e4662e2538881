// Stage 1 of zstd on the GPU: the batch match finder. zstd_find_parse.h describes
// the parse; cpu_find (zstd_find_cpu.cpp) is its step-for-step CPU twin.
//
// One warp per segment (8 per 128 KiB block), each a CTA of its own with its
// own hash table in shared memory (2K entries of 16-bit positions relative to
// the warp's window base, 4 KiB, so 32 warps fit an SM: the parse is
// latency-bound; 4K entries gave 2.5% smaller frames but a 20% slower finder
// on the H100): no barrier in the parse, and a warp that finishes frees its
// slot for the next segment at once. A warp step looks at
// 32 positions (one per lane): hash, candidate (an earlier lane with the same
// hash via __match_any_sync, else the table), hash and rep match lengths;
// then the matches of the step, first to last, by ballot; long matches are
// extended and caught up backwards by the whole warp. A second kernel
// stitches each block's segments into one run of sequences.
#include <cuda_runtime.h>

#include "kernels/zstd/zstd_find_parse.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::zstd::gpu {
namespace {

using namespace find;

static_assert(kWindow == 32, "a warp step is one position per lane");
constexpr uint32_t kTableEntries = 1u << kHashLog;  // per warp

// 4 bytes at any address from aligned words: reads nothing past p + 3's word.
__device__ __forceinline__ uint32_t load32(const uint8_t* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(a & ~uintptr_t(3));
  const uint32_t s = uint32_t(a & 3) * 8;
  const uint32_t lo = __ldg(w);
  if (!s) return lo;
  return __funnelshift_r(lo, __ldg(w + 1), s);
}
// 8 bytes at any address: reads nothing past p + 7's word.
__device__ __forceinline__ uint64_t load64(const uint8_t* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(a & ~uintptr_t(3));
  const uint32_t s = uint32_t(a & 3) * 8;
  const uint32_t w0 = __ldg(w), w1 = __ldg(w + 1);
  if (!s) return uint64_t(w0) | (uint64_t(w1) << 32);
  const uint32_t w2 = __ldg(w + 2);
  return uint64_t(__funnelshift_r(w0, w1, s)) | (uint64_t(__funnelshift_r(w1, w2, s)) << 32);
}

// Equal bytes at a and b (a < b), at most max <= kCapA; x = their first 8
// bytes xor-ed (already loaded; b + 8 <= the block end). Reads no byte of b
// past b + max + 7 (whole words only while they fit max).
__device__ __forceinline__ uint32_t match_len_cap(const uint8_t* a, const uint8_t* b, uint64_t x, uint32_t max) {
  uint32_t n;
  if (x) {
    n = uint32_t(__ffsll(static_cast<long long>(x)) - 1) / 8;
  } else {
    n = 8;
    while (n + 8 <= max) {
      const uint64_t y = load64(a + n) ^ load64(b + n);
      if (y) return n + uint32_t(__ffsll(static_cast<long long>(y)) - 1) / 8;
      n += 8;
    }
    while (n < max && a[n] == b[n]) ++n;
  }
  return min(n, max);
}

// The whole warp extends a match of n bytes (a < b), 128 bytes per step.
__device__ uint32_t extend_match(const uint8_t* a, const uint8_t* b, uint32_t n, uint32_t max, uint32_t lane) {
  for (;;) {
    const uint32_t off = n + lane * 4;
    const bool full = off + 4 <= max;
    const uint32_t x = full ? load32(a + off) ^ load32(b + off) : 1;
    const unsigned stop = __ballot_sync(~0u, !full || x != 0);
    if (!stop) {
      n += 128;
      continue;
    }
    const uint32_t first = __ffs(int(stop)) - 1;
    const uint32_t xf = __shfl_sync(~0u, x, first);
    const bool ff = __shfl_sync(~0u, full, first);
    n += first * 4;
    if (ff) return n + uint32_t(__ffs(int(xf)) - 1) / 8;
    while (n < max && a[n] == b[n]) ++n;  // the last < 4 bytes; every lane computes the same
    return n;
  }
}

// One warp parses segment [ss, se) (positions relative to h0, the block's
// history start; end: the block's end) with its own table, writing its
// sequences to sout; returns {sequence count, trailing literals}.
__device__ uint2 parse_segment(TableEntry* table, const uint8_t* h0, uint32_t end, uint64_t in_start, uint32_t ss,
                               uint32_t se, Sequence* sout, uint32_t lane) {
  const uint32_t wbase = ss > kLookback ? ss - kLookback : 0;
  uint4* t4 = reinterpret_cast<uint4*>(table);
  for (uint32_t i = lane; i < kTableEntries * sizeof(TableEntry) / sizeof(uint4); i += 32) t4[i] = make_uint4(0, 0, 0, 0);
  __syncwarp();
  // Prefill with the lookback, in order; of a step's lanes with one hash the
  // highest wins. kPrefillBatch steps' loads are in flight at once.
  constexpr uint32_t kPrefillBatch = 4;
  for (uint32_t q0 = wbase; q0 < ss; q0 += kPrefillBatch * 32 * kPrefillStride) {
    uint64_t v[kPrefillBatch];
#pragma unroll
    for (uint32_t u = 0; u < kPrefillBatch; ++u) {
      const uint32_t q = q0 + (u * 32 + lane) * kPrefillStride;
      v[u] = q < ss && q + 8 <= end ? load64(h0 + q) : 0;
    }
#pragma unroll
    for (uint32_t u = 0; u < kPrefillBatch; ++u) {
      const uint32_t q = q0 + (u * 32 + lane) * kPrefillStride;
      const bool valid = q < ss && q + 8 <= end;
      const uint32_t h = hash_of(v[u]);
      const unsigned peers = __match_any_sync(~0u, valid ? h : (0x80000000u | lane));
      if (valid && !(peers >> lane >> 1)) table[h] = TableEntry(q - wbase + 1);
      __syncwarp();
    }
  }
  uint32_t cursor = ss, lit_start = ss, n = 0;
  uint32_t reps[3] = {0, 0, 0};
  while (cursor < se) {
    const uint32_t w = min(kWindow, se - cursor);
    const uint32_t p = cursor + lane;
    const bool hashable = lane < w && p + kTail <= end;
    // This position's bytes and the bytes at the three last offsets, all in flight at once.
    const uint64_t v = hashable ? load64(h0 + p) : 0;
    uint64_t rv[3];
    bool rok[3];
#pragma unroll
    for (int r = 0; r < 3; ++r) {
      rok[r] = hashable && reps[r] && in_start + p >= reps[r];
      rv[r] = rok[r] ? load64(h0 + p - int64_t(reps[r])) : 0;
    }
    const uint32_t h = hash_of(v);
    const unsigned peers = __match_any_sync(~0u, hashable ? h : (0x80000000u | lane));
    Choice ch{0, 0};
    if (hashable) {
      const uint32_t cap = min(kCapA, se - p);
      const unsigned lower = peers & ((1u << lane) - 1);
      uint32_t hl = 0, hd = 0;
      uint32_t c = 0;
      bool has = true;
      if (lower) {
        c = cursor + (31 - __clz(int(lower)));
      } else {
        const uint32_t t = table[h];
        has = t != 0;
        c = wbase + t - 1;
      }
      if (has) {
        hl = match_len_cap(h0 + c, h0 + p, load64(h0 + c) ^ v, cap);
        hd = p - c;
      }
      uint32_t rl[3];
#pragma unroll
      for (int r = 0; r < 3; ++r) rl[r] = rok[r] ? match_len_cap(h0 + p - int64_t(reps[r]), h0 + p, rv[r] ^ v, cap) : 0;
      ch = choose(hl, hd, rl, reps);
    }
    const unsigned any = __ballot_sync(~0u, ch.len != 0);
    const uint32_t nlen = __shfl_down_sync(~0u, ch.len, 1);
    const uint32_t ndist = __shfl_down_sync(~0u, ch.dist, 1);
    const bool lazy = lane + 1 < w && prefer_next(ch, Choice{nlen, ndist});
    // Matches from the step's choices, first to last, each at or after the
    // previous one's end (the choices keep the step's reps).
    uint32_t next_cursor = cursor + w, from = 0;
    for (uint32_t taken = 0; taken < kMatchesPerStep; ++taken) {
      const unsigned left = from >= 32 ? 0u : any & (~0u << from);
      if (!left) {  // no (more) match: the rest of the step is literals
        next_cursor = max(cursor + w, lit_start);
        break;
      }
      uint32_t f = __ffs(int(left)) - 1;
      if (__shfl_sync(~0u, lazy, f)) ++f;
      uint32_t m = __shfl_sync(~0u, ch.len, f);
      const uint32_t d = __shfl_sync(~0u, ch.dist, f);
      uint32_t at = cursor + f;
      if (m == kCapA) m = extend_match(h0 + at - int64_t(d), h0 + at, m, se - at, lane);
      // Catch up over literals not yet emitted, 32 bytes per round.
      for (;;) {
        const bool ok = lane < at - lit_start && in_start + at - lane > d &&
                        h0[at - 1 - lane] == h0[int64_t(at) - 1 - lane - int64_t(d)];
        const unsigned miss = __ballot_sync(~0u, !ok);
        const uint32_t back = miss ? uint32_t(__ffs(int(miss)) - 1) : 32;
        at -= back;
        m += back;
        if (back < 32) break;
      }
      if (lane == 0) sout[n] = Sequence{at - lit_start, m, d};
      ++n;
      update_reps(reps, d);
      next_cursor = lit_start = at + m;
      from = lit_start - cursor;
    }
    // The step's positions below the new cursor enter the table, the latest per hash.
    const uint32_t below = next_cursor - cursor;
    const unsigned entered = below >= 32 ? ~0u : (1u << below) - 1;
    if (hashable && lane < below && !((peers & entered) >> lane >> 1)) table[h] = TableEntry(p - wbase + 1);
    __syncwarp();
    cursor = next_cursor;
  }
  return make_uint2(n, se - lit_start);
}

// One warp (a CTA of its own, so a finished warp frees its slot at once)
// parses segment blockIdx.x % kMaxSegments of block blockIdx.x / kMaxSegments,
// writing its sequences to the block's slots from k * bytes / 4 (a segment of
// `bytes` has at most bytes / 4 sequences), and its sequence count and
// trailing literals to seg_info.
__global__ void __launch_bounds__(32) find_kernel(const uint8_t* __restrict__ in, const BlockDesc* __restrict__ blocks,
                                                  Sequence* seqs, uint2* seg_info) {
  __shared__ uint4 table4[kTableEntries * sizeof(TableEntry) / sizeof(uint4)];
  const uint32_t k = blockIdx.x % kMaxSegments;
  const BlockDesc& blk = blocks[blockIdx.x / kMaxSegments];
  const Segments sg = segments_of(blk.len);
  if (k >= sg.count) return;
  const uint32_t hist = min(blk.pos, kHistoryBytes);
  const uint32_t end = hist + blk.len, ss = hist + k * sg.bytes;
  const uint2 r = parse_segment(reinterpret_cast<TableEntry*>(table4), in + blk.src - hist, end,
                                uint64_t(blk.pos) - hist, ss, min(ss + sg.bytes, end),
                                seqs + blk.seq_first + (k * sg.bytes) / 4, threadIdx.x);
  if (threadIdx.x == 0) seg_info[blockIdx.x] = r;
}

// Stitches block blockIdx.x's segments (their trailing literals lead the next
// one's first sequence) into one run at seq_first.
__global__ void __launch_bounds__(256) stitch_kernel(BlockDesc* blocks, Sequence* seqs, const uint2* __restrict__ seg_info) {
  __shared__ uint32_t s_count[kMaxSegments], s_dest[kMaxSegments], s_add[kMaxSegments];
  const uint32_t tid = threadIdx.x;
  BlockDesc& blk = blocks[blockIdx.x];
  const Segments sg = segments_of(blk.len);
  Sequence* out = seqs + blk.seq_first;
  if (tid == 0) {
    uint32_t carry = 0, total = 0;
    for (uint32_t k = 0; k < sg.count; ++k) {
      const uint2 info = seg_info[blockIdx.x * kMaxSegments + k];
      s_count[k] = info.x;
      s_dest[k] = total;
      s_add[k] = info.x ? carry : 0;
      carry = info.x ? info.y : carry + info.y;
      total += info.x;
    }
    blk.seq_count = total;
    blk.trailing_literals = carry;
  }
  __syncthreads();
  // Segment 0 is in place; later ones move down in rounds of blockDim.x
  // (destination below source: a round only overwrites what it has read).
  for (uint32_t k = 1; k < sg.count; ++k) {
    const uint32_t nk = s_count[k], src = (k * sg.bytes) / 4, dst = s_dest[k];
    for (uint32_t r = 0; r < nk; r += blockDim.x) {
      const uint32_t i = r + tid;
      Sequence v{};
      if (i < nk) {
        v = out[src + i];
        if (i == 0) v.lit_len += s_add[k];
      }
      __syncthreads();
      if (i < nk) out[dst + i] = v;
      __syncthreads();
    }
  }
}

__global__ void compact_kernel(const BlockDesc* __restrict__ blocks, const Sequence* __restrict__ slots,
                               Sequence* __restrict__ dense, uint32_t* dense_first, unsigned long long* total) {
  __shared__ uint32_t base;
  const BlockDesc& b = blocks[blockIdx.x];
  const uint32_t n = b.seq_count;
  if (threadIdx.x == 0) {
    base = uint32_t(atomicAdd(total, (unsigned long long)n));
    dense_first[blockIdx.x] = base;
  }
  __syncthreads();
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) dense[base + i] = slots[b.seq_first + i];
}

}  // namespace

int enqueue_compact(const BlockDesc* d_blocks, uint32_t nblocks, const Sequence* d_slots, Sequence* d_dense,
                    uint32_t* d_dense_first, unsigned long long* d_total, void* stream) {
  if (!nblocks) return 0;
  compact_kernel<<<nblocks, 128, 0, static_cast<cudaStream_t>(stream)>>>(d_blocks, d_slots, d_dense, d_dense_first,
                                                                         d_total);
  return int(cudaGetLastError());
}

int enqueue_find(const uint8_t* d_in, BlockDesc* d_blocks, uint32_t nblocks, Sequence* d_seqs, void* stream) {
  if (!nblocks) return 0;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  // Per-segment counts between the two kernels, stream-ordered: calls on
  // other streams at the same time each have their own.
  uint2* seg_info = nullptr;
  cudaError_t e = cudaMallocAsync(&seg_info, size_t(nblocks) * kMaxSegments * sizeof(uint2), st);
  if (e != cudaSuccess) return int(e);
  find_kernel<<<nblocks * kMaxSegments, 32, 0, st>>>(d_in, d_blocks, d_seqs, seg_info);
  stitch_kernel<<<nblocks, 256, 0, st>>>(d_blocks, d_seqs, seg_info);
  e = cudaGetLastError();
  const cudaError_t f = cudaFreeAsync(seg_info, st);
  return int(e != cudaSuccess ? e : f);
}

}  // namespace gpo::zstd::gpu
