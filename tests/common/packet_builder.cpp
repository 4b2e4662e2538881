#include "common/packet_builder.h"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

namespace gpo::test {

Addr16 addr16(const std::string& ip) {
  Addr16 a{};
  in_addr v4;
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
    a[10] = a[11] = 0xff;
    std::memcpy(&a[12], &v4, 4);
    return a;
  }
  if (inet_pton(AF_INET6, ip.c_str(), a.data()) == 1) return a;
  throw std::invalid_argument("not an IP address: " + ip);
}

namespace {

bool is_v4(const Addr16& a) {
  for (int i = 0; i < 10; i++)
    if (a[i]) return false;
  return a[10] == 0xff && a[11] == 0xff;
}

void put16(std::vector<uint8_t>& p, size_t off, uint16_t v) {
  p[off] = uint8_t(v >> 8);
  p[off + 1] = uint8_t(v);
}

uint32_t sum16(const uint8_t* d, size_t n, uint32_t s = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) s += uint32_t(d[i]) << 8 | d[i + 1];
  if (n & 1) s += uint32_t(d[n - 1]) << 8;
  return s;
}

uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

uint8_t proto_of(const std::string& kind) {
  if (kind == "tcp") return 6;
  if (kind == "udp") return 17;
  if (kind == "icmp") return 1;
  if (kind == "icmpv6") return 58;
  return 0;
}

}  // namespace

