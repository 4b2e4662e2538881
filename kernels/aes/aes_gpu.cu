// AES-256-CTR and AES-256-GCM on CUDA. Layout of the work and the reasons:
//
// * One warp per segment (aes.h: kSegBlocks = 1024 blocks of one job). Lane t
//   of a segment takes blocks t, t+32, t+64, ... so every load and store of the
//   warp is coalesced, and computes their keystream (AES rounds with one T-table,
//   Te0, replicated 32 times in shared memory so that lane t only ever reads bank
//   t: no bank conflicts for any key or data).
// * GHASH is linear, so it parallelises by powers of H: lane t folds its own
//   blocks by Horner with H^32 (acc = acc*H^32 + X; a 4-bit table per job, 32
//   lookups of 16 bytes per block), multiplies the result by H^(32-t), the warp XOR-reduces, and lane 0
//   multiplies by H^(kSegBlocks * segments after this one) and XORs it into the
//   job's accumulator. Segments are aligned to the END of the GHASH input (leading
//   zero blocks do not change a Horner sum), so every segment has the same shape.
// * Side channels: table lookups index by key- and data-dependent bytes (AES
//   T-table and the GHASH nibble tables). On a GPU another tenant sharing the SM
//   could in principle observe shared-memory/L1 timing; docs/crypto-kernels.md.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "kernels/aes/aes.h"

namespace gpo::aes::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ const uint8_t kSbox[256] = {0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76, 0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0, 0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15, 0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75, 0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84, 0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf, 0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8, 0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2, 0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73, 0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb, 0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79, 0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08, 0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a, 0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e, 0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf, 0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16};

struct gf {  // a GCM field element; bit 0 is the MSB of hi (GCM's reflected order)
  uint64_t hi, lo;
};

__device__ __forceinline__ uint32_t bswap32(uint32_t x) { return __byte_perm(x, 0, 0x0123); }
__device__ __forceinline__ uint32_t ror(uint32_t x, int n) { return __funnelshift_r(x, x, n); }

// uint4 "memory words": the 16 bytes as they lie in memory (little-endian words).
__device__ __forceinline__ gf from_words(uint4 w) {
  return gf{(uint64_t(bswap32(w.x)) << 32) | bswap32(w.y), (uint64_t(bswap32(w.z)) << 32) | bswap32(w.w)};
}
__device__ __forceinline__ uint4 to_words(gf g) {
  return make_uint4(bswap32(uint32_t(g.hi >> 32)), bswap32(uint32_t(g.hi)), bswap32(uint32_t(g.lo >> 32)),
                    bswap32(uint32_t(g.lo)));
}
__device__ __forceinline__ uint4 xor4(uint4 a, uint4 b) { return make_uint4(a.x ^ b.x, a.y ^ b.y, a.z ^ b.z, a.w ^ b.w); }

__device__ __forceinline__ gf gf_mulx(gf v) {  // v * x
  uint64_t c = v.lo & 1;
  v.lo = (v.lo >> 1) | (v.hi << 63);
  v.hi = (v.hi >> 1) ^ (0xE100000000000000ull & (0 - c));
  return v;
}

// General multiply, 4 bits at a time (Shoup): 16 multiples of y, then 32
// steps of z = z*x^4 + m[nibble]. Used once per lane per segment and in setup;
// the per-block work uses the per-job tables instead.
__device__ __forceinline__ uint64_t reduce4(uint64_t rem) {
  // The 4 bits shifted out, folded back: linear in rem (0x1c20 = R for the lowest bit).
  return ((rem & 1) * 0x1c20ull ^ (rem & 2) * 0x1c20ull ^ (rem & 4) * 0x1c20ull ^ (rem & 8) * 0x1c20ull) << 48;
}
__device__ gf gf_mul(gf x, gf y) {
  gf m[16];
  m[0] = gf{0, 0};
  m[8] = y;
  m[4] = gf_mulx(m[8]);
  m[2] = gf_mulx(m[4]);
  m[1] = gf_mulx(m[2]);
#pragma unroll
  for (int n = 3; n < 16; ++n) {
    if (n == 4 || n == 8) continue;
    const int hi = n & 8 ? 8 : (n & 4 ? 4 : 2);
    m[n] = gf{m[hi].hi ^ m[n ^ hi].hi, m[hi].lo ^ m[n ^ hi].lo};
  }
  gf z{0, 0};
#pragma unroll
  for (int i = 0; i < 32; ++i) {  // nibbles from the highest power of x down
    const uint64_t w = i < 16 ? x.lo : x.hi;
    const uint32_t n = uint32_t(w >> (4 * (i & 15))) & 15;
    if (i) {
      const uint64_t rem = z.lo & 15;
      z.lo = (z.hi << 60) | (z.lo >> 4);
      z.hi = (z.hi >> 4) ^ reduce4(rem);
    }
    z.hi ^= m[n].hi;
    z.lo ^= m[n].lo;
  }
  return z;
}

