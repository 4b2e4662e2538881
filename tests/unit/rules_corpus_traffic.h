// Traffic aimed at a generated ET-shaped corpus (bench/rules_corpus.h):
// per loadable rule the packet that satisfies it, and near misses (wrong
// direction or flow state, a payload byte changed, other TCP flags). Shared by
// the CPU test (tests/unit) and the GPU test (tests/gpu).
#pragma once
#include <random>
#include <string>
#include <vector>

#include "bench/rules_corpus.h"
#include "rules/parser.h"
#include "unit/rules_frames.h"

namespace gpo::test {

inline rules::ParseOptions corpus_parse_options() {
  rules::ParseOptions o;
  o.vars.push_back({"HOME_NET", bench::kCorpusHomeNet, "test"});
  return o;
}

inline std::vector<FrameSpec> corpus_traffic(const bench::Corpus& c, uint32_t seed) {
  std::mt19937 r(seed);
  std::vector<FrameSpec> out;
  for (const auto& cr : c.rules) {
    if (!cr.loadable) continue;
    FrameSpec f;
    const std::string home = "198.18." + std::to_string(r() % 256) + "." + std::to_string(1 + r() % 254);
    const std::string ext = cr.src.empty() ? "198.19." + std::to_string(r() % 256) + "." + std::to_string(1 + r() % 254) : cr.src;
    f.src = ip16(cr.from_home ? home : ext);
    f.dst = ip16(cr.from_home ? ext : home);
    f.proto = cr.proto;
    f.sport = cr.sport;
    f.dport = cr.dport;
    f.flow = cr.flow;
    f.tcp_flags = cr.tcp_flags;
    f.icmp_type = cr.proto == 1 ? cr.icmp_type : -1;
    f.payload = cr.payload;
    out.push_back(f);
    FrameSpec miss = f;
    switch (r() % 4) {
      case 0: miss.flow = cr.flow ? uint8_t(cr.flow ^ 3) : 0; break;  // the other direction's bits
      case 1: if (!miss.payload.empty()) miss.payload[r() % miss.payload.size()] ^= 0x20; break;
      case 2: miss.tcp_flags = 0x02; miss.flow &= uint8_t(~4); break;
      default: miss.payload = "z" + miss.payload;  // shifts every offset by one
    }
    out.push_back(miss);
  }
  return out;
}

}  // namespace gpo::test
