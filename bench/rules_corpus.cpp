#include "bench/rules_corpus.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

namespace gpo::bench {
namespace {

// Rule shapes, per 1000 rules (docs/rule-compiler.md, "The test corpus"). The
// loadable ones are about a quarter, as in a public set where most rules
// inspect app-layer buffers.
enum Shape {
  kHttpBuffer,     // alert http ... http.uri / http.user_agent / http.header; content
  kTlsSni,         // alert tls ... tls.sni; content
  kDnsQuery,       // alert dns ... dns.query; content
  kOtherApp,       // alert smb/ftp/smtp/ssh/krb5 ...
  kFlowbits,       // tcp, flowbits:set/isset
  kPcre,           // tcp/udp, content + pcre
  kByteOps,        // byte_test / byte_jump / byte_extract
  kThreshold,      // ip address-list rules with threshold
  kTcpPayload,     // tcp flow:established,to_server; content (+ offset/depth, distance/within, isdataat)
  kTcpReply,       // tcp flow:established,from_server; content
  kUdpPayload,     // udp content + dsize
  kIpList,         // ip address-list rule without threshold
  kIcmp,           // icmp itype/icode (+ content)
  kScan,           // tcp flags + flow:stateless
  kNumShapes
};
constexpr uint32_t kPerMille[kNumShapes] = {390, 70, 80, 40, 40, 60, 25, 45, 150, 30, 30, 20, 10, 10};
static_assert([] {
  uint32_t s = 0;
  for (uint32_t x : kPerMille) s += x;
  return s == 1000;
}());

const char* kWords[] = {"cmd.exe", "/bin/sh", "wget ", "passwd", "SELECT ", "admin", "login", "PK|03 04|",
                        "MZ|90 00|", "|ff|SMB", "USER ", "PASS ", "|00 00 00|", "eval(", "union", "shell",
                        "beacon", "HELO ", "/etc/", "|de ad be ef|", "POST ", "Accept", "token=", "id="};

std::string decode(const std::string& w) {  // |hex| -> bytes
  std::string out;
  bool hex = false;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] == '|') {
      hex = !hex;
    } else if (hex) {
      if (w[i] == ' ') continue;
      out += char(std::stoi(w.substr(i, 2), nullptr, 16));
      ++i;
    } else {
      out += w[i];
    }
  }
  return out;
}

}  // namespace