__device__ __forceinline__ uint32_t xtime(uint32_t a) { return ((a << 1) ^ ((a & 0x80) ? 0x1b : 0)) & 0xff; }
__device__ __forceinline__ uint32_t te0_of(uint32_t x) {
  uint32_t s = kSbox[x], s2 = xtime(s);
  return (s2 << 24) | (s << 16) | (s << 8) | (s2 ^ s);
}

// AES-256 encryption of one block held as big-endian words; te(x) = Te0[x].
template <class Te>
__device__ __forceinline__ void aes256_block(const uint32_t* rk, uint32_t& s0, uint32_t& s1, uint32_t& s2,
                                             uint32_t& s3, Te te) {
  s0 ^= rk[0];
  s1 ^= rk[1];
  s2 ^= rk[2];
  s3 ^= rk[3];
#pragma unroll
  for (int r = 1; r < 14; ++r) {
    uint32_t t0 = te(s0 >> 24) ^ ror(te((s1 >> 16) & 255), 8) ^ ror(te((s2 >> 8) & 255), 16) ^ ror(te(s3 & 255), 24) ^ rk[4 * r];
    uint32_t t1 = te(s1 >> 24) ^ ror(te((s2 >> 16) & 255), 8) ^ ror(te((s3 >> 8) & 255), 16) ^ ror(te(s0 & 255), 24) ^ rk[4 * r + 1];
    uint32_t t2 = te(s2 >> 24) ^ ror(te((s3 >> 16) & 255), 8) ^ ror(te((s0 >> 8) & 255), 16) ^ ror(te(s1 & 255), 24) ^ rk[4 * r + 2];
    uint32_t t3 = te(s3 >> 24) ^ ror(te((s0 >> 16) & 255), 8) ^ ror(te((s1 >> 8) & 255), 16) ^ ror(te(s2 & 255), 24) ^ rk[4 * r + 3];
    s0 = t0;
    s1 = t1;
    s2 = t2;
    s3 = t3;
  }
  // Last round: S-box bytes picked out of the rotated Te0 entries.
  uint32_t o0 = (ror(te(s0 >> 24), 16) & 0xff000000) ^ (ror(te((s1 >> 16) & 255), 24) & 0x00ff0000) ^
                (te((s2 >> 8) & 255) & 0x0000ff00) ^ (ror(te(s3 & 255), 8) & 0xff) ^ rk[56];
  uint32_t o1 = (ror(te(s1 >> 24), 16) & 0xff000000) ^ (ror(te((s2 >> 16) & 255), 24) & 0x00ff0000) ^
                (te((s3 >> 8) & 255) & 0x0000ff00) ^ (ror(te(s0 & 255), 8) & 0xff) ^ rk[57];
  uint32_t o2 = (ror(te(s2 >> 24), 16) & 0xff000000) ^ (ror(te((s3 >> 16) & 255), 24) & 0x00ff0000) ^
                (te((s0 >> 8) & 255) & 0x0000ff00) ^ (ror(te(s1 & 255), 8) & 0xff) ^ rk[58];
  uint32_t o3 = (ror(te(s3 >> 24), 16) & 0xff000000) ^ (ror(te((s0 >> 16) & 255), 24) & 0x00ff0000) ^
                (te((s1 >> 8) & 255) & 0x0000ff00) ^ (ror(te(s2 & 255), 8) & 0xff) ^ rk[59];
  s0 = o0;
  s1 = o1;
  s2 = o2;
  s3 = o3;
}

