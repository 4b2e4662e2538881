// A parsed rule file: the rules in file order, the default policy, and the
// problems found. The format is documented in docs/rules.md; the compiler
// (compiler.h) turns a RuleSet into the classifier's flat tables.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "bpf/xdp_filter.h"
#include "kernels/classify/tables.h"

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
  // Windows (docs/rules.md): absolute offset/depth, or relative distance/within.
  bool has_offset = false, has_depth = false, has_distance = false, has_within = false;
  uint32_t offset = 0, depth = 0;
  int32_t distance = 0, within = 0;
  int32_t isdataat_rel = -1;  // `isdataat:N,relative` right after this content: N; -1 none
  bool relative() const { return has_distance || has_within; }
  bool positional() const { return has_offset || has_depth || relative() || isdataat_rel >= 0; }
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
  // Packet tests (classify::UintTest; op kUintAny when absent). flow_set /
  // flow_clear: classify::FlowBits the packet must have / must not have.
  uint8_t flow_set = 0, flow_clear = 0;
  bool icmp_only = false;  // itype / icode given
  classify::UintTest ip_proto{}, dsize{}, tcp_flags{}, itype{}, icode{}, ttl{}, isdataat{};
  // Kept for alerts, never matched on.
  uint32_t gid = 1, rev = 0;
  uint8_t priority = 0;  // 0: not given
  std::string classtype;
  std::vector<std::string> references;
  std::string metadata;
};

struct Diagnostic {
  // kUnsupported: the rule uses what the filter cannot enforce (an app-layer
  // protocol, flowbits, pcre, ...): skipped when loading partially.
  // kInvalid: a mistake in a rule (bad value, syntax): the rule is skipped.
  // kFile: not about one rule (a variable defined twice, a second default line).
  enum Kind : uint8_t { kUnsupported, kInvalid, kFile };
  uint32_t line = 0;
  uint32_t col = 0;     // 1-based, in the (joined) rule text
  std::string keyword;  // the offending keyword/token, when there is one
  std::string message;  // one line, e.g. "unsupported keyword 'pcre'"
  Kind kind = kInvalid;
  std::string reason;   // short, for summaries: "pcre", "protocol http", "undefined variable $X", "invalid depth"
};

struct RuleSet {
  std::vector<Rule> rules;
  uint8_t default_action = GPO_ACT_PASS;
  bool default_explicit = false;  // a `default ...` line was present
  uint32_t default_line = 0;
  uint32_t comment_lines = 0;      // `#` lines (commented-out rules included)
  uint32_t variables = 0;          // var / ipvar / portvar definitions
  uint32_t rule_lines = 0;         // rules in the file: loaded + skipped
};

struct ParseResult {
  RuleSet set;                    // only the rules without problems
  std::vector<Diagnostic> problems;
  // Where variables the rules used came from when not from the file itself:
  // "$HOME_NET = [10.0.0.0/8] (--var)", "$HTTP_PORTS = 80 (default)".
  std::vector<std::string> var_notes;
  bool ok() const { return problems.empty(); }
};

// How much of a file loads, for `rules check`, `run` and `status`.
struct Coverage {
  uint32_t rules = 0;        // rule lines in the file
  uint32_t loaded = 0;
  uint32_t unsupported = 0;  // rules skipped: they use what the filter cannot enforce
  uint32_t invalid = 0;      // rules skipped: mistakes
  uint32_t file_problems = 0;
  std::vector<std::pair<std::string, uint32_t>> reasons;  // skipped rules per reason, most first
};

Coverage coverage(const ParseResult& r);
// "4 of 12 rules loaded; skipped 7 unsupported, 1 invalid; top reasons: protocol http 3, flowbits 2, ..."
std::string coverage_line(const Coverage& c, size_t top = 5);

}  // namespace gpo::rules
