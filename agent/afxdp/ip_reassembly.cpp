#include "afxdp/ip_reassembly.h"

#include <cstring>

#include "afxdp/checksum.h"

namespace gpo::afxdp {

namespace {

constexpr uint32_t kMaxPayload = 65535;
constexpr int kMaxVlanTags = 2;      // as XDP and the frame parser
constexpr int kMaxIpv6ExtHeaders = 6;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
void wr16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}

// Where the fragment's pieces are in the frame, and what identifies its datagram.
struct FragInfo {
  bool fragment = false;
  int version = 0;
  uint32_t l3 = 0;
  uint32_t payload = 0;  // start of the fragmentable part
  uint32_t head_end = 0; // what the offset-0 fragment gives the datagram: up to the fragment header (IPv6)
  uint32_t end = 0;      // end of the IP packet (Ethernet padding excluded)
  uint32_t offset = 0;   // in bytes
  bool more = false;
  uint32_t next_proto_at = 0;  // IPv6: byte that names the fragment header
  uint8_t next_proto = 0;      // IPv6: the fragment header's next header
  std::string key;
};

bool parse(const uint8_t* d, uint32_t len, FragInfo& f) {
  if (len < 14) return false;
  uint16_t type = rd16(d + 12);
  uint32_t off = 14;
  for (int t = 0; t < kMaxVlanTags && (type == 0x8100 || type == 0x88A8); t++) {
    if (len - off < 4) return false;
    type = rd16(d + off + 2);
    off += 4;
  }
  f.l3 = off;
  // The datagram's identity includes the VLAN tags: the same id on two VLANs
  // is two datagrams.
  std::string vlans(reinterpret_cast<const char*>(d + 12), off - 12);
  if (type == 0x0800) {
    if (len - off < 20 || (d[off] >> 4) != 4) return false;
    uint32_t ihl = uint32_t(d[off] & 0x0f) * 4, total = rd16(d + off + 2);
    if (ihl < 20 || total < ihl || total > len - off) return false;
    uint16_t fo = rd16(d + off + 6);
    f.version = 4;
    f.more = fo & 0x2000;
    f.offset = uint32_t(fo & 0x1fff) * 8;
    f.fragment = f.more || f.offset != 0;
    f.payload = f.head_end = off + ihl;
    f.end = off + total;
    f.key.assign("4");
    f.key.append(reinterpret_cast<const char*>(d + off + 12), 8);  // addresses
    f.key.append(reinterpret_cast<const char*>(d + off + 9), 1);   // protocol
    f.key.append(reinterpret_cast<const char*>(d + off + 4), 2);   // identification
    f.key += vlans;
    return true;
  }
  if (type == 0x86DD) {
    if (len - off < 40 || (d[off] >> 4) != 6) return false;
    uint32_t plen = rd16(d + off + 4);
    if (plen > len - off - 40) return false;
    f.version = 6;
    f.end = off + 40 + plen;
    uint8_t nh = d[off + 6];
    uint32_t nh_at = off + 6, p = off + 40;
    for (int i = 0; i <= kMaxIpv6ExtHeaders; i++) {
      if (nh == 44) {
        if (f.end - p < 8) return false;
        uint16_t fo = rd16(d + p + 2);
        f.fragment = true;
        f.offset = fo & 0xfff8;
        f.more = fo & 1;
        f.next_proto_at = nh_at;
        f.next_proto = d[p];
        f.payload = p + 8;
        f.head_end = p;
        f.key.assign("6");
        f.key.append(reinterpret_cast<const char*>(d + off + 8), 32);  // addresses
        f.key.append(reinterpret_cast<const char*>(d + p + 4), 4);     // identification
        f.key += vlans;
        return true;
      }
      uint32_t hlen;
      if (nh == 0 || nh == 43 || nh == 60) {
        if (f.end - p < 8) return false;
        hlen = (uint32_t(d[p + 1]) + 1) * 8;
      } else if (nh == 51) {
        if (f.end - p < 8) return false;
        hlen = (uint32_t(d[p + 1]) + 2) * 4;
      } else {
        return true;  // upper layer: not a fragment
      }
      if (hlen > f.end - p) return false;
      nh_at = p;
      nh = d[p];
      p += hlen;
    }
    return false;  // a longer chain than XDP walks
  }
  return true;  // not IP: not a fragment
}

}  // namespace

bool is_ip_fragment(const uint8_t* frame, uint32_t len) {
  FragInfo f;
  return parse(frame, len, f) && f.fragment;
}

void FragmentReassembler::poison(Pending& p, uint64_t& counter) {
  counter++;
  c_.dropped_fragments += p.frames.size() + 1;  // the held ones and the one that did it
  bytes_ -= p.bytes;
  p.bytes = 0;
  p.pieces.clear();
  p.frames.clear();
  p.head.clear();
  p.poisoned = true;
}

