// CRC-32 on the GPU, bit-identical to zlib (crc32.h has the algebra).
// k_tiles: one block per 64 KiB tile of one buffer; each thread computes the
// CRC of its 256-byte segment from a zero register (16-byte loads, slicing-by-8
// tables in shared memory), the block joins the 256 segment CRCs in a shuffle
// tree (shifts by fixed lengths), and thread 0 shifts the tile's CRC to the end
// of its buffer and XORs it into the buffer's accumulator. k_finalize folds in
// the initial crc and complements. A batch of many buffers is one grid.
#include <cuda_runtime.h>

#include "kernels/crc32/crc32.h"

namespace gpo::crc32::gpu {
namespace {

struct Tables {
  uint32_t t[8][256];  // t[k][i]: CRC of byte i followed by k zero bytes
};
constexpr Tables make_tables() {
  Tables r{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int b = 0; b < 8; ++b) c = c & 1 ? (c >> 1) ^ kPoly : c >> 1;
    r.t[0][i] = c;
  }
  for (int k = 1; k < 8; ++k)
    for (uint32_t i = 0; i < 256; ++i) r.t[k][i] = (r.t[k - 1][i] >> 8) ^ r.t[0][r.t[k - 1][i] & 0xff];
  return r;
}

// Shift constants of the join tree: level l joins runs of kSegBytes << l bytes.
struct Levels {
  uint32_t k[8];
};
constexpr Levels make_levels() {
  Levels r{};
  const X2nTable t = make_x2n_table();
  for (int l = 0; l < 8; ++l) r.k[l] = x8nmodp(t, uint64_t(kSegBytes) << l);
  return r;
}
static_assert(kThreads == 256, "the join tree below has 8 levels");

// Global (not constant) memory: each block copies the 8 KiB with coalesced loads;
// constant memory would serialize the 256 different addresses of a warp.
__device__ const Tables g_tables = make_tables();
__constant__ X2nTable c_x2n = make_x2n_table();
__constant__ Levels c_levels = make_levels();

__device__ __forceinline__ uint32_t step8(const uint32_t (*t)[256], uint32_t lo, uint32_t hi) {
  return t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff] ^
         t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
}

// CRC of [p, p + n) from a zero register, no complement.
__device__ uint32_t crc_raw(const uint32_t (*t)[256], const uint8_t* p, uint32_t n) {
  uint32_t c = 0;
  while (n && (reinterpret_cast<uintptr_t>(p) & 15)) {
    c = (c >> 8) ^ t[0][(c ^ *p++) & 0xff];
    --n;
  }
  const uint4* v = reinterpret_cast<const uint4*>(p);
  for (; n >= 16; n -= 16, p += 16) {
    const uint4 q = __ldg(v++);
    c = step8(t, c ^ q.x, q.y);
    c = step8(t, c ^ q.z, q.w);
  }
  while (n--) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xff];
  return c;
}

__global__ void __launch_bounds__(kThreads) k_tiles(const DevJob* jobs, const uint32_t* tile_job, uint32_t tile_lo,
                                                   uint32_t* acc) {
  __shared__ uint32_t t[8][256];
  __shared__ uint32_t warp_crc[kThreads / 32];
  for (uint32_t i = threadIdx.x; i < 8 * 256; i += kThreads) (&t[0][0])[i] = (&g_tables.t[0][0])[i];
  __syncthreads();

  const uint32_t tile = tile_lo + blockIdx.x;
  const uint32_t j = tile_job[tile];
  const DevJob d = jobs[j];
  const uint64_t ntiles = tiles_of(d.len);
  const uint64_t pad = ntiles * kTileBytes - d.len;  // virtual zeros before the buffer
  const uint64_t ti = tile - d.first_tile;
  const uint64_t vs = ti * kTileBytes + uint64_t(threadIdx.x) * kSegBytes, ve = vs + kSegBytes;
  uint32_t c = 0;
  if (ve > pad) {
    const uint64_t rs = (vs > pad ? vs : pad) - pad;
    c = crc_raw(t, reinterpret_cast<const uint8_t*>(d.in) + rs, uint32_t(ve - pad - rs));
  }

  // Join: the left run is shifted over the right run's length, then XORed.
  const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int l = 0; l < 5; ++l) {
    const uint32_t right = __shfl_down_sync(0xffffffffu, c, 1u << l);
    if ((lane & ((2u << l) - 1)) == 0) c = multmodp(c_levels.k[l], c) ^ right;
  }
  if (lane == 0) warp_crc[warp] = c;
  __syncthreads();
  if (warp == 0) {
    c = lane < kThreads / 32 ? warp_crc[lane] : 0;
#pragma unroll
    for (int l = 5; l < 8; ++l) {
      const uint32_t right = __shfl_down_sync(0xffffffffu, c, 1u << (l - 5));
      if ((lane & ((2u << (l - 5)) - 1)) == 0) c = multmodp(c_levels.k[l], c) ^ right;
    }
    if (lane == 0 && c) {
      c = multmodp(x8nmodp(c_x2n, (ntiles - 1 - ti) * kTileBytes), c);
      atomicXor(acc + j, c);
    }
  }
}

__global__ void k_finalize(const DevJob* jobs, uint32_t n, const uint32_t* acc, uint32_t* out) {
  const uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const DevJob d = jobs[j];
  out[j] = ~(multmodp(x8nmodp(c_x2n, d.len), ~d.init) ^ acc[j]);
}

}  // namespace

int enqueue_tiles(const DevJob* jobs, const uint32_t* tile_job, uint32_t tile_lo, uint32_t tile_hi, uint32_t* acc,
                  void* stream) {
  if (tile_hi <= tile_lo) return cudaSuccess;
  k_tiles<<<tile_hi - tile_lo, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(jobs, tile_job, tile_lo, acc);
  return cudaGetLastError();
}

int enqueue_finalize(const DevJob* jobs, uint32_t n, const uint32_t* acc, uint32_t* out, void* stream) {
  if (n == 0) return cudaSuccess;
  k_finalize<<<(n + 255) / 256, 256, 0, static_cast<cudaStream_t>(stream)>>>(jobs, n, acc, out);
  return cudaGetLastError();
}

}  // namespace gpo::crc32::gpu
