#include "bench/classify_workload.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <random>

namespace gpo::bench {
namespace {

const uint16_t kPorts[] = {21, 22, 23, 25, 53, 80, 110, 123, 143, 443, 445, 993, 1433, 3306, 3389, 5060, 8080, 8443};

std::string hex_escape(const std::string& s) {
  static const char* h = "0123456789ABCDEF";
  std::string out = "|";
  for (unsigned char c : s) {
    out += h[c >> 4];
    out += h[c & 15];
    out += ' ';
  }
  out.back() = '|';
  return out;
}

struct Net {  // the address plan both generators share
  static std::string v4_host(std::mt19937& r, bool home) {
    return home ? "198.18." + std::to_string(r() % 256) + "." + std::to_string(r() % 256)
                : "10." + std::to_string(r() % 64) + "." + std::to_string(r() % 256) + "." + std::to_string(r() % 256);
  }
  static std::string v6_host(std::mt19937& r, bool home) {
    char b[64];
    std::snprintf(b, sizeof b, "%s:%x::%x", home ? "fd00" : "2001:db8", unsigned(r() % 64), unsigned(r() % 65536));
    return b;
  }
};

}  // namespace

std::vector<std::string> workload_patterns(const RuleSetSpec& spec) {
  std::mt19937 r(spec.seed * 7919u + 17);
  std::vector<std::string> out;
  static const char* stems[] = {"GET /", "POST ", "User-Agent: ", "cmd.exe", "/etc/passwd", "SELECT ", "<script>",
                                "eval(", "wget ", "\\x90\\x90", "admin", "login", "Host: ", "passwd", "union all"};
  while (out.size() < spec.patterns) {
    std::string p = stems[r() % (sizeof stems / sizeof *stems)];
    int extra = 3 + int(r() % 8);
    for (int i = 0; i < extra; ++i) p += char('a' + r() % 26);
    if (r() % 5 == 0) p += char(r() % 256);  // a binary byte (written as |hex|)
    out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string make_rules(const RuleSetSpec& spec) {
  std::mt19937 r(spec.seed);
  const std::vector<std::string> pats = workload_patterns(spec);
  std::string t =
      "var HOME_NET [198.18.0.0/16, fd00::/16]\n"
      "var EXTERNAL_NET !$HOME_NET\n"
      "portvar HTTP_PORTS [80,8080,8000:8010]\n";
  auto port_spec = [&]() -> std::string {
    switch (r() % 6) {
      case 0:
      case 1: return "any";
      case 2: return std::to_string(kPorts[r() % std::size(kPorts)]);
      case 3: return "$HTTP_PORTS";
      case 4: {
        unsigned a = 1024 + r() % 60000;
        return fmt::format("{}:{}", a, a + r() % 500);
      }
      default:
        return fmt::format("[{},{},!{}]", kPorts[r() % std::size(kPorts)], kPorts[r() % std::size(kPorts)],
                           kPorts[r() % std::size(kPorts)]);
    }
  };
  auto addr_spec = [&](bool v6) -> std::string {
    switch (r() % 6) {
      case 0: return "$HOME_NET";
      case 1: return "$EXTERNAL_NET";
      case 2: return "any";
      case 3: {
        std::string h = v6 ? Net::v6_host(r, r() % 2) : Net::v4_host(r, r() % 2);
        return fmt::format("{}/{}", h, v6 ? 64 + r() % 65 : 16 + r() % 17);
      }
      case 4: return v6 ? Net::v6_host(r, false) : Net::v4_host(r, false);
      default: {
        std::string s = "[";
        int n = 2 + int(r() % 3);
        for (int i = 0; i < n; ++i) {
          if (i) s += ',';
          s += v6 ? Net::v6_host(r, r() % 2) : Net::v4_host(r, r() % 2);
          s += v6 ? "/120" : "/24";
        }
        s += ']';
        return s;
      }
    }
  };
  static const char* actions[] = {"alert", "drop", "pass", "alert"};
  uint32_t next_pat = 0;
  const uint32_t content_rules = pats.empty() ? 0 : uint32_t(spec.rules * spec.content_share);
  for (uint32_t i = 0; i < spec.rules; ++i) {
    const bool v6 = r() % 4 == 0;
    const bool tcp = r() % 3 != 0;
    // Spread content rules evenly so every pattern occurs (round robin over the pool).
    const bool contents = content_rules && (uint64_t(i) * content_rules / spec.rules !=
                                            uint64_t(i + 1) * content_rules / spec.rules);
    std::string rule = std::string(actions[r() % 4]) + (tcp ? " tcp " : " udp ") + addr_spec(v6) + " " + port_spec() +
                       (r() % 10 == 0 ? " <> " : " -> ") + addr_spec(v6) + " " + port_spec() + " (msg:\"ET rule " +
                       std::to_string(i) + "\"; ";
    if (contents) {
      int n = 1 + int(r() % 2);
      if (pats.size() < 2) n = 1;
      for (int k = 0; k < n; ++k) {
        const uint32_t id = next_pat++ % uint32_t(pats.size());
        const std::string& p = pats[id];
        bool binary = std::any_of(p.begin(), p.end(), [](char c) {
          const unsigned char u = static_cast<unsigned char>(c);
          return u < 0x20 || u >= 0x7f || c == '"' || c == ';' || c == '\\' || c == '|';
        });
        rule += "content:\"" + (binary ? hex_escape(p) : p) + "\"; ";
        if (id % 3 == 0) rule += "nocase; ";  // per pattern, so the rules hold exactly `patterns` distinct ones
      }
    }
    rule += "classtype:trojan-activity; sid:" + std::to_string(2000000 + i) + "; rev:1;)\n";
    t += rule;
  }
  // Cover the patterns no rule drew (few rules, many patterns): extra content
  // rules would change the rule count, so patterns beyond the rules are unused.
  t += "default pass\n";
  return t;
}

std::vector<std::vector<uint8_t>> make_traffic(const RuleSetSpec& rs, const TrafficSpec& spec) {
  std::mt19937 r(spec.seed);
  const std::vector<std::string> pats = workload_patterns(rs);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::vector<uint8_t>> out;
  out.reserve(spec.frames);
  for (uint32_t i = 0; i < spec.frames; ++i) {
    const bool v6 = u(r) < spec.v6_share;
    const bool vlan = u(r) < spec.vlan_share;
    const bool tcp = r() % 3 != 0;
    std::vector<uint8_t> f(12, 0x02);
    if (vlan) f.insert(f.end(), {0x81, 0x00, 0x00, 0x0a});
    f.push_back(v6 ? 0x86 : 0x08);
    f.push_back(v6 ? 0xdd : 0x00);
    const size_t l3 = f.size();
    const size_t l4_len = tcp ? 20 : 8;
    const size_t ip_len = v6 ? 40 : 20;
    size_t total = std::max<size_t>(spec.frame_bytes, l3 + ip_len + l4_len);
    f.resize(total, 0);
    const size_t payload_at = l3 + ip_len + l4_len;
    const size_t plen = total - payload_at;
    auto put16 = [&](size_t at, uint16_t v) {
      f[at] = uint8_t(v >> 8);
      f[at + 1] = uint8_t(v);
    };
    auto addr = [&](uint8_t* dst, bool home) {
      std::mt19937 rr(r());
      if (v6) {
        uint8_t a[16] = {};
        if (home) a[0] = 0xfd;
        else a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8;
        a[5] = uint8_t(rr() % 64);
        a[14] = uint8_t(rr());
        a[15] = uint8_t(rr());
        std::memcpy(dst, a, 16);
      } else {
        uint8_t a[4] = {uint8_t(home ? 198 : 10), uint8_t(home ? 18 : rr() % 64), uint8_t(rr()), uint8_t(rr())};
        std::memcpy(dst, a, 4);
      }
    };
    const bool src_home = r() % 2;
    if (v6) {
      f[l3] = 0x60;
      put16(l3 + 4, uint16_t(l4_len + plen));
      f[l3 + 6] = tcp ? 6 : 17;
      f[l3 + 7] = 64;
      addr(&f[l3 + 8], src_home);
      addr(&f[l3 + 24], !src_home);
    } else {
      f[l3] = 0x45;
      put16(l3 + 2, uint16_t(ip_len + l4_len + plen));
      put16(l3 + 6, 0x4000);
      f[l3 + 8] = 64;
      f[l3 + 9] = tcp ? 6 : 17;
      addr(&f[l3 + 12], src_home);
      addr(&f[l3 + 16], !src_home);
    }
    const size_t l4 = l3 + ip_len;
    auto port = [&]() -> uint16_t {
      return r() % 2 ? kPorts[r() % std::size(kPorts)] : uint16_t(1024 + r() % 64000);
    };
    put16(l4, port());
    put16(l4 + 2, port());
    if (tcp) {
      f[l4 + 12] = 5 << 4;
      f[l4 + 13] = 0x18;
    } else {
      put16(l4 + 4, uint16_t(8 + plen));
    }
    uint64_t x = r() | 1;  // xorshift: printable filler, fast enough for 100 MB batches
    for (size_t k = 0; k < plen; ++k) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      f[payload_at + k] = uint8_t(' ' + (x >> 32) % 95);
    }
    if (!pats.empty() && u(r) < spec.pattern_share) {
      const std::string& p = pats[r() % pats.size()];
      if (p.size() <= plen) std::memcpy(&f[payload_at + r() % (plen - p.size() + 1)], p.data(), p.size());
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace gpo::bench
