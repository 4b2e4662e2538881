// SHA-256 of a batch of independent messages, one thread per message.
// Each thread runs FIPS 180-4 compression over its message; the 64-byte blocks
// are read with 128-bit loads when the message is 16-byte aligned.
#include <cuda_runtime.h>

#include "kernels/sha256/sha256.h"

namespace gpo::sha256::gpu {
namespace {

__constant__ uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

__device__ __forceinline__ uint32_t rotr(uint32_t x, int n) { return __funnelshift_r(x, x, n); }
__device__ __forceinline__ uint32_t bswap32(uint32_t x) { return __byte_perm(x, 0, 0x0123); }

__device__ __forceinline__ void compress(uint32_t st[8], uint32_t w[16]) {
  uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    uint32_t wi;
    if (i < 16) {
      wi = w[i];
    } else {
      const uint32_t w15 = w[(i - 15) & 15], w2 = w[(i - 2) & 15];
      const uint32_t s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >> 3);
      const uint32_t s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >> 10);
      wi = w[i & 15] = w[i & 15] + s0 + w[(i - 7) & 15] + s1;
    }
    const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const uint32_t ch = (e & f) ^ (~e & g);
    const uint32_t t1 = h + S1 + ch + kK[i] + wi;
    const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + S0 + maj;
  }
  st[0] += a, st[1] += b, st[2] += c, st[3] += d, st[4] += e, st[5] += f, st[6] += g, st[7] += h;
}

__global__ void __launch_bounds__(128) k_sha256(const DevMsg* msgs, uint32_t n, uint8_t* digests) {
  const uint32_t m = blockIdx.x * blockDim.x + threadIdx.x;
  if (m >= n) return;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(msgs[m].in);
  const uint64_t len = msgs[m].len;
  uint32_t st[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint32_t w[16];
  const uint64_t full = len / 64;
  const bool aligned = (reinterpret_cast<uintptr_t>(p) & 15) == 0;
  for (uint64_t blk = 0; blk < full; ++blk) {
    const uint8_t* b = p + 64 * blk;
    if (aligned) {
      const uint4* v = reinterpret_cast<const uint4*>(b);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint4 q = v[i];
        w[4 * i] = bswap32(q.x), w[4 * i + 1] = bswap32(q.y), w[4 * i + 2] = bswap32(q.z), w[4 * i + 3] = bswap32(q.w);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 16; ++i)
        w[i] = (uint32_t(b[4 * i]) << 24) | (uint32_t(b[4 * i + 1]) << 16) | (uint32_t(b[4 * i + 2]) << 8) | b[4 * i + 3];
    }
    compress(st, w);
  }
  // Tail: the remaining bytes, 0x80, zeros, the bit length; one or two blocks.
  const uint32_t rem = uint32_t(len - 64 * full);
  const uint8_t* t = p + 64 * full;
  const uint32_t nblocks = rem + 9 <= 64 ? 1 : 2;
  for (uint32_t blk = 0; blk < nblocks; ++blk) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      uint32_t word = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t pos = 64 * blk + 4 * i + k;
        uint32_t byte = pos < rem ? t[pos] : (pos == rem ? 0x80 : 0);
        word = (word << 8) | byte;
      }
      w[i] = word;
    }
    if (blk == nblocks - 1) {
      const uint64_t bits = len * 8;
      w[14] = uint32_t(bits >> 32);
      w[15] = uint32_t(bits);
    }
    compress(st, w);
  }
  uint32_t* out = reinterpret_cast<uint32_t*>(digests + size_t(m) * kDigestBytes);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = bswap32(st[i]);
}

}  // namespace

int enqueue_digests(const DevMsg* msgs, uint32_t n, uint8_t* digests, void* stream) {
  if (n == 0) return 0;
  k_sha256<<<(n + 127) / 128, 128, 0, static_cast<cudaStream_t>(stream)>>>(msgs, n, digests);
  return int(cudaGetLastError());
}

}  // namespace gpo::sha256::gpu
