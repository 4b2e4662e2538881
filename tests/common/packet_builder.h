// Builds Ethernet frames for tests, layer by layer, the way katran's
// PacketBuilder does: each call appends a header, build() fills in the
// next-protocol fields, lengths and checksums. Generic on purpose: the BPF
// (BPF_PROG_TEST_RUN) and AF_XDP tests share it.
//
//   auto pkt = PacketBuilder().eth().vlan(10).ipv4("198.18.0.1", "198.18.0.2")
//                  .udp(1234, 53).payload("hello").build();
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace gpo::test {

using Mac = std::array<uint8_t, 6>;
using Addr16 = std::array<uint8_t, 16>;

// "198.18.0.1" -> ::ffff:198.18.0.1 (v4-mapped, as the flow key stores it),
// "2001:db8::1" -> the 16 bytes. Throws std::invalid_argument otherwise.
Addr16 addr16(const std::string& ip);

// IPv6 extension header types (next-header values).
enum Ipv6Ext : uint8_t { kHopByHop = 0, kRouting = 43, kFragment = 44, kAuth = 51, kDestOpts = 60 };

class PacketBuilder {
 public:
  struct Boundary {
    std::string layer;  // "eth", "vlan", "ipv4", "ipv6", "ipv6-ext", "tcp", "udp", "icmp", "icmpv6", "payload"
    size_t offset;      // where it starts in build()'s output
    size_t length;
  };

  // ethertype 0 = derived from the next layer (IPv4, IPv6, VLAN); set it for ARP etc.
  PacketBuilder& eth(Mac src = {0x02, 0, 0, 0, 0, 1}, Mac dst = {0x02, 0, 0, 0, 0, 2}, uint16_t ethertype = 0);
  PacketBuilder& vlan(uint16_t vid, uint16_t tpid = 0x8100);
  // options_len: bytes of IPv4 options (multiple of 4, at most 40), NOP-filled.
  PacketBuilder& ipv4(const std::string& src, const std::string& dst, size_t options_len = 0, uint8_t ttl = 64);
  // Fragment fields of the last IPv4 header: offset in bytes (multiple of 8).
  PacketBuilder& ipv4_frag(uint16_t offset_bytes, bool more_fragments);
  PacketBuilder& ipv6(const std::string& src, const std::string& dst, uint8_t hop_limit = 64);
  // len: total bytes of the extension header (multiple of 8; AH: of 4); fragment headers are 8.
  PacketBuilder& ipv6_ext(Ipv6Ext type, size_t len = 8, uint16_t frag_offset_bytes = 0, bool more_fragments = false);
  PacketBuilder& tcp(uint16_t sport, uint16_t dport, uint8_t flags = 0x02 /* SYN */, size_t options_len = 0);
  // Sequence number of the last TCP header (1 unless set).
  PacketBuilder& tcp_seq(uint32_t seq);
  // Acknowledgement number of the last TCP header (0 unless set).
  PacketBuilder& tcp_ack(uint32_t ack);
  PacketBuilder& udp(uint16_t sport, uint16_t dport);
  PacketBuilder& icmp(uint8_t type = 8 /* echo request */, uint8_t code = 0);
  PacketBuilder& icmpv6(uint8_t type = 128 /* echo request */, uint8_t code = 0);
  // The IP protocol / next header to announce when what follows is not a
  // header this builder knows (GRE, ESP, ...): the payload is its body.
  PacketBuilder& ip_proto(uint8_t proto);
  PacketBuilder& payload(const std::string& bytes);
  PacketBuilder& payload(const std::vector<uint8_t>& bytes);

  std::vector<uint8_t> build() const;
  // Where each layer starts, for truncating a packet at every header boundary.
  std::vector<Boundary> boundaries() const;

 private:
  struct Layer {
    std::string kind;
    Mac src_mac{}, dst_mac{};
    uint16_t u16a = 0, u16b = 0;  // ethertype/tpid+vid, ports, frag offset
    uint32_t u32 = 1;             // TCP sequence number
    uint32_t ack = 0;             // TCP acknowledgement number
    uint8_t u8a = 0, u8b = 0;     // ttl, tcp flags, icmp type/code, ext type
    bool flag = false;            // more fragments
    size_t len = 0;               // options / extension length
    Addr16 src{}, dst{};
    std::vector<uint8_t> bytes;   // payload
  };
  std::vector<Layer> layers_;
  int ip_proto_ = -1;
  std::vector<uint8_t> serialize(std::vector<Boundary>* bounds) const;
};

}  // namespace gpo::test