Corpus make_et_corpus(uint32_t count, uint32_t seed) {
  std::mt19937 r(seed);
  auto n = [&](uint32_t k) { return uint32_t(r() % k); };
  Corpus c;
  const char* ports[] = {"$HTTP_PORTS", "445", "[139,445]", "21", "25", "any", "1024:", "$SSH_PORTS", "[80,8080,8000:8010]"};
  const uint16_t port_value[] = {80, 445, 139, 21, 25, 4444, 2000, 22, 8005};
  // Shapes in proportion, shuffled.
  std::vector<Shape> shapes;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t x = uint32_t(uint64_t(i) * 1000 / count), acc = 0;
    int s = 0;
    while (x >= acc + kPerMille[s]) acc += kPerMille[s++];
    shapes.push_back(Shape(s));
  }
  std::shuffle(shapes.begin(), shapes.end(), r);
  const std::string meta = "classtype:trojan-activity; reference:url,example.org/a; metadata:created_at 2024_01_01;";
  for (uint32_t i = 0; i < count; ++i) {
    CorpusRule cr;
    cr.sid = 2000000 + i;
    const std::string tail = fmt::format("{} sid:{}; rev:{};", meta, cr.sid, 1 + n(9));
    const std::string msg = fmt::format("msg:\"ET corpus {}\";", i);
    // Stems of real signatures plus a few random letters: thousands of
    // distinct patterns, as in a public set.
    auto word = [&] {
      std::string w = kWords[n(sizeof kWords / sizeof *kWords)];
      for (uint32_t k = 0, len = 2 + n(5); k < len; ++k) w += char('a' + n(26));
      return w;
    };
    std::string w = word(), w2 = word();
    std::string line;
    switch (shapes[i]) {
      case kHttpBuffer: {
        const char* buf[] = {"http.uri", "http.user_agent", "http.header", "http.method", "http.host"};
        const char* b = buf[n(5)];
        line = fmt::format("alert http $HOME_NET any -> $EXTERNAL_NET any ({} flow:established,to_server; {}; "
                           "content:\"{}\"; fast_pattern; {})",
                           msg, b, w, tail);
        cr.reason = "protocol http";
        break;
      }
      case kTlsSni:
        line = fmt::format("alert tls $HOME_NET any -> $EXTERNAL_NET any ({} flow:established,to_server; tls.sni; "
                           "content:\"{}\"; nocase; endswith; {})",
                           msg, w, tail);
        cr.reason = "protocol tls";
        break;
      case kDnsQuery:
        line = fmt::format("alert dns $HOME_NET any -> any any ({} dns.query; content:\"{}\"; nocase; {})", msg, w, tail);
        cr.reason = "protocol dns";
        break;
      case kOtherApp: {
        const char* p[] = {"smb", "ftp", "smtp", "ssh", "krb5"};
        std::string proto = p[n(5)];
        line = fmt::format("alert {} $EXTERNAL_NET any -> $HOME_NET any ({} flow:established,to_server; content:\"{}\"; {})",
                           proto, msg, w, tail);
        cr.reason = "protocol " + proto;
        break;
      }
      case kFlowbits:
        line = fmt::format("alert tcp $HOME_NET any -> $EXTERNAL_NET any ({} flow:established,to_server; "
                           "content:\"{}\"; flowbits:set,ET.corpus.{}; flowbits:noalert; {})",
                           msg, w, i, tail);
        cr.reason = "flowbits";
        break;
      case kPcre:
        line = fmt::format("alert tcp $EXTERNAL_NET any -> $HOME_NET {} ({} flow:established,to_server; "
                           "content:\"{}\"; pcre:\"/^[a-z]{{3,}}\\x3b/Ri\"; {})",
                           ports[n(9)], msg, w, tail);
        cr.reason = "pcre";
        break;
      case kByteOps:
        line = fmt::format("alert tcp $EXTERNAL_NET any -> $HOME_NET 445 ({} flow:established,to_server; "
                           "content:\"|ff|SMB\"; offset:4; depth:4; byte_test:2,>,256,0,relative,little; {})",
                           msg, tail);
        cr.reason = "byte_test";
        break;
      case kThreshold:
        line = fmt::format("alert ip [198.19.{}.0/24,198.19.{}.7] any -> $HOME_NET any ({} threshold: type limit, "
                           "track by_src, seconds 3600, count 1; {})",
                           n(256), n(256), msg, tail);
        cr.reason = "threshold";
        break;
      case kTcpPayload: {
        cr.loadable = true;
        const size_t pi = n(9);
        cr.dport = port_value[pi];
        cr.sport = uint16_t(30000 + n(30000));
        cr.flow = 1 | 4;  // to_server, established
        const std::string a = decode(w), b = decode(w2);
        std::string opts = fmt::format("content:\"{}\";", w);
        std::string payload;
        switch (n(4)) {
          case 0: {  // offset/depth
            uint32_t off = n(8);
            opts += fmt::format(" offset:{}; depth:{};", off, a.size() + n(4));
            payload = std::string(off, 'x') + a;
            break;
          }
          case 1: {  // distance/within chain
            uint32_t d = n(6);
            opts += fmt::format(" content:\"{}\"; distance:{}; within:{};", w2, d, b.size() + d + n(8));
            payload = "..." + a + std::string(d, '-') + b;
            break;
          }
          case 2:  // nocase + isdataat
            opts += " nocase; isdataat:4,relative;";
            payload = "..." + a + "tail";
            break;
          default:  // two independent contents
            opts += fmt::format(" content:\"{}\"; fast_pattern;", w2);
            payload = b + ".." + a;
        }
        line = fmt::format("alert tcp $EXTERNAL_NET any -> $HOME_NET {} ({} flow:established,to_server; {} {})",
                           ports[pi], msg, opts, tail);
        cr.payload = payload + "\r\n";
        break;
      }
      case kTcpReply: {
        cr.loadable = true;
        cr.from_home = true;
        cr.sport = 80;
        cr.dport = uint16_t(30000 + n(30000));
        cr.flow = 2 | 4;  // to_client, established
        const std::string a = decode(w);
        line = fmt::format("alert tcp $HOME_NET $HTTP_PORTS -> $EXTERNAL_NET any ({} flow:established,from_server; "
                           "content:\"HTTP/1.\"; depth:7; content:\"{}\"; distance:0; {})",
                           msg, w, tail);
        cr.payload = "HTTP/1.1 200 OK\r\n" + a;
        break;
      }
      case kUdpPayload: {
        cr.loadable = true;
        cr.proto = 17;
        cr.from_home = true;
        cr.sport = uint16_t(1024 + n(60000));
        cr.dport = 53;
        const std::string a = decode(w);
        line = fmt::format("alert udp $HOME_NET any -> any 53 ({} content:\"|01 00 00 01|\"; offset:2; depth:4; "
                           "content:\"{}\"; distance:8; dsize:>20; {})",
                           msg, w, tail);
        cr.payload = std::string("\x12\x34\x01\x00\x00\x01", 6) + std::string(8, '\0') + a + std::string(12, 'q');
        cr.flow = 1;
        break;
      }
      case kIpList: {
        cr.loadable = true;
        const uint32_t net = n(256);
        line = fmt::format("drop ip [198.19.{}.0/24,198.19.{}.0/24] any -> $HOME_NET any ({} {})", net, (net + 1) % 256,
                           msg, tail);
        cr.proto = 17;
        cr.sport = 9999;
        cr.dport = 9999;
        cr.payload = "x";
        cr.src = fmt::format("198.19.{}.9", net);
        break;
      }
      case kIcmp:
        cr.loadable = true;
        cr.proto = 1;
        cr.icmp_type = 8;
        line = fmt::format("alert icmp $EXTERNAL_NET any -> $HOME_NET any ({} itype:8; icode:0; content:\"{}\"; depth:{}; {})",
                           msg, w, decode(w).size() + 8, tail);
        cr.payload = decode(w) + "........";
        break;
      case kScan:
        cr.loadable = true;
        cr.dport = port_value[n(9)];
        cr.sport = uint16_t(40000 + n(20000));
        cr.tcp_flags = 0x29;  // FIN PSH URG: an Xmas scan
        line = fmt::format("alert tcp $EXTERNAL_NET any -> $HOME_NET any ({} flow:stateless; flags:FPU,12; dsize:0; {})",
                           msg, tail);
        break;
      default: break;
    }
    c.text += line + "\n";
    c.rules.push_back(std::move(cr));
  }
  return c;
}

