// A rule corpus in the shape of Emerging Threats Open for Suricata: the mix
// of header protocols, app-layer buffers, flow/flowbits, content windows and
// packet keywords of a public set, generated (not copied) so the tests and
// the `rules-load` benchmark can load thousands of rules that look like the
// real thing. The mix, per 1000 rules, and where its figures come from are
// in docs/rule-compiler.md ("The test corpus").
//
// Every rule carries, besides its text, what the generator meant by it:
// whether the filter can enforce it (else the skip reason `rules check`
// must report), and for the loadable ones a packet that satisfies it, so
// tests can aim traffic at the rules.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gpo::bench {

struct CorpusRule {
  uint32_t sid = 0;
  bool loadable = false;
  std::string reason;  // skipped rules: the reason rules::coverage() reports
  // Loadable rules: a packet that matches it (when no earlier rule takes it).
  uint8_t proto = 6;        // 6, 17, 1
  uint16_t sport = 0, dport = 0;
  bool from_home = false;   // the packet goes from $HOME_NET to $EXTERNAL_NET
  std::string src;          // a source address the rule needs ("" = any host of its side)
  uint8_t flow = 0;         // classify::FlowBits
  uint8_t tcp_flags = 0x18;
  uint8_t icmp_type = 8;
  std::string payload;
};

struct Corpus {
  std::string text;  // the rule file (no var lines: $HOME_NET etc. come from outside, as with ET)
  std::vector<CorpusRule> rules;
};

// The addresses the corpus' variables should be given (ParseOptions::vars).
inline constexpr const char* kCorpusHomeNet = "[198.18.0.0/16,fd00::/16]";

Corpus make_et_corpus(uint32_t rules, uint32_t seed);

// IPv4 Ethernet frames for the benchmark: per loadable rule, the packet that
// satisfies it and one with a changed payload byte, cycled up to `count`
// frames. flow: the classify::FlowBits the packet path would attach.
struct CorpusFrame {
  std::vector<uint8_t> bytes;
  uint8_t flow = 0;
};
std::vector<CorpusFrame> corpus_frames(const Corpus& c, uint32_t count, uint32_t seed);

}  // namespace gpo::bench
