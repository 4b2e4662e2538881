// Raw frames for the classifier tests, built from a plain description so a
// test knows the 5-tuple and payload it put in independently of the parser.
#pragma once
#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace gpo::test {

struct FrameSpec {
  int ip_version = 4;
  std::array<uint8_t, 16> src{}, dst{};  // IPv4: v4-mapped (bytes 12..15 are the address)
  uint8_t proto = 6;
  uint16_t sport = 0, dport = 0;
  std::string payload;
  int vlans = 0;                     // 0..2 tags
  int ipv4_options = 0;              // bytes, multiple of 4
  std::vector<uint8_t> ipv6_ext;     // extension header types (0, 43, 60: 8 bytes; 44 fragment offset 0)
  uint8_t tcp_flags = 0x18;          // PSH ACK
  uint32_t seq = 0, ack = 0;         // TCP
  uint8_t ttl = 64;                  // IPv4 TTL, IPv6 hop limit
  int icmp_type = -1, icmp_code = 0;  // -1: echo request of the family
  uint8_t flow = 0;                  // classify::FlowBits the packet path would attach
};

inline std::array<uint8_t, 16> ip16(const std::string& s) {
  std::array<uint8_t, 16> a{};
  if (s.find(':') != std::string::npos) {
    if (inet_pton(AF_INET6, s.c_str(), a.data()) != 1) throw std::invalid_argument(s);
  } else {
    a[10] = a[11] = 0xff;
    if (inet_pton(AF_INET, s.c_str(), a.data() + 12) != 1) throw std::invalid_argument(s);
  }
  return a;
}

inline void put16(std::vector<uint8_t>& v, size_t at, uint16_t x) {
  v[at] = uint8_t(x >> 8);
  v[at + 1] = uint8_t(x);
}

inline std::vector<uint8_t> build_frame(const FrameSpec& f) {
  std::vector<uint8_t> l4;
  if (f.proto == 6) {
    l4.assign(20, 0);
    put16(l4, 0, f.sport);
    put16(l4, 2, f.dport);
    l4[12] = 5 << 4;
    l4[13] = f.tcp_flags;
    for (int i = 0; i < 4; ++i) {
      l4[4 + i] = uint8_t(f.seq >> (24 - 8 * i));
      l4[8 + i] = uint8_t(f.ack >> (24 - 8 * i));
    }
  } else if (f.proto == 17) {
    l4.assign(8, 0);
    put16(l4, 0, f.sport);
    put16(l4, 2, f.dport);
    put16(l4, 4, uint16_t(8 + f.payload.size()));
  } else if (f.proto == 1 || f.proto == 58) {
    l4.assign(8, 0);
    l4[0] = f.icmp_type >= 0 ? uint8_t(f.icmp_type) : f.proto == 1 ? 8 : 128;
    l4[1] = uint8_t(f.icmp_code);
  }
  l4.insert(l4.end(), f.payload.begin(), f.payload.end());

  std::vector<uint8_t> out(12, 0x02);
  uint16_t ethertype = f.ip_version == 4 ? 0x0800 : 0x86DD;
  for (int i = 0; i < f.vlans; ++i) {
    out.push_back(i == 0 && f.vlans == 2 ? 0x88 : 0x81);
    out.push_back(i == 0 && f.vlans == 2 ? 0xa8 : 0x00);
    out.push_back(0);
    out.push_back(uint8_t(10 + i));
  }
  out.push_back(uint8_t(ethertype >> 8));
  out.push_back(uint8_t(ethertype));
  size_t l3 = out.size();
  if (f.ip_version == 4) {
    size_t ihl = 20 + size_t(f.ipv4_options);
    out.resize(l3 + ihl, 1);  // options: NOPs
    out[l3] = uint8_t(0x40 | (ihl / 4));
    out[l3 + 1] = 0;
    put16(out, l3 + 2, uint16_t(ihl + l4.size()));
    put16(out, l3 + 4, 0);
    put16(out, l3 + 6, 0x4000);  // DF
    out[l3 + 8] = f.ttl;
    out[l3 + 9] = f.proto;
    put16(out, l3 + 10, 0);
    std::memcpy(&out[l3 + 12], f.src.data() + 12, 4);
    std::memcpy(&out[l3 + 16], f.dst.data() + 12, 4);
  } else {
    out.resize(l3 + 40, 0);
    out[l3] = 0x60;
    put16(out, l3 + 4, uint16_t(l4.size() + 8 * f.ipv6_ext.size()));
    out[l3 + 6] = f.ipv6_ext.empty() ? f.proto : f.ipv6_ext[0];
    out[l3 + 7] = f.ttl;
    std::memcpy(&out[l3 + 8], f.src.data(), 16);
    std::memcpy(&out[l3 + 24], f.dst.data(), 16);
    for (size_t i = 0; i < f.ipv6_ext.size(); ++i) {
      uint8_t next = i + 1 < f.ipv6_ext.size() ? f.ipv6_ext[i + 1] : f.proto;
      uint8_t h[8] = {next, 0, 0, 0, 0, 0, 0, 0};
      if (f.ipv6_ext[i] == 51) h[1] = 0;  // AH length (0+2)*4 = 8
      out.insert(out.end(), h, h + 8);
    }
  }
  out.insert(out.end(), l4.begin(), l4.end());
  return out;
}

}  // namespace gpo::test
