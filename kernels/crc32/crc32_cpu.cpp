// The CPU reference for CRC-32: zlib's crc32_z (the real zlib, never the shim).
#include "kernels/crc32/crc32.h"

#include "kernels/zlib/zlib_real.h"

namespace gpo::crc32 {

uint32_t cpu_crc32(uint32_t crc, std::span<const uint8_t> data) {
  if (data.empty()) return crc;  // zlib returns 0 for a null pointer: never pass one
  return uint32_t(zlib_real::fns().crc32_z(crc, data.data(), data.size()));
}

uint32_t combine(uint32_t crc1, uint32_t crc2, uint64_t len2) {
  static constexpr X2nTable t = make_x2n_table();
  return multmodp(x8nmodp(t, len2), crc1) ^ crc2;
}

}  // namespace gpo::crc32
