// CRC-32 (zlib's crc32(): reflected polynomial 0xedb88320, register starts at
// ~crc, result complemented): the one header the agent, the CPU reference, the
// CUDA kernel and the tests share.
//
// The GPU splits one buffer into segments, computes each segment's CRC
// independently and joins them with the GF(2) shift operator, as zlib's
// crc32_combine() does: with L(B) the CRC of B from a zero register and no
// final complement, and M^n the register shift over n zero bytes (multiplication
// by x^(8n) mod P),
//     L(A || B) = M^|B| L(A) xor L(B),    crc32(c, B) = ~(M^|B| (~c) xor L(B)).
// So the result is bit-identical to zlib for any length and any initial crc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "kernels/common/host_device.h"


namespace gpo::crc32 {

inline constexpr uint32_t kPoly = 0xedb88320u;  // x^32 + ... reflected, as zlib
inline constexpr size_t kCrcBytes = 4;          // op output: the crc, little-endian

// zlib crc32_z(crc, data, len), through the real zlib (kernels/zlib/zlib_real.h).
uint32_t cpu_crc32(uint32_t crc, std::span<const uint8_t> data);

// --- GF(2)[x] mod P arithmetic, reflected bit order (bit 31 is x^0), as zlib's crc32.c ---

// a * b mod P.
GPO_HD constexpr uint32_t multmodp(uint32_t a, uint32_t b) {
  uint32_t p = 0;
  for (uint32_t m = 1u << 31; m; m >>= 1) {
    if (a & m) p ^= b;
    b = b & 1 ? (b >> 1) ^ kPoly : b >> 1;
  }
  return p;
}

// x^(2^k) mod P for k = 0..31: squaring from x^1.
struct X2nTable {
  uint32_t v[32];
};
GPO_HD constexpr X2nTable make_x2n_table() {
  X2nTable t{};
  uint32_t p = 1u << 30;  // x^1
  for (int k = 0; k < 32; ++k) {
    t.v[k] = p;
    p = multmodp(p, p);
  }
  return t;
}

// x^(8n) mod P: the shift over n zero bytes (zlib's x2nmodp(n, 3)).
GPO_HD constexpr uint32_t x8nmodp(const X2nTable& t, uint64_t n) {
  uint32_t p = 1u << 31;  // x^0
  int k = 3;
  while (n) {
    if (n & 1) p = multmodp(t.v[k & 31], p);
    n >>= 1;
    ++k;
  }
  return p;
}

// zlib's crc32_combine(crc1, crc2, len2): the crc of A||B from crc(A), crc(B), |B|.
uint32_t combine(uint32_t crc1, uint32_t crc2, uint64_t len2);

namespace gpu {

// Tuning knobs: each thread takes kSegBytes of one buffer (16-byte loads,
// slicing-by-8 tables in shared memory); a block of kThreads threads takes a
// tile of kTileBytes and joins its segments in a shuffle tree. Tiles are laid
// out from the END of each buffer, so a buffer whose length is not a multiple
// of the tile is padded with zeros at its front, which a zero register ignores.
inline constexpr uint32_t kSegBytes = 256;
inline constexpr uint32_t kThreads = 256;
inline constexpr uint64_t kTileBytes = uint64_t(kSegBytes) * kThreads;  // 64 KiB

GPO_HD inline constexpr uint64_t tiles_of(uint64_t len) { return (len + kTileBytes - 1) / kTileBytes; }

struct DevJob {
  uint64_t in = 0;          // device address (any alignment)
  uint64_t len = 0;
  uint32_t first_tile = 0;  // index of its first tile in the batch's tile -> job map
  uint32_t init = 0;        // the crc to continue from (zlib's crc argument)
};

// acc[j] ^= the shifted CRC of every tile in [tile_lo, tile_hi) (tile_job maps a
// tile to its job); acc must be zero before the first tile of a job. Tiles of
// one batch may go in several calls on several streams (XOR commutes).
int enqueue_tiles(const DevJob* jobs, const uint32_t* tile_job, uint32_t tile_lo, uint32_t tile_hi, uint32_t* acc,
                  void* stream);
// out[j] = crc32(jobs[j].init, buffer j) from acc, for j in [0, n).
int enqueue_finalize(const DevJob* jobs, uint32_t n, const uint32_t* acc, uint32_t* out, void* stream);

}  // namespace gpu
}  // namespace gpo::crc32