FragmentReassembler::Result FragmentReassembler::add(const uint8_t* frame, uint32_t len, uint64_t now_ns,
                                                     Datagram& out) {
  FragInfo fi;
  if (!parse(frame, len, fi) || !fi.fragment || fi.end < fi.payload) {
    c_.invalid++;
    c_.dropped_fragments++;
    return Result::kDropped;
  }
  c_.fragments++;
  auto it = held_.find(fi.key);
  if (it == held_.end()) {
    if (held_.size() >= lim_.max_datagrams) {
      c_.over_limit++;
      c_.dropped_fragments++;
      return Result::kDropped;
    }
    it = held_.emplace(fi.key, Pending{}).first;
    it->second.first_ns = now_ns;
  }
  Pending& p = it->second;
  if (p.poisoned) {
    c_.dropped_fragments++;
    return Result::kDropped;
  }
  const uint32_t off = fi.offset, plen = fi.end - fi.payload;
  const uint8_t* bytes = frame + fi.payload;
  if (plen == 0 || (fi.more && plen % 8 != 0) || off + plen > kMaxPayload) {
    poison(p, c_.invalid);
    return Result::kDropped;
  }
  // Overlaps: any held piece that shares a byte with this one.
  auto q = p.pieces.upper_bound(off);
  if (q != p.pieces.begin()) --q;
  for (; q != p.pieces.end() && q->first < off + plen; ++q) {
    const uint32_t qo = q->first, ql = uint32_t(q->second.size());
    if (qo + ql <= off) continue;
    if (qo == off && ql == plen && std::memcmp(q->second.data(), bytes, plen) == 0) {
      c_.duplicates++;
      return Result::kHeld;
    }
    poison(p, c_.overlaps);
    return Result::kDropped;
  }
  if (!fi.more) {
    if ((p.total >= 0 && p.total != int64_t(off + plen)) ||
        (!p.pieces.empty() && std::prev(p.pieces.end())->first + std::prev(p.pieces.end())->second.size() > off + plen)) {
      poison(p, c_.invalid);
      return Result::kDropped;
    }
    p.total = off + plen;
  } else if (p.total >= 0 && int64_t(off + plen) > p.total) {
    poison(p, c_.invalid);
    return Result::kDropped;
  }
  if (p.frames.size() >= lim_.max_fragments || bytes_ + len + plen > lim_.memcap) {
    poison(p, c_.over_limit);
    return Result::kDropped;
  }
  p.pieces.emplace(off, std::vector<uint8_t>(bytes, bytes + plen));
  p.frames.emplace_back(frame, frame + len);
  p.bytes += len + plen;
  bytes_ += len + plen;
  if (off == 0) {
    p.head.assign(frame, frame + fi.head_end);
    p.l3 = fi.l3;
    p.next_proto_at = fi.next_proto_at;
    p.next_proto = fi.next_proto;
  }

  // Complete: the last fragment seen, the first one there, no hole.
  if (p.total < 0 || p.head.empty()) return Result::kHeld;
  uint32_t at = 0;
  for (const auto& [o, b] : p.pieces) {
    if (o != at) return Result::kHeld;
    at += uint32_t(b.size());
  }
  if (int64_t(at) != p.total) return Result::kHeld;
  if (!build(p, out)) {
    poison(p, c_.invalid);
    return Result::kDropped;
  }
  c_.datagrams++;
  bytes_ -= p.bytes;
  held_.erase(it);
  return Result::kComplete;
}

bool FragmentReassembler::build(Pending& p, Datagram& out) const {
  const uint32_t l3 = p.l3;
  const uint32_t total = uint32_t(p.total);
  out.frame = p.head;
  std::vector<uint8_t>& f = out.frame;
  if (f.size() < l3 + (f[l3] >> 4 == 4 ? 20u : 40u)) return false;
  if ((f[l3] >> 4) == 4) {
    const uint32_t ihl = uint32_t(f[l3] & 0x0f) * 4;
    if (ihl + total > 65535) return false;
    wr16(&f[l3 + 2], uint16_t(ihl + total));
    wr16(&f[l3 + 6], uint16_t(rd16(&f[l3 + 6]) & 0x4000));  // keep DF, clear MF and the offset
    set_ipv4_header_checksum(&f[l3]);
  } else {
    // Drop the fragment header: the header before it now names what it carried.
    if (p.next_proto_at >= f.size()) return false;
    f[p.next_proto_at] = p.next_proto;
    const uint32_t ext = uint32_t(f.size()) - (l3 + 40);
    if (ext + total > 65535) return false;
    wr16(&f[l3 + 4], uint16_t(ext + total));
  }
  for (const auto& [o, b] : p.pieces) f.insert(f.end(), b.begin(), b.end());
  out.fragments = std::move(p.frames);
  return true;
}

void FragmentReassembler::expire(uint64_t now_ns) {
  for (auto it = held_.begin(); it != held_.end();) {
    Pending& p = it->second;
    if (now_ns > p.first_ns && now_ns - p.first_ns > lim_.timeout_ns) {
      if (!p.poisoned) {
        c_.timeouts++;
        c_.dropped_fragments += p.frames.size();
      }
      bytes_ -= p.bytes;
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace gpo::afxdp
