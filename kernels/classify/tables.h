// Compiled rule tables: what agent/rules/compiler.h produces and every
// classifier (CPU and GPU) consumes.
//
// Plain data only: each std::vector is one contiguous array of trivially
// copyable structs, and entries refer to each other by index, never by
// pointer, so a GPU backend copies the arrays to device memory as they are.
//
// Matching semantics (docs/rules.md):
//  - Rules are evaluated in file order; the first rule whose header AND all
//    contents match decides (action, sid). None: the default policy (sid 0).
//  - A FieldSet (addresses or ports) holds entries [first, first + count) of
//    addrs / ports. A value matches the set when
//        (no positive entry, or some positive entry contains it)
//        and no negated entry contains it,
//    and the whole result is inverted when FieldSet::negated. count == 0 and
//    negated == 0 is `any`.
//  - The packet tests of a RuleEntry (flow state and direction, dsize, TCP
//    flags, ICMP type/code, TTL, IP protocol, absolute isdataat) must hold.
//  - Contents [content_first, +content_count) of `contents` must all hold:
//    pattern `pattern_id` of the matcher occurs in the first inspect_depth
//    bytes of the L4 payload (or, for a negated content, does not occur),
//    inside its window when it has offset/depth/distance/within
//    (kernels/classify/contents.h).
//  - cacheable = false when a rule before the deciding one matched the
//    header but not the rest (contents or a per-packet test: a later packet
//    of the flow may match it), when a rule before the deciding one matches
//    the header of the flow's other direction, or when the frame did not parse.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "kernels/common/host_device.h"
#include "kernels/match/match.h"

namespace gpo::classify {

inline constexpr uint32_t kDefaultInspectDepth = 1500;  // bytes of L4 payload scanned

// Which IP protocols a rule applies to (bit per protocol class).
enum ProtoBits : uint8_t {
  kProtoTcp = 1u << 0,
  kProtoUdp = 1u << 1,
  kProtoIcmp4 = 1u << 2,
  kProtoIcmp6 = 1u << 3,
  kProtoOther = 1u << 4,  // any other IP protocol (GRE, SCTP, ESP, ...)
  kProtoAnyIp = 0x1f,
};

inline uint8_t proto_bit(uint8_t ipproto) {
  switch (ipproto) {
    case 6: return kProtoTcp;
    case 17: return kProtoUdp;
    case 1: return kProtoIcmp4;
    case 58: return kProtoIcmp6;
    default: return kProtoOther;
  }
}

// A CIDR over 128-bit addresses; IPv4 is stored v4-mapped with prefix_len + 96.
struct AddrEntry {
  uint8_t addr[16];    // already masked to prefix_len
  uint8_t prefix_len;  // 0..128
  uint8_t negated;
  uint8_t family;      // 4: IPv4 packets only, 6: IPv6 packets only, 0: both (`any` in a list)
  uint8_t pad;
};

struct PortEntry {
  uint16_t lo;  // inclusive, host byte order
  uint16_t hi;
  uint8_t negated;
  uint8_t pad[3];
};

struct FieldSet {
  uint32_t first;
  uint16_t count;
  uint8_t negated;
  uint8_t pad;
};

// One content of a rule. Without a window (absolute, offset 0, end 0, not
// relative) the presence of the pattern decides; otherwise the position
// search of contents.h (Suricata's semantics, docs/rules.md).
struct ContentRef {
  uint32_t pattern_id;  // index into RuleTables::matcher
  uint8_t negated;      // content:!"..." : the pattern must NOT occur (in its window)
  uint8_t nocase;
  uint8_t relative;     // distance/within: the window starts at the previous content's match end
  uint8_t has_within;
  uint32_t bytes;       // the pattern: content_bytes[bytes, bytes + len)
  uint32_t len;
  uint32_t offset;      // absolute window [offset, end) of the inspected payload
  uint32_t end;         // offset + depth; 0 = to the end
  int32_t distance;     // relative window [prev_end + distance, prev_end + distance + within)
  int32_t within;
  int32_t isdataat_rel;  // >= 0: `isdataat:N,relative` after this content (N more bytes after the match); -1: none
};

// A test of one unsigned packet field (dsize, ttl, itype, ...), Suricata's integer syntax.
enum UintOp : uint8_t {
  kUintAny = 0,  // no test
  kUintEq,       // v == a
  kUintNe,       // v != a
  kUintLt,
  kUintLe,
  kUintGt,
  kUintGe,
  kUintRange,     // a < v < b  (`a<>b`, `a-b`)
  kUintNotRange,  // v <= a || v >= b
  kUintMaskEq,    // (v & a) == b  (TCP flags)
  kUintMaskNe,    // (v & a) != b
};

struct UintTest {
  uint8_t op;  // UintOp
  uint8_t pad[3];
  uint32_t a, b;
};

GPO_HD GPO_FORCEINLINE bool uint_test(const UintTest& t, uint32_t v) {
  switch (t.op) {
    case kUintEq: return v == t.a;
    case kUintNe: return v != t.a;
    case kUintLt: return v < t.a;
    case kUintLe: return v <= t.a;
    case kUintGt: return v > t.a;
    case kUintGe: return v >= t.a;
    case kUintRange: return v > t.a && v < t.b;
    case kUintNotRange: return v <= t.a || v >= t.b;
    case kUintMaskEq: return (v & t.a) == t.b;
    case kUintMaskNe: return (v & t.a) != t.b;
    default: return true;
  }
}

struct RuleEntry {
  uint32_t sid;
  uint8_t action;         // enum gpo_action
  uint8_t proto_mask;     // ProtoBits
  uint8_t bidirectional;  // `<>`: also matches with source and destination swapped
  uint8_t positional;     // some content needs the position search (contents.h)
  FieldSet src, sport, dst, dport;
  uint32_t content_first;
  uint32_t content_count;
  // Packet tests (kUintAny: none). flow_set: FlowBits the frame must have,
  // flow_clear: FlowBits it must not have.
  uint8_t flow_set;
  uint8_t flow_clear;
  uint8_t icmp_only;      // itype/icode: only ICMP and ICMPv6 packets match
  uint8_t pad2;
  UintTest ip_proto;      // the same for every packet of a flow
  UintTest dsize;         // L4 payload bytes
  UintTest tcp_flags;     // TCP packets only when set
  UintTest itype, icode;
  UintTest ttl;
  UintTest isdataat;      // absolute isdataat: a test of the payload length
};

struct RuleTables {
  uint8_t default_action = 0;  // enum gpo_action; sid 0
  uint32_t inspect_depth = kDefaultInspectDepth;
  std::vector<RuleEntry> rules;  // file order
  std::vector<AddrEntry> addrs;
  std::vector<PortEntry> ports;
  std::vector<ContentRef> contents;
  std::vector<uint8_t> content_bytes;  // the patterns of positional contents, for the position search
  match::Matcher matcher;  // distinct (bytes, nocase) patterns of all contents

