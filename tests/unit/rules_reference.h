// A naive reference classifier and a random rule/frame generator, shared by
// the CPU classifier tests and the GPU classifier tests (tests/gpu): the
// reference works per rule, straight from the parsed rule (not the compiled
// tables), on the 5-tuple and payload the test put into each raw frame (not
// the parser's view).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/classify/classify.h"
#include "rules/rule.h"
#include "unit/rules_frames.h"

namespace gpo::test {

using classify::Verdict;
using rules::AddrSpec;
using rules::Cidr;
using rules::Content;
using rules::PortSpec;
using rules::Rule;
using rules::RuleSet;

// ---- the reference ---------------------------------------------------------

inline bool ref_cidr(const Cidr& c, const FrameSpec& f, const std::array<uint8_t, 16>& a) {
  if (c.family == 0) return true;
  if (c.family != f.ip_version) return false;
  const uint8_t* addr = f.ip_version == 4 ? a.data() + 12 : a.data();
  for (int bit = 0; bit < c.prefix_len; ++bit) {
    int mask = 0x80 >> (bit % 8);
    if ((addr[bit / 8] & mask) != (c.addr[bit / 8] & mask)) return false;
  }
  return true;
}

inline bool ref_addr(const AddrSpec& s, const FrameSpec& f, const std::array<uint8_t, 16>& a) {
  bool has_pos = false, in_pos = false, in_neg = false;
  for (auto& c : s.entries) {
    if (c.negated) {
      in_neg |= ref_cidr(c, f, a);
    } else {
      has_pos = true;
      in_pos |= ref_cidr(c, f, a);
    }
  }
  return ((!has_pos || in_pos) && !in_neg) != s.negated;
}

inline bool ref_port(const PortSpec& s, uint16_t p) {
  bool has_pos = false, in_pos = false, in_neg = false;
  for (auto& r : s.entries) {
    bool in = r.lo <= p && p <= r.hi;
    if (r.negated) {
      in_neg |= in;
    } else {
      has_pos = true;
      in_pos |= in;
    }
  }
  return ((!has_pos || in_pos) && !in_neg) != s.negated;
}

inline bool ref_proto(const Rule& r, uint8_t proto) {
  if (r.proto == "ip") return true;
  if (r.proto == "tcp") return proto == 6;
  if (r.proto == "udp") return proto == 17;
  if (r.proto == "icmp") return proto == 1 || proto == 58;
  if (r.proto == "icmpv4") return proto == 1;
  if (r.proto == "icmpv6") return proto == 58;
  return false;
}

inline bool ref_at(const std::string& hay, size_t s, const Content& c) {
  auto low = [](unsigned char x) { return (x >= 'A' && x <= 'Z') ? x + 32 : x; };
  for (size_t i = 0; i < c.bytes.size(); ++i)
    if (c.nocase ? low(hay[s + i]) != low(c.bytes[i]) : hay[s + i] != c.bytes[i]) return false;
  return true;
}

// Every assignment of occurrences to the contents, tried in full (no pruning,
// no chains): the contents hold when one assignment satisfies every window.
inline bool ref_contents(const std::vector<Content>& cs, size_t k, long prev_end, const std::string& buf,
                         size_t payload_len) {
  if (k == cs.size()) return true;
  const Content& c = cs[k];
  const long n = long(buf.size()), len = long(c.bytes.size());
  long lo = 0, hi = n;
  if (c.relative()) {
    lo = std::max(0L, prev_end + c.distance);
    if (c.has_within) {
      long end = prev_end + c.distance + c.within;
      if (end >= 0 && end < hi) hi = end;  // Suricata: an end below 0 wraps to "no limit"
    }
  } else {
    lo = c.has_offset ? long(c.offset) : 0;
    if (c.has_depth) hi = std::min(n, lo + long(c.depth));
  }
  bool found = false;
  for (long s = lo; s + len <= hi && !found; ++s) {
    if (!ref_at(buf, size_t(s), c)) continue;
    if (c.negated) {
      found = true;
      break;
    }
    if (c.isdataat_rel >= 0 && size_t(s + len) + size_t(c.isdataat_rel) > payload_len) continue;
    if (ref_contents(cs, k + 1, s + len, buf, payload_len)) return true;
  }
  if (c.negated) return !found && ref_contents(cs, k + 1, prev_end, buf, payload_len);
  return false;
}

inline bool ref_uint(const classify::UintTest& t, uint32_t v) {
  switch (t.op) {
    case classify::kUintAny: return true;
    case classify::kUintEq: return v == t.a;
    case classify::kUintNe: return v != t.a;
    case classify::kUintLt: return v < t.a;
    case classify::kUintLe: return v <= t.a;
    case classify::kUintGt: return v > t.a;
    case classify::kUintGe: return v >= t.a;
    case classify::kUintRange: return t.a < v && v < t.b;
    case classify::kUintNotRange: return !(t.a < v && v < t.b);
    case classify::kUintMaskEq: return (v & t.a) == t.b;
    case classify::kUintMaskNe: return (v & t.a) != t.b;
  }
  return false;
}

inline bool ref_header(const Rule& r, const FrameSpec& f, bool swap) {
  const bool ported = f.proto == 6 || f.proto == 17;
  uint16_t sp = ported ? f.sport : 0, dp = ported ? f.dport : 0;
  const auto& src = swap ? f.dst : f.src;
  const auto& dst = swap ? f.src : f.dst;
  if (swap) std::swap(sp, dp);
  if (!ref_proto(r, f.proto)) return false;
  bool fwd = ref_addr(r.src, f, src) && ref_addr(r.dst, f, dst) && ref_port(r.sport, sp) && ref_port(r.dport, dp);
  bool rev = r.bidirectional && ref_addr(r.src, f, dst) && ref_addr(r.dst, f, src) && ref_port(r.sport, dp) &&
             ref_port(r.dport, sp);
  return fwd || rev;
}

// The packet tests, straight from the frame description.
inline bool ref_packet(const Rule& r, const FrameSpec& f) {
  if ((f.flow & r.flow_set) != r.flow_set || (f.flow & r.flow_clear) != 0) return false;
  const bool icmp = f.proto == 1 || f.proto == 58;
  const uint32_t type = f.icmp_type >= 0 ? uint32_t(f.icmp_type) : f.proto == 1 ? 8 : 128;
  if (r.icmp_only && !icmp) return false;
  if (r.tcp_flags.op != classify::kUintAny && (f.proto != 6 || !ref_uint(r.tcp_flags, f.tcp_flags))) return false;
  return ref_uint(r.dsize, uint32_t(f.payload.size())) && ref_uint(r.itype, icmp ? type : 0) &&
         ref_uint(r.icode, icmp ? uint32_t(f.icmp_code) : 0) && ref_uint(r.ttl, f.ttl) &&
         ref_uint(r.isdataat, uint32_t(f.payload.size()));
}

inline Verdict reference(const RuleSet& set, const FrameSpec& f, uint32_t depth) {
  bool cacheable = true;
  std::string inspected = f.payload.substr(0, depth);
  size_t decided = set.rules.size();
  Verdict v{0, set.default_action, true};
  for (size_t i = 0; i < set.rules.size(); ++i) {
    const Rule& r = set.rules[i];
    if (!ref_header(r, f, false) || !ref_uint(r.ip_proto, f.proto)) continue;
    if (!ref_packet(r, f) || !ref_contents(r.contents, 0, 0, inspected, f.payload.size())) {
      cacheable = false;
      continue;
    }
    v = Verdict{r.sid, r.action, true};
    decided = i;
    break;
  }
  // The cached verdict also answers the other direction.
  for (size_t i = 0; i < decided && cacheable; ++i)
    if (ref_header(set.rules[i], f, true) && ref_uint(set.rules[i].ip_proto, f.proto)) cacheable = false;
  v.cacheable = cacheable;
  return v;
}

struct Gen {
  std::mt19937 rng;
  explicit Gen(uint32_t seed) : rng(seed) {}
  uint32_t n(uint32_t k) { return rng() % k; }
  bool coin(int one_in = 2) { return n(one_in) == 0; }