PacketBuilder& PacketBuilder::eth(Mac src, Mac dst, uint16_t ethertype) {
  Layer l;
  l.kind = "eth";
  l.src_mac = src;
  l.dst_mac = dst;
  l.u16a = ethertype;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::vlan(uint16_t vid, uint16_t tpid) {
  Layer l;
  l.kind = "vlan";
  l.u16a = tpid;
  l.u16b = vid & 0x0fff;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::ipv4(const std::string& src, const std::string& dst, size_t options_len, uint8_t ttl) {
  if (options_len % 4 || options_len > 40) throw std::invalid_argument("IPv4 options: multiple of 4, at most 40");
  Layer l;
  l.kind = "ipv4";
  l.src = addr16(src);
  l.dst = addr16(dst);
  l.len = options_len;
  l.u8a = ttl;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::ipv4_frag(uint16_t offset_bytes, bool more_fragments) {
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it)
    if (it->kind == "ipv4") {
      it->u16a = offset_bytes;
      it->flag = more_fragments;
      return *this;
    }
  throw std::logic_error("ipv4_frag() before ipv4()");
}

PacketBuilder& PacketBuilder::ipv6(const std::string& src, const std::string& dst, uint8_t hop_limit) {
  Layer l;
  l.kind = "ipv6";
  l.src = addr16(src);
  l.dst = addr16(dst);
  l.u8a = hop_limit;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::ipv6_ext(Ipv6Ext type, size_t len, uint16_t frag_offset_bytes, bool more_fragments) {
  if (type == kFragment) len = 8;
  if (len < 8 || (type != kAuth && len % 8) || (type == kAuth && len % 4))
    throw std::invalid_argument("IPv6 extension header length");
  Layer l;
  l.kind = "ipv6-ext";
  l.u8a = type;
  l.len = len;
  l.u16a = frag_offset_bytes;
  l.flag = more_fragments;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t options_len) {
  if (options_len % 4 || options_len > 40) throw std::invalid_argument("TCP options: multiple of 4, at most 40");
  Layer l;
  l.kind = "tcp";
  l.u16a = sport;
  l.u16b = dport;
  l.u8a = flags;
  l.len = options_len;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::tcp_seq(uint32_t seq) {
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it)
    if (it->kind == "tcp") {
      it->u32 = seq;
      return *this;
    }
  throw std::logic_error("tcp_seq() before tcp()");
}

PacketBuilder& PacketBuilder::tcp_ack(uint32_t ack) {
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it)
    if (it->kind == "tcp") {
      it->ack = ack;
      return *this;
    }
  throw std::logic_error("tcp_ack() before tcp()");
}

PacketBuilder& PacketBuilder::udp(uint16_t sport, uint16_t dport) {
  Layer l;
  l.kind = "udp";
  l.u16a = sport;
  l.u16b = dport;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::icmp(uint8_t type, uint8_t code) {
  Layer l;
  l.kind = "icmp";
  l.u8a = type;
  l.u8b = code;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::icmpv6(uint8_t type, uint8_t code) {
  Layer l;
  l.kind = "icmpv6";
  l.u8a = type;
  l.u8b = code;
  layers_.push_back(l);
  return *this;
}

PacketBuilder& PacketBuilder::ip_proto(uint8_t proto) {
  ip_proto_ = proto;
  return *this;
}

PacketBuilder& PacketBuilder::payload(const std::string& bytes) {
  return payload(std::vector<uint8_t>(bytes.begin(), bytes.end()));
}

PacketBuilder& PacketBuilder::payload(const std::vector<uint8_t>& bytes) {
  Layer l;
  l.kind = "payload";
  l.bytes = bytes;
  layers_.push_back(l);
  return *this;
}

std::vector<uint8_t> PacketBuilder::build() const { return serialize(nullptr); }

std::vector<PacketBuilder::Boundary> PacketBuilder::boundaries() const {
  std::vector<Boundary> b;
  serialize(&b);
  return b;
}

std::vector<uint8_t> PacketBuilder::serialize(std::vector<Boundary>* bounds) const {
  std::vector<uint8_t> p;
  std::vector<size_t> off(layers_.size());
  // What a header announces as its successor.
  auto next_kind = [&](size_t i) { return i + 1 < layers_.size() ? layers_[i + 1].kind : std::string(); };
  auto next_ethertype = [&](size_t i) -> uint16_t {
    std::string k = next_kind(i);
    if (k == "vlan") return layers_[i + 1].u16a;
    if (k == "ipv4") return 0x0800;
    if (k == "ipv6") return 0x86dd;
    return 0x88b5;  // IEEE local experimental: clearly not IP
  };
  auto next_proto = [&](size_t i) -> uint8_t {
    std::string k = next_kind(i);
    if (k == "ipv6-ext") return layers_[i + 1].u8a;
    if (uint8_t pr = proto_of(k)) return pr;
    return ip_proto_ >= 0 ? uint8_t(ip_proto_) : 59;  // 59: IPv6 "no next header"
  };

  for (size_t i = 0; i < layers_.size(); i++) {
    const Layer& l = layers_[i];
    off[i] = p.size();
    if (l.kind == "eth") {
      p.insert(p.end(), l.dst_mac.begin(), l.dst_mac.end());
      p.insert(p.end(), l.src_mac.begin(), l.src_mac.end());
      p.resize(p.size() + 2);
      put16(p, off[i] + 12, l.u16a ? l.u16a : next_ethertype(i));
    } else if (l.kind == "vlan") {
      p.resize(p.size() + 4);
      put16(p, off[i], l.u16b);
      put16(p, off[i] + 2, next_ethertype(i));
      // The TPID sits in the previous header's ethertype field (set there).
    } else if (l.kind == "ipv4") {
      size_t hl = 20 + l.len;
      p.resize(p.size() + hl, 0);
      uint8_t* h = &p[off[i]];
      h[0] = uint8_t(0x40 | (hl / 4));
      h[6] = uint8_t(((l.flag ? 0x2000 : 0) | (l.u16a / 8)) >> 8);
      h[7] = uint8_t(l.u16a / 8);
      h[8] = l.u8a;
      h[9] = next_proto(i);
      std::memcpy(h + 12, &l.src[12], 4);
      std::memcpy(h + 16, &l.dst[12], 4);
      for (size_t o = 20; o < hl; o++) h[o] = 1;  // NOP options
    } else if (l.kind == "ipv6") {
      p.resize(p.size() + 40, 0);
      uint8_t* h = &p[off[i]];
      h[0] = 0x60;
      h[6] = next_proto(i);
      h[7] = l.u8a;
      std::memcpy(h + 8, l.src.data(), 16);
      std::memcpy(h + 24, l.dst.data(), 16);
    } else if (l.kind == "ipv6-ext") {
      p.resize(p.size() + l.len, 0);
      uint8_t* h = &p[off[i]];
      h[0] = next_proto(i);
      if (l.u8a == kFragment) {
        uint16_t fo = uint16_t((l.u16a & 0xfff8) | (l.flag ? 1 : 0));
        h[2] = uint8_t(fo >> 8);
        h[3] = uint8_t(fo);
        h[7] = 0x2a;  // identification
      } else if (l.u8a == kAuth) {
        h[1] = uint8_t(l.len / 4 - 2);
      } else {
        h[1] = uint8_t(l.len / 8 - 1);
        h[2] = 1;  // one PadN option filling the rest
        h[3] = uint8_t(l.len - 4);
      }
    } else if (l.kind == "tcp") {
      size_t hl = 20 + l.len;
      p.resize(p.size() + hl, 0);
      uint8_t* h = &p[off[i]];
      put16(p, off[i], l.u16a);
      put16(p, off[i] + 2, l.u16b);
      h[4] = uint8_t(l.u32 >> 24);  // sequence number
      h[5] = uint8_t(l.u32 >> 16);
      h[6] = uint8_t(l.u32 >> 8);
      h[7] = uint8_t(l.u32);
      h[8] = uint8_t(l.ack >> 24);  // acknowledgement number
      h[9] = uint8_t(l.ack >> 16);
      h[10] = uint8_t(l.ack >> 8);
      h[11] = uint8_t(l.ack);
      h[12] = uint8_t((hl / 4) << 4);
      h[13] = l.u8a;
      put16(p, off[i] + 14, 65535);
      for (size_t o = 20; o < hl; o++) p[off[i] + o] = 1;  // NOP options
    } else if (l.kind == "udp") {
      p.resize(p.size() + 8, 0);
      put16(p, off[i], l.u16a);
      put16(p, off[i] + 2, l.u16b);
    } else if (l.kind == "icmp" || l.kind == "icmpv6") {
      p.resize(p.size() + 8, 0);
      p[off[i]] = l.u8a;
      p[off[i] + 1] = l.u8b;
      p[off[i] + 5] = 1;  // identifier 1
      p[off[i] + 7] = 1;  // sequence 1
    } else if (l.kind == "payload") {
      p.insert(p.end(), l.bytes.begin(), l.bytes.end());
    }
    if (bounds) bounds->push_back({l.kind, off[i], p.size() - off[i]});
  }

  // Lengths and checksums, inner to outer so the IP pseudo-header sees final lengths.
  for (size_t i = layers_.size(); i-- > 0;) {
    const Layer& l = layers_[i];
    size_t o = off[i], rest = p.size() - o;
    if (l.kind == "udp") put16(p, o + 4, uint16_t(rest));
    if (l.kind == "ipv4") {
      put16(p, o + 2, uint16_t(rest));
      put16(p, o + 10, 0);
      put16(p, o + 10, fold(sum16(&p[o], 20 + l.len)));
    }
    if (l.kind == "ipv6") put16(p, o + 4, uint16_t(rest - 40));
  }
  for (size_t i = 0; i < layers_.size(); i++) {
    const Layer& l = layers_[i];
    if (l.kind != "tcp" && l.kind != "udp" && l.kind != "icmp" && l.kind != "icmpv6") continue;
    size_t o = off[i], seg = p.size() - o;
    int ipi = -1;
    for (size_t j = i; j-- > 0;)
      if (layers_[j].kind == "ipv4" || layers_[j].kind == "ipv6") {
        ipi = int(j);
        break;
      }
    size_t csum_at = o + (l.kind == "tcp" ? 16 : l.kind == "udp" ? 6 : 2);
    put16(p, csum_at, 0);
    uint32_t s = 0;
    if (l.kind != "icmp" && ipi >= 0) {  // pseudo-header (ICMPv4 has none)
      const Layer& ip = layers_[ipi];
      if (is_v4(ip.src)) {
        s = sum16(&ip.src[12], 4, s);
        s = sum16(&ip.dst[12], 4, s);
      } else {
        s = sum16(ip.src.data(), 16, s);
        s = sum16(ip.dst.data(), 16, s);
      }
      s += proto_of(l.kind);
      s += uint32_t(seg);
    }
    s = sum16(&p[o], seg, s);
    uint16_t c = fold(s);
    if (l.kind == "udp" && c == 0) c = 0xffff;
    put16(p, csum_at, c);
  }
  return p;
}

}  // namespace gpo::test