struct alignas(16) JobState {
  uint32_t rk[60];  // key schedule
  uint32_t ivw[4];  // IV as big-endian words
  uint4 h;          // H = E(0), memory words
  uint4 ej0;        // E(J0)
  uint4 acc;        // GHASH accumulator, XORed into by every segment
  uint4 hpow[32];   // H^1 .. H^32
  uint4 q[24];      // (H^kSegBlocks)^(2^l): powers for jobs split over segments
};
constexpr size_t kHtabEntries = 32 * 16;  // 32 nibble positions x 16 values

__device__ __forceinline__ uint4 load_part(const uint8_t* p, uint32_t n) {
  if (n == 16 && (reinterpret_cast<uintptr_t>(p) & 15) == 0) return *reinterpret_cast<const uint4*>(p);
  uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
  for (uint32_t i = 0; i < 16; ++i)
    if (i < n) w[i >> 2] |= uint32_t(p[i]) << (8 * (i & 3));
  return make_uint4(w[0], w[1], w[2], w[3]);
}
__device__ __forceinline__ void store_part(uint8_t* p, uint4 v, uint32_t n) {
  if (n == 16 && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
    *reinterpret_cast<uint4*>(p) = v;
    return;
  }
  uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (uint32_t i = 0; i < 16; ++i)
    if (i < n) p[i] = uint8_t(w[i >> 2] >> (8 * (i & 3)));
}
__device__ __forceinline__ uint4 mask_bytes(uint4 v, uint32_t n) {  // keep the first n bytes
  uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (uint32_t i = 0; i < 4; ++i) {
    uint32_t keep = n >= 4 * i + 4 ? 4 : (n > 4 * i ? n - 4 * i : 0);
    w[i] &= keep == 4 ? 0xffffffffu : ((1u << (8 * keep)) - 1);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

struct Shape {  // a job's GHASH input in blocks: AAD, data, length block
  uint64_t na, nc, ntot;
};
__host__ __device__ __forceinline__ Shape shape_of(uint8_t mode, uint64_t len, uint32_t aad_len) {
  const bool gcm = mode == uint8_t(Mode::gcm);
  Shape s;
  s.na = gcm ? (aad_len + 15) / 16 : 0;
  s.nc = (len + 15) / 16;
  s.ntot = s.na + s.nc + (gcm ? 1 : 0);
  return s;
}

// One warp per job: key schedule, H, E(J0), H^1..H^32, the H^32 tables, the ladder.
__global__ void __launch_bounds__(kThreads) k_setup(const DevJob* jobs, JobState* st, uint4* htab, uint32_t job_lo,
                                                   uint32_t job_hi) {
  __shared__ uint32_t T0[256];  // Te0 once per block: a lookup is one shared load
  T0[threadIdx.x] = te0_of(threadIdx.x);
  __syncthreads();
  const uint32_t j = job_lo + (blockIdx.x * kThreads + threadIdx.x) / 32;
  const uint32_t lane = threadIdx.x & 31;
  if (j >= job_hi) return;
  const DevJob& job = jobs[j];
  JobState& s = st[j];
  const bool gcm = job.mode == uint8_t(Mode::gcm);
  auto te = [](uint32_t x) { return T0[x]; };
  // Lanes 0 and 1 both expand the key; lane 0 then computes H, lane 1 E(J0).
  if (lane < 2) {
    uint32_t rk[60];
    for (int i = 0; i < 8; ++i) rk[i] = be32(job.key + 4 * i);
    uint32_t rcon = 1;
    for (int i = 8; i < 60; ++i) {
      uint32_t t = rk[i - 1];
      if (i % 8 == 0) {
        t = (t << 8) | (t >> 24);
        t = (uint32_t(kSbox[t >> 24]) << 24) | (uint32_t(kSbox[(t >> 16) & 255]) << 16) |
            (uint32_t(kSbox[(t >> 8) & 255]) << 8) | kSbox[t & 255];
        t ^= rcon << 24;
        rcon = xtime(rcon);
      } else if (i % 8 == 4) {
        t = (uint32_t(kSbox[t >> 24]) << 24) | (uint32_t(kSbox[(t >> 16) & 255]) << 16) |
            (uint32_t(kSbox[(t >> 8) & 255]) << 8) | kSbox[t & 255];
      }
      rk[i] = rk[i - 8] ^ t;
    }
    uint32_t iv[4];
    for (int i = 0; i < 4; ++i) iv[i] = be32(job.iv + 4 * i);
    if (gcm) iv[3] = 1;  // J0 = IV || 0^31 || 1
    if (lane == 0) {
      for (int i = 0; i < 60; ++i) s.rk[i] = rk[i];
      for (int i = 0; i < 4; ++i) s.ivw[i] = iv[i];
      s.acc = make_uint4(0, 0, 0, 0);
    }
    if (gcm) {
      uint32_t a = 0, b = 0, c = 0, d = 0;
      if (lane == 1) a = iv[0], b = iv[1], c = iv[2], d = iv[3];
      aes256_block(rk, a, b, c, d, te);
      const uint4 w = make_uint4(bswap32(a), bswap32(b), bswap32(c), bswap32(d));
      if (lane == 0)
        s.h = w;
      else
        s.ej0 = w;
    }
  }
  __syncwarp();
  if (!gcm) return;
  const gf h = from_words(s.h);
  // Lane t ends with H^(t+1): each round doubles the lanes that hold a power.
  gf p = h;
  for (uint32_t k = 1; k < 32; k <<= 1) {
    gf hk{__shfl_sync(0xffffffffu, p.hi, k - 1), __shfl_sync(0xffffffffu, p.lo, k - 1)};
    uint32_t src = (lane - k) & 31;
    gf q{__shfl_sync(0xffffffffu, p.hi, src), __shfl_sync(0xffffffffu, p.lo, src)};
    if (lane >= k && lane < 2 * k) p = gf_mul(q, hk);
  }
  s.hpow[lane] = to_words(p);
  const gf h32{__shfl_sync(0xffffffffu, p.hi, 31), __shfl_sync(0xffffffffu, p.lo, 31)};
  // Lane i writes table i: T_i[n] = (nibble n at bit position 4i) * H^32.
  gf b0 = h32;
  for (uint32_t r = 0; r < lane; ++r) {  // b0 = H^32 * x^(4 lane), 4 bits a step
    const uint64_t rem = b0.lo & 15;
    b0.lo = (b0.hi << 60) | (b0.lo >> 4);
    b0.hi = (b0.hi >> 4) ^ reduce4(rem);
  }
  const gf b1 = gf_mulx(b0), b2 = gf_mulx(b1), b3 = gf_mulx(b2);
  uint4* t = htab + size_t(j) * kHtabEntries + lane * 16;
#pragma unroll
  for (uint32_t n = 0; n < 16; ++n) {
    gf e{0, 0};
    if (n & 8) e.hi ^= b0.hi, e.lo ^= b0.lo;
    if (n & 4) e.hi ^= b1.hi, e.lo ^= b1.lo;
    if (n & 2) e.hi ^= b2.hi, e.lo ^= b2.lo;
    if (n & 1) e.hi ^= b3.hi, e.lo ^= b3.lo;
    t[n] = to_words(e);
  }
  if (job.nseg > 1 && lane == 0) {
    gf q = h32;
    for (int i = 0; i < 5; ++i) q = gf_mul(q, q);  // (H^32)^32 = H^kSegBlocks
    for (uint32_t l = 0; l < 24 && (1ull << l) < job.nseg; ++l) {
      s.q[l] = to_words(q);
      q = gf_mul(q, q);
    }
  }
}

// One thread per segment of a split job: H^(kSegBlocks * segments after it).
__global__ void k_segpow(const DevJob* jobs, const uint32_t* seg_job, const JobState* st, uint4* segpow, uint32_t seg_lo,
                         uint32_t seg_hi) {
  const uint32_t g = seg_lo + blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= seg_hi) return;
  const uint32_t j = seg_job[g];
  const DevJob& job = jobs[j];
  if (job.mode != uint8_t(Mode::gcm) || job.nseg <= 1) return;
  uint64_t e = job.nseg - 1 - (g - job.first_seg);
  gf r{uint64_t(1) << 63, 0};  // the element 1
  bool first = true;
  for (uint32_t l = 0; e; ++l, e >>= 1) {
    if (!(e & 1)) continue;
    gf ql = from_words(st[j].q[l]);
    r = first ? ql : gf_mul(r, ql);
    first = false;
  }
  segpow[g] = to_words(r);
}

__global__ void __launch_bounds__(kThreads, 2)
    k_segments(const DevJob* jobs, const uint32_t* seg_job, JobState* st, const uint4* htab, const uint4* segpow,
               uint32_t seg_lo, uint32_t seg_hi) {
  __shared__ uint32_t T[256 * 32];  // Te0, one copy per bank: T[x*32 + lane]
  for (uint32_t i = threadIdx.x; i < 256 * 32; i += kThreads) T[i] = te0_of(i >> 5);
  __syncthreads();
  const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t* Tl = T + lane;
  auto te = [Tl](uint32_t x) { return Tl[x << 5]; };

  for (uint32_t g = seg_lo + blockIdx.x * kWarps + warp; g < seg_hi; g += gridDim.x * kWarps) {
    const uint32_t j = seg_job[g];
    const DevJob& job = jobs[j];
    const uint64_t len = job.len;
    const uint32_t aad_len = job.aad_len;
    const bool gcm = job.mode == uint8_t(Mode::gcm);
    const bool enc = job.dir == uint8_t(Dir::encrypt);
    const uint8_t* in = reinterpret_cast<const uint8_t*>(job.in);
    uint8_t* out = reinterpret_cast<uint8_t*>(job.out);
    const uint8_t* aad = reinterpret_cast<const uint8_t*>(job.aad);
    const Shape sh = shape_of(job.mode, len, aad_len);
    const uint64_t s = g - job.first_seg;
    const uint64_t pad = uint64_t(job.nseg) * kSegBlocks - sh.ntot;
    const uint64_t vbase = s * kSegBlocks;

    uint32_t rk[60];
    const uint4* rk4 = reinterpret_cast<const uint4*>(st[j].rk);
#pragma unroll
    for (int i = 0; i < 15; ++i) {
      uint4 v = rk4[i];
      rk[4 * i] = v.x, rk[4 * i + 1] = v.y, rk[4 * i + 2] = v.z, rk[4 * i + 3] = v.w;
    }
    const uint4 ivw = *reinterpret_cast<const uint4*>(st[j].ivw);
    const uint4* ht = htab + size_t(j) * kHtabEntries;

    uint4 acc = make_uint4(0, 0, 0, 0);
    uint32_t step = 0;
    if (pad > vbase + 31) step = uint32_t((pad - vbase - 31 + 31) / 32);
    for (; step < 32; ++step) {
      const int64_t d = int64_t(vbase + 32 * step + lane) - int64_t(pad);
      uint4 x = make_uint4(0, 0, 0, 0);
      if (d >= 0) {
        const uint64_t ud = uint64_t(d);
        if (ud < sh.na) {
          const uint32_t n = aad_len - uint32_t(16 * ud) < 16 ? aad_len - uint32_t(16 * ud) : 16u;
          x = load_part(aad + 16 * ud, n);
        } else if (ud < sh.na + sh.nc) {
          const uint64_t k = ud - sh.na;
          const uint32_t n = len - 16 * k < 16 ? uint32_t(len - 16 * k) : 16u;
          uint32_t c0, c1, c2, c3;
          if (gcm) {
            c0 = ivw.x, c1 = ivw.y, c2 = ivw.z, c3 = ivw.w + uint32_t(k) + 1;  // inc32, wraps mod 2^32
          } else {
            uint64_t lo = ((uint64_t(ivw.z) << 32) | ivw.w) + k;
            uint64_t hi = ((uint64_t(ivw.x) << 32) | ivw.y) + (lo < k ? 1 : 0);
            c0 = uint32_t(hi >> 32), c1 = uint32_t(hi), c2 = uint32_t(lo >> 32), c3 = uint32_t(lo);
          }
          aes256_block(rk, c0, c1, c2, c3, te);
          const uint4 src = load_part(in + 16 * k, n);
          const uint4 o = mask_bytes(xor4(src, make_uint4(bswap32(c0), bswap32(c1), bswap32(c2), bswap32(c3))), n);
          store_part(out + 16 * k, o, n);
          x = enc ? o : src;
        } else {  // the length block: bit lengths of AAD and data, big-endian
          const uint64_t abits = uint64_t(aad_len) * 8, cbits = len * 8;
          x = make_uint4(bswap32(uint32_t(abits >> 32)), bswap32(uint32_t(abits)), bswap32(uint32_t(cbits >> 32)),
                         bswap32(uint32_t(cbits)));
        }
      }
      if (gcm) {
        // acc = acc * H^32 + x: after J steps lane t holds sum_j X[t+32j] H^(32(J-1-j)).
        const uint4 y = acc;
        const uint32_t yw[4] = {y.x, y.y, y.z, y.w};
        uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int i = 0; i < 32; ++i) {
          const int b = i >> 1;
          const uint32_t nib = (yw[b >> 2] >> (8 * (b & 3) + ((i & 1) ? 0 : 4))) & 15;
          z = xor4(z, __ldg(ht + i * 16 + nib));
        }
        acc = xor4(z, x);
      }
    }
    if (gcm) {
      gf p = gf_mul(from_words(acc), from_words(st[j].hpow[31 - lane]));
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        p.hi ^= __shfl_xor_sync(0xffffffffu, p.hi, o);
        p.lo ^= __shfl_xor_sync(0xffffffffu, p.lo, o);
      }
      if (lane == 0) {
        if (job.nseg > 1) p = gf_mul(p, from_words(segpow[g]));
        const uint4 w = to_words(p);
        uint32_t* a = reinterpret_cast<uint32_t*>(&st[j].acc);
        atomicXor(a + 0, w.x);
        atomicXor(a + 1, w.y);
        atomicXor(a + 2, w.z);
        atomicXor(a + 3, w.w);
      }
    }
  }
}

