#include "zstd_frame.h"

#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

namespace gpo::zstd_frame {
namespace {

constexpr uint32_t kMagic = 0xFD2FB528u;

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

}  // namespace

size_t header(uint8_t* out, uint64_t len, const Want& w) {
  const unsigned long long size = w.size_known ? len : ZSTD_CONTENTSIZE_UNKNOWN;
  const unsigned wlog = ZSTD_getCParams(w.level, size, 0).windowLog;
  const bool fcs_on = w.size_known && w.content_size;
  const bool single = fcs_on && (uint64_t(1) << wlog) >= len;
  const unsigned fcs = fcs_on ? (len >= 256) + (len >= 65536 + 256) + (len >= 0xFFFFFFFFu) : 0;
  size_t p = 0;
  for (int i = 0; i < 4; ++i) out[p++] = uint8_t(kMagic >> (8 * i));
  out[p++] = uint8_t((w.checksum ? 4 : 0) | (single ? 0x20 : 0) | (fcs << 6));
  if (!single) out[p++] = uint8_t((wlog - 10) << 3);
  const uint64_t v = fcs == 1 ? len - 256 : len;
  const unsigned bytes = fcs == 0 ? (single ? 1 : 0) : fcs == 1 ? 2 : fcs == 2 ? 4 : 8;
  for (unsigned i = 0; i < bytes; ++i) out[p++] = uint8_t(v >> (8 * i));
  return p;
}

size_t rewrite(uint8_t* f, size_t n, size_t cap, const uint8_t* content, size_t len, const Want& w) {
  if (n < 6 || le32(f) != kMagic || ZSTD_findFrameCompressedSize(f, n) != n) return 0;
  const uint8_t fhd = f[4];
  const unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, has_sum = (fhd >> 2) & 1, did = fhd & 3;
  if (did) return 0;  // no dictionary ever reaches the agent
  const size_t old_hdr = 5 + (single ? 0 : 1) + (fcs_flag == 0 ? single : fcs_flag == 1 ? 2 : fcs_flag == 2 ? 4 : 8);
  const size_t body = n - old_hdr - (has_sum ? 4 : 0);
  uint8_t hdr[18];
  const size_t new_hdr = header(hdr, len, w);
  const size_t total = new_hdr + body + (w.checksum ? 4 : 0);
  if (old_hdr > n || total > cap) return 0;
  std::memmove(f + new_hdr, f + old_hdr, body);
  std::memcpy(f, hdr, new_hdr);
  if (w.checksum) {
    const uint32_t h = uint32_t(XXH64(content, len, 0));
    for (int i = 0; i < 4; ++i) f[new_hdr + body + i] = uint8_t(h >> (8 * i));
  }
  return total;
}

}  // namespace gpo::zstd_frame
