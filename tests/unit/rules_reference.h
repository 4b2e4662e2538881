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

inline bool ref_contains(const std::string& hay, const Content& c) {
  auto low = [](unsigned char x) { return (x >= 'A' && x <= 'Z') ? x + 32 : x; };
  for (size_t s = 0; s + c.bytes.size() <= hay.size(); ++s) {
    bool eq = true;
    for (size_t i = 0; i < c.bytes.size() && eq; ++i)
      eq = c.nocase ? low(hay[s + i]) == low(c.bytes[i]) : hay[s + i] == c.bytes[i];
    if (eq) return true;
  }
  return false;
}

inline Verdict reference(const RuleSet& set, const FrameSpec& f, uint32_t depth) {
  bool cacheable = true;
  bool ported = f.proto == 6 || f.proto == 17;
  uint16_t sp = ported ? f.sport : 0, dp = ported ? f.dport : 0;
  std::string inspected = f.payload.substr(0, depth);
  for (const Rule& r : set.rules) {
    if (!ref_proto(r, f.proto)) continue;
    bool fwd = ref_addr(r.src, f, f.src) && ref_addr(r.dst, f, f.dst) && ref_port(r.sport, sp) && ref_port(r.dport, dp);
    bool rev = r.bidirectional && ref_addr(r.src, f, f.dst) && ref_addr(r.dst, f, f.src) && ref_port(r.sport, dp) &&
               ref_port(r.dport, sp);
    if (!fwd && !rev) continue;
    bool all = true;
    for (const Content& c : r.contents) all = all && (ref_contains(inspected, c) != c.negated);
    if (!all) {
      cacheable = false;
      continue;
    }
    return Verdict{r.sid, r.action, cacheable};
  }
  return Verdict{0, set.default_action, cacheable};
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
  std::string content() {
    std::string w = words[n(words.size())];
    std::string s = "content:";
    if (coin(6)) s += "!";
    if (coin(5)) {
      s += "\"|";
      for (unsigned char ch : w) s += fmt_hex(ch) + " ";
      s += "|\"";
    } else {
      s += "\"" + w + "\"";
    }
    s += ";";
    if (coin(3)) s += " nocase;";
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
    return f;
  }
};


}  // namespace gpo::test