  // Host-only extras for logs (not needed to classify): per rule, its msg and
  // line, and sid -> rule index (to name the rule behind a Verdict).
  std::vector<std::string> msgs;
  std::vector<uint32_t> lines;
  std::unordered_map<uint32_t, uint32_t> rule_by_sid;
  // Per rule, what alerts carry (kept, never matched on): gid, rev, priority
  // (0 when absent), classtype ("" when absent).
  struct Meta {
    uint32_t gid = 1, rev = 0;
    uint8_t priority = 0;
    std::string classtype;
  };
  std::vector<Meta> meta;

  // The msg of the rule with this sid ("" for sid 0, the default policy, or an unknown sid).
  const std::string& msg_of(uint32_t sid) const {
    static const std::string kNone;
    auto it = rule_by_sid.find(sid);
    return it == rule_by_sid.end() ? kNone : msgs[it->second];
  }

  size_t table_bytes() const {
    return rules.size() * sizeof(RuleEntry) + addrs.size() * sizeof(AddrEntry) +
           ports.size() * sizeof(PortEntry) + contents.size() * sizeof(ContentRef) + content_bytes.size() +
           matcher.table_bytes();
  }
};

static_assert(std::is_trivially_copyable_v<RuleEntry> && std::is_trivially_copyable_v<AddrEntry> &&
              std::is_trivially_copyable_v<PortEntry> && std::is_trivially_copyable_v<ContentRef>);

// Helpers both the CPU classifier and tests use; the GPU kernel mirrors them.
inline bool addr_in(const AddrEntry& e, const uint8_t a[16], uint8_t ip_version) {
  if (e.family != 0 && e.family != ip_version) return false;
  unsigned full = e.prefix_len / 8, rem = e.prefix_len % 8;
  for (unsigned i = 0; i < full; ++i)
    if (a[i] != e.addr[i]) return false;
  if (rem == 0) return true;
  uint8_t mask = uint8_t(0xff << (8 - rem));
  return (a[full] & mask) == e.addr[full];
}

inline bool addr_set_match(const RuleTables& t, const FieldSet& s, const uint8_t a[16], uint8_t ip_version) {
  bool any_pos = false, pos_hit = false, neg_hit = false;
  for (uint32_t i = s.first; i < s.first + s.count; ++i) {
    const AddrEntry& e = t.addrs[i];
    if (e.negated) {
      neg_hit = neg_hit || addr_in(e, a, ip_version);
    } else {
      any_pos = true;
      pos_hit = pos_hit || addr_in(e, a, ip_version);
    }
  }
  bool m = (!any_pos || pos_hit) && !neg_hit;
  return s.negated ? !m : m;
}

inline bool port_set_match(const RuleTables& t, const FieldSet& s, uint16_t p) {
  bool any_pos = false, pos_hit = false, neg_hit = false;
  for (uint32_t i = s.first; i < s.first + s.count; ++i) {
    const PortEntry& e = t.ports[i];
    bool in = p >= e.lo && p <= e.hi;
    if (e.negated) {
      neg_hit = neg_hit || in;
    } else {
      any_pos = true;
      pos_hit = pos_hit || in;
    }
  }
  bool m = (!any_pos || pos_hit) && !neg_hit;
  return s.negated ? !m : m;
}

}  // namespace gpo::classify
