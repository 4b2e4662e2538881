// Stage 1 of zstd on the GPU: the batch match finder. One CTA per block of
// kBlockBytes, all blocks of a batch in one launch; the hash table lives in
// shared memory. zstd_find.h describes the parse; cpu_find (zstd_find_cpu.cpp)
// is its step-for-step CPU twin.
//
// Step 1, per chunk of kChunk positions (one per thread):
//  - every thread hashes its position;
//  - warp 0 walks the chunk's 8 warps of positions in order: a position's
//    candidate is the latest earlier position of its warp with the same hash
//    (__match_any_sync), else the table; then the warp's latest position per
//    hash enters the table. That is exactly "the latest earlier position with
//    this hash" of a one-position-at-a-time parse, at 8 warp steps per chunk;
//  - every thread measures its match (capped at kCapA).
// Step 2: the block's 8 segments are parsed by 8 warps at once (rep matches,
// lazy step, extension, catch-up), then stitched into one run of sequences.
#include <cuda_runtime.h>

#include "zstd/zstd_find.h"
#include "zstd/zstd_gpu.h"

namespace gpo::zstd::gpu {
namespace {

using namespace find;

constexpr uint32_t kThreads = kChunk;  // one position per thread in step 1
constexpr uint32_t kWarps = kThreads / 32;
static_assert(kWarps == kMaxSegments, "one warp parses one segment");
constexpr uint32_t kTableWords = 1u << kHashLog;
constexpr size_t kSmemBytes = (kTableWords + 2 * kChunk) * sizeof(uint32_t);
constexpr uint32_t kNoHash = ~0u;

// 4 bytes at any address from aligned words: reads nothing past p + 3's word.
__device__ __forceinline__ uint32_t load32(const uint8_t* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(a & ~uintptr_t(3));
  const uint32_t s = uint32_t(a & 3) * 8;
  const uint32_t lo = __ldg(w);
  if (!s) return lo;
  return __funnelshift_r(lo, __ldg(w + 1), s);
}
__device__ __forceinline__ uint64_t load64(const uint8_t* p) {
  return uint64_t(load32(p)) | (uint64_t(load32(p + 4)) << 32);
}

// Equal bytes at a and b (a < b: a's bytes exist where b's do), at most
// max <= kCapA, in at most two memory round trips: the first word,
// then all the others at once (most candidates fail on the first word).
__device__ uint32_t match_len32(const uint8_t* a, const uint8_t* b, uint32_t max) {
  if (max < 4) {
    uint32_t n = 0;
    while (n < max && a[n] == b[n]) ++n;
    return n;
  }
  const uint32_t x0 = load32(a) ^ load32(b);
  if (x0) return uint32_t(__ffs(int(x0)) - 1) / 8;
  const uint32_t nw = max / 4;
  uint32_t x[kCapA / 4];
#pragma unroll
  for (uint32_t i = 1; i < kCapA / 4; ++i) x[i] = i < nw ? load32(a + 4 * i) ^ load32(b + 4 * i) : 0;
#pragma unroll
  for (uint32_t i = 1; i < kCapA / 4; ++i)
    if (i < nw && x[i]) return 4 * i + uint32_t(__ffs(int(x[i])) - 1) / 8;
  uint32_t n = 4 * nw;
  while (n < max && a[n] == b[n]) ++n;
  return n;
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

// Step 1 over the whole block, chunk by chunk (all warps; warp 0 resolves
// candidates), each position's hash match packed in 3 bytes into the block's
// own sequence slots (3 bytes per position fit: 12 bytes per 4 positions).
// Step 2: warp k parses segment k; its sequences go to the slots where its
// segment's packed matches were, never ahead of what it has read. Step 3:
// stitch the segments (literal carries) and move their sequences into one run.
__global__ void __launch_bounds__(kThreads) find_kernel(const uint8_t* __restrict__ in, BlockDesc* blocks,
                                                        Sequence* seqs) {
  extern __shared__ uint32_t smem[];
  uint32_t* table = smem;  // latest position + 1 per bucket; 0 = empty
  uint32_t* s_hash = table + kTableWords;
  uint32_t* s_cand = s_hash + kChunk;
  __shared__ uint32_t s_count[kMaxSegments], s_trailing[kMaxSegments], s_dest[kMaxSegments],
      s_add[kMaxSegments], s_total, s_carry;
  const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  BlockDesc& blk = blocks[blockIdx.x];
  const uint32_t pos = blk.pos, len = blk.len;
  const uint32_t hist = min(pos, kHistoryBytes);
  const uint8_t* h0 = in + blk.src - hist;  // positions are relative to h0
  const uint32_t end = hist + len;
  const uint64_t in_start = uint64_t(pos) - hist;
  Sequence* out = seqs + blk.seq_first;
  uint8_t* scratch = reinterpret_cast<uint8_t*>(out);  // 3 bytes per block position

  for (uint32_t i = tid; i < kTableWords; i += kThreads) table[i] = 0;
  __syncthreads();
  for (uint32_t q = tid; q < hist; q += kThreads)
    if (q + 8 <= end) atomicMax(&table[hash_of(load64(h0 + q))], q + 1);
  __syncthreads();

  for (uint32_t cs = hist; cs < end; cs += kChunk) {
    const uint32_t ce = min(cs + kChunk, end);
    const uint32_t p = cs + tid;
    const bool valid = p < ce && p + kTail <= end;
    s_hash[tid] = valid ? hash_of(load64(h0 + p)) : kNoHash;
    __syncthreads();
    if (warp == 0) {
      for (uint32_t w = 0; w < kWarps; ++w) {
        const uint32_t idx = w * 32 + lane;
        const uint32_t h = s_hash[idx];
        const unsigned peers = __match_any_sync(~0u, h);
        const unsigned lower = peers & ((1u << lane) - 1);
        uint32_t c = 0;
        if (h != kNoHash) c = lower ? cs + w * 32 + (31 - __clz(int(lower))) + 1 : table[h];
        __syncwarp();
        if (h != kNoHash && !(peers >> lane >> 1)) table[h] = cs + idx + 1;  // the warp's latest per hash
        s_cand[idx] = c;
        __syncwarp();
      }
    }
    __syncthreads();
    if (p < ce) {
      uint32_t packed = 0;
      const uint32_t c = s_cand[tid];
      if (valid && c) {
        const uint32_t hl = match_len32(h0 + (c - 1), h0 + p, min(kCapA, end - p));
        if (hl) packed = (hl << 18) | (p - (c - 1));
      }
      uint8_t* at = scratch + 3 * size_t(p - hist);
      at[0] = uint8_t(packed);
      at[1] = uint8_t(packed >> 8);
      at[2] = uint8_t(packed >> 16);
    }
  }
  __syncthreads();

  const Segments sg = segments_of(len);
  if (warp < sg.count) {
    const uint32_t ss = hist + warp * sg.bytes, se = min(ss + sg.bytes, end);
    Sequence* sout = out + (warp * sg.bytes) / 4;
    uint32_t cursor = ss, lit_start = ss, n = 0;
    uint32_t reps[3] = {0, 0, 0};
    while (cursor < se) {
      const uint32_t wend = min(cursor + kWindow, se);
      const uint32_t q = cursor + lane;
      Choice ch{0, 0};
      if (q < wend) {
        const uint8_t* sp = scratch + 3 * size_t(q - hist);
        // Written by other threads of this block in step 1: through L2, not the read-only path.
        const uint32_t packed = uint32_t(__ldcg(sp)) | (uint32_t(__ldcg(sp + 1)) << 8) | (uint32_t(__ldcg(sp + 2)) << 16);
        uint32_t rl[3];
#pragma unroll
        for (int r = 0; r < 3; ++r) {
          rl[r] = 0;
          if (reps[r] && q + kTail <= end && in_start + q >= reps[r])
            rl[r] = match_len32(h0 + q - int64_t(reps[r]), h0 + q, min(kCapA, se - q));
        }
        ch = choose(min(packed >> 18, se - q), packed & ((1u << 18) - 1), rl, reps);
      }
      const unsigned any = __ballot_sync(~0u, ch.len != 0);
      const uint32_t nlen = __shfl_down_sync(~0u, ch.len, 1);
      const uint32_t ndist = __shfl_down_sync(~0u, ch.dist, 1);
      if (!any) {
        cursor = wend;
        continue;
      }
      uint32_t f = __ffs(int(any)) - 1;
      const bool next = f + 1 < wend - cursor && prefer_next(ch, Choice{nlen, ndist});
      if (__shfl_sync(~0u, next, f)) ++f;
      uint32_t m = __shfl_sync(~0u, ch.len, f);
      const uint32_t d = __shfl_sync(~0u, ch.dist, f);
      uint32_t at = cursor + f;
      if (m == kCapA) m = extend_match(h0 + at - int64_t(d), h0 + at, m, se - at, lane);
      // Catch up over literals not yet emitted (same steps in every lane).
      while (at > lit_start && in_start + at > d && h0[at - 1] == h0[int64_t(at) - 1 - int64_t(d)]) --at, ++m;
      if (lane == 0) sout[n] = Sequence{at - lit_start, m, d};
      ++n;
      update_reps(reps, d);
      cursor = lit_start = at + m;
    }
    if (lane == 0) {
      s_count[warp] = n;
      s_trailing[warp] = se - lit_start;
    }
  }
  __syncthreads();
  if (tid == 0) {
    uint32_t carry = 0, total = 0;
    for (uint32_t k = 0; k < sg.count; ++k) {
      s_dest[k] = total;
      s_add[k] = s_count[k] ? carry : 0;
      carry = s_count[k] ? s_trailing[k] : carry + s_trailing[k];
      total += s_count[k];
    }
    s_total = total;
    s_carry = carry;
  }
  __syncthreads();
  // Segment 0 is in place; later ones move down in rounds of kThreads
  // (destination below source: a round only overwrites what it has read).
  for (uint32_t k = 0; k < sg.count; ++k) {
    const uint32_t nk = s_count[k], src = (k * sg.bytes) / 4, dst = s_dest[k];
    for (uint32_t r = 0; r < nk; r += kThreads) {
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
  if (tid == 0) {
    blk.seq_count = s_total;
    blk.trailing_literals = s_carry;
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
  // Per call: the attribute is per device, and cheap to set.
  const cudaError_t attr =
      cudaFuncSetAttribute(find_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes));
  if (attr != cudaSuccess) return int(attr);
  find_kernel<<<nblocks, kThreads, kSmemBytes, static_cast<cudaStream_t>(stream)>>>(d_in, d_blocks, d_seqs);
  return int(cudaGetLastError());
}

}  // namespace gpo::zstd::gpu