std::vector<CorpusFrame> corpus_frames(const Corpus& c, uint32_t count, uint32_t seed) {
  std::mt19937 r(seed);
  std::vector<const CorpusRule*> loadable;
  for (const auto& cr : c.rules)
    if (cr.loadable) loadable.push_back(&cr);
  std::vector<CorpusFrame> out;
  if (loadable.empty()) return out;
  out.reserve(count);
  auto put16 = [](std::vector<uint8_t>& f, size_t at, uint32_t v) {
    f[at] = uint8_t(v >> 8);
    f[at + 1] = uint8_t(v);
  };
  for (uint32_t i = 0; i < count; ++i) {
    const CorpusRule& cr = *loadable[(i / 2) % loadable.size()];
    std::string payload = cr.payload;
    if (i % 2 && !payload.empty()) payload[r() % payload.size()] ^= 0x20;  // a near miss
    const size_t l4_len = cr.proto == 6 ? 20 : 8;
    std::vector<uint8_t> f(14 + 20 + l4_len + payload.size(), 0);
    for (int k = 0; k < 12; ++k) f[k] = 0x02;
    f[12] = 0x08;
    const size_t l3 = 14, l4 = l3 + 20;
    f[l3] = 0x45;
    put16(f, l3 + 2, uint32_t(20 + l4_len + payload.size()));
    put16(f, l3 + 6, 0x4000);
    f[l3 + 8] = 64;
    f[l3 + 9] = cr.proto;
    uint8_t home[4] = {198, 18, uint8_t(r()), uint8_t(1 + r() % 254)};
    uint8_t ext[4] = {198, 19, uint8_t(r()), uint8_t(1 + r() % 254)};
    if (!cr.src.empty()) std::sscanf(cr.src.c_str(), "%hhu.%hhu.%hhu.%hhu", &ext[0], &ext[1], &ext[2], &ext[3]);
    std::memcpy(&f[l3 + 12], cr.from_home ? home : ext, 4);
    std::memcpy(&f[l3 + 16], cr.from_home ? ext : home, 4);
    if (cr.proto == 1) {
      f[l4] = cr.icmp_type;
    } else {
      put16(f, l4, cr.sport);
      put16(f, l4 + 2, cr.dport);
      if (cr.proto == 6) {
        f[l4 + 12] = 5 << 4;
        f[l4 + 13] = cr.tcp_flags;
      } else {
        put16(f, l4 + 4, uint32_t(8 + payload.size()));
      }
    }
    std::memcpy(f.data() + l4 + l4_len, payload.data(), payload.size());
    out.push_back({std::move(f), cr.flow});
  }
  return out;
}

}  // namespace gpo::bench
