// Synthetic rule sets and traffic for the classifier benchmark and the GPU
// classifier tests: rule files written like Suricata/ET Open rules
// ($HOME_NET/$EXTERNAL_NET, port lists and ranges, `<>`, content with nocase
// and |hex|), and Ethernet frames aimed at them (IPv4/IPv6, TCP/UDP, VLAN).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gpo::bench {

struct RuleSetSpec {
  uint32_t rules = 1000;
  uint32_t patterns = 100;          // distinct content patterns across the rules (0: header rules only)
  double content_share = 0.3;       // share of rules with contents
  uint32_t seed = 1;
};

// A rule file (docs/rules.md syntax) with exactly spec.rules rules.
std::string make_rules(const RuleSetSpec& spec);

struct TrafficSpec {
  uint32_t frames = 1024;
  uint32_t frame_bytes = 64;      // Ethernet frame size (headers included)
  double v6_share = 0.25;
  double vlan_share = 0.1;
  double pattern_share = 0.05;    // frames whose payload carries one of the rule set's patterns
  uint32_t seed = 2;
};

// Frames for a rule set made by make_rules with the same patterns/seed.
std::vector<std::vector<uint8_t>> make_traffic(const RuleSetSpec& rules, const TrafficSpec& spec);

// The patterns make_rules uses for a spec (raw bytes).
std::vector<std::string> workload_patterns(const RuleSetSpec& spec);

}  // namespace gpo::bench