  const std::vector<std::string> v4 = {"198.18.0.1", "198.18.0.2", "198.18.1.7", "198.19.255.1", "10.0.0.1"};
  const std::vector<std::string> v6 = {"2001:db8::1", "2001:db8::2", "2001:db8:1::9", "fd00::1"};
  const std::vector<std::string> words = {"abc", "GET", "get", "xyz", "aB", "zz", "Host:", "q"};
  const std::vector<uint16_t> port_pool = {22, 53, 80, 443, 1000, 1005, 1010, 65535};

  std::string cidr() {
    static const char* pool[] = {"198.18.0.0/16", "198.18.0.0/24", "198.18.0.1", "198.18.1.0/24", "198.19.0.0/16",
                                 "10.0.0.0/8",    "0.0.0.0/0",     "2001:db8::/32", "2001:db8::1", "2001:db8:1::/48",
                                 "fd00::/8",      "::/0",          "198.18.0.2/31", "2001:db8::/127"};
    return pool[n(sizeof pool / sizeof *pool)];
  }
  std::string addr_spec() {
    switch (n(6)) {
      case 0:
      case 1: return "any";
      case 2: return cidr();
      case 3: return "!" + cidr();
      case 4: return "$NET";
      default: {
        std::string s = coin(4) ? "![" : "[";
        int k = 1 + int(n(3));
        for (int i = 0; i < k; ++i) s += (i ? ", " : "") + std::string(i && coin(3) ? "!" : "") + cidr();
        return s + "]";
      }
    }
  }
  std::string port() {
    switch (n(4)) {
      case 0: return std::to_string(port_pool[n(port_pool.size())]);
      case 1: {
        uint16_t a = port_pool[n(port_pool.size())], b = port_pool[n(port_pool.size())];
        return std::to_string(std::min(a, b)) + ":" + std::to_string(std::max(a, b));
      }
      case 2: return std::to_string(port_pool[n(port_pool.size())]) + ":";
      default: return ":" + std::to_string(port_pool[n(port_pool.size())]);
    }
  }
  std::string port_spec() {
    switch (n(5)) {
      case 0:
      case 1: return "any";
      case 2: return port();
      case 3: return "!" + port();
      default: {
        std::string s = "[";
        int k = 1 + int(n(3));
        for (int i = 0; i < k; ++i) s += (i ? "," : "") + std::string(i && coin(3) ? "!" : "") + port();
        return s + "]";
      }
    }
  }
  // rich: also flow, dsize, flags, itype/icode, ttl, ip_proto, isdataat and
  // content windows (offset/depth/distance/within, relative isdataat).
  bool rich = false;
  bool prev_positive = false;  // the previous content of the rule being made is positive