__global__ void k_finalize(const DevJob* jobs, const JobState* st, uint8_t* tags, uint8_t* results, uint32_t job_lo,
                           uint32_t job_hi) {
  const uint32_t j = job_lo + blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= job_hi) return;
  const DevJob& job = jobs[j];
  if (job.mode != uint8_t(Mode::gcm)) {
    results[j] = uint8_t(Result::ok);
    return;
  }
  const uint4 t = xor4(st[j].ej0, st[j].acc);
  const uint32_t w[4] = {t.x, t.y, t.z, t.w};
  uint32_t diff = 0;
  for (int i = 0; i < 16; ++i) {
    const uint8_t b = uint8_t(w[i >> 2] >> (8 * (i & 3)));
    tags[16 * size_t(j) + i] = b;
    diff |= uint32_t(b ^ job.tag[i]);
  }
  results[j] = uint8_t(job.dir == uint8_t(Dir::decrypt) && diff ? Result::auth_failed : Result::ok);
}

size_t align256(size_t n) { return (n + 255) & ~size_t(255); }

int sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 132;
  return n;
}

}  // namespace

uint32_t segments_of(const DevJob& job) {
  const Shape sh = shape_of(job.mode, job.len, job.aad_len);
  return uint32_t((sh.ntot + kSegBlocks - 1) / kSegBlocks);
}

