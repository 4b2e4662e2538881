// A parsed rule file: the rules in file order, the default policy, and the
// problems found. The format is documented in docs/rules.md; the compiler
// (compiler.h) turns a RuleSet into the classifier's flat tables.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "bpf/xdp_filter.h"

namespace gpo::rules {

// An address prefix. IPv4 is kept as 4 bytes in addr[0..3] (family 4).
struct Cidr {
  uint8_t family = 0;  // 4, 6, or 0 for `any` inside a list
  std::array<uint8_t, 16> addr{};
  uint8_t prefix_len = 0;  // of the family's width (<= 32 for IPv4)
  bool negated = false;
};

// `any` is an empty, non-negated spec. Match semantics: see kernels/classify/tables.h.
struct AddrSpec {
  bool negated = false;
  std::vector<Cidr> entries;
  bool is_any() const { return !negated && entries.empty(); }
};

struct PortRange {
  uint16_t lo = 0, hi = 65535;
  bool negated = false;
};

struct PortSpec {
  bool negated = false;
  std::vector<PortRange> entries;
  bool is_any() const { return !negated && entries.empty(); }
};

struct Content {
  std::string bytes;  // decoded (|hex| and escapes resolved)
  bool nocase = false;
  bool negated = false;
};

struct Rule {
  uint32_t line = 0;
  uint8_t action = GPO_ACT_PASS;  // enum gpo_action
  std::string proto;              // as written: ip, tcp, udp, icmp, icmpv4, icmpv6
  uint8_t proto_mask = 0;         // classify::ProtoBits
  AddrSpec src, dst;
  PortSpec sport, dport;
  bool bidirectional = false;     // `<>`
  std::string msg;
  std::vector<Content> contents;  // all must match
  uint32_t sid = 0;
};

struct Diagnostic {
  uint32_t line = 0;
  uint32_t col = 0;     // 1-based, in the (joined) rule text
  std::string keyword;  // the offending keyword/token, when there is one
  std::string message;  // one line, e.g. "unsupported keyword 'pcre'"
};

struct RuleSet {
  std::vector<Rule> rules;
  uint8_t default_action = GPO_ACT_PASS;
  bool default_explicit = false;  // a `default ...` line was present
  uint32_t default_line = 0;
  uint32_t comment_lines = 0;      // `#` lines (commented-out rules included)
  uint32_t variables = 0;          // var / ipvar / portvar definitions
};

struct ParseResult {
  RuleSet set;                    // only the rules without problems
  std::vector<Diagnostic> problems;
  bool ok() const { return problems.empty(); }
};

const char* action_name(uint8_t action);

}  // namespace gpo::rules