  std::string content() {
    std::string w = words[n(words.size())];
    std::string s = "content:";
    const bool neg = coin(6);
    if (neg) s += "!";
    if (coin(5)) {
      s += "\"|";
      for (unsigned char ch : w) s += fmt_hex(ch) + " ";
      s += "|\"";
    } else {
      s += "\"" + w + "\"";
    }
    s += ";";
    if (coin(3)) s += " nocase;";
    if (rich) {
      const int len = int(w.size());
      if (coin(3)) {
        if (coin(2)) s += " offset:" + std::to_string(n(6)) + ";";
        if (coin(2)) s += " depth:" + std::to_string(len + int(n(10))) + ";";
      } else if (!neg && prev_positive && coin(2)) {
        if (coin(3)) s += " distance:" + std::to_string(int(n(8)) - 3) + ";";
        if (coin(2)) s += " within:" + std::to_string(len + int(n(8))) + ";";
        else if (s.find("distance") == std::string::npos) s += " distance:0;";
      }
      if (!neg && coin(6)) s += " isdataat:" + std::to_string(n(6)) + ",relative;";
    }
    prev_positive = !neg;
    return s;
  }
  std::string packet_options(const std::string& proto) {
    std::string s;
    static const char* flows[] = {"established,to_server", "to_server", "to_client", "established",
                                  "not_established", "from_server,established", "stateless"};
    if (coin(2)) s += std::string("flow:") + flows[n(7)] + "; ";
    if (coin(5)) s += "dsize:" + std::string(coin(2) ? ">" : "<") + std::to_string(1 + n(20)) + "; ";
    if ((proto == "tcp" || proto == "ip") && coin(4)) {
      static const char* fl[] = {"S", "SA", "A+", "*SF", "!R", "PA,12", "0", "S,CE"};
      s += std::string("flags:") + fl[n(8)] + "; ";
    }
    if ((proto == "icmp" || proto == "icmpv4" || proto == "ip") && coin(5))
      s += std::string(coin(2) ? "itype:" : "icode:") + (coin(2) ? "8" : "<4") + "; ";
    if (coin(6)) s += std::string("ttl:") + (coin(2) ? ">64" : "1-200") + "; ";
    if (proto == "ip" && coin(6)) s += std::string("ip_proto:") + (coin(2) ? "47" : "!tcp") + "; ";
    if (coin(8)) s += std::string("isdataat:") + (coin(2) ? "!" : "") + std::to_string(n(12)) + "; ";
    return s;
  }
  static std::string fmt_hex(unsigned char c) {
    const char* h = "0123456789ABCDEF";
    return {h[c >> 4], h[c & 15]};
  }
  std::string rule(uint32_t sid) {
    static const char* actions[] = {"pass", "drop", "alert"};
    static const char* protos[] = {"ip", "tcp", "udp", "icmp", "icmpv4", "icmpv6"};
    std::string proto = protos[n(6)];
    bool ported = proto == "tcp" || proto == "udp";
    std::string s = std::string(actions[n(3)]) + " " + proto + " " + addr_spec() + " " +
                    (ported ? port_spec() : "any") + (coin(5) ? " <> " : " -> ") + addr_spec() + " " +
                    (ported ? port_spec() : "any") + " (msg:\"r\"; ";
    if (rich) s += packet_options(proto);
    prev_positive = false;
    int contents = coin(2) ? 0 : 1 + int(n(3));
    for (int i = 0; i < contents; ++i) s += content() + " ";
    return s + "sid:" + std::to_string(sid) + "; rev:1;)\n";
  }
  FrameSpec frame() {
    FrameSpec f;
    f.ip_version = coin(3) ? 6 : 4;
    auto& pool = f.ip_version == 4 ? v4 : v6;
    f.src = ip16(pool[n(pool.size())]);
    f.dst = ip16(pool[n(pool.size())]);
    static const uint8_t protos4[] = {6, 17, 1, 47}, protos6[] = {6, 17, 58, 47};
    f.proto = (f.ip_version == 4 ? protos4 : protos6)[n(4)];
    f.sport = coin(2) ? port_pool[n(port_pool.size())] : uint16_t(n(65536));
    f.dport = coin(2) ? port_pool[n(port_pool.size())] : uint16_t(n(65536));
    if (f.proto != 6 && f.proto != 17) f.sport = f.dport = 0;
    int pieces = int(n(6));
    for (int i = 0; i < pieces; ++i) f.payload += coin(2) ? words[n(words.size())] : std::string(n(6), char('a' + n(26)));
    if (coin(8)) f.payload += std::string("\x00\xff", 2);
    f.vlans = int(n(3));
    if (f.ip_version == 4 && coin(4)) f.ipv4_options = 4 * int(1 + n(10));
    if (f.ip_version == 6 && coin(4)) f.ipv6_ext = {0, 60};
    if (rich) {
      static const uint8_t flags[] = {0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0xc2, 0x00};
      static const uint8_t ttls[] = {1, 64, 128, 255};
      static const int types[] = {0, 3, 8, 11, 128, 129};
      static const uint8_t flows[] = {0, 1, 2, 5, 6};
      f.tcp_flags = flags[n(8)];
      f.ttl = ttls[n(4)];
      f.icmp_type = types[n(6)];
      f.icmp_code = int(n(2));
      f.flow = flows[n(5)];
      // Repeated words give the position search several occurrences to choose from.
      if (coin(3)) f.payload += f.payload;
    }
    return f;
  }
};


}  // namespace gpo::test