std::vector<uint32_t> plan(std::span<DevJob> jobs) {
  std::vector<uint32_t> seg_job;
  uint32_t next = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const uint32_t n = segments_of(jobs[j]);
    jobs[j].first_seg = next;
    jobs[j].nseg = n;
    seg_job.insert(seg_job.end(), n, uint32_t(j));
    next += n;
  }
  return seg_job;
}

ByteRange segment_bytes(const DevJob& job, uint32_t seg_lo, uint32_t seg_hi) {
  const Shape sh = shape_of(job.mode, job.len, job.aad_len);
  const uint64_t first_data = uint64_t(job.nseg) * kSegBlocks - sh.ntot + sh.na;  // virtual index of data block 0
  auto block_at = [&](uint64_t v) -> uint64_t { return v <= first_data ? 0 : std::min(v - first_data, sh.nc); };
  ByteRange r;
  r.lo = std::min<uint64_t>(block_at(uint64_t(seg_lo) * kSegBlocks) * 16, job.len);
  r.hi = std::min<uint64_t>(block_at(uint64_t(seg_hi) * kSegBlocks) * 16, job.len);
  return r;
}

size_t workspace_bytes(uint32_t njobs, uint32_t nsegs) {
  return align256(njobs * sizeof(DevJob)) + align256(nsegs * sizeof(uint32_t)) + align256(njobs * sizeof(JobState)) +
         align256(njobs * kHtabEntries * sizeof(uint4)) + align256(nsegs * sizeof(uint4)) + align256(njobs * kTagBytes) +
         align256(njobs);
}

