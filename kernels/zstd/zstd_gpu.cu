// Stage 1 of zstd on the GPU: the batch match finder. One CTA per block of
// kBlockBytes, all blocks of a batch in one launch; the hash table lives in
// shared memory. zstd_find.h describes the parse; cpu_find (zstd_find_cpu.cpp)
// is its step-for-step CPU twin.
//
// Per chunk of kChunk positions (one per worker thread, 8 worker warps):
//  - every worker hashes its position;
//  - warp 0 walks the chunk's 8 warps of positions in order: a position's
//    candidate is the latest earlier position of its warp with the same hash
//    (__match_any_sync), else the table; then the warp's latest position per
//    hash enters the table. That is exactly "the latest earlier position with
//    this hash" of a one-position-at-a-time parse, at 8 warp steps per chunk;
//  - every worker measures its match (capped at kCapA);
//  - meanwhile a 9th warp parses the previous chunk (rep matches, lazy step,
//    extension, catch-up), so the sequential parse overlaps the rest.
#include <cuda_runtime.h>

#include "zstd/zstd_find.h"
#include "zstd/zstd_gpu.h"

namespace gpo::zstd::gpu {
namespace {

using namespace find;

constexpr uint32_t kWorkerWarps = kChunk / 32;    // one position per worker thread
constexpr uint32_t kThreads = kChunk + 32;         // + the parser warp
constexpr uint32_t kTableWords = 1u << kHashLog;
constexpr size_t kSmemBytes = (kTableWords + 6 * kChunk) * sizeof(uint32_t);
constexpr uint32_t kNoHash = ~0u;

// Barrier of the worker warps only (the parser warp does not take part).
__device__ __forceinline__ void workers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kChunk) : "memory"); }

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

// Equal bytes at a and b, at most max (a < b: a's bytes exist where b's do).
__device__ uint32_t match_len(const uint8_t* a, const uint8_t* b, uint32_t max) {
  uint32_t n = 0;
  while (n + 4 <= max) {
    const uint32_t x = load32(a + n) ^ load32(b + n);
    if (x) return n + uint32_t(__ffs(int(x)) - 1) / 8;
    n += 4;
  }
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

// Warps 0..7 (workers) hash, resolve candidates and measure matches of chunk
// i while warp 8 (the parser) parses chunk i - 1: the sequential parse
// overlaps the parallel work. Two buffers of match lengths alternate.
__global__ void __launch_bounds__(kThreads) find_kernel(const uint8_t* __restrict__ in, BlockDesc* blocks,
                                                        Sequence* __restrict__ seqs) {
  extern __shared__ uint32_t smem[];
  uint32_t* table = smem;  // latest position + 1 per bucket; 0 = empty
  uint32_t* s_hash = table + kTableWords;
  uint32_t* s_cand = s_hash + kChunk;
  uint32_t* s_len = s_cand + kChunk;   // [2][kChunk]
  uint32_t* s_dist = s_len + 2 * kChunk;  // [2][kChunk]
  const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  BlockDesc& blk = blocks[blockIdx.x];
  const uint32_t pos = blk.pos, len = blk.len;
  const uint32_t hist = min(pos, kHistoryBytes);
  const uint8_t* h0 = in + blk.src - hist;  // positions are relative to h0
  const uint32_t end = hist + len;
  const uint64_t in_start = uint64_t(pos) - hist;
  const uint32_t nchunks = (len + kChunk - 1) / kChunk;

  for (uint32_t i = tid; i < kTableWords; i += kThreads) table[i] = 0;
  __syncthreads();
  for (uint32_t q = tid; q < hist; q += kThreads)
    if (q + 8 <= end) atomicMax(&table[hash_of(load64(h0 + q))], q + 1);
  __syncthreads();

  // Parse state, kept by the parser warp (all its lanes hold the same values).
  uint32_t cursor = hist, lit_start = hist, n = 0;
  uint32_t reps[3] = {0, 0, 0};
  Sequence* out = seqs + blk.seq_first;

  for (uint32_t it = 0; it <= nchunks; ++it) {
    if (warp < kWorkerWarps) {
      if (it < nchunks) {
        const uint32_t cs = hist + it * kChunk;
        const uint32_t ce = min(cs + kChunk, end);
        const uint32_t p = cs + tid;
        const bool valid = p < ce && p + kTail <= end;
        s_hash[tid] = valid ? hash_of(load64(h0 + p)) : kNoHash;
        workers_sync();
        if (warp == 0) {
          for (uint32_t w = 0; w < kWorkerWarps; ++w) {
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
        workers_sync();
        uint32_t hl = 0, hd = 0;
        const uint32_t c = s_cand[tid];
        if (valid && c) {
          hl = match_len(h0 + (c - 1), h0 + p, min(kCapA, end - p));
          hd = p - (c - 1);
        }
        s_len[(it & 1) * kChunk + tid] = hl;
        s_dist[(it & 1) * kChunk + tid] = hd;
      }
    } else if (it > 0) {
      const uint32_t cs = hist + (it - 1) * kChunk;
      const uint32_t ce = min(cs + kChunk, end);
      const uint32_t* lens = s_len + ((it - 1) & 1) * kChunk;
      const uint32_t* dists = s_dist + ((it - 1) & 1) * kChunk;
      while (cursor < ce) {
        const uint32_t wend = min(cursor + kWindow, ce);
        const uint32_t q = cursor + lane;
        Choice ch{0, 0};
        if (q < wend) {
          uint32_t rl[3];
#pragma unroll
          for (int r = 0; r < 3; ++r) {
            rl[r] = 0;
            if (reps[r] && q + kTail <= end && in_start + q >= reps[r])
              rl[r] = match_len(h0 + q - int64_t(reps[r]), h0 + q, min(kCapA, end - q));
          }
          ch = choose(lens[q - cs], dists[q - cs], rl, reps);
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
        if (m == kCapA) m = extend_match(h0 + at - int64_t(d), h0 + at, m, end - at, lane);
        // Catch up over literals not yet emitted (same steps in every lane).
        while (at > lit_start && in_start + at > d && h0[at - 1] == h0[int64_t(at) - 1 - int64_t(d)]) --at, ++m;
        if (lane == 0) out[n] = Sequence{at - lit_start, m, d};
        ++n;
        update_reps(reps, d);
        cursor = lit_start = at + m;
      }
    }
    __syncthreads();
  }
  if (warp == kWorkerWarps && lane == 0) {
    blk.seq_count = n;
    blk.trailing_literals = end - lit_start;
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
