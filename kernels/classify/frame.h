// User-space frame parser for the packet filter: Ethernet frame in, 5-tuple
// and L4 payload out.
//
// The XDP program (bpf/xdp_filter.bpf.c) walks headers the same way, because
// the agent installs flow verdicts under flow_key() and XDP must look them up
// under an identical key. The rules, precisely:
//
//  1. Ethernet II header (14 bytes). Then at most kMaxVlanTags (2) VLAN tags
//     (TPID 0x8100 or 0x88A8, 4 bytes each); a third tag -> kMalformed (as
//     XDP's PARSE_FAIL). An EtherType other than IPv4 (0x0800) or IPv6
//     (0x86DD) after them -> kNotIp.
//  2. IPv4: at least 20 bytes, version 4, IHL >= 5, IHL*4 <= bytes left.
//     Fragment offset != 0 -> kFragment. A first fragment (offset 0, MF set)
//     parses like any packet. Options are skipped.
//  3. IPv6: at least 40 bytes, version 6. Extension headers Hop-by-Hop (0),
//     Routing (43), Destination Options (60): length (hdr[1] + 1) * 8;
//     Fragment (44): 8 bytes, fragment offset != 0 -> kFragment; AH (51):
//     (hdr[1] + 2) * 4. At most kMaxIpv6ExtHeaders (6, XDP's GPO_MAX_EXT_HDRS)
//     are walked; a 7th -> kMalformed. The protocol is the first Next Header
//     value that is not one of those five.
//  4. L4: TCP (6) needs 20 bytes and a data offset with 20 <= doff*4 <= bytes
//     left; payload follows the header. UDP (17) needs 8 bytes. ICMP (1) and
//     ICMPv6 (58) need 8 bytes; payload follows. Other protocols: ports 0,
//     payload = the whole IP payload.
//  5. Anything shorter than a header it needs -> kMalformed.
//
// One check more than XDP (which needs no payload): the IP length fields
// must fit the frame (IPv4 IHL*4 <= total length <= bytes left, IPv6 payload
// length <= bytes left), and they bound the payload, so Ethernet padding is
// never inspected. A frame XDP keys but this parser rejects (a lying length
// field) gets the default verdict, uncached: never a verdict under another key.
//
// Ports are 0 for protocols without ports (ICMP type/code are not in the key).
#pragma once
#include <cstdint>

#include "bpf/xdp_filter.h"
#include "kernels/common/host_device.h"

namespace gpo::classify {

inline constexpr int kMaxVlanTags = 2;
inline constexpr int kMaxIpv6ExtHeaders = 6;

enum class ParseStatus : uint8_t {
  kOk = 0,
  kNotIp,      // ARP, LLDP, ...: XDP always passes those
  kMalformed,  // truncated or inconsistent headers, a third VLAN tag
  kFragment,   // a non-first IP fragment: no L4 header to read
};

struct ParsedFrame {
  ParseStatus status = ParseStatus::kMalformed;
  uint8_t ip_version = 0;  // 4 or 6
  uint8_t proto = 0;       // IPPROTO_*
  uint8_t src[16]{};       // IPv4 as v4-mapped ::ffff:a.b.c.d
  uint8_t dst[16]{};
  uint16_t sport = 0;      // host byte order; 0 without ports
  uint16_t dport = 0;
  uint8_t ttl = 0;         // IPv4 TTL, IPv6 hop limit
  uint8_t tcp_flags = 0;   // TCP only: CWR ECE URG ACK PSH RST SYN FIN (bit 7 .. bit 0)
  uint8_t icmp_type = 0;   // ICMP / ICMPv6 only
  uint8_t icmp_code = 0;
  uint32_t l3_offset = 0;       // from the start of the frame
  uint32_t l4_offset = 0;
  uint32_t payload_offset = 0;  // L4 payload, from the start of the frame
  uint32_t payload_len = 0;

  GPO_HD GPO_FORCEINLINE bool ok() const { return status == ParseStatus::kOk; }
};

// Implemented in frame_parse.h (host+device), which the GPU classifier shares.
ParsedFrame parse_frame(const uint8_t* data, uint32_t len);

// The flow cache key for a parsed frame, exactly as XDP computes it
// (gpo_flow_key_make: direction-normalised, ports in network byte order).
gpo_flow_key flow_key(const ParsedFrame& f);

const char* to_string(ParseStatus s);

}  // namespace gpo::classify