Workspace carve(void* base, uint32_t njobs, uint32_t nsegs) {
  auto* p = static_cast<uint8_t*>(base);
  auto take = [&p](size_t n) {
    void* r = p;
    p += align256(n);
    return r;
  };
  Workspace ws;
  ws.jobs = static_cast<DevJob*>(take(njobs * sizeof(DevJob)));
  ws.seg_job = static_cast<uint32_t*>(take(nsegs * sizeof(uint32_t)));
  ws.state = take(njobs * sizeof(JobState));
  ws.htab = take(njobs * kHtabEntries * sizeof(uint4));
  ws.segpow = take(nsegs * sizeof(uint4));
  ws.tags = static_cast<uint8_t*>(take(njobs * kTagBytes));
  ws.results = static_cast<uint8_t*>(take(njobs));
  ws.njobs = njobs;
  ws.nsegs = nsegs;
  return ws;
}

int enqueue_setup(const Workspace& ws, uint32_t job_lo, uint32_t job_hi, uint32_t seg_lo, uint32_t seg_hi, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (job_hi > job_lo)
    k_setup<<<(job_hi - job_lo + kWarps - 1) / kWarps, kThreads, 0, s>>>(ws.jobs, static_cast<JobState*>(ws.state),
                                                                         static_cast<uint4*>(ws.htab), job_lo, job_hi);
  if (seg_hi > seg_lo)
    k_segpow<<<(seg_hi - seg_lo + 255) / 256, 256, 0, s>>>(ws.jobs, ws.seg_job, static_cast<const JobState*>(ws.state),
                                                          static_cast<uint4*>(ws.segpow), seg_lo, seg_hi);
  return int(cudaGetLastError());
}

int enqueue_segments(const Workspace& ws, uint32_t seg_lo, uint32_t seg_hi, void* stream) {
  if (seg_hi <= seg_lo) return 0;
  static thread_local int sms = sm_count();
  const uint32_t need = (seg_hi - seg_lo + kWarps - 1) / kWarps;
  const uint32_t blocks = std::min<uint32_t>(need, uint32_t(sms) * 2);
  k_segments<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      ws.jobs, ws.seg_job, static_cast<JobState*>(ws.state), static_cast<const uint4*>(ws.htab),
      static_cast<const uint4*>(ws.segpow), seg_lo, seg_hi);
  return int(cudaGetLastError());
}

int enqueue_finalize(const Workspace& ws, uint32_t job_lo, uint32_t job_hi, void* stream) {
  if (job_hi <= job_lo) return 0;
  k_finalize<<<(job_hi - job_lo + 255) / 256, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      ws.jobs, static_cast<const JobState*>(ws.state), ws.tags, ws.results, job_lo, job_hi);
  return int(cudaGetLastError());
}

}  // namespace gpo::aes::gpu
