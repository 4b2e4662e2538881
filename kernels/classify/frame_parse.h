// The frame parser's implementation, as host+device code: parse_frame()
// (frame.cpp) on the CPU and the GPU classifier's kernel call the same
// functions. The rules it applies are listed in frame.h.
#pragma once
#include <cstdint>

#include "kernels/classify/frame.h"
#include "kernels/common/host_device.h"

namespace gpo::classify::parse {

constexpr uint16_t kEthIpv4 = 0x0800, kEthIpv6 = 0x86DD, kEthVlan = 0x8100, kEthQinQ = 0x88A8;
constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58;

GPO_HD GPO_FORCEINLINE uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }

GPO_HD GPO_FORCEINLINE void set_v4_mapped(uint8_t out[16], const uint8_t v4[4]) {
  for (int i = 0; i < 10; ++i) out[i] = 0;
  out[10] = out[11] = 0xff;
  for (int i = 0; i < 4; ++i) out[12 + i] = v4[i];
}

// Fills proto-dependent fields from the L4 region [off, end) of the frame.
GPO_HD GPO_FORCEINLINE ParseStatus l4(const uint8_t* d, uint32_t off, uint32_t end, ParsedFrame& f) {
  const uint32_t left = end - off;
  f.l4_offset = off;
  switch (f.proto) {
    case kTcp: {
      if (left < 20) return ParseStatus::kMalformed;
      uint32_t doff = uint32_t(d[off + 12] >> 4) * 4;
      if (doff < 20 || doff > left) return ParseStatus::kMalformed;
      f.sport = rd16(d + off);
      f.dport = rd16(d + off + 2);
      f.tcp_flags = d[off + 13];
      f.payload_offset = off + doff;
      break;
    }
    case kUdp:
      if (left < 8) return ParseStatus::kMalformed;
      f.sport = rd16(d + off);
      f.dport = rd16(d + off + 2);
      f.payload_offset = off + 8;
      break;
    case kIcmp:
    case kIcmpv6:
      if (left < 8) return ParseStatus::kMalformed;
      f.icmp_type = d[off];
      f.icmp_code = d[off + 1];
      f.payload_offset = off + 8;
      break;
    default:
      f.payload_offset = off;
  }
  f.payload_len = end - f.payload_offset;
  return ParseStatus::kOk;
}

GPO_HD GPO_FORCEINLINE ParseStatus ipv4(const uint8_t* d, uint32_t off, uint32_t len, ParsedFrame& f) {
  const uint32_t left = len - off;
  if (left < 20 || (d[off] >> 4) != 4) return ParseStatus::kMalformed;
  uint32_t ihl = uint32_t(d[off] & 0x0f) * 4;
  uint32_t total = rd16(d + off + 2);
  if (ihl < 20 || ihl > left || total < ihl || total > left) return ParseStatus::kMalformed;
  f.ip_version = 4;
  f.ttl = d[off + 8];
  set_v4_mapped(f.src, d + off + 12);
  set_v4_mapped(f.dst, d + off + 16);
  f.proto = d[off + 9];
  if ((rd16(d + off + 6) & 0x1fff) != 0) return ParseStatus::kFragment;
  return l4(d, off + ihl, off + total, f);
}

GPO_HD GPO_FORCEINLINE ParseStatus ipv6(const uint8_t* d, uint32_t off, uint32_t len, ParsedFrame& f) {
  const uint32_t left = len - off;
  if (left < 40 || (d[off] >> 4) != 6) return ParseStatus::kMalformed;
  uint32_t plen = rd16(d + off + 4);
  if (plen > left - 40) return ParseStatus::kMalformed;
  f.ip_version = 6;
  f.ttl = d[off + 7];
  for (int i = 0; i < 16; ++i) {
    f.src[i] = d[off + 8 + i];
    f.dst[i] = d[off + 24 + i];
  }
  const uint32_t end = off + 40 + plen;
  uint8_t nh = d[off + 6];
  uint32_t p = off + 40;
  for (int i = 0;; ++i) {
    bool ext = nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51;
    if (!ext) break;
    if (i == kMaxIpv6ExtHeaders) return ParseStatus::kMalformed;
    if (end - p < 8) return ParseStatus::kMalformed;  // every extension header is >= 8 bytes
    uint32_t hlen;
    if (nh == 44) {
      hlen = 8;
      if ((rd16(d + p + 2) >> 3) != 0) {
        f.proto = d[p];
        return ParseStatus::kFragment;
      }
    } else if (nh == 51) {
      hlen = (uint32_t(d[p + 1]) + 2) * 4;
    } else {
      hlen = (uint32_t(d[p + 1]) + 1) * 8;
    }
    if (hlen > end - p) return ParseStatus::kMalformed;
    nh = d[p];
    p += hlen;
  }
  f.proto = nh;
  return l4(d, p, end, f);
}

GPO_HD GPO_FORCEINLINE ParsedFrame frame(const uint8_t* data, uint32_t len) {
  ParsedFrame f;
  if (data == nullptr || len < 14) {
    f.status = ParseStatus::kMalformed;
    return f;
  }
  uint16_t type = rd16(data + 12);
  uint32_t off = 14;
  for (int tags = 0; (type == kEthVlan || type == kEthQinQ) && tags < kMaxVlanTags; ++tags) {
    if (len - off < 4) {
      f.status = ParseStatus::kMalformed;
      return f;
    }
    type = rd16(data + off + 2);
    off += 4;
  }
  f.l3_offset = off;
  if (type == kEthVlan || type == kEthQinQ)  // a third tag: beyond what XDP walks
    f.status = ParseStatus::kMalformed;
  else if (type == kEthIpv4)
    f.status = ipv4(data, off, len, f);
  else if (type == kEthIpv6)
    f.status = ipv6(data, off, len, f);
  else
    f.status = ParseStatus::kNotIp;
  if (!f.ok()) {
    f.sport = f.dport = 0;
    f.payload_offset = f.payload_len = 0;
  }
  return f;
}

}  // namespace gpo::classify::parse
