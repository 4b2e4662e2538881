// Completing L4 checksums left unfinished by checksum offload.
//
// A packet sent by a local socket through a veth (containers, network
// namespaces) carries CHECKSUM_PARTIAL: the UDP/TCP checksum field holds only
// the folded pseudo-header sum, the rest was to be done by the NIC. The veth
// hands such frames to XDP as they are. A frame the agent re-injects (host
// mode) or sends out of the peer port (inline mode) becomes a new skb without
// that offload state, and the receiver drops it for a bad checksum. So before
// delivering a frame the agent completes the checksum when, and only when, the
// field holds exactly the pseudo-header sum and the full checksum does not
// verify. A valid checksum is never touched, and neither is a corrupted one
// (unless it happens to equal the pseudo-header sum: 1 in 65536).
#pragma once
#include <cstdint>

#include "kernels/classify/frame.h"

namespace gpo::afxdp {

// Returns true when it changed the frame.
bool complete_partial_checksum(uint8_t* frame, uint32_t len, const classify::ParsedFrame& parsed);

// The Internet checksum's parts (RFC 1071), inline for the frame builders of
// the benchmarks, which link no agent library: the one's complement sum of
// big-endian 16-bit words (an odd tail padded with zero), folded to 16 bits.
inline uint32_t csum_add(const uint8_t* p, uint32_t n, uint32_t acc = 0) {
  for (uint32_t i = 0; i + 1 < n; i += 2) acc += uint32_t(p[i]) << 8 | p[i + 1];
  if (n & 1) acc += uint32_t(p[n - 1]) << 8;
  return acc;
}

inline uint16_t csum_fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(s);
}

// Writes the checksum of the IPv4 header at ip (its length from IHL).
inline void set_ipv4_header_checksum(uint8_t* ip) {
  ip[10] = ip[11] = 0;
  const uint16_t c = uint16_t(~csum_fold(csum_add(ip, uint32_t(ip[0] & 0x0f) * 4)));
  ip[10] = uint8_t(c >> 8);
  ip[11] = uint8_t(c);
}

}  // namespace gpo::afxdp
