// complete_partial_checksum: completes only offload leftovers (the field holds
// exactly the pseudo-header sum), never a valid or a corrupted checksum; the
// IPv4 header checksum.
#include <gtest/gtest.h>

#include "afxdp/checksum.h"
#include "common/packet_builder.h"
#include "kernels/classify/frame.h"

namespace {

using gpo::test::PacketBuilder;

// Independent of the code under test: the pseudo-header sum, folded, as the
// kernel leaves it in the field for CHECKSUM_PARTIAL.
uint16_t partial_value(const std::vector<uint8_t>& f, const gpo::classify::ParsedFrame& p) {
  uint32_t s = 0;
  auto add = [&](const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; i += 2) s += uint32_t(b[i]) << 8 | b[i + 1];
  };
  uint32_t l4_len;
  if (p.ip_version == 4) {
    add(&f[p.l3_offset + 12], 8);
    l4_len = (uint32_t(f[p.l3_offset + 2]) << 8 | f[p.l3_offset + 3]) - (p.l4_offset - p.l3_offset);
  } else {
    add(&f[p.l3_offset + 8], 32);
    l4_len = p.l3_offset + 40 + (uint32_t(f[p.l3_offset + 4]) << 8 | f[p.l3_offset + 5]) - p.l4_offset;
  }
  s += p.proto + l4_len;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(s);
}

size_t check_offset(const gpo::classify::ParsedFrame& p) { return p.l4_offset + (p.proto == 6 ? 16 : 6); }

struct Case {
  const char* name;
  std::vector<uint8_t> frame;
};

std::vector<Case> cases() {
  return {
      {"udp4", PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(40000, 7000).payload("hello").build()},
      {"udp4-odd", PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(1, 2).payload("odd").build()},
      {"tcp4", PacketBuilder().eth().vlan(7).ipv4("198.18.0.1", "198.18.0.2", 8).tcp(1234, 80, 0x18)
                   .payload("GET / HTTP/1.0\r\n\r\n").build()},
      {"udp6", PacketBuilder().eth().ipv6("2001:db8::1", "2001:db8::2").udp(5353, 53).payload("q").build()},
      {"tcp6", PacketBuilder().eth().ipv6("2001:db8::1", "2001:db8::2").ipv6_ext(gpo::test::kDestOpts, 8)
                   .tcp(1, 2, 0x10).payload("xyz").build()},
  };
}

TEST(AfxdpChecksum, ValidChecksumsAreLeftAlone) {
  for (auto& c : cases()) {
    auto f = c.frame;
    auto p = gpo::classify::parse_frame(f.data(), uint32_t(f.size()));
    ASSERT_TRUE(p.ok()) << c.name;
    EXPECT_FALSE(gpo::afxdp::complete_partial_checksum(f.data(), uint32_t(f.size()), p)) << c.name;
    EXPECT_EQ(f, c.frame) << c.name;
  }
}

TEST(AfxdpChecksum, PartialChecksumIsCompletedToTheValidOne) {
  for (auto& c : cases()) {
    auto f = c.frame;
    auto p = gpo::classify::parse_frame(f.data(), uint32_t(f.size()));
    ASSERT_TRUE(p.ok()) << c.name;
    const size_t off = check_offset(p);
    uint16_t pv = partial_value(f, p);
    f[off] = uint8_t(pv >> 8);
    f[off + 1] = uint8_t(pv);
    ASSERT_NE(f, c.frame) << c.name;
    EXPECT_TRUE(gpo::afxdp::complete_partial_checksum(f.data(), uint32_t(f.size()), p)) << c.name;
    EXPECT_EQ(f, c.frame) << c.name << ": completed checksum differs from the builder's";
  }
}

TEST(AfxdpChecksum, CorruptedChecksumIsNotRepaired) {
  for (auto& c : cases()) {
    auto f = c.frame;
    auto p = gpo::classify::parse_frame(f.data(), uint32_t(f.size()));
    const size_t off = check_offset(p);
    f[off] ^= 0x5a;
    if (uint16_t(f[off] << 8 | f[off + 1]) == partial_value(f, p)) f[off] ^= 0x01;
    auto corrupted = f;
    EXPECT_FALSE(gpo::afxdp::complete_partial_checksum(f.data(), uint32_t(f.size()), p)) << c.name;
    EXPECT_EQ(f, corrupted) << c.name;
  }
}

TEST(AfxdpChecksum, Udp4WithoutChecksumAndIcmpAreLeftAlone) {
  auto f = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(1, 2).payload("x").build();
  auto p = gpo::classify::parse_frame(f.data(), uint32_t(f.size()));
  f[check_offset(p)] = f[check_offset(p) + 1] = 0;
  auto before = f;
  EXPECT_FALSE(gpo::afxdp::complete_partial_checksum(f.data(), uint32_t(f.size()), p));
  EXPECT_EQ(f, before);

  auto icmp = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").icmp().payload("ping").build();
  auto pi = gpo::classify::parse_frame(icmp.data(), uint32_t(icmp.size()));
  auto icmp_before = icmp;
  EXPECT_FALSE(gpo::afxdp::complete_partial_checksum(icmp.data(), uint32_t(icmp.size()), pi));
  EXPECT_EQ(icmp, icmp_before);
}

// A header with a known checksum (192.168.0.1 -> 192.168.0.199, UDP, 0xb861),
// and one with options (IHL 6): the sum covers the whole header.
TEST(AfxdpChecksum, Ipv4HeaderChecksum) {
  uint8_t ip[24] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                    0xde, 0xad, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  gpo::afxdp::set_ipv4_header_checksum(ip);
  EXPECT_EQ(ip[10], 0xb8);
  EXPECT_EQ(ip[11], 0x61);
  ip[0] = 0x46;
  ip[20] = 0x94;  // router alert option
  ip[21] = 0x04;
  gpo::afxdp::set_ipv4_header_checksum(ip);
  EXPECT_EQ(gpo::afxdp::csum_fold(gpo::afxdp::csum_add(ip, 24)), 0xffff) << "verifies over all 24 bytes";
  EXPECT_NE(gpo::afxdp::csum_fold(gpo::afxdp::csum_add(ip, 20)), 0xffff);
}

}  // namespace
